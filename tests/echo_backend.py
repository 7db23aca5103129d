"""A throwaway backend for tests/test_backend_registry.py: a subclass in a module outside harness/, as a
plugin or a new contributor's first draft would be. Importing this module registers it as "test-echo"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

from pydantic import Field

from harness.backends.base import Backend, BackendFlags, GenerationRequest, GenerationResult, LoadInfo
from harness.prompts import RenderedPrompt


@dataclass(frozen=True)
class EchoFlags(BackendFlags):
    word: str = "echo"
    tok_per_call: Annotated[int, Field(ge=1)] = 3


class EchoBackend(Backend):
    """Generates `word` `tok_per_call` times (one token each), whatever the prompt."""

    name: ClassVar[str] = "test-echo"
    flags_type: ClassVar[type[BackendFlags]] = EchoFlags

    def load(self) -> LoadInfo:
        flags = self.flags
        assert isinstance(flags, EchoFlags)
        self.echo = flags
        return LoadInfo(provider="echo", n_ctx=self.options.n_ctx, model_files=[self.model_path], mmap=False)

    def tokenize_prompt(self, prompt: RenderedPrompt) -> list[int]:
        return [ord(ch) for ch in prompt.content]

    def generate(self, request: GenerationRequest) -> GenerationResult:
        n = min(request.max_new_tokens, self.echo.tok_per_call)
        start = self.now_ns()
        return GenerationResult(
            token_ids=list(range(n)),
            text=" ".join([self.echo.word] * n),
            start_ns=start,
            token_ns=[self.now_ns() for _ in range(n)],
            stop_reason="length",
            prompt_tokens_evaluated=len(request.prompt_ids),
        )
