"""`harness run --fleet tcp://HOST:8786`: one run over many devices, merged into one run directory.

The driver plans one job per device x model (each an ordinary single-machine run, see
harness.fleet.job), submits it to Dask with the resource `device-NAME` so it runs on that device and
nowhere else, and writes rows into one run directory as the jobs stream them back: every row carries
its `device`, and run.json holds each device's fingerprint and environment, the sha256 of the weights
each device ran, and each job's outcome.

The parts: `harness.fleet.connect` (the scheduler, its devices, `--devices`), `harness.fleet.jobs` (each
job's planned samples and the rows it owes), `harness.run.record.FleetRecordBuilder` (run.json, the only code
that changes the record), `harness.fleet.summary` (per-device summary files); this module runs the jobs.

Faults, each ending in rows rather than in a hung or lost run:

- A device that leaves the scheduler mid-job (crash, power, network): rows it already sent are kept;
  its missing samples become error rows naming the device -- or, with `--retry-window S`, the job runs
  once more (only the talks still missing) if the device rejoins within S seconds.
- A device that refuses a job (see harness.fleet.job; also a harness or Dask version other than the
  driver's): one error row per sample, with the reason.
- Ctrl-C: every job is told to stop (a Dask Event the jobs check between samples) and cancelled; the
  rows written so far are kept and run.json says `status: interrupted` (`interrupted_by`: the signal).
- The driver's and the scheduler's Dask versions differ: one line, exit 2, before anything runs.
"""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness import __version__
from harness.corpus import builtin_name, corpus_path, load_corpus
from harness.env import git_commit
from harness.errors import HarnessError
from harness.fleet import RESOURCE_DEVICE
from harness.fleet.connect import (
    Device,
    check_scheduler_versions,
    connect,
    device_refusal,
    discover,
    live_device_names,
    select_devices,
    version_mismatch,
)
from harness.fleet.fingerprint import summary_line
from harness.fleet.job import FleetJob, run_job
from harness.fleet.jobs import FleetRows, JobState, n_configs
from harness.fleet.summary import summarise_by_device
from harness.interrupts import RunInterrupted, interruptible
from harness.models.registry import load_models, select_models
from harness.params import plan_size_problem
from harness.results.writer import RunWriter
from harness.run.config import RunConfig
from harness.run.plan import plan, select_talks
from harness.run.record import FleetRecordBuilder, fleet_config_record

Printer = Callable[[str], None]

LIVENESS_S = 0.5  # how often the driver looks for devices that left
LOST_GRACE_S = 1.0  # events a lost device sent just before leaving still arrive within this
POLL_S = 0.1  # the driver's loop: rows, finished jobs, lost devices
CANCEL_DRAIN_S = 5.0  # after Ctrl-C: how long the devices get to stop (at their next sample)
# RunConfig fields a job does not take from the driver's options: its FleetJob carries them.
_JOB_OWN = frozenset({"models", "talks", "out", "corpus", "models_file"})


