"""Prompt templates: editable text files in the repo's `prompts/` directory.

File name: `summarize.<lang>.<style>.txt`, where lang is the summary language (zh, en) and style is
`chat` (the text becomes the user message, wrapped by the model's own chat template) or `completion`
(the text is the whole prompt, for base models without a chat template). `{text}` marks where the talk
goes. Each run records the template's file name and sha256 so results name the exact prompt used.

Long documents (`--long-strategy`) use three more tasks, `<task>.<lang>.<style>.txt`: `map` (summarise one
part of a long document), `reduce` (merge the partial summaries, one per line, in `{text}`) and `refine`
(update the summary so far, `{summary}`, with the next part, `{text}`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from harness.errors import HarnessError

STYLES = ("chat", "completion")
LANGS = ("zh", "en")
PLACEHOLDER = "{text}"
# task -> placeholders its template must hold, each exactly once
TASKS: dict[str, tuple[str, ...]] = {
    "summarize": ("text",),
    "map": ("text",),
    "reduce": ("text",),
    "refine": ("summary", "text"),
}


def prompts_dir() -> Path:
    """The packaged prompts (a symlink to the repo's prompts/ in a checkout)."""
    return Path(str(resources.files("harness") / "resources" / "prompts"))


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    lang: str
    style: str
    body: str
    task: str = "summarize"

    @property
    def sha(self) -> str:
        return hashlib.sha256(self.body.encode("utf-8")).hexdigest()[:12]

    def render(self, text: str, **fields: str) -> RenderedPrompt:
        """Fill `{text}` (and the task's other placeholders, e.g. `summary` for refine) in one pass, so a
        placeholder-like string inside the inserted text stays as it is."""
        values = {"text": text, **fields}
        content = re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), self.body)
        return RenderedPrompt(template=self, content=content, text=text)


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


def load_template(lang: str, style: str, directory: Path | None = None, task: str = "summarize") -> PromptTemplate:
    if style not in STYLES:
        raise HarnessError(f'unknown prompt style "{style}"; use one of {", ".join(STYLES)}')
    if lang not in LANGS:
        raise HarnessError(f'unknown summary language "{lang}"; use one of {", ".join(LANGS)}')
    if task not in TASKS:
        raise HarnessError(f'unknown prompt task "{task}"; use one of {", ".join(TASKS)}')
    directory = directory or prompts_dir()
    path = directory / f"{task}.{lang}.{style}.txt"
    needed = ", ".join("{" + f + "}" for f in TASKS[task])
    if not path.is_file():
        raise HarnessError(f"prompt template {path} is missing; create it with {needed}")
    body = path.read_text(encoding="utf-8").rstrip("\n")
    for name in TASKS[task]:
        if body.count("{" + name + "}") != 1:
            raise HarnessError(f"prompt template {path} must contain {{{name}}} exactly once ({needed})")
    return PromptTemplate(name=path.name, lang=lang, style=style, body=body, task=task)
