"""The scenario interface: what one sample *is*.

A scenario owns the per-sample loop inside the worker process: it renders the prompt, fits it into the
context, calls the backend one or more times (a long document may be summarised chunk by chunk, then
reduced) and returns one typed `SampleResult` with its timings, engine counters and text. The worker
gets the scenario class by reference (`harness.scenarios.scenario_ref`); the parent turns the
result into a row (`harness.results.rows`).

A new scenario is one file in `harness/scenarios/`: subclass `Scenario`, set `name` (and `long_strategy` /
`aliases` for the command-line names that select it), a frozen `config_class` dataclass and, when the
config needs more than the run's settings of the same names, `build_config`. Defining the class registers
it (`Scenario.__init_subclass__`); `harness.scenarios` finds the file by importing every module of the
package, so nothing else names the scenario (docs/architecture.md#a-new-scenario).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from harness.backends.base import Backend, GenerationResult, LoadInfo
from harness.plugins import class_path, declared_name, taken_by
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


@dataclass(frozen=True)
class ScenarioSettings:
    """The run's settings a scenario builds its config from (one model x config of the run)."""

    max_new_tokens: int
    min_new_tokens: int
    lang: str  # the summary language (zh|en)
    prompt_style: str  # the model entry's prompt style


@dataclass(frozen=True)
class ScenarioSetup:
    """What `Scenario.build_config` returns: the worker's config and the prompt templates it uses."""

    config: Any  # what the worker's scenario instance gets (picklable: it travels to the worker process)
    templates: tuple[PromptTemplate, ...] = ()  # extra prompt templates used (recorded in run.json `prompts`)


# name -> class, filled by Scenario.__init_subclass__; read through harness.scenarios (which imports the
# scenario modules first).
REGISTERED: dict[str, type[Scenario]] = {}


class Scenario(ABC):
    """Runs inside the worker, after the backend is loaded. Instantiated once per worker."""

    name: ClassVar[str]  # the --scenario value (and run.json `scenario`); defining it registers the class
    config_class: ClassVar[type]  # a frozen dataclass, built in the parent by `build_config`
    # The --long-strategy value that selects this scenario; None: not a way to handle long documents.
    long_strategy: ClassVar[str | None] = None
    aliases: ClassVar[tuple[str, ...]] = ()  # more --scenario values accepted for it

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = declared_name(cls)
        if name is None:
            return  # an abstract intermediate class, or a subclass reusing its parent's name
        # A subclass with its own name declares its own command-line names: inheriting its parent's
        # long_strategy or aliases would make two scenarios answer to one value.
        cls.long_strategy = cls.__dict__.get("long_strategy")
        cls.aliases = tuple(cls.__dict__.get("aliases", ()))
        for taken, kind in ((name, "name"), *((a, "alias") for a in cls.aliases)):
            other = taken_by(REGISTERED, taken, lambda c: (c.name, *c.aliases), cls)
            if other is not None:
                where = f"{class_path(cls)} is already taken by {class_path(other)}"
                raise TypeError(f'scenario {kind} "{taken}" of {where}')
        if cls.long_strategy is not None:
            other = taken_by(REGISTERED, cls.long_strategy, lambda c: (c.long_strategy,), cls)
            if other is not None:
                where = f"{class_path(cls)} is already taken by {class_path(other)}"
                raise TypeError(f'--long-strategy "{cls.long_strategy}" of {where}')
        REGISTERED[name] = cls

    @classmethod
    def build_config(cls, settings: ScenarioSettings) -> ScenarioSetup:
        """The worker's config, built in the parent from the run's settings. By default `config_class` with
        each of its fields that `settings` has (max_new_tokens, min_new_tokens, ...) filled in; override to
        load prompt templates (return them in `templates` so run.json records them) or derive other values."""
        if not dataclasses.is_dataclass(cls.config_class):
            raise TypeError(f"{cls.__qualname__}.config_class must be a dataclass, or override build_config")
        given = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
        wanted = {f.name: given[f.name] for f in dataclasses.fields(cls.config_class) if f.name in given}
        return ScenarioSetup(cls.config_class(**wanted))

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
