"""One model x config through the plan: its worker session, timeouts and giving up.

A `ModelRun` is opened the first time the plan reaches its group (model, config_id): it prepares the
model (harness.run.models), starts the worker with the trackers' windows and a deadline for every phase
(harness.launchers.watchdog), and then runs one planned sample per request. What happens to the samples
that remain when something goes wrong is decided here:

- a sample that overran its deadline: the watchdog killed the worker; the model continues in a fresh one,
  unless MAX_TIMEOUTS_IN_A_ROW samples in a row timed out (then the rest are error rows);
- a worker that died (a signal, an exit) or a server that went away: the rest are error rows, each naming
  the phase it died in and the cause (a managed server's own exit, not the client's network error);
- a model that could not be prepared or loaded: every sample of it is an error row with that one line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness.corpus import Talk
from harness.launchers.session import LauncherFactory, SampleOutcome, SessionFailed, WorkerSession
from harness.launchers.watchdog import MAX_TIMEOUTS_IN_A_ROW, default_sample_timeout, phase_deadlines
from harness.models.registry import ModelEntry
from harness.params import Config
from harness.results.record import ModelRecord
from harness.run.config import group_name
from harness.run.echo import Echo
from harness.run.engine_check import EngineCheck
from harness.run.models import PreparedModel, kv_cache_mb
from harness.run.plan import PlannedSample
from harness.run.record import RecordBuilder
from harness.scenarios.base import SampleSpec
from harness.serving import Serving
from harness.trackers import TrackerContext, make_trackers

ENGINE_TOLERANCE_PCT = 3.0

Warn = Callable[[str], None]


@dataclass
class ModelRun:
    """A model x config's progress through the plan."""

    entry: ModelEntry
    config: Config
    remaining: int = 0  # planned samples not yet run
    prepared: PreparedModel | None = None  # set when the plan first reaches the group
    session: WorkerSession | None = None
    failed: str | None = None  # set once the group cannot produce rows any more: the message for the rest
    timeouts_in_a_row: int = 0
    engine_gaps: list[tuple[float, float | None]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return group_name(self.entry.id, self.config)

    @property
    def record(self) -> ModelRecord:
        assert self.prepared is not None
        return self.prepared.record


class Sessions:
    """The worker sessions of a run: opening, running samples, closing; one `ModelRun` per group."""

    def __init__(
        self,
        *,
        launcher_factory: LauncherFactory,
        tracker_context: TrackerContext,
        serving: Serving,
        engine: EngineCheck,
        builder: RecordBuilder,
        echo: Echo,
        warn: Warn,
        warmup: int,
        sample_timeout_s: float | None,
    ) -> None:
        self.launcher_factory = launcher_factory
        self.tracker_context = tracker_context
        self.serving = serving
        self.engine = engine
        self.builder = builder
        self.echo = echo
        self.warn = warn
        self.warmup = warmup
        self.sample_timeout_s = sample_timeout_s
        self.engine_s = 0.0  # model loads + warm-ups + timed generations, in workers

    # -- opening ------------------------------------------------------------------------------------
    def open(self, run: ModelRun, first: PlannedSample, phase: Callable[[str], None]) -> None:
        """Start the group's worker, load the model and warm it up over the first planned document."""
        prepared = run.prepared
        assert prepared is not None and prepared.job is not None
        served = prepared.served
        trackers = self.serving.trackers(served, make_trackers(self.tracker_context))
        # Start, load, warm-up and stop have deadlines too (launchers/watchdog.py), so no phase can hang the run.
        deadlines = phase_deadlines(self.sample_timeout(run), prepared.ctx.weight_bytes, self.warmup)
        session = WorkerSession(
            prepared.job, trackers, self.launcher_factory, deadlines=deadlines, watch_pid=served.pid if served else None
        )
        run.session = session
        phase("loading")
        try:
            if self.warmup:
                # The warm-up runs over the first planned talk's full prompt: a real prompt length.
                warmup = SampleSpec(-1, first.talk.id, -1, first.talk.text)
                session.open(warmup, self.warmup, on_loaded=lambda: phase("warming up"))
            else:
                session.open(None, 0)
        except SessionFailed as exc:
            message = self.explain_death(run, str(exc), session.phase, exc.signal_name)
            self.echo.worker_failed(message)
            run.failed = message
            return
        loaded, warmed = session.info.loaded, session.info.warmed
        assert loaded is not None and warmed is not None
        self.engine_s += loaded.load_s + warmed.warmup_s
        job = prepared.job
        prepared.ctx.load = {
            # Served by a managed server: its start -> answering time is the model load.
            "load_s": served.load_s if served and served.load_s is not None else loaded.load_s,
            "provider": loaded.provider,
            "n_ctx": loaded.n_ctx,
            "mmap": loaded.mmap,
            "kv_cache_mb": kv_cache_mb(job.model_path, prepared.ctx.kv_shape, min(loaded.n_ctx, job.options.n_ctx)),
            **session.info.load_columns,
        }
        self.builder.model_loaded(
            prepared.record,
            load_s=round(loaded.load_s, 4),
            provider=loaded.provider,
            n_ctx=loaded.n_ctx,
            mmap=loaded.mmap,
            engine=loaded.extra,
            **({"tokenizer": loaded.extra["tokenizer"]} if loaded.extra.get("tokenizer") else {}),
            engine_system_info=loaded.system_info,
            warmup_s=round(warmed.warmup_s, 3),
            warmup_runs=warmed.runs,
            sample_timeout_s=self.sample_timeout(run),
        )
        if loaded.extra.get("warning"):
            self.echo.warning(loaded.extra["warning"])
        self.echo.loaded(prepared.ctx.load, prepared.ctx.weight_bytes, loaded.mmap)

    # -- one sample ---------------------------------------------------------------------------------
    def run_sample(self, run: ModelRun, item: PlannedSample) -> SampleOutcome:
        assert run.session is not None
        spec = SampleSpec(item.seq, item.talk.id, item.repeat, item.talk.text)
        outcome = run.session.run(spec, timeout_s=self.sample_timeout(run))
        if outcome.result is None:
            error = self.explain_death(run, outcome.error, "sample", outcome.signal_name, outcome.lost_connection)
            outcome = replace(outcome, error=error)
        return outcome

    def after_sample(self, run: ModelRun, outcome: SampleOutcome) -> None:
        """What the outcome means for the group's remaining samples (see the module docstring)."""
        session = run.session
        if session is not None and session.timed_out:
            run.timeouts_in_a_row += 1
            self.close(run)
            if run.remaining and run.timeouts_in_a_row >= MAX_TIMEOUTS_IN_A_ROW:
                self.give_up(run, f"not run: {run.timeouts_in_a_row} samples in a row timed out ({outcome.error})")
            elif run.remaining:
                self.echo.fresh_worker(run.entry.id, outcome.error)
        elif session is not None and session.dead and run.remaining:
            self.give_up(run, outcome.error)
        elif outcome.result is not None:
            run.timeouts_in_a_row = 0
        elif run.remaining and (gone := self.serving.check_alive(run.prepared.served if run.prepared else None)):
            self.give_up(run, gone)

    def give_up(self, run: ModelRun, message: str) -> None:
        """The group cannot produce rows any more: its remaining samples become error rows with `message`."""
        run.failed = message
        self.echo.gave_up(run.entry.id, message)

    def sample_timeout(self, run: ModelRun) -> float:
        if self.sample_timeout_s is not None:
            return self.sample_timeout_s
        prepared = run.prepared
        n_ctx = prepared.ctx.load.get("n_ctx") if prepared is not None else None
        if n_ctx is None and prepared is not None and prepared.job is not None:
            n_ctx = prepared.job.options.n_ctx  # before the load (the warm-up deadline): the requested one
        return default_sample_timeout(run.config["max_new_tokens"], n_ctx)

    def explain_death(
        self, run: ModelRun, message: str, phase: str, signal_name: str | None = None, lost_connection: bool = False
    ) -> str:
        """A worker or server that died: the phase it died in, a managed server's own exit (not the client's
        network error), and what the repack self-check knows about a signal while repack was on."""
        prepared = run.prepared
        served = prepared.served if prepared is not None else None
        if served is not None:
            # A request cut by a dying server: give the server up to 1 s to be reaped, so its own exit is
            # reported. Other failures (a server that answered with an error) must not wait on a live server.
            gone = self.serving.check_alive(served, wait_s=1.0 if lost_connection else 0.0)
            if gone is not None:
                message, signal_name = gone, self.serving.server_signal(served)
        if signal_name is None:
            return message
        repack = prepared.ctx.base.get("repack") if prepared is not None else None
        return self.engine.explain(f"{message} during {phase}", repack)

    # -- closing ------------------------------------------------------------------------------------
    def close(self, run: ModelRun) -> None:
        """Stop the group's worker; the trackers' reports go to its run.json record."""
        if run.session is None:
            return
        session, run.session = run.session, None
        info = session.close()
        self.builder.model_reports(run.record, [report.record for _name, report in info.reports])
        for _name, report in info.reports:
            for warning in report.warnings:
                self.warn(f"{run.name}: {warning}")

    def finish(self, run: ModelRun, talks: list[Talk], repeats: int, run_dir: Path) -> None:
        """The group's last sample is done: close its worker; a served model's load levels run now."""
        self.close(run)
        prepared = run.prepared
        if prepared is not None and prepared.served is not None and prepared.job is not None:
            levels = self.serving.finish(
                prepared.served, prepared.job.template, talks, repeats, run.config["max_new_tokens"], run_dir,
                self.echo.line,
            )  # fmt: skip
            if levels:
                self.builder.model_load_levels(prepared.record, levels)
            prepared.served = None
        warning = engine_gap_warning(run.name, run.engine_gaps)
        if warning:
            self.warn(warning)
        run.engine_gaps = []

    def kill_all(self, runs: list[ModelRun]) -> None:
        """From the signal handler: stop every live worker now, mid-sample (its row is not written)."""
        for run in runs:
            if run.session is not None:
                run.session.launcher.kill()


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


__all__ = ["ENGINE_TOLERANCE_PCT", "ModelRun", "Sessions", "engine_gap_warning"]
