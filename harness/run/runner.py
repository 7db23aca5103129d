"""The benchmark run: orchestration only.

The runner turns the checked settings (harness.run.config) into a plan -- the order samples run in
(harness.run.plan) -- and walks it. For each model x config it prepares the model the first time the plan
reaches it (harness.run.models: weights resolved in the parent, so downloads are not timed) and opens its
worker session (harness.run.sessions); each planned sample is one request to that session, and its
outcome becomes a row the moment it exists (harness.run.rows). run.json is built by one RecordBuilder
(harness.run.record) and rewritten after every model, so an interrupted run keeps a valid record.
What a sample is belongs to the scenario (in the worker), what is observed around it to the trackers,
how a row looks to `harness.results.rows`: the runner names none of them.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

from rich.console import Console

from harness.errors import HarnessError
from harness.interrupts import RunInterrupted, interruptible
from harness.launchers.session import LauncherFactory, process_launcher
from harness.launchers.worker import one_line
from harness.progress import Progress
from harness.results.durable import WriteFailed
from harness.results.record import Overhead, Status
from harness.results.writer import RunWriter
from harness.resume import ResumeState, check_no_foreign_rows
from harness.run import record as stage
from harness.run.config import RunConfig, resolve_run
from harness.run.echo import Echo, Printer
from harness.run.engine_check import EngineCheck
from harness.run.models import prepare_model
from harness.run.plan import PlannedSample, describe_plan, estimate, plan
from harness.run.rows import RowSink
from harness.run.sessions import ModelRun, Sessions


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
        self.setup = resolve_run(config)  # every usage error, as one line, before a run directory exists
        self.status: Status = "running"
        self.interrupted: RunInterrupted | None = None  # set when SIGINT/SIGTERM stopped the run
        self.rows_written = 0
        self.planned_samples: int | None = None
        self._custom_echo = echo
        self.echo = Echo(echo or print)
        self.launcher_factory = launcher_factory
        self.engine = EngineCheck()  # llama.cpp's repack self-check, run when the run starts
        self.first_error = ""
        self.failure = ""  # why a run whose every sample failed failed

    def plan(self) -> list[PlannedSample]:
        s = self.setup
        return plan([e.id for e in s.entries], s.configs, s.talks, self.config.repeats, self.config.interleave,
                    frozenset(s.skipped))  # fmt: skip

    def dry_run(self, estimate_from: Path | None = None) -> str:
        """The plan as text (`--dry-run`); with an earlier run directory, its estimated duration."""
        from harness.report.load import read_results
        from harness.results.layout import RESULTS_CSV

        s, samples = self.setup, self.plan()
        est = None
        if estimate_from is not None:
            csv_path = estimate_from / RESULTS_CSV if estimate_from.is_dir() else estimate_from
            if not csv_path.is_file():
                raise HarnessError(f"--estimate-from {estimate_from}: no {RESULTS_CSV} there; pass a run directory")
            est = estimate(samples, read_results(csv_path).to_dict("records"), self.config.warmup)
        return describe_plan(
            samples, [e.id for e in s.entries], s.configs, [t.id for t in s.talks], self.config.repeats,
            self.config.interleave, est, skipped=list(s.skipped.values()),
        )  # fmt: skip

    # ------------------------------------------------------------------------------------------------
    def run(self) -> tuple[Path, int]:
        """Run everything; returns (run directory, number of error rows).

        run.json's `status` ends `complete`, `interrupted` (SIGINT/SIGTERM: `self.interrupted` is set and
        the method returns normally) or `failed` (every sample failed; a write error such as a full disk, or
        a bug: run.json is finalised, then the exception propagates). See harness/interrupts.py and
        harness/resume.py."""
        planned = self.plan()
        if self.resume:  # rows edited by hand (not in the plan, or another sample's): refused before any write
            keys = {p.seq: (p.model, p.talk.id, p.repeat) for p in planned}
            check_no_foreign_rows(self.resume.done, keys, self.resume.dir)
        writer = RunWriter.reopen(self.resume.dir) if self.resume else RunWriter(self.config.out)
        self.run_dir = writer.dir
        wall0 = time.perf_counter()
        try:
            with interruptible():  # a signal while the machine is probed: no rows yet, nothing to keep
                bandwidth = self._start(writer, planned)
        except (RunInterrupted, WriteFailed):
            writer.discard_if_empty()  # a disk already full at start leaves nothing behind either
            raise
        runs: dict[tuple[str, str], ModelRun] = {}
        for item in planned:
            runs.setdefault(item.group, ModelRun(self.setup.entry(item.model), item.config)).remaining += 1
        done = self.resume.done if self.resume else {}
        progress = Progress(total=len(planned), console=Console(file=io.StringIO()) if self._custom_echo else None)
        if not self._custom_echo:
            self.echo = Echo(progress.echo)
        self.rows = RowSink(writer, self.echo)
        self.sessions = self._sessions()
        failure: BaseException | None = None
        with interruptible(lambda _signum: self.sessions.kill_all(list(runs.values()))) as guard:
            try:
                with progress:
                    for item in planned:
                        run = runs[item.group]
                        if item.seq in done:  # resumed: this sample has its row already (checked above)
                            run.remaining -= 1
                        else:
                            self._run_planned(item, run, writer, bandwidth, progress)
                        if run.remaining == 0:
                            self._finish_group(run, writer)
                            self.builder.rows(writer.rows_written)
                            writer.write_run_json(self.builder.record)
                self.status = "complete"
                if every_failed := self.rows.every_sample_failed(self.resume is not None):
                    self.status, self.failure = "failed", every_failed
                    self.builder.failed(every_failed)
            except RunInterrupted as exc:
                self.status, self.interrupted = "interrupted", exc
                self.builder.interrupted(exc.signal_name)
            except BaseException as exc:  # a full disk (WriteFailed), a bug: finalise run.json, then re-raise
                self.status, failure = "failed", exc
                self.builder.failed(one_line(exc))
            finally:
                guard.settle()  # a second Ctrl-C must not cut the finalisation short
                failure = self._finalise(writer, list(runs.values()), wall0, failure)
        if failure is not None:
            raise failure
        return writer.dir, self.rows.errors

    def _sessions(self) -> Sessions:
        return Sessions(
            launcher_factory=self.launcher_factory, tracker_context=self.setup.tracker_context,
            serving=self.setup.serving, engine=self.engine, builder=self.builder, echo=self.echo, warn=self._warn,
            warmup=self.config.warmup, sample_timeout_s=self.config.sample_timeout_s,
        )  # fmt: skip

    def _start(self, writer: RunWriter, planned: list[PlannedSample]) -> float | None:
        """Probe the machine, run the engine check and write the first run.json (status running); the
        memory bandwidth measured for the roofline column."""
        s, cfg = self.setup, self.config
        resumed = (writer.rows_written, len(planned)) if self.resume else None
        self.echo.header(writer.run_id, len(s.entries), s.configs, len(s.talks), cfg.repeats, s.threads, resumed)
        environment, bandwidth = stage.probe_environment(s.tracker_context)
        self.builder = stage.RecordBuilder.start(
            run_id=writer.run_id, command=cfg.command, environment=environment,
            config=stage.config_record(s, planned), planned_samples=len(planned), written_rows=writer.rows_written,
            warnings=[*s.warnings, *(f"not run: {why}" for why in s.skipped.values())],
            code_sha256=stage.code_sha256(),
        )  # fmt: skip
        for line in self.builder.record.warnings:
            self.echo.warning(line)
        check, warnings = self.engine.run(s.entries, s.configs)
        if check is not None:
            self.builder.engine_check(check)
        for line in warnings:
            self._warn(line)
        if self.resume is not None:
            stage.check_resume(self.resume, self.builder, s.entries, writer.dir)
            self.builder.resume_of(self.resume.record, writer.rows_written)
        writer.write_run_json(self.builder.record)
        return bandwidth

    def _run_planned(
        self, item: PlannedSample, run: ModelRun, writer: RunWriter, bandwidth: float | None, progress: Progress
    ) -> None:
        run.remaining -= 1
        if run.prepared is None:
            run.prepared = prepare_model(
                self.setup, run.entry, run.config, run_id=writer.run_id, run_dir=writer.dir, builder=self.builder,
                engine=self.engine, serving=self.setup.serving, bandwidth=bandwidth, echo=self.echo,
            )  # fmt: skip
            run.failed = run.prepared.failed
        if run.failed is None and run.session is None:
            self.sessions.open(run, item, lambda phase: progress.phase(run.entry.id, phase))
        if run.failed is not None:
            self.rows.error(run.prepared.ctx, item, run.failed)
            return
        if self.config.cooldown_s > 0 and item.seq:
            time.sleep(self.config.cooldown_s)
        progress.sample_start(item.seq + 1, run.entry.id, item.talk.id, item.repeat)
        t0 = time.perf_counter()
        outcome = self.sessions.run_sample(run, item)
        progress.sample_end(time.perf_counter() - t0)
        row = self.rows.outcome(run.prepared.ctx, item, outcome)
        if row is not None and row.get("decode_vs_engine_pct") is not None and (row["output_tokens"] or 0) >= 8:
            run.engine_gaps.append((row["decode_vs_engine_pct"], row["outside_engine_ms_per_tok"]))
        self.sessions.after_sample(run, outcome)

    def _finish_group(self, run: ModelRun, writer: RunWriter) -> None:
        self.sessions.finish(run, self.setup.talks, self.config.repeats, writer.dir)

    def _finalise(
        self, writer: RunWriter, runs: list[ModelRun], wall0: float, failure: BaseException | None
    ) -> BaseException | None:
        """Release the workers, write summary.csv and the final run.json (status, rows). Never raises:
        returns the exception the run should end with (the first failure, else a failing run.json)."""
        for run in runs:
            if run.session is not None:  # interrupted or failed: release the worker
                try:
                    self._finish_group(run, writer)
                except Exception as exc:  # a tracker failing to close must not hide why the run stopped
                    self.echo.warning(f"closing {run.entry.id}: {one_line(exc)}")
        wall = time.perf_counter() - wall0
        engine_s = self.sessions.engine_s + self.rows.engine_s
        self.builder.rows(writer.rows_written, *self.rows.counts(self.resume is not None))
        self.builder.finish(self.status, Overhead(
            wall_s=round(wall, 3),
            engine_s=round(engine_s, 3),  # model loads + warm-ups + timed generations, in workers
            harness_s=round(wall - engine_s, 3),
            note="harness_s = wall_s - engine_s: model fetch, process start, scoring, writing, env probe",
        ))  # fmt: skip
        self.first_error = self.rows.first_error
        try:
            if self.status != "complete":
                # The status first: on a full disk there may be room for run.json but not for the summaries.
                writer.write_run_json(self.builder.record)
            writer.release_reserve()
            for line in stage.summarise(writer.dir, self.builder, self._warn):
                self.echo.line(line)
            writer.write_run_json(self.builder.record)
        except WriteFailed as exc:
            failure = failure or exc
        writer.close()
        self.rows_written, self.planned_samples = writer.rows_written, self.builder.record.planned_samples
        return failure

    def _warn(self, warning: str) -> None:
        self.builder.warn(warning)
        self.echo.warning(warning)


__all__ = ["RunConfig", "Runner"]
