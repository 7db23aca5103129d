"""The benchmark run: orchestration only.

The runner turns the selection (models × talks × repeats) into a plan -- the order samples run in --
and walks it. For each model it resolves the weights (in the parent, so downloads are not timed) and
opens a `WorkerSession` the first time the plan reaches it; each planned sample is one request to that
session, and its outcome becomes a row through `harness.results.rows`, written the moment it exists.
What a sample is belongs to the scenario (in the worker), what is observed around it to the trackers,
how a row looks to `rows`: the runner names none of them.
"""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console

from harness import __version__
from harness.backends import backend_class, backend_ref, make_flags
from harness.backends.base import BackendFlags, BackendOptions
from harness.backends.llama_cpp_repack import RepackVerdict, check_repack
from harness.corpus import Talk, corpus_label, corpus_path, load_corpus
from harness.env import collect_environment, command_line
from harness.errors import HarnessError, unknown
from harness.interrupts import RunInterrupted, interruptible
from harness.launchers.session import (
    LauncherFactory,
    SampleOutcome,
    SessionFailed,
    WorkerSession,
    process_launcher,
)
from harness.launchers.watchdog import MAX_TIMEOUTS_IN_A_ROW, default_sample_timeout, phase_deadlines
from harness.launchers.worker import WorkerJob, one_line
from harness.models.registry import ModelEntry, cache_dir, load_models, select_models
from harness.models.sources import cached_sha256, file_sha256, is_ready, local_path, require_offline, resolve
from harness.params import (
    SWEEPABLE,
    Config,
    describe_config,
    expand,
    gguf_n_ctx_train,
    impossible,
    n_ctx_problem,
    plan_size_problem,
    thread_warnings,
)
from harness.plan import PlannedSample as PlanItem
from harness.plan import describe_plan, estimate, plan, plan_record
from harness.progress import Progress
from harness.prompts import PromptTemplate, load_template
from harness.results.durable import WriteFailed
from harness.results.record import Status
from harness.results.rows import ModelRowContext, error_row, ok_row, summary_record
from harness.results.summary import summarise_run
from harness.results.writer import RunWriter
from harness.resume import ResumeState, check_row, check_same, check_weights, code_fingerprint
from harness.scenarios.base import SampleSpec
from harness.scenarios.long_document import LongDocumentConfig
from harness.scenarios.summarize import SummarizeConfig
from harness.serving import ServedModel, Serving
from harness.threads import default_threads, usable_cpus
from harness.trackers import TrackerContext, make_trackers
from harness.trackers.device import KvCacheShape, kv_cache_shape, weights_read_bytes
from harness.trackers.noise import finish_run as noise_finish_run

ENGINE_TOLERANCE_PCT = 3.0


@dataclass
class RunConfig:
    models: list[str] = field(default_factory=list)  # empty = the default models
    talks: list[str] = field(default_factory=list)  # empty = all
    corpus: str | Path | None = None  # a built-in corpus name (talks, summit-reports) or a JSONL path; None = talks
    models_file: Path | None = None
    out: Path = Path("results")
    repeats: int = 1
    warmup: int = 1
    max_new_tokens: int = 256
    min_new_tokens: int = 0
    threads: int | None = None  # None = physical cores
    summary_lang: str | None = None  # None = each talk's own language
    cooldown_s: float = 0.0
    wait_quiet_s: float | None = None  # --wait-quiet: wait at most this long per sample for a quiet machine
    offline: bool = False
    no_mmap: bool = False
    flash_attn: bool | None = None  # None = models.yaml flag or off
    repack: bool | None = None  # None = models.yaml flag, else auto (on unless the self-check saw it crash)
    n_gpu_layers: int | None = None
    provider: str | None = None  # onnx execution provider override
    n_ctx: int | None = None  # override models.yaml
    measure_bandwidth: bool = True
    sample_interval_s: float | None = None  # None: 1 s where the kernel's VmHWM gives the exact peak, else 10 ms
    scenario: str = "summarize"
    sample_timeout_s: float | None = None  # None = the watchdog's default per model (launchers/watchdog.py)
    # Sweeps (harness.params): setting -> its values when more than one; the run is their cartesian product.
    # A swept setting's scalar field above is ignored.
    sweep: dict[str, list[Any]] = field(default_factory=dict)
    interleave: bool = False  # every model x config loaded at once, samples alternating (harness.plan)
    long_strategy: str = "truncate"  # truncate | map-reduce | refine (harness.scenarios.long_document)
    # Serving over HTTP (harness.serving): a managed local server per model, an external server's pid,
    # load levels and their service-level bounds.
    via: str | None = None
    server_pid: int | None = None
    concurrency: str | None = None
    slo: str | None = None
    command: list[str] = field(default_factory=command_line)  # as typed: `.venv/bin/python -m harness run …`


Printer = Callable[[str], None]


LONG_STRATEGIES = {"truncate": "summarize", "map-reduce": "map-reduce", "refine": "refine"}  # -> scenario


def _default_config() -> Config:
    return expand({})[0]


@dataclass(frozen=True)
class PlannedSample:
    seq: int  # global position in the run's order
    model_id: str
    talk: Talk
    repeat: int
    config: Config = field(default_factory=_default_config)

    @property
    def group(self) -> tuple[str, str]:
        """(model, config_id): one worker, one row context."""
        return (self.model_id, self.config.config_id)


