"""A model-free backend for testing the harness itself (as lm-evaluation-harness ships a `dummy` model).

It holds `alloc_mb` MiB resident from load on, allocates a further `sample_alloc_mb` MiB for the duration
of each generation, and emits one token per character of a fixed text at `tok_per_s`. Known sizes and
rates let tests check the memory tracker and the latency maths against ground truth, and
`kill_at_call` / `raise_at_call` exercise the crash paths. These are its models.yaml `flags`
(`DummyFlags`).
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from typing import Annotated, ClassVar

from pydantic import Field

from harness.backends.base import Backend, BackendFlags, GenerationRequest, GenerationResult, LoadInfo
from harness.prompts import RenderedPrompt

MIB = 1024 * 1024
OUTPUT = "这是一个测试摘要。This is a test summary. "


def _touched(n_mb: float) -> bytearray:
    # bytearray * n writes every byte, so every page is resident (a bare bytearray(n) may stay lazy).
    return bytearray(b"\x01") * int(n_mb * MIB)


@dataclass(frozen=True)
class DummyFlags(BackendFlags):
    tok_per_s: Annotated[float, Field(gt=0)] = 1000.0  # generation rate
    alloc_mb: Annotated[float, Field(ge=0)] = 0.0  # MiB held resident from load on
    sample_alloc_mb: Annotated[float, Field(ge=0)] = 0.0  # MiB more during each generation
    kill_at_call: Annotated[int, Field(ge=1)] | None = None  # SIGKILL itself at this generate() call
    raise_at_call: Annotated[int, Field(ge=1)] | None = None  # raise RuntimeError at this call
    raise_message: str = "dummy failure"  # the RuntimeError's text (the call number is appended)


class DummyBackend(Backend):
    name: ClassVar[str] = "dummy"
    flags_type: ClassVar[type[BackendFlags]] = DummyFlags

    def load(self) -> LoadInfo:
        flags = self.flags
        assert isinstance(flags, DummyFlags)
        self.tok_per_s = flags.tok_per_s
        self.sample_alloc_mb = flags.sample_alloc_mb
        self.kill_at_call = flags.kill_at_call
        self.raise_at_call = flags.raise_at_call
        self.raise_message = flags.raise_message
        self.calls = 0
        self._resident = _touched(flags.alloc_mb)
        return LoadInfo(provider="dummy", n_ctx=self.options.n_ctx, model_files=[self.model_path], mmap=False)

    def tokenize_prompt(self, prompt: RenderedPrompt) -> list[int]:
        return [ord(ch) for ch in prompt.content]

    def generate(self, request: GenerationRequest) -> GenerationResult:
        self.calls += 1
        if self.kill_at_call is not None and self.calls == int(self.kill_at_call):
            os.kill(os.getpid(), signal.SIGKILL)
        if self.raise_at_call is not None and self.calls == int(self.raise_at_call):
            raise RuntimeError(f"{self.raise_message} at call {self.calls}")
        spike = _touched(self.sample_alloc_mb) if self.sample_alloc_mb else None
        n = min(request.max_new_tokens, len(OUTPUT)) if not request.min_new_tokens else request.max_new_tokens
        ids, times = [], []
        start = self.now_ns()
        step = 1.0 / self.tok_per_s
        for i in range(n):
            time.sleep(step)
            ids.append(ord(OUTPUT[i % len(OUTPUT)]))
            times.append(self.now_ns())
        del spike
        return GenerationResult(
            token_ids=ids,
            text="".join(map(chr, ids)),
            start_ns=start,
            token_ns=times,
            stop_reason="length" if n == request.max_new_tokens else "eos",
            prompt_tokens_evaluated=len(request.prompt_ids),
        )
