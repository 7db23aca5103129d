"""The run's settings, and what they resolve to on this machine before anything runs.

`RunConfig` is what the user asked for: one field per `harness run` option of the `PARAMS` table (the
defaults are read from that table, so there is no second set of them), plus the few settings only code
sets (`sweep`, `measure_bandwidth`, `command`). `resolve_run` checks it and turns it into a `RunSetup`:
the documents and model entries it names, the thread count and how it was derived, every model x config
of the sweep, which of them cannot run here (and why), and the scenario that defines a sample. Every
usage error is found here, as one line, before a run directory exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.backends import backend_class, make_flags
from harness.backends.base import BackendOptions
from harness.corpus import Talk, load_corpus
from harness.env import command_line
from harness.errors import HarnessError
from harness.models.registry import ModelEntry, load_models, select_models
from harness.models.sources import require_offline
from harness.params import (
    PARAMS,
    SWEEPABLE,
    Config,
    describe_config,
    expand,
    impossible,
    plan_size_problem,
    thread_warnings,
)
from harness.run.plan import select_talks
from harness.scenarios import resolve_scenario
from harness.scenarios.base import Scenario
from harness.serving import Serving
from harness.threads import default_threads, usable_cpus
from harness.trackers import TrackerContext

_DEFAULTS: dict[str, Any] = {p.name: p.default for p in PARAMS if p.config}


def _default(name: str) -> Any:
    """The `PARAMS` default of option `name` (a KeyError for a name the table does not have: a typo here)."""
    return _DEFAULTS[name]


def _list_default(name: str) -> Any:
    return list(_DEFAULTS[name])


@dataclass
class RunConfig:
    """The settings of one run, as given (None: the default that depends on the machine or the model)."""

    models: list[str] = field(default_factory=lambda: _list_default("models"))  # empty = the default models
    talks: list[str] = field(default_factory=lambda: _list_default("talks"))  # empty = all
    corpus: str | Path | None = field(default=_default("corpus"))  # a built-in name or a JSONL path; None = talks
    models_file: Path | None = field(default=_default("models_file"))
    out: Path = field(default=_default("out"))
    repeats: int = _default("repeats")
    warmup: int = _default("warmup")
    max_new_tokens: int = _default("max_new_tokens")
    min_new_tokens: int = _default("min_new_tokens")
    threads: int | None = _default("threads")  # None = physical cores
    summary_lang: str | None = _default("summary_lang")  # None = each talk's own language
    cooldown_s: float = _default("cooldown_s")
    wait_quiet_s: float | None = _default("wait_quiet_s")  # wait at most this long per sample for a quiet machine
    offline: bool = _default("offline")
    no_mmap: bool = _default("no_mmap")
    flash_attn: bool | None = _default("flash_attn")  # None = models.yaml flag or off
    repack: bool | None = _default("repack")  # None = models.yaml flag, else auto (harness.run.engine_check)
    n_gpu_layers: int | None = _default("n_gpu_layers")
    provider: str | None = _default("provider")  # onnx execution provider override
    n_ctx: int | None = _default("n_ctx")  # override models.yaml
    scenario: str = _default("scenario")
    long_strategy: str = _default("long_strategy")  # a scenario's --long-strategy name (harness.scenarios)
    sample_timeout_s: float | None = _default("sample_timeout_s")  # None = the watchdog's default per model
    interleave: bool = _default("interleave")  # every model x config loaded at once, samples alternating
    # Serving over HTTP (harness.serving): a managed local server per model, an external server's pid,
    # load levels and their service-level bounds.
    via: str | None = _default("via")
    server_pid: int | None = _default("server_pid")
    concurrency: str | None = _default("concurrency")
    slo: str | None = _default("slo")
    level_requests: int | None = _default("level_requests")  # --concurrency: a level's minimum requests
    level_seconds: float | None = _default("level_seconds")  # --concurrency: a level's minimum duration
    # Set by code, not by an option of their own:
    measure_bandwidth: bool = True  # False with --no-bandwidth
    sample_interval_s: float | None = None  # None: 1 s where the kernel's VmHWM gives the exact peak, else 10 ms
    # Sweeps (harness.params): setting -> its values when more than one; the run is their cartesian product.
    # A swept setting's scalar field above is ignored.
    sweep: dict[str, list[Any]] = field(default_factory=dict)
    command: list[str] = field(default_factory=command_line)  # as typed: `.venv/bin/python -m harness run …`


@dataclass
class RunSetup:
    """A checked `RunConfig` resolved on this machine: what the run will plan and how."""

    config: RunConfig
    talks: list[Talk]
    entries: list[ModelEntry]
    threads: int
    threads_how: str  # how the default thread count was derived ("--threads" when given)
    configs: list[Config]  # every combination of the swept settings (one when nothing is swept)
    skipped: dict[tuple[str, str], str]  # (model, config_id) groups that cannot run here -> why
    warnings: list[str]
    scenario: type[Scenario]
    tracker_context: TrackerContext
    serving: Serving  # --via: the managed servers' lifecycle (harness.serving); inert for in-process runs

    def entry(self, model_id: str) -> ModelEntry:
        return next(e for e in self.entries if e.id == model_id)

    @property
    def long_strategy(self) -> str:
        """The long-document strategy the run's scenario declares (`--scenario map-reduce` is map-reduce even
        with --long-strategy left at its default), else --long-strategy as given."""
        return self.scenario.long_strategy or self.config.long_strategy

    def summary_lang(self) -> str:
        """The language every summary is written in: --summary-lang, else the documents' one language."""
        langs = {self.config.summary_lang or t.lang for t in self.talks}
        if len(langs) > 1:
            raise HarnessError("the corpus mixes languages; pass --summary-lang zh or en")
        return langs.pop()


