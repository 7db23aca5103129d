"""The scenario interface: what one sample *is*.

A scenario owns the per-sample loop inside the worker process: it renders the prompt, fits it into the
context, calls the backend one or more times (a long document may be summarised chunk by chunk, then
reduced) and returns one typed `SampleResult` with its timings, engine counters and text. The worker
knows no scenario by name beyond looking it up in `harness.scenarios.SCENARIOS`; the parent turns the
result into a row (`harness.results.rows`).

A new scenario is one file: subclass `Scenario`, give it a `name` and a frozen config dataclass, and add
the module to `harness.scenarios.SCENARIO_MODULES`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from harness.backends.base import Backend, GenerationResult, LoadInfo
from harness.prompts import PromptTemplate
from harness.trackers.latency import LatencyStats


@dataclass(frozen=True)
class SampleSpec:
    """One sample the parent asks for: a document (talk) and which repeat of it this is."""

    index: int  # position in the run's plan (sample_seq)
    talk_id: str
    repeat: int
    text: str


@dataclass(frozen=True)
class StageResult:
    """One backend call inside a sample (a map or reduce step of a long document, say)."""

    name: str
    latency: LatencyStats
    stop_reason: str


@dataclass(frozen=True)
class SampleResult:
    """Everything the worker measured for one sample. `latency` holds the sample's headline figures
    (for a one-call scenario: that call's); `columns` carries scenario-specific row columns."""

    index: int
    text: str
    latency: LatencyStats
    stop_reason: str  # eos | length
    truncated: bool
    input_chars: int
    stages: tuple[StageResult, ...] = ()
    columns: dict[str, Any] = field(default_factory=dict)

    @property
    def total_output_tokens(self) -> int:
        """Tokens generated over the whole sample: every stage's, or the one call's."""
        return sum(s.latency.output_tokens for s in self.stages) if self.stages else self.latency.output_tokens


class Scenario(ABC):
    """Runs inside the worker, after the backend is loaded. Instantiated once per worker."""

    name: ClassVar[str]
    config_class: ClassVar[type]

    def __init__(self, backend: Backend, template: PromptTemplate, load_info: LoadInfo, config: Any) -> None:
        self.backend = backend
        self.template = template
        self.load_info = load_info
        self.config = config

    @abstractmethod
    def warmup(self, spec: SampleSpec, runs: int) -> None:
        """Untimed generations that page the weights in and allocate buffers."""

    @abstractmethod
    def run_sample(self, spec: SampleSpec) -> SampleResult:
        """Produce one sample from a clean engine state. Raise on failure: the sample becomes an error row."""


def checked_latency(prompt_ids: list[int], result: GenerationResult) -> LatencyStats:
    """Latency of one backend call, after checking the engine evaluated the whole prompt: a smaller count
    means it reused a cached prefix and TTFT/prefill would be fiction, so the sample must fail."""
    evaluated = result.prompt_tokens_evaluated
    if evaluated is not None and evaluated != len(prompt_ids):
        raise RuntimeError(
            f"engine evaluated {evaluated} prompt tokens, expected {len(prompt_ids)} (KV-cache prefix reuse?)"
        )
    return LatencyStats.from_generation(len(prompt_ids), result)
