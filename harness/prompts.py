"""Prompt templates: editable text files in the repo's `prompts/` directory.

File name: `summarize.<lang>.<style>.txt`, where lang is the summary language (zh, en) and style is
`chat` (the text becomes the user message, wrapped by the model's own chat template) or `completion`
(the text is the whole prompt, for base models without a chat template). `{text}` marks where the talk
goes. Each run records the template's file name and sha256 so results name the exact prompt used.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from harness.errors import HarnessError

STYLES = ("chat", "completion")
LANGS = ("zh", "en")
PLACEHOLDER = "{text}"


def prompts_dir() -> Path:
    """The packaged prompts (a symlink to the repo's prompts/ in a checkout)."""
    return Path(str(resources.files("harness") / "resources" / "prompts"))


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    lang: str
    style: str
    body: str

    @property
    def sha(self) -> str:
        return hashlib.sha256(self.body.encode("utf-8")).hexdigest()[:12]

    def render(self, text: str) -> RenderedPrompt:
        return RenderedPrompt(template=self, content=self.body.replace(PLACEHOLDER, text), text=text)


@dataclass(frozen=True)
class RenderedPrompt:
    template: PromptTemplate
    content: str  # user message (chat) or whole prompt (completion)
    text: str  # the talk text that was inserted (possibly truncated)

    @property
    def style(self) -> str:
        return self.template.style

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.content}]


def load_template(lang: str, style: str, directory: Path | None = None) -> PromptTemplate:
    if style not in STYLES:
        raise HarnessError(f'unknown prompt style "{style}"; use one of {", ".join(STYLES)}')
    if lang not in LANGS:
        raise HarnessError(f'unknown summary language "{lang}"; use one of {", ".join(LANGS)}')
    directory = directory or prompts_dir()
    path = directory / f"summarize.{lang}.{style}.txt"
    if not path.is_file():
        raise HarnessError(f"prompt template {path} is missing; create it with a {PLACEHOLDER} placeholder")
    body = path.read_text(encoding="utf-8").rstrip("\n")
    if body.count(PLACEHOLDER) != 1:
        raise HarnessError(f"prompt template {path} must contain {PLACEHOLDER} exactly once")
    return PromptTemplate(name=path.name, lang=lang, style=style, body=body)