def resolve_run(config: RunConfig) -> RunSetup:
    """Check `config` and resolve it here; every usage error is one HarnessError line."""
    if config.repeats < 1:
        raise HarnessError("--repeats must be at least 1")
    if config.warmup < 0:
        raise HarnessError("--warmup must be 0 or more")
    scenario = resolve_scenario(config.scenario, config.long_strategy)
    talks = select_talks(load_corpus(config.corpus), config.talks)
    entries = select_models(load_models(config.models_file), config.models)
    if config.offline:
        require_offline(entries)  # before any run directory exists: nothing to run without weights
    # Default threads: physical cores usable by this process (affinity ∩ cgroup quota), and how it was derived.
    threads, threads_how = (config.threads, "--threads") if config.threads is not None else default_threads()
    serving = Serving(
        config.via, config.server_pid, config.concurrency, config.slo, entries,
        level_requests=config.level_requests, level_seconds=config.level_seconds,
    )  # fmt: skip
    configs = expand_configs(config, threads)
    skipped = check_configs(config, entries, configs)
    # Before the plan is built: 10^12 repeats must be one line, not a MemoryError (params.MAX_PLANNED_SAMPLES).
    too_big = plan_size_problem(len(configs), len(entries), len(talks), config.repeats)
    if too_big:
        raise HarnessError(too_big)
    tracker_context = TrackerContext(
        threads=max(c["threads"] for c in configs),
        measure_bandwidth=config.measure_bandwidth,
        sample_interval_s=config.sample_interval_s,
        wait_quiet_s=config.wait_quiet_s,
    )
    return RunSetup(
        config, talks, entries, threads, threads_how, configs, skipped,
        thread_warnings(configs, usable_cpus()), scenario, tracker_context, serving,
    )  # fmt: skip


def expand_configs(config: RunConfig, threads: int) -> list[Config]:
    """The cartesian product of the swept settings; unswept ones from their RunConfig fields. Threads left to
    the default are resolved here (`threads`), so the config id names the count that ran."""
    values: dict[str, Any] = {name: getattr(config, name) for name in SWEEPABLE if hasattr(config, name)}
    unknown_sweeps = sorted(set(config.sweep) - set(values))
    if unknown_sweeps:
        raise HarnessError(f"cannot sweep {', '.join(unknown_sweeps)}; sweepable: {', '.join(values)}")
    values.update({name: list(v) for name, v in config.sweep.items()})
    if values.get("threads") is None:
        values["threads"] = threads
    for name, bound in (("threads", 1), ("max_new_tokens", 1), ("n_ctx", 1), ("min_new_tokens", 0)):
        for v in values[name] if isinstance(values.get(name), list) else [values.get(name)]:
            if v is not None and v < bound:
                raise HarnessError(f"--{name.replace('_', '-')} {v}: use {bound} or more")
    return expand(values, [n for n in SWEEPABLE if n in values])


def check_configs(config: RunConfig, entries: list[ModelEntry], configs: list[Config]) -> dict[tuple[str, str], str]:
    """Every model x config that cannot work here, with the reason; when none can, one-line error."""
    skipped: dict[tuple[str, str], str] = {}
    for entry in entries:
        cls = backend_class(entry.backend)
        for c in configs:
            provider = c.get("provider")
            if provider is not None and not cls.providers:
                raise HarnessError(
                    f'--provider {provider}: model "{entry.id}" runs on backend {cls.name}, which has no '
                    "execution providers; leave --provider out or choose a model of a backend that has them"
                )
            reason = impossible(c, entry.n_ctx)
            if reason is None:
                try:
                    cls.preflight(backend_options(config, entry, c, repack=c.get("repack")))
                except HarnessError as exc:
                    reason = str(exc)
            if reason is not None:
                skipped[(entry.id, c.config_id)] = f"{entry.id} [{describe_config(c)}]: {reason}"
    if len(skipped) == len(entries) * len(configs):
        first = next(iter(skipped.values()))
        more = f" (and {len(skipped) - 1} more combination(s))" if len(skipped) > 1 else ""
        raise HarnessError(f"nothing can run: {first}{more}")
    return skipped


def backend_options(config: RunConfig, entry: ModelEntry, c: Config, repack: bool | None) -> BackendOptions:
    """models.yaml flags, overridden by the config's engine settings (None = not given). `repack`: the repack
    setting decided for this model (harness.run.engine_check)."""
    cls = backend_class(entry.backend)
    overrides = {
        "n_gpu_layers": c.get("n_gpu_layers"),
        "flash_attn": c.get("flash_attn"),
        "repack": repack,
        "use_mmap": False if config.no_mmap else None,
    }
    return BackendOptions(
        threads=c["threads"],
        n_ctx=c.get("n_ctx") or entry.n_ctx,
        provider=c.get("provider") or entry.provider,
        provider_options=dict(entry.provider_options),
        chat_template_kwargs=dict(entry.chat_template_kwargs),
        flags=make_flags(cls, entry.flags, where=f'model "{entry.id}": ', overrides=overrides),
    )


def group_name(model_id: str, c: Config) -> str:
    """`model` or, when settings are swept, `model [threads=2]`: how messages name a model x config."""
    return f"{model_id} [{c.label}]" if c.label else model_id


__all__ = ["RunConfig", "RunSetup", "backend_options", "check_configs", "expand_configs", "group_name", "resolve_run"]