def plan_samples(
    model_ids: list[str],
    talks: list[Talk],
    repeats: int,
    configs: list[Config] | None = None,
    interleave: bool = False,
    skip: frozenset[tuple[str, str]] = frozenset(),
) -> list[PlannedSample]:
    """The run's order (harness.plan): within a model, repeats round-robin over talks (talk 1 r0, talk 2 r0,
    …, talk 1 r1) and its configs alternate; models in turn, or alternating too with `interleave`. Groups
    (model, config_id) in `skip` cannot run here and are left out."""
    by_id = {t.id: t for t in talks}
    kept = [
        p
        for p in plan(model_ids, configs or [_default_config()], [t.id for t in talks], repeats, interleave)
        if p.group not in skip
    ]
    return [PlannedSample(seq, p.model, by_id[p.talk_id], p.repeat, p.config) for seq, p in enumerate(kept)]


def _select_talks(talks: list[Talk], wanted: list[str]) -> list[Talk]:
    if not wanted:
        return talks
    by_id = {t.id: t for t in talks}
    for name in wanted:
        if name not in by_id:
            raise unknown("talk", name, by_id)
    return [by_id[name] for name in wanted]


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


@dataclass
class _ModelState:
    """A model's progress through the plan: its session (opened when the plan first reaches it)."""

    entry: ModelEntry
    remaining: int
    config: Config = field(default_factory=_default_config)
    ctx: ModelRowContext | None = None
    job: WorkerJob | None = None
    session: WorkerSession | None = None
    failed: str | None = None  # set once the model cannot produce rows any more: the message for the rest
    timeouts_in_a_row: int = 0
    record: dict[str, Any] = field(default_factory=dict)
    engine_gaps: list[tuple[float, float | None]] = field(default_factory=list)
    served: ServedModel | None = None  # reached over HTTP (harness.serving)


