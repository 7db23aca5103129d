"""The backend protocol: the only thing the runner knows about an inference engine.

A backend turns a rendered prompt into token ids, and token ids into a stream of generated token ids,
each stamped with `time.perf_counter_ns()` as it leaves the engine. It also reports the engine's own
counters when it keeps any. Everything else (timing statistics, memory, scoring, rows) happens outside.

A new backend is one file in `harness/backends/`: subclass `Backend`, set `name` (the models.yaml
`backend:` value) and `flags_type` (a `BackendFlags` dataclass: the models.yaml `flags` it accepts, with
types and defaults), list the modules it imports in `requires`, and implement `load`, `tokenize_prompt`,
`generate`. Defining the class registers it (`Backend.__init_subclass__`); `harness.backends` finds the
file by importing every module of the package, so nothing else names the backend. Import the engine
inside methods, not at module level: every command imports every backend module to learn the names and
flags, and a missing engine must fail only the models that use it.
"""

from __future__ import annotations

import importlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from harness.plugins import class_path, declared_name, taken_by
from harness.prompts import RenderedPrompt


@dataclass(frozen=True)
class BackendFlags:
    """A backend's models.yaml `flags`: subclass it (frozen dataclass) with one field per flag the backend
    accepts, typed (pydantic checks values strictly; `Annotated[int, Field(ge=1)]` adds bounds) and with
    the default that applies when models.yaml omits it. This base class has no fields: no flags."""


@dataclass(frozen=True)
class BackendOptions:
    """Per-run engine options: run settings (threads, n_ctx, ...) plus the backend's own `flags`, merged
    from models.yaml and CLI overrides by `harness.backends.make_flags`."""

    threads: int
    n_ctx: int
    provider: str = "auto"
    provider_options: dict[str, Any] = field(default_factory=dict)
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    flags: BackendFlags = field(default_factory=BackendFlags)  # an instance of the backend's flags_type


@dataclass(frozen=True)
class GenerationRequest:
    prompt_ids: list[int]
    max_new_tokens: int
    # Ignore end-of-sequence until this many tokens were generated (fixed-length throughput runs).
    min_new_tokens: int = 0
    # The prompt as rendered, for backends that send text rather than ids (HTTP servers apply the template).
    prompt: RenderedPrompt | None = None


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
    # perf_counter_ns() when the engine produced its last token, kept or not: on an EOS stop the EOS (not in
    # token_ids), else token_ns[-1]. None = not recorded (taken as token_ns[-1]).
    end_ns: int | None = None
    # Backends that see no token ids (HTTP servers): token_ns are arrival times of streamed chunks, the counts
    # are the server's. output_tokens None with itl_unit "chunk" means the count is unknown, never len(token_ns).
    prompt_tokens: int | None = None  # the server's count of the prompt (else len(prompt_ids))
    output_tokens: int | None = None  # the server's count of generated tokens (else len(token_ids))
    itl_unit: str = "token"  # "chunk" when token_ns are chunks that may hold several tokens
    output_tokens_source: str = "engine"  # usage | timings | eval_count | server_tokenize | engine


class TokenStream:
    """Generated ids with their arrival times, and the stop rule every backend shares: an end-of-sequence
    token ends generation once min_new_tokens are reached (and is not kept), max_new_tokens ends it too.

    Backends keep the engine from producing end-of-sequence tokens before min_new_tokens (llama.cpp: a -inf
    logit bias; onnxruntime-genai: min_length), so every kept token is a real output token on both. One
    that arrives anyway (an engine that cannot ban) is kept and counted, as the engine fed it back.
    `end_ns` is the arrival time of the last token the engine produced, EOS included."""

    def __init__(self, request: GenerationRequest) -> None:
        self.request = request
        self.ids: list[int] = []
        self.times: list[int] = []
        self.stop_reason = "length"
        self.end_ns: int | None = None

    def add(self, token: int, now_ns: int, is_eos: bool) -> bool:
        """Record one token; True when generation must stop."""
        self.end_ns = now_ns
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


class LazyModule:
    """A module imported on first attribute access: `og = LazyModule("onnxruntime_genai")` at the top of a
    backend module reads like a normal import but costs nothing until the backend runs, so registering
    the backend never imports its engine. Attributes are cached on first use (no per-call import cost in
    generation loops). A missing package raises ImportError at that first use; `backend_class` checks
    `Backend.requires` before, so users see a one-line install hint instead."""

    def __init__(self, name: str) -> None:
        self.__name = name

    def __getattr__(self, attr: str) -> Any:
        value = getattr(importlib.import_module(self.__name), attr)
        setattr(self, attr, value)
        return value

    def __repr__(self) -> str:
        return f"<lazy module {self.__name!r}>"


# name -> class, filled by Backend.__init_subclass__; read through harness.backends (which imports the
# backend modules first).
REGISTERED: dict[str, type[Backend]] = {}


class Backend(ABC):
    """One inference engine. Lives in the worker process; instantiated once per model."""

    name: ClassVar[str]  # the models.yaml `backend:` value; defining it registers the class
    flags_type: ClassVar[type[BackendFlags]] = BackendFlags  # the models.yaml `flags` it takes
    # Modules the engine needs -> the pip requirement that provides each; checked when a model uses it.
    requires: ClassVar[dict[str, str]] = {}
    # Execution providers a model may name (models.yaml `provider`, --provider) besides "auto"; () = none.
    providers: ClassVar[tuple[str, ...]] = ()
    # Talks to a server that holds the model: may have no local weights (models.yaml `source: {kind: remote}`).
    remote: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = declared_name(cls)
        if name is None:
            return  # an abstract intermediate class, or a subclass reusing its parent's name
        if not (isinstance(cls.flags_type, type) and issubclass(cls.flags_type, BackendFlags)):
            raise TypeError(f"{cls.__qualname__}.flags_type must be a BackendFlags dataclass")
        other = taken_by(REGISTERED, name, lambda c: (c.name,), cls)
        if other is not None:
            raise TypeError(f'backend name "{name}" of {class_path(cls)} is already taken by {class_path(other)}')
        REGISTERED[name] = cls

    def __init__(self, model_path: Path, options: BackendOptions, prompt_style: str) -> None:
        self.model_path = model_path
        self.options = options
        self.prompt_style = prompt_style  # "chat" or "completion"

    @property
    def flags(self) -> BackendFlags:
        """This model's flags (an instance of `flags_type`); defaults when the options carry none."""
        flags = self.options.flags
        if type(flags) is BackendFlags:
            return self.flags_type()
        if not isinstance(flags, self.flags_type):
            raise TypeError(f"{type(self).__name__} needs {self.flags_type.__name__}, got {type(flags).__name__}")
        return flags

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

    # The run.json `environment` keys that `environment()` fills. harness.env writes each of them on every
    # machine (None where the engine is not installed), so a run.json has one shape wherever it was made.
    environment_keys: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def environment(cls) -> dict[str, Any] | None:
        """This engine's facts for run.json `environment` (harness.env.collect_environment), by the keys in
        `environment_keys`; None = nothing to report. Must not import an engine that is not installed here:
        return None then (every run collects the environment, whichever backends it uses)."""
        return None