class FleetRun:
    """One fleet run: its jobs, their rows and its record, from planning to the final run.json."""

    def __init__(
        self,
        config: RunConfig,
        scheduler: str,
        devices: str = "all",
        retry_window_s: float = 0.0,
        echo: Printer = print,
    ) -> None:
        if retry_window_s < 0:
            raise HarnessError("--retry-window must be 0 or more seconds")
        self.config = config
        self.scheduler = scheduler
        self.device_spec = devices
        self.retry_window_s = retry_window_s
        self.echo = echo
        # Check what can be checked here before touching the network: models and talks exist, the plan fits.
        self.entries = select_models(load_models(config.models_file), config.models)
        self.talks = select_talks(load_corpus(config.corpus), config.talks)
        too_big = plan_size_problem(n_configs(config), len(self.entries), len(self.talks), config.repeats)
        if too_big:
            raise HarnessError(too_big)
        # Every job of a model plans the samples a local run of it would (the device orders its configs).
        planned = plan([e.id for e in self.entries], [], self.talks, config.repeats)
        self.planned = {e.id: [s for s in planned if s.model == e.id] for e in self.entries}
        self.events: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self.jobs: dict[str, JobState] = {}
        self.scheduler_lost = False

    # ------------------------------------------------------------------------------------------------
    def _job_config(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self.config).items() if k not in _JOB_OWN}

    def _wire(self, state: JobState, talks: list[str]) -> dict[str, Any]:
        fp = self.devices[state.device].fingerprint
        return FleetJob(
            run_id=self.writer.run_id,
            job_id=state.job_id,
            device=state.device,
            model=state.entry.id,
            attempt=state.attempt,
            config=self._job_config(),
            talks=talks,
            topic=self.topic,
            cancel_event=self.cancel_name,
            corpus_name=self.corpus_name,
            corpus_text=self.corpus_text,
            models_text=self.models_text,
            memory_limit_bytes=fp.get("memory_limit_bytes"),
        ).wire()

    def _submit(self, state: JobState, talks: list[str]) -> None:
        state.attempt += 1
        state.lost_at = None
        state.future = self.client.submit(
            run_job,
            self._wire(state, talks),
            key=f"harness-{self.writer.run_id}-{state.device}-{state.entry.id}-{state.attempt}",
            resources={f"{RESOURCE_DEVICE}{state.device}": 1},
            pure=False,
            retries=0,
        )

    # ------------------------------------------------------------------------------------------------
    def _drain(self) -> None:
        while True:
            try:
                msg = self.events.get_nowait()
            except queue.Empty:
                return
            if msg.get("kind") == "row":
                self.rows.row(msg["row"], msg["summary"])
            elif msg.get("kind") == "line":
                device = str(msg.get("job", "")).split("/", 1)[0]
                self.echo(f"[{device}] {msg.get('text', '')}")

    def _result(self, state: JobState, result: dict[str, Any]) -> None:
        """What a job returned: its rows (those not streamed already) and its run.json, merged once."""
        for row, summary in zip(result["rows"], result["summaries"], strict=True):
            self.rows.row(row, summary)
        state.run_json = result["run_json"]
        self.builder.merge_job(state.device, state.entry.id, state.run_json)

    def _finish(self, state: JobState, outcome: str, reason: str = "") -> None:
        state.done = True
        state.outcome = outcome
        state.reason = reason
        done = sum(1 for s in self.jobs.values() if s.device == state.device and s.done)
        total = sum(1 for s in self.jobs.values() if s.device == state.device)
        why = f": {reason}" if reason and outcome != "done" else ""
        self.echo(
            f"[{state.device}] {state.entry.id}: {outcome}{why} | {self.rows.of_job(state)}/"
            f"{len(state.samples) * self.rows.per_slot} rows | device {state.device}: {done}/{total} jobs finished"
        )
        self._write_record()

    def _collect(self, state: JobState) -> None:
        """A finished future: its rows, or error rows for what it did not deliver."""
        future = state.future
        if future.status == "error":
            exc = future.exception()
            self._drain()
            self.rows.error_rows(state, f"device {state.device}: job failed: {type(exc).__name__}: {exc}")
            self._finish(state, "failed", str(exc))
            return
        result = future.result()
        self._drain()
        if result["status"] == "refused":
            self.rows.error_rows(state, f"device {state.device} refused the job: {result['reason']}")
            self._finish(state, "refused", result["reason"])
            return
        self._result(state, result)
        if result["status"] == "done":
            self.rows.error_rows(state, f"device {state.device}: the job ended without this sample")
        self._finish(state, result["status"], result.get("reason", ""))

    def _check_liveness(self, now: float) -> None:
        try:
            live = live_device_names(self.client)
        except Exception as exc:  # the scheduler itself is unreachable: every device is, as far as we know
            if not self.scheduler_lost:
                self.echo(f"scheduler {self.scheduler} unreachable ({type(exc).__name__}); devices count as lost")
            self.scheduler_lost = True
            live = set()
        else:
            self.scheduler_lost = False
        for state in self.jobs.values():
            if state.done:
                continue
            if state.device not in live and state.lost_at is None:
                state.lost_at = now
                with contextlib.suppress(Exception):
                    self.client.cancel([state.future])
                wait = f"; waiting up to {self.retry_window_s:g} s for it to rejoin" if self._may_retry(state) else ""
                self.echo(f"[{state.device}] device lost during {state.entry.id} (worker left the scheduler){wait}")
            elif state.lost_at is not None:
                if state.device in live and self._may_retry(state) and now - state.lost_at <= self.retry_window_s:
                    self._refresh_device(state.device)
                    talks = self.rows.missing_talks(state)
                    self.echo(f"[{state.device}] rejoined: running {state.entry.id} once more ({len(talks)} talk(s))")
                    self._submit(state, talks)
                elif now - state.lost_at >= max(LOST_GRACE_S, self.retry_window_s if self._may_retry(state) else 0):
                    self._drain()
                    self.rows.error_rows(
                        state,
                        f"device {state.device} lost mid-job: its worker left the scheduler before this sample "
                        f"finished",
                    )
                    self._finish(state, "lost", f"device {state.device} left the scheduler")

    def _may_retry(self, state: JobState) -> bool:
        return self.retry_window_s > 0 and state.attempt < 2

    def _refresh_device(self, name: str) -> None:
        fleet = discover(self.client)
        if name in fleet:
            self.devices[name] = device = fleet[name]
            self.builder.device(name, device.address, device.tags, device.fingerprint)

    # ------------------------------------------------------------------------------------------------
    def _write_record(self) -> None:
        for state in self.jobs.values():
            self.builder.job(state.device, state.entry.id, state.outcome, state.attempt, state.reason)
        self.builder.rows(self.rows.total)
        self.writer.write_run_json(self.builder.record)

    def _start_record(self) -> None:
        cfg = self.config
        self.builder = FleetRecordBuilder.start_fleet(
            run_id=self.writer.run_id, command=cfg.command, config=fleet_config_record(cfg, self.entries, self.talks),
            planned_samples=sum(len(s.samples) for s in self.jobs.values()) * n_configs(cfg), git_commit=git_commit(),
        )  # fmt: skip
        self.builder.fleet(self.scheduler, self.device_spec, list(self.devices), self.retry_window_s)
        for device in self.devices.values():
            self.builder.device(device.name, device.address, device.tags, device.fingerprint)

    # ------------------------------------------------------------------------------------------------
    def run(self) -> tuple[Path, int]:
        """Run every job; returns (run directory, number of error rows)."""
        cfg = self.config
        self.corpus_name = builtin_name(cfg.corpus)
        self.corpus_text = None if self.corpus_name else corpus_path(cfg.corpus).read_text(encoding="utf-8")
        self.models_text = Path(cfg.models_file).read_text(encoding="utf-8") if cfg.models_file else None
        self.client = connect(self.scheduler)
        try:
            return self._run()
        finally:
            self.client.close()

    def _run(self) -> tuple[Path, int]:
        versions = check_scheduler_versions(self.client, self.scheduler)
        fleet = discover(self.client, versions)
        self.devices = {d.name: d for d in select_devices(fleet, self.device_spec, self.scheduler)}
        self.writer = RunWriter(self.config.out)
        self.topic = f"harness-fleet-{self.writer.run_id}"
        self.cancel_name = f"harness-cancel-{self.writer.run_id}"
        for device in self.devices.values():
            for entry in self.entries:
                state = JobState(device.name, entry, list(self.planned[entry.id]))
                self.jobs[state.job_id] = state
        self._start_record()
        self.rows = FleetRows(self.writer, self.config, self.builder.warn)
        self.echo(
            f"harness {__version__} | run {self.writer.run_id} | fleet {self.scheduler}: "
            f"{len(self.devices)} device(s) x {len(self.entries)} model(s) x {len(self.talks)} talk(s) x "
            f"{self.config.repeats} repeat(s)"
        )
        for device in self.devices.values():
            self.echo(f"   {summary_line(device.fingerprint)}")
        self._write_record()
        self.client.subscribe_topic(self.topic, lambda event: self.events.put(event[1]))
        try:
            with interruptible():
                for state in self.jobs.values():
                    refusal = device_refusal(self.devices[state.device])
                    if refusal:
                        self.rows.error_rows(state, f"device {state.device} refused the job: {refusal}")
                        self._finish(state, "refused", refusal)
                    else:
                        self._submit(state, [t.id for t in self.talks])
                self._loop()
        except (KeyboardInterrupt, RunInterrupted) as exc:
            self._interrupt(exc.signal_name if isinstance(exc, RunInterrupted) else "SIGINT")
            raise
        finally:
            self._close()
        return self.writer.dir, self.rows.errors

    def _loop(self) -> None:
        last_check = 0.0
        while True:
            self._drain()
            for state in self.jobs.values():
                if not state.done and state.lost_at is None and state.future is not None and state.future.done():
                    if state.future.status == "cancelled":
                        continue  # ours, after a loss: handled by the liveness check
                    self._collect(state)
            now = time.monotonic()
            if now - last_check >= LIVENESS_S:
                last_check = now
                self._check_liveness(now)
            if all(s.done for s in self.jobs.values()):
                break
            time.sleep(POLL_S)
        self._drain()

    def _interrupt(self, signal_name: str) -> None:
        from distributed import Event

        self.echo(f"interrupted ({signal_name}): stopping every job (rows written so far are kept)")
        try:
            Event(self.cancel_name, client=self.client).set()
            running = [s for s in self.jobs.values() if not s.done and s.future is not None]
            deadline = time.monotonic() + CANCEL_DRAIN_S
            while time.monotonic() < deadline and not all(s.future.done() for s in running):
                self._drain()
                time.sleep(0.1)
            for state in running:
                if state.future.status == "finished":
                    # Rows it returned were streamed already (or are written now); "cancelled" = it stopped.
                    result = state.future.result()
                    self._result(state, result)
                    state.done, state.outcome = True, result["status"]
            self.client.cancel([s.future for s in running if not s.done])
        except Exception as exc:  # the scheduler may be what failed; finalising the run matters more
            self.echo(f"could not reach the scheduler to cancel the jobs: {exc}")
        self._drain()
        for state in self.jobs.values():
            if not state.done:
                # Cancelled by Dask; not confirmed by the device within CANCEL_DRAIN_S (queued, in a long
                # sample, or out of reach).
                state.done, state.outcome = True, "cancelled, unconfirmed"
        self.builder.interrupted(signal_name)

    def _close(self) -> None:
        with contextlib.suppress(Exception):  # the scheduler may be gone; the run directory still closes
            self.client.unsubscribe_topic(self.topic)
        self.writer.close()
        self.builder.finish_fleet(self.rows.total, self.rows.errors)
        summary = summarise_by_device(self.writer.dir)
        if summary is not None:
            self.builder.summary(summary)
        self._write_record()
        per_device = [f"{name} {self.rows.of_device(name)} rows" for name in self.devices]
        self.echo(
            f"fleet: {', '.join(per_device)}; {self.rows.errors} error row(s); status {self.builder.record.status}; "
            f"{self.writer.dir}"
        )


def run_fleet(
    config: RunConfig, scheduler: str, devices: str = "all", retry_window_s: float = 0.0, echo: Printer = print
) -> tuple[Path, int]:
    return FleetRun(config, scheduler, devices, retry_window_s, echo).run()


__all__ = [  # the connect names are re-exported: callers and tests import them from the driver too
    "Device",
    "FleetRun",
    "check_scheduler_versions",
    "connect",
    "run_fleet",
    "select_devices",
    "version_mismatch",
]