class Runner:
    def __init__(
        self,
        config: RunConfig,
        echo: Printer | None = None,
        launcher_factory: LauncherFactory = process_launcher,
        resume: ResumeState | None = None,
    ) -> None:
        self.config = config
        self.resume = resume
        self.status: Status = "running"
        self.interrupted: RunInterrupted | None = None  # set when SIGINT/SIGTERM stopped the run
        self.rows_written = 0
        self.planned_samples: int | None = None
        self._custom_echo = echo
        self.echo: Printer = echo or print
        self.launcher_factory = launcher_factory
        # llama.cpp's repack self-check (harness.backends.llama_cpp_repack), run when the run starts.
        self.repack_verdict: RepackVerdict | None = None
        if config.repeats < 1:
            raise HarnessError("--repeats must be at least 1")
        if config.warmup < 0:
            raise HarnessError("--warmup must be 0 or more")
        if config.long_strategy not in LONG_STRATEGIES:
            raise unknown("--long-strategy", config.long_strategy, LONG_STRATEGIES)
        self.talks = _select_talks(load_corpus(config.corpus), config.talks)
        self.entries = select_models(load_models(config.models_file), config.models)
        if config.offline:
            require_offline(self.entries)  # before any run directory exists: nothing to run without weights
        # Default threads: physical cores usable by this process (affinity ∩ cgroup quota), and how it was derived.
        self.threads, self.threads_how = (
            (config.threads, "--threads") if config.threads is not None else default_threads()
        )
        self.serving = Serving(config.via, config.server_pid, config.concurrency, config.slo, self.entries)
        self.configs = self._expand_configs()
        self.skipped = self._check_configs()  # (model, config_id) groups that cannot run here, and why
        # Before the plan is built: 10^12 repeats must be one line, not a MemoryError (params.MAX_PLANNED_SAMPLES).
        too_big = plan_size_problem(len(self.configs), len(self.entries), len(self.talks), config.repeats)
        if too_big:
            raise HarnessError(too_big)
        self.warnings = thread_warnings(self.configs, usable_cpus())
        self.tracker_context = TrackerContext(
            threads=max(c["threads"] for c in self.configs),
            measure_bandwidth=config.measure_bandwidth,
            sample_interval_s=config.sample_interval_s,
            wait_quiet_s=config.wait_quiet_s,
        )
        self.engine_s = 0.0
        self.errors = 0
        self.ok_rows = 0
        self.first_error = ""
        self.failure = ""  # why a run whose every sample failed failed

    # ------------------------------------------------------------------------------------------------
    def run(self) -> tuple[Path, int]:
        """Run everything; returns (run directory, number of error rows).

        run.json's `status` ends `complete`, `interrupted` (SIGINT/SIGTERM: `self.interrupted` is set and
        the method returns normally) or `failed` (a write error such as a full disk, or a bug: run.json is
        finalised, then the exception propagates). See harness/interrupts.py and harness/resume.py."""
        cfg = self.config
        plan = self.plan()
        writer = RunWriter.reopen(self.resume.dir) if self.resume else RunWriter(cfg.out)
        self.run_dir = writer.dir
        wall0 = time.perf_counter()
        try:
            with interruptible():  # a signal while the machine is probed: no rows yet, nothing to keep
                record, bandwidth = self._start_record(writer, plan)
        except (RunInterrupted, WriteFailed):
            writer.discard_if_empty()  # a disk already full at start leaves nothing behind either
            raise
        states: dict[tuple[str, str], _ModelState] = {}
        for item in plan:
            state = states.setdefault(item.group, _ModelState(self._entry(item.model_id), 0, item.config))
            state.remaining += 1
        done = self.resume.done if self.resume else {}
        quiet = Console(file=io.StringIO()) if self._custom_echo else None
        progress = Progress(total=len(plan), console=quiet)  # resumed: counts from the first missing sample
        if not self._custom_echo:
            self.echo = progress.echo
        failure: BaseException | None = None
        with interruptible(lambda _signum: self._kill_workers(states)) as guard:
            try:
                with progress:
                    for item in plan:
                        state = states[item.group]
                        if item.seq in done:  # resumed: this sample has its row already
                            check_row(item.seq, (item.model_id, item.talk.id, item.repeat), done[item.seq], writer.dir)
                            state.remaining -= 1
                        else:
                            self._run_planned(item, state, writer, record, bandwidth, progress)
                        if state.remaining == 0:
                            self._finish_model(state, record)
                            record["written_rows"] = writer.rows_written
                            writer.write_run_json(record)
                self.status = "complete"
                every_failed = self._every_sample_failed(writer)
                if every_failed:
                    self.status = "failed"
                    record["failure"] = self.failure = every_failed
            except RunInterrupted as exc:
                self.status, self.interrupted = "interrupted", exc
                record["interrupted_by"] = exc.signal_name
            except BaseException as exc:  # a full disk (WriteFailed), a bug: finalise run.json, then re-raise
                self.status, failure = "failed", exc
                record["failure"] = one_line(exc)
            finally:
                guard.settle()  # a second Ctrl-C must not cut the finalisation short
                failure = self._finalise(writer, record, states, wall0, failure)
        if failure is not None:
            raise failure
        return writer.dir, self.errors

    def _start_record(self, writer: RunWriter, plan: list[PlannedSample]) -> tuple[dict[str, Any], float | None]:
        """Probe the machine and write the first run.json (status running): (record, bandwidth)."""
        cfg = self.config
        self.echo(
            f"harness {__version__} | run {writer.run_id} | {len(self.entries)} model(s) x "
            + (f"{len(self.configs)} configs x " if len(self.configs) > 1 else "")
            + f"{len(self.talks)} talk(s) x {cfg.repeats} repeat(s) | "
            + (f"sweep: {', '.join(self.configs[0].swept)}" if len(self.configs) > 1 else f"threads {self.threads}")
            + (f" | resuming: {writer.rows_written} of {len(plan)} rows already written" if self.resume else "")
        )
        started = datetime.now(timezone.utc).isoformat()
        environment = collect_environment()
        trackers_env = {t.name: t.environment() for t in make_trackers(self.tracker_context)}
        environment["trackers"] = trackers_env
        bandwidth = trackers_env.get("device", {}).get("memory_bandwidth_gbs")
        if bandwidth is not None:
            environment["memory_bandwidth_gbs"] = bandwidth
        record: dict[str, Any] = {
            "run_id": writer.run_id,
            "harness_version": __version__,
            "git_commit": environment["git_commit"],
            "code_sha256": code_fingerprint(),
            "command": cfg.command,
            "cwd": str(Path.cwd()),
            "pid": os.getpid(),
            "status": "running",
            "started_at": started,
            "planned_samples": len(plan),
            "written_rows": writer.rows_written,
            "config": self._config_record(plan),
            "environment": environment,
            "models": {},
            "prompts": {},
            "warnings": [*self.warnings, *(f"not run: {why}" for why in self.skipped.values())],
        }
        for line in record["warnings"]:
            self.echo(f"   warning: {line}")
        self._engine_self_check(record)
        if self.resume is not None:
            record = self._resumed_record(record, writer)
        writer.write_run_json(record)
        return record, bandwidth

    def _finalise(
        self,
        writer: RunWriter,
        record: dict[str, Any],
        states: dict[tuple[str, str], _ModelState],
        wall0: float,
        failure: BaseException | None,
    ) -> BaseException | None:
        """Release the workers, write summary.csv and the final run.json (status, rows). Never raises:
        returns the exception the run should end with (the first failure, else a failing run.json)."""
        for state in states.values():
            if state.session is not None:  # interrupted or failed: release the worker
                try:
                    self._finish_model(state, record)
                except Exception as exc:  # a tracker failing to close must not hide why the run stopped
                    self.echo(f"   warning: closing {state.entry.id}: {one_line(exc)}")
        wall = time.perf_counter() - wall0
        ok_rows, error_rows = self._row_counts(writer)
        record.update(
            status=self.status,
            written_rows=writer.rows_written,
            ok_rows=ok_rows,
            error_rows=error_rows,
            finished_at=datetime.now(timezone.utc).isoformat(),
        )
        record["overhead"] = {
            "wall_s": round(wall, 3),
            "engine_s": round(self.engine_s, 3),  # model loads + warm-ups + timed generations, in workers
            "harness_s": round(wall - self.engine_s, 3),
            "note": "harness_s = wall_s - engine_s: model fetch, process start, scoring, writing, env probe",
        }
        try:
            if self.status != "complete":
                # The status first: on a full disk there may be room for run.json but not for the summaries.
                writer.write_run_json(record)
            writer.release_reserve()
            try:
                summary = summarise_run(writer.dir)
            except (OSError, HarnessError, ValueError) as exc:
                self._warn(record, f"summary.csv not written: {one_line(exc)}")
                summary = None
            if summary is not None:
                record["summary"] = summary.run_json
                for line in summary.lines():
                    self.echo(line)
            if noise_line := noise_finish_run(writer.dir, record):  # run.json `noise`; the busy-machine line
                self._warn(record, noise_line)
            writer.write_run_json(record)
        except WriteFailed as exc:
            failure = failure or exc
        writer.close()
        self.rows_written, self.planned_samples = writer.rows_written, record.get("planned_samples")
        return failure

    def _kill_workers(self, states: dict[tuple[str, str], _ModelState]) -> None:
        """From the signal handler: stop every live worker now, mid-sample (its row is not written)."""
        for state in states.values():
            if state.session is not None:
                state.session.launcher.kill()

    def _resumed_record(self, fresh: dict[str, Any], writer: RunWriter) -> dict[str, Any]:
        """The interrupted run's record, checked against this configuration, with this resume appended."""
        assert self.resume is not None
        old = self.resume.record
        check_same(old, fresh, writer.dir)
        for entry in self.entries:
            recorded = ((old.get("models") or {}).get(entry.id) or {}).get("sha256")
            if recorded and is_ready(entry):
                check_weights(entry.id, recorded, cached_sha256(local_path(entry)), writer.dir)
        record = dict(old)
        record["resumes"] = [
            *(old.get("resumes") or []),
            {
                "at": fresh["started_at"],
                "command": fresh["command"],
                "rows_before": writer.rows_written,
                "previous_status": old.get("status"),
                "stopped_by": old.get("interrupted_by") or old.get("failure"),
            },
        ]
        for key in ("interrupted_by", "failure", "finished_at", "overhead", "summary"):
            record.pop(key, None)
        record.update(status="running", pid=fresh["pid"], written_rows=writer.rows_written)
        record.setdefault("models", {})
        record.setdefault("prompts", {})
        record.setdefault("warnings", [])
        return record

    def _config_record(self, plan: list[PlannedSample]) -> dict[str, Any]:
        cfg = self.config
        return {
            "models": [e.id for e in self.entries],
            "talks": [t.id for t in self.talks],
            "repeats": cfg.repeats,
            "warmup": cfg.warmup,
            # The settings of the (first) config: every override as it took effect (None = models.yaml).
            **self.configs[0].as_dict(),
            "summary_lang": cfg.summary_lang or "talk",
            "cooldown_s": cfg.cooldown_s,
            "wait_quiet_s": cfg.wait_quiet_s,
            "corpus": corpus_label(cfg.corpus),
            "corpus_sha256": _sha_file(corpus_path(cfg.corpus)),
            "no_mmap": cfg.no_mmap,
            "offline": cfg.offline,
            "sample_interval_s": cfg.sample_interval_s,
            "threads_derivation": self.threads_how,
            "scenario": self._scenario(),
            "long_strategy": cfg.long_strategy,
            "serving": {
                "via": cfg.via,
                "server_pid": cfg.server_pid,
                "concurrency": self.serving.levels,
                "slo": str(self.serving.slo) if self.serving.levels else None,
            },
            "sweep": {name: list(values) for name, values in cfg.sweep.items()},
            "configs": [
                {"config_id": c.config_id, "label": c.label, "settings": c.as_dict()} for c in self.configs
            ],
            "skipped_configs": [
                {"model": model, "config_id": cid, "reason": why} for (model, cid), why in self.skipped.items()
            ],
            "interleave": cfg.interleave,
            "order": plan_record([_plan_entry(p) for p in plan], cfg.interleave),
            "planned_samples": len(plan),
        }

    # -- configs (harness.params) ------------------------------------------------------------------------
    def _expand_configs(self) -> list[Config]:
        """The cartesian product of the swept settings; unswept ones from their RunConfig fields. Threads
        left to the default are resolved here, so the config id names the count that ran."""
        cfg = self.config
        values: dict[str, Any] = {name: getattr(cfg, name) for name in SWEEPABLE if hasattr(cfg, name)}
        unknown_sweeps = sorted(set(cfg.sweep) - set(values))
        if unknown_sweeps:
            raise HarnessError(f"cannot sweep {', '.join(unknown_sweeps)}; sweepable: {', '.join(values)}")
        values.update({name: list(v) for name, v in cfg.sweep.items()})
        if values.get("threads") is None:
            values["threads"] = self.threads
        for name, bound in (("threads", 1), ("max_new_tokens", 1), ("n_ctx", 1), ("min_new_tokens", 0)):
            for v in values[name] if isinstance(values.get(name), list) else [values.get(name)]:
                if v is not None and v < bound:
                    raise HarnessError(f"--{name.replace('_', '-')} {v}: use {bound} or more")
        return expand(values, [n for n in SWEEPABLE if n in values])

    def _check_configs(self) -> dict[tuple[str, str], str]:
        """Every model x config that cannot work here, with the reason; all of them -> one-line error."""
        skipped: dict[tuple[str, str], str] = {}
        for entry in self.entries:
            cls = backend_class(entry.backend)
            for config in self.configs:
                provider = config.get("provider")
                if provider is not None and not cls.providers:
                    raise HarnessError(
                        f'--provider {provider}: model "{entry.id}" runs on backend {cls.name}, which has no '
                        "execution providers; leave --provider out or choose a model of a backend that has them"
                    )
                reason = impossible(config, entry.n_ctx)
                if reason is None:
                    try:
                        cls.preflight(self._backend_options(entry, config))
                    except HarnessError as exc:
                        reason = str(exc)
                if reason is not None:
                    skipped[(entry.id, config.config_id)] = f"{entry.id} [{describe_config(config)}]: {reason}"
        if len(skipped) == len(self.entries) * len(self.configs):
            first = next(iter(skipped.values()))
            more = f" (and {len(skipped) - 1} more combination(s))" if len(skipped) > 1 else ""
            raise HarnessError(f"nothing can run: {first}{more}")
        return skipped

    def plan(self) -> list[PlannedSample]:
        return plan_samples(
            [e.id for e in self.entries],
            self.talks,
            self.config.repeats,
            self.configs,
            self.config.interleave,
            frozenset(self.skipped),
        )

    def dry_run(self, estimate_from: Path | None = None) -> str:
        """The plan as text (`--dry-run`); with an earlier run directory, its estimated duration."""
        from harness.report.load import read_results
        from harness.results.layout import RESULTS_CSV

        samples = [_plan_entry(p) for p in self.plan()]
        est = None
        if estimate_from is not None:
            csv_path = estimate_from / RESULTS_CSV if estimate_from.is_dir() else estimate_from
            if not csv_path.is_file():
                raise HarnessError(f"--estimate-from {estimate_from}: no {RESULTS_CSV} there; pass a run directory")
            est = estimate(samples, read_results(csv_path).to_dict("records"), self.config.warmup)
        return describe_plan(
            samples,
            [e.id for e in self.entries],
            self.configs,
            [t.id for t in self.talks],
            self.config.repeats,
            self.config.interleave,
            est,
            skipped=list(self.skipped.values()),
        )

    def _entry(self, model_id: str) -> ModelEntry:
        return next(e for e in self.entries if e.id == model_id)

    def _scenario(self) -> str:
        strategy = self.config.long_strategy
        return self.config.scenario if strategy == "truncate" else LONG_STRATEGIES[strategy]

    def _scenario_config(self, config: Config, lang: str, style: str, record: dict[str, Any]) -> Any:
        max_new, min_new = config["max_new_tokens"], config["min_new_tokens"]
        if self._scenario() not in ("map-reduce", "refine"):
            return SummarizeConfig(max_new, min_new)
        templates = {task: load_template(lang, style, task=task) for task in ("map", "reduce", "refine")}
        for t in templates.values():
            record["prompts"][t.name] = t.sha
        return LongDocumentConfig(max_new, min_new, templates["map"], templates["reduce"], templates["refine"])

    def _backend_options(self, entry: ModelEntry, config: Config | None = None) -> BackendOptions:
        """models.yaml flags, overridden by the config's engine settings (None = not given)."""
        cfg = self.config
        config = config or self.configs[0]
        cls = backend_class(entry.backend)
        overrides = {
            "n_gpu_layers": config.get("n_gpu_layers"),
            "flash_attn": config.get("flash_attn"),
            "repack": self._repack_override(entry, config),
            "use_mmap": False if cfg.no_mmap else None,
        }
        return BackendOptions(
            threads=config["threads"],
            n_ctx=config.get("n_ctx") or entry.n_ctx,
            provider=config.get("provider") or entry.provider,
            provider_options=dict(entry.provider_options),
            chat_template_kwargs=dict(entry.chat_template_kwargs),
            flags=make_flags(cls, entry.flags, where=f'model "{entry.id}": ', overrides=overrides),
        )

    def _summary_lang(self) -> str:
        langs = {self.config.summary_lang or t.lang for t in self.talks}
        if len(langs) > 1:
            raise HarnessError("the corpus mixes languages; pass --summary-lang zh or en")
        return langs.pop()

    # -- one planned sample ------------------------------------------------------------------------------
    def _run_planned(
        self,
        item: PlannedSample,
        state: _ModelState,
        writer: RunWriter,
        record: dict[str, Any],
        bandwidth: float | None,
        progress: Progress,
    ) -> None:
        state.remaining -= 1
        if state.ctx is None:
            self._prepare_model(state, writer, record, bandwidth)
        assert state.ctx is not None
        if state.failed is None and state.session is None:
            self._open_session(state, item, record, progress)
        if state.failed is not None:
            self._write_error(writer, state, item, state.failed)
            return
        assert state.session is not None
        if self.config.cooldown_s > 0 and item.seq:
            time.sleep(self.config.cooldown_s)
        progress.sample_start(item.seq + 1, state.entry.id, item.talk.id, item.repeat)
        t0 = time.perf_counter()
        spec = SampleSpec(item.seq, item.talk.id, item.repeat, item.talk.text)
        outcome = state.session.run(spec, timeout_s=self._sample_timeout(state))
        progress.sample_end(time.perf_counter() - t0)
        if outcome.result is None:
            outcome = replace(outcome, error=self._explain_death(state, outcome.error, "sample"))
        self._write_outcome(writer, state, item, outcome)
        if state.session is not None and state.session.timed_out:
            # The watchdog killed a stalled worker: the rest of this model runs in a fresh one, unless it
            # keeps stalling (launchers/watchdog.py).
            state.timeouts_in_a_row += 1
            self._close_session(state, record)
            if state.remaining and state.timeouts_in_a_row >= MAX_TIMEOUTS_IN_A_ROW:
                self._give_up(state, f"not run: {state.timeouts_in_a_row} samples in a row timed out ({outcome.error})")
            elif state.remaining:
                self.echo(f"   {outcome.error}: worker killed; {state.entry.id} continues in a fresh worker")
        elif state.session is not None and state.session.dead and state.remaining:
            self._give_up(state, outcome.error)
        elif outcome.result is not None:
            state.timeouts_in_a_row = 0
        elif state.remaining and (gone := self.serving.check_alive(state.served)):
            self._give_up(state, gone)

    # -- llama.cpp's repack self-check (harness.backends.llama_cpp_repack) ----------------------------------
    def _engine_self_check(self, record: dict[str, Any]) -> None:
        """Before the first llama.cpp model: does weight repacking run on this CPU? Cached per build x CPU.
        A crash turns repack off for every model left on auto, with one line saying why."""
        if not any(_has_repack(e) for e in self.entries):
            return
        verdict = self.repack_verdict = check_repack(cache_dir())
        applied = "repack on (llama.cpp's default)"
        if verdict.repack_ok is False:
            forced = sorted({e.id for e in self.entries for c in self.configs if c.get("repack") is True})
            applied = "repack off for models left on auto" + (f"; forced on by --repack 1: {', '.join(forced)}"
                                                              if forced else "")
            self._warn(record, f"{verdict.summary}: {verdict.remedy}")
            if forced:
                self._warn(record, f"--repack 1 asked for repack on {', '.join(forced)}: expect those workers to "
                                   f"crash ({verdict.signal}); drop --repack 1 or use --repack 0")
        elif verdict.repack_ok is None:
            self._warn(record, verdict.summary)
        record["engine_check"] = {"repack": verdict.record(), "applied": applied}

    def _repack_override(self, entry: ModelEntry, config: Config) -> bool | None:
        """--repack when given; else the models.yaml flag (None here); else off when the self-check saw repack
        crash on this CPU, else None (llama.cpp's default: on)."""
        asked = config.get("repack")
        if asked is not None:
            return bool(asked)
        if "repack" in entry.flags or not _has_repack(entry):
            return None
        if self.repack_verdict is not None and self.repack_verdict.repack_ok is False:
            return False
        return None

    def _explain_death(self, state: _ModelState, message: str, phase: str) -> str:
        """A worker or server that died: the phase it died in, a managed server's own exit (not the client's
        network error), and what the repack self-check knows."""
        # A request cut by a dying server: give the server up to 1 s to be reaped, so its own exit is reported.
        # Other failures (a server that answered with an error) must not wait on a live server.
        cut = any(k in message for k in ("RequestError", "onnect", "closed", "stream cut", "isconnected"))
        gone = self.serving.check_alive(state.served, wait_s=1.0 if cut else 0.0) if state.served is not None else None
        if gone is not None:
            message = gone
        if "signal" not in message:
            return message
        message = f"{message} during {phase}"
        verdict = self.repack_verdict
        repack = state.ctx.base.get("repack") if state.ctx is not None else None
        if verdict is not None and verdict.repack_ok is False and repack:
            message += f" (repack self-check: {verdict.summary}; run with --repack 0)"
        elif verdict is not None and verdict.repack_ok and repack:
            message += " (the repack self-check passed on this CPU; try --repack 0 to rule it out)"
        return message

    def _row_counts(self, writer: RunWriter) -> tuple[int, int]:
        """(ok rows, error rows) in results.csv: this attempt's, and on --resume the earlier attempt's too."""
        if self.resume is None:
            return self.ok_rows, self.errors
        from harness.results.layout import RESULTS_CSV

        try:
            with (writer.dir / RESULTS_CSV).open(newline="", encoding="utf-8") as fh:
                ok = sum(r.get("status") == "ok" for r in csv.DictReader(fh))
        except OSError:
            ok = self.ok_rows
        return ok, max(0, writer.rows_written - ok)

    def _every_sample_failed(self, writer: RunWriter) -> str | None:
        """'every sample failed: …' when the run wrote rows and none is ok (then the run is `failed`, exit 4)."""
        ok, errors = self._row_counts(writer)
        if not errors or ok:
            return None
        return f"every sample failed ({errors} error rows): {self.first_error or 'see the error column of results.csv'}"

    def _give_up(self, state: _ModelState, message: str) -> None:
        """The model cannot produce rows any more: its remaining samples become error rows with `message`."""
        state.failed = message
        self.echo(f"   {message}; remaining samples of {state.entry.id} recorded as errors")

    def _prepare_model(
        self, state: _ModelState, writer: RunWriter, record: dict[str, Any], bandwidth: float | None
    ) -> None:
        """Everything about a model that comes before its worker: prompt template, weights, row context."""
        cfg, entry, config = self.config, state.entry, state.config
        lang = self._summary_lang()
        template: PromptTemplate = load_template(lang, entry.prompt_style)
        record["prompts"][template.name] = template.sha
        options = self._backend_options(entry, config)
        scenario_config = self._scenario_config(config, lang, entry.prompt_style, record)
        state.ctx = ModelRowContext(
            base={
                "run_id": writer.run_id,
                "model": entry.id,
                "backend": entry.backend,
                "quant": entry.quant,
                "threads": config["threads"],
                "max_new_tokens": config["max_new_tokens"],
                "min_new_tokens": config["min_new_tokens"],
                "config_id": config.config_id,
                "sweep": config.label,
                "n_gpu_layers": getattr(options.flags, "n_gpu_layers", None),
                "long_strategy": cfg.long_strategy,
                "prompt_name": template.name,
                "prompt_sha": template.sha,
                "summary_lang": lang,
                "flash_attn": getattr(options.flags, "flash_attn", None),
                "repack": _effective_repack(options.flags),
            },
            bandwidth_gbs=bandwidth,
        )
        self.echo(f"\n== {entry.id} ({entry.backend}, {entry.quant}){f' [{config.label}]' if config.label else ''}")
        try:
            path = resolve(entry, offline=cfg.offline, progress=True)
        except HarnessError as exc:
            self.echo(f"   cannot get model: {exc}")
            state.failed = str(exc)
            return
        # No local weights (source kind remote): size 0, empty sha256; the server holds the model.
        files = [] if path is None else sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        size_bytes = sum(p.stat().st_size for p in files)
        state.ctx.weight_bytes = size_bytes
        local_file = path is not None and path.is_file()
        # The context asked for must fit the model (n_ctx_train in its GGUF header), not only the engine.
        train = gguf_n_ctx_train(path) if local_file else None
        ctx_problem = n_ctx_problem(options.n_ctx, train) if options.n_ctx is not None else None
        if ctx_problem:
            self.echo(f"   cannot run model: {ctx_problem}")
            state.failed = ctx_problem
            return
        state.ctx.weights_read_bytes = weights_read_bytes(path) if local_file else None
        state.ctx.kv_shape = kv_cache_shape(path) if local_file else None
        state.ctx.base["model_file_mb"] = size_bytes / 2**20
        model_record = record["models"].setdefault(entry.id, {})
        model_record.update(
            backend=entry.backend,
            quant=entry.quant,
            source=entry.source.kind,
            size_bytes=size_bytes,
            sha256=cached_sha256(path) if local_file else "" if path is None else None,
            provenance=entry.provenance or None,
        )
        # One config: its load facts sit on the model's record, as before sweeps; several: one entry each.
        state.record = model_record
        if len(self.configs) > 1:
            configs = model_record.setdefault("configs", {})
            state.record = configs.setdefault(config.config_id, {"settings": describe_config(config)})
        try:
            state.served = self.serving.start(entry, path, options, writer.dir, self.echo)
        except HarnessError as exc:
            self.echo(f"   cannot serve model: {exc}")
            state.failed = str(exc)
            return
        if state.served is not None:
            state.record["serving"] = state.served.record
            state.ctx.base["backend"] = state.served.backend_name
            options = state.served.options
        cls = backend_class(entry.backend)
        state.job = WorkerJob(
            model_id=entry.id,
            # An importable reference, so a backend defined outside harness.backends loads in the worker too.
            backend=state.served.backend_ref if state.served else backend_ref(cls),
            model_path=str(path) if path is not None else "",
            prompt_style=entry.prompt_style,
            options=options,
            template=template,
            scenario=self._scenario(),
            scenario_config=scenario_config,
        )

    def _open_session(
        self, state: _ModelState, first: PlannedSample, record: dict[str, Any], progress: Progress
    ) -> None:
        assert state.job is not None and state.ctx is not None
        trackers = self.serving.trackers(state.served, make_trackers(self.tracker_context))
        watch = state.served.pid if state.served else None
        # Start, load, warm-up and stop have deadlines too (launchers/watchdog.py), so no phase can hang the run.
        deadlines = phase_deadlines(self._sample_timeout(state), state.ctx.weight_bytes, self.config.warmup)
        session = WorkerSession(state.job, trackers, self.launcher_factory, deadlines=deadlines, watch_pid=watch)
        state.session = session
        progress.phase(state.entry.id, "loading")
        try:
            if self.config.warmup:
                # The warm-up runs over the first planned talk's full prompt: a real prompt length.
                session.open(
                    SampleSpec(-1, first.talk.id, -1, first.talk.text),
                    self.config.warmup,
                    on_loaded=lambda: progress.phase(state.entry.id, "warming up"),
                )
            else:
                session.open(None, 0)
        except SessionFailed as exc:
            message = self._explain_death(state, str(exc), session.phase)
            self.echo(f"   worker failed: {message}")
            state.failed = message
            return
        loaded, warmed = session.info.loaded, session.info.warmed
        assert loaded is not None and warmed is not None
        self.engine_s += loaded.load_s + warmed.warmup_s
        state.ctx.load = {
            # Served by a managed server: its start -> answering time is the model load.
            "load_s": state.served.load_s if state.served and state.served.load_s is not None else loaded.load_s,
            "provider": loaded.provider,
            "n_ctx": loaded.n_ctx,
            "mmap": loaded.mmap,
            "kv_cache_mb": _kv_cache_mb(
                state.job.model_path, state.ctx.kv_shape, min(loaded.n_ctx, state.job.options.n_ctx)
            ),
            **session.info.load_columns,
        }
        state.record.update(
            load_s=round(loaded.load_s, 4),
            provider=loaded.provider,
            n_ctx=loaded.n_ctx,
            mmap=loaded.mmap,
            engine=loaded.extra,
            **({"tokenizer": loaded.extra["tokenizer"]} if loaded.extra.get("tokenizer") else {}),
            engine_system_info=loaded.system_info,
            warmup_s=round(warmed.warmup_s, 3),
            warmup_runs=warmed.runs,
            sample_timeout_s=self._sample_timeout(state),
        )
        if loaded.extra.get("warning"):
            self.echo(f"   warning: {loaded.extra['warning']}")
        before, after = state.ctx.load.get("rss_before_load_mb"), state.ctx.load.get("rss_after_load_mb")
        self.echo(
            f"   loaded in {state.ctx.load['load_s']:.2f} s on {loaded.provider} | RSS {_fmt(before, '.0f')} -> "
            f"{_fmt(after, '.0f')} MiB | weights {(state.ctx.weight_bytes or 0) / 2**20:.1f} MiB, "
            f"mmap={'on' if loaded.mmap else 'off'}"
        )

    def _sample_timeout(self, state: _ModelState) -> float:
        if self.config.sample_timeout_s is not None:
            return self.config.sample_timeout_s
        n_ctx = state.ctx.load.get("n_ctx") if state.ctx is not None else None
        if n_ctx is None and state.job is not None:  # before the load (the warm-up deadline): the requested one
            n_ctx = state.job.options.n_ctx
        return default_sample_timeout(state.config["max_new_tokens"], n_ctx)

    def _close_session(self, state: _ModelState, record: dict[str, Any]) -> None:
        if state.session is not None:
            session, state.session = state.session, None
            info = session.close()
            for _name, report in info.reports:
                state.record.update(report.record)
                for warning in report.warnings:
                    self._warn(record, f"{_group_name(state)}: {warning}")

    def _finish_model(self, state: _ModelState, record: dict[str, Any]) -> None:
        self._close_session(state, record)
        if state.served is not None and state.job is not None:
            levels = self.serving.finish(
                state.served, state.job.template, self.talks, self.config.repeats,
                SummarizeConfig(state.config["max_new_tokens"], 0), self.run_dir, self.echo,
            )  # fmt: skip
            if levels:
                state.record["load"] = levels
            state.served = None
        warning = engine_gap_warning(_group_name(state), state.engine_gaps)
        if warning:
            self._warn(record, warning)
        state.engine_gaps = []

    def _warn(self, record: dict[str, Any], warning: str) -> None:
        record["warnings"].append(warning)
        self.echo(f"   warning: {warning}")

    # -- rows --------------------------------------------------------------------------------------------
    def _write_outcome(
        self, writer: RunWriter, state: _ModelState, item: PlannedSample, outcome: SampleOutcome
    ) -> None:
        assert state.ctx is not None
        if outcome.result is None:
            self._write_error(writer, state, item, outcome.error)
            return
        result = outcome.result
        self.ok_rows += 1
        row = ok_row(state.ctx, item.talk, item.repeat, result, outcome.columns)
        self.engine_s += result.latency.e2e_s or 0.0
        writer.write_row(row, summary_record(row, item.talk, result.text))
        self._echo_sample(row)
        if row.get("decode_vs_engine_pct") is not None and (row["output_tokens"] or 0) >= 8:
            state.engine_gaps.append((row["decode_vs_engine_pct"], row["outside_engine_ms_per_tok"]))

    def _write_error(self, writer: RunWriter, state: _ModelState, item: PlannedSample, message: str) -> None:
        assert state.ctx is not None
        self.errors += 1
        self.first_error = self.first_error or message
        row = error_row(state.ctx, item.talk, item.repeat, message, item.seq)
        writer.write_row(row, summary_record(row, item.talk, ""))
        self.echo(f"   {item.talk.id} r{item.repeat}: ERROR {message}")

    def _echo_sample(self, row: dict[str, Any]) -> None:
        from harness.progress import sample_line

        self.echo(sample_line(row))  # map-reduce/refine lines lead with chunks, stages and e2e
        if row["truncated"]:
            self.echo(
                f"   note: {row['talk_id']} truncated to {row['input_chars']} chars to fit "
                f"n_ctx {row['n_ctx']} - max_new_tokens {row['max_new_tokens']}"
            )


