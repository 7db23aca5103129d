"""The backend protocol: the only thing the runner knows about an inference engine.

A backend turns a rendered prompt into token ids, and token ids into a stream of generated token ids,
each stamped with `time.perf_counter_ns()` as it leaves the engine. It also reports the engine's own
counters when it keeps any. Everything else (timing statistics, memory, scoring, rows) happens outside.

A new backend is one file: subclass `Backend`, implement `load`, `tokenize_prompt`, `generate`, and
register it in `harness.backends.BACKENDS`.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from harness.prompts import RenderedPrompt


@dataclass(frozen=True)
class BackendOptions:
    """Per-run engine options, merged from models.yaml defaults and CLI flags."""

    threads: int
    n_ctx: int
    n_gpu_layers: int = 0
    flash_attn: bool = False
    use_mmap: bool = True
    provider: str = "auto"
    provider_options: dict[str, Any] = field(default_factory=dict)
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int = 0


@dataclass(frozen=True)
class GenerationRequest:
    prompt_ids: list[int]
    max_new_tokens: int
    # Ignore end-of-sequence until this many tokens were generated (fixed-length throughput runs).
    min_new_tokens: int = 0


@dataclass
class EngineCounters:
    """The engine's own timing counters for one generation (llama.cpp's perf context)."""

    prompt_tokens: int
    prompt_ms: float
    decode_tokens: int
    decode_ms: float

    @property
    def prefill_tok_s(self) -> float | None:
        return self.prompt_tokens / self.prompt_ms * 1e3 if self.prompt_ms > 0 else None

    @property
    def decode_tok_s(self) -> float | None:
        return self.decode_tokens / self.decode_ms * 1e3 if self.decode_ms > 0 else None


@dataclass
class GenerationResult:
    token_ids: list[int]
    text: str
    start_ns: int  # perf_counter_ns() when the prompt was handed to the engine
    token_ns: list[int]  # perf_counter_ns() as each generated token arrived, same length as token_ids
    stop_reason: str  # "eos" or "length"
    prompt_tokens_evaluated: int | None = None  # engine's count; must equal len(prompt_ids)
    counters: EngineCounters | None = None


class TokenStream:
    """Generated ids with their arrival times, and the stop rule every backend shares: an end-of-sequence
    token ends generation once min_new_tokens are reached (and is not kept), max_new_tokens ends it too."""

    def __init__(self, request: GenerationRequest) -> None:
        self.request = request
        self.ids: list[int] = []
        self.times: list[int] = []
        self.stop_reason = "length"

    def add(self, token: int, now_ns: int, is_eos: bool) -> bool:
        """Record one token; True when generation must stop."""
        if is_eos and len(self.ids) >= self.request.min_new_tokens:
            self.stop_reason = "eos"
            return True
        self.ids.append(token)
        self.times.append(now_ns)
        return len(self.ids) >= self.request.max_new_tokens


@dataclass
class LoadInfo:
    provider: str  # what actually runs the model, e.g. "CPU (AVX2)" or "CPUExecutionProvider"
    n_ctx: int
    model_files: list[Path]
    mmap: bool
    extra: dict[str, Any] = field(default_factory=dict)  # engine facts for run.json


TokenCallback = Callable[[int, int], None]  # (token_id, perf_counter_ns)


class Backend(ABC):
    """One inference engine. Lives in the worker process; instantiated once per model."""

    name: ClassVar[str]

    def __init__(self, model_path: Path, options: BackendOptions, prompt_style: str) -> None:
        self.model_path = model_path
        self.options = options
        self.prompt_style = prompt_style  # "chat" or "completion"

    @abstractmethod
    def load(self) -> LoadInfo:
        """Load weights and create the context. Timed by the caller."""

    @abstractmethod
    def tokenize_prompt(self, prompt: RenderedPrompt) -> list[int]:
        """Render `prompt` (through the model's chat template for chat style) to the ids fed to the engine."""

    @abstractmethod
    def generate(self, request: GenerationRequest) -> GenerationResult:
        """Greedy-decode from a clean state: no KV cache or prefix reuse from earlier calls."""

    @classmethod
    def preflight(cls, options: BackendOptions) -> None:
        """Check in the parent, before any worker starts, that `options` can work on this machine (an
        execution provider that exists, say); raise HarnessError naming the fix if not."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release engine resources."""

    @staticmethod
    def now_ns() -> int:
        return time.perf_counter_ns()

    @classmethod
    def system_info(cls) -> dict[str, Any]:
        """Build facts of the engine (SIMD features, version, providers) for run.json and `harness env`."""
        return {}