def engine_gap_warning(model_id: str, gaps: list[tuple[float, float | None]]) -> str | None:
    """One line per model when the harness's decode rate strays from the engine's own counter by more than
    ENGINE_TOLERANCE_PCT, with the per-token time outside the engine that explains it."""
    off = [g for g in gaps if abs(g[0]) > ENGINE_TOLERANCE_PCT]
    if not off:
        return None
    pcts = sorted(g[0] for g in off)
    outside = sorted(g[1] for g in gaps if g[1] is not None)
    median = f"{outside[len(outside) // 2]:.2f} ms" if outside else "unknown"
    return (
        f"{model_id}: decode_tok_s differs from the engine's own counter by {pcts[0]:+.2f}..{pcts[-1]:+.2f}% "
        f"(> {ENGINE_TOLERANCE_PCT:g}%) on {len(off)}/{len(gaps)} samples; median time outside the engine "
        f"per token {median} (sampling over the vocabulary + Python loop: outside_engine_ms_per_tok)"
    )


def _has_repack(entry: ModelEntry) -> bool:
    """The entry's backend has llama.cpp's repack setting (a `repack` flag): the self-check concerns it."""
    import dataclasses

    return "repack" in {f.name for f in dataclasses.fields(backend_class(entry.backend).flags_type)}


def _effective_repack(flags: BackendFlags) -> bool | None:
    """The repack setting a llama.cpp model runs with (None: the backend has no such setting)."""
    if not hasattr(flags, "repack"):
        return None
    value = flags.repack
    return True if value is None else bool(value)


def _group_name(state: _ModelState) -> str:
    """`model` or, when settings are swept, `model [threads=2]`: how messages name a model x config."""
    return f"{state.entry.id} [{state.config.label}]" if state.config.label else state.entry.id


def _plan_entry(item: PlannedSample) -> PlanItem:
    return PlanItem(item.seq, item.model_id, item.config, item.talk.id, item.repeat)


def _kv_cache_mb(model_path: str, shape: KvCacheShape | None, n_ctx: int) -> float | None:
    """The KV cache the engine allocates at `n_ctx` (f16 K and V; sliding-window layers keep their window),
    from the GGUF header (`shape`, read once per model); None for other formats."""
    if not model_path.endswith(".gguf"):
        return None
    return shape.read_bytes(n_ctx) / 2**20 if shape else None


def _sha_file(path: Path) -> str | None:
    try:
        return file_sha256(path)
    except OSError:
        return None


__all__ = ["PlannedSample", "RunConfig", "Runner", "plan_samples"]
