"""`harness run --fleet tcp://HOST:8786`: one run over many devices, merged into one run directory.

The driver plans one job per device x model (each an ordinary single-machine run, see
harness.fleet.job), submits it to Dask with the resource `device-NAME` so it runs on that device and
nowhere else, and writes rows into one run directory as the jobs stream them back: every row carries
its `device`, and run.json holds each device's fingerprint and environment, the sha256 of the weights
each device ran, and each job's outcome.

Faults, each ending in rows rather than in a hung or lost run:

- A device that leaves the scheduler mid-job (crash, power, network): rows it already sent are kept;
  its missing samples become error rows naming the device -- or, with `--retry-window S`, the job runs
  once more (only the talks still missing) if the device rejoins within S seconds.
- A device that refuses a job (see harness.fleet.job; also a harness or Dask version other than the
  driver's): one error row per sample, with the reason.
- Ctrl-C: every job is told to stop (a Dask Event the jobs check between samples) and cancelled; the
  rows written so far are kept and run.json says `status: interrupted`.
- The driver's and the scheduler's Dask versions differ: one line, exit 2, before anything runs.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import socket
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness import __version__, safefs
from harness.corpus import Talk, builtin_name, corpus_label, corpus_path, load_corpus
from harness.env import git_commit
from harness.errors import HarnessError, unknown
from harness.fleet import FINGERPRINT_KEY, RESOURCE_DEVICE, RESOURCE_TAG, require_dask
from harness.fleet.fingerprint import summary_line
from harness.fleet.job import FleetJob, run_job
from harness.fleet.worker import check_scheduler_address
from harness.interrupts import RunInterrupted, interruptible
from harness.models.registry import ModelEntry, load_models, select_models
from harness.results.layout import RESULTS_CSV, SUMMARY_CSV, SUMMARY_MODELS_CSV
from harness.results.rows import ModelRowContext, error_row, summary_record
from harness.results.schema import COLUMNS
from harness.results.writer import RunWriter

Printer = Callable[[str], None]

# Dask packages whose versions must agree between driver, scheduler and devices (Dask's own list, less
# the optional ones): a mismatch breaks the wire protocol in ways that surface far from the cause.
DASK_PACKAGES = ("dask", "distributed", "msgpack", "cloudpickle", "tornado", "toolz")
LIVENESS_S = 0.5  # how often the driver looks for devices that left
LOST_GRACE_S = 1.0  # events a lost device sent just before leaving still arrive within this
CONNECT_TIMEOUT_S = 10.0
POLL_S = 0.1  # the driver's loop: rows, finished jobs, lost devices
CANCEL_DRAIN_S = 5.0  # after Ctrl-C: how long the devices get to stop (at their next sample)

SampleKey = tuple[str, str, str, str, str]  # device, model, config_id, talk_id, repeat
SlotKey = tuple[str, str, str, str]  # device, model, talk_id, repeat: n_configs rows each


@dataclass
class Device:
    name: str
    address: str
    tags: list[str]
    fingerprint: dict[str, Any]
    dask_versions: dict[str, str | None] = field(default_factory=dict)


@dataclass
class JobState:
    device: str
    entry: ModelEntry
    samples: list[tuple[str, int]]  # (talk_id, repeat) planned
    attempt: int = 0
    future: Any = None
    done: bool = False
    lost_at: float | None = None
    outcome: str = "pending"  # done | refused | failed | lost | cancelled | "cancelled, unconfirmed"
    reason: str = ""
    run_json: dict[str, Any] = field(default_factory=dict)

    @property
    def job_id(self) -> str:
        return f"{self.device}/{self.entry.id}"


def sample_key(row: dict[str, Any]) -> SampleKey:
    """What makes a row unique in a fleet run (config_id: the sweep's config, empty without a sweep)."""
    return tuple(str(row.get(k, "") or "") for k in ("device", "model", "config_id", "talk_id", "repeat"))  # type: ignore[return-value]


def n_configs(config: Any) -> int:
    """How many configs each model runs: the product of the swept values (1 without a sweep)."""
    sweep = getattr(config, "sweep", None) or {}
    return math.prod(len(v) for v in sweep.values()) if sweep else 1


# --- connecting ----------------------------------------------------------------------------------


def connect(address: str) -> Any:
    """A Dask client for `address`, or a one-line HarnessError."""
    check_scheduler_address(address)
    require_dask()
    from distributed import Client

    host, _, port = address.partition("://")[2].rpartition(":")
    try:  # a refused port fails here at once; Dask's client would retry until its timeout
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise HarnessError(
            f"cannot reach the scheduler at {address} ({exc.strerror or exc}); start it with `dask scheduler` "
            f"and check --fleet"
        ) from None

    logging.getLogger("distributed").setLevel(logging.ERROR)  # the driver reports faults itself
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Dask's multi-line version table: checked below in one line
            return Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise HarnessError(
            f"cannot reach the scheduler at {address} ({str(exc).splitlines()[0]}); start it with "
            f"`dask scheduler` and check --fleet"
        ) from None


def version_mismatch(mine: dict[str, Any], theirs: dict[str, Any], where: str) -> str | None:
    """One line naming the Dask packages (and Python minor version) that differ, or None."""
    diffs = []
    my_pkgs, their_pkgs = mine.get("packages", {}), theirs.get("packages", {})
    for pkg in DASK_PACKAGES:
        a, b = my_pkgs.get(pkg), their_pkgs.get(pkg)
        if a and b and a != b:
            diffs.append(f"{pkg} {a} here vs {b} on {where}")
    py_a = ".".join(str(mine.get("host", {}).get("python", "")).split(".")[:2])
    py_b = ".".join(str(theirs.get("host", {}).get("python", "")).split(".")[:2])
    if py_a and py_b and py_a != py_b:
        diffs.append(f"Python {py_a} here vs {py_b} on {where}")
    return "; ".join(diffs) or None


def check_scheduler_versions(client: Any, address: str) -> dict[str, Any]:
    versions = client.get_versions(check=False)
    mismatch = version_mismatch(versions["client"], versions["scheduler"], "the scheduler")
    if mismatch:
        raise HarnessError(
            f"Dask versions differ between this driver and the scheduler at {address}: {mismatch}; install the "
            f"same dask[distributed] (pip install -e '.[fleet]') on the driver, the scheduler and every device"
        )
    return versions


def discover(client: Any, versions: dict[str, Any] | None = None) -> dict[str, Device]:
    """Harness devices connected to the scheduler, by name (plain Dask workers are ignored)."""
    info = client.scheduler_info(n_workers=-1)
    worker_versions = (versions or {}).get("workers", {})
    devices: dict[str, Device] = {}
    for address, w in info.get("workers", {}).items():
        fp = w.get(FINGERPRINT_KEY)
        if not isinstance(fp, dict):
            continue
        resources = w.get("resources") or {}
        tags = sorted(r[len(RESOURCE_TAG) :] for r in resources if r.startswith(RESOURCE_TAG))
        pkgs = (worker_versions.get(address) or {}).get("packages", {})
        devices[str(w.get("name"))] = Device(str(w.get("name")), address, tags, fp, pkgs)
    return devices


def live_device_names(client: Any) -> set[str]:
    info = client.scheduler_info(n_workers=-1)
    return {str(w.get("name")) for w in info.get("workers", {}).values() if w.get(FINGERPRINT_KEY)}


def select_devices(fleet: dict[str, Device], spec: str, address: str) -> list[Device]:
    """`all`, `NAME,NAME`, `tag:T` (and mixes: `a,tag:npu`) -> devices, in name order."""
    if not fleet:
        raise HarnessError(
            f"no harness device has joined the scheduler at {address}; start one on each device with "
            f"`harness fleet worker --scheduler {address} --device NAME`"
        )
    chosen: dict[str, Device] = {}
    for item in [s.strip() for s in spec.split(",") if s.strip()] or ["all"]:
        if item == "all":
            chosen.update(fleet)
        elif item.startswith("tag:"):
            tag = item[4:]
            hits = {n: d for n, d in fleet.items() if tag in d.tags}
            if not hits:
                known = sorted({t for d in fleet.values() for t in d.tags})
                raise HarnessError(
                    f'no device has tag "{tag}"; tags in the fleet: {", ".join(known) or "none"} '
                    f"(give a device tags with `harness fleet worker --tags`)"
                )
            chosen.update(hits)
        elif item in fleet:
            chosen[item] = fleet[item]
        else:
            raise unknown("device", item, fleet)
    return [chosen[n] for n in sorted(chosen)]


def _select_talks(talks: list[Talk], wanted: list[str]) -> list[Talk]:
    by_id = {t.id: t for t in talks}
    for name in wanted:
        if name not in by_id:
            raise unknown("talk", name, by_id)
    return [by_id[n] for n in wanted] if wanted else talks


# --- the run ---------------------------------------------------------------------------------------


class FleetRun:
    def __init__(
        self,
        config: Any,  # harness.runner.RunConfig
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
        # Check what can be checked here before touching the network: models and talks exist.
        self.entries = select_models(load_models(config.models_file), config.models)
        self.talks = _select_talks(load_corpus(config.corpus), config.talks)
        self.samples = [(t.id, r) for t in self.talks for r in range(config.repeats)]
        self.events: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self.written: set[SampleKey] = set()
        self.slots: Counter[SlotKey] = Counter()  # rows written per device x model x talk x repeat
        self.per_slot = n_configs(config)
        self.errors = 0
        self.jobs: dict[str, JobState] = {}
        self.column_warned: set[str] = set()
        self.scheduler_lost = False
        self.extra_warnings: list[str] = []

    # ------------------------------------------------------------------------------------------------
    def _job_config(self) -> dict[str, Any]:
        skip = {"models", "talks", "out", "corpus", "models_file"}
        return {k: v for k, v in asdict(self.config).items() if k not in skip}

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
    def _row(self, row: dict[str, Any], summary: dict[str, Any]) -> None:
        key = sample_key(row)
        slot = (key[0], key[1], key[3], key[4])
        if key in self.written or self.slots[slot] >= self.per_slot:
            return  # a re-run's repeat of a finished sample, or a late row for one already written as an error
        self.written.add(key)
        self.slots[slot] += 1
        unknown_columns = sorted(set(row) - set(COLUMNS))
        if unknown_columns and key[0] not in self.column_warned:
            # Same version number, other code: keep the row in this run's schema and say what was dropped.
            self.column_warned.add(key[0])
            self.extra_warnings.append(
                f"{key[0]}: rows had columns this driver does not know, dropped: {', '.join(unknown_columns)}; "
                f"install the driver's harness commit on the device"
            )
        row = {k: v for k, v in row.items() if k in COLUMNS} | {"run_id": self.writer.run_id}
        self.writer.write_row(row, {**summary, "run_id": self.writer.run_id})
        if str(row.get("status", "")).strip() != "ok":
            self.errors += 1

    def _error_rows(self, state: JobState, message: str) -> int:
        """One error row per planned sample of `state` that has no row yet."""
        n = 0
        talks = {t.id: t for t in self.talks}
        for talk_id, rep in state.samples:
            for _ in range(self._missing(state, talk_id, rep)):
                self._error_row(state, talks[talk_id], rep, message)
                n += 1
        return n

    def _missing(self, state: JobState, talk_id: str, rep: int) -> int:
        return max(0, self.per_slot - self.slots[(state.device, state.entry.id, talk_id, str(rep))])

    def _error_row(self, state: JobState, talk: Talk, rep: int, message: str) -> None:
        """One error row. Its config_id stays empty: the driver knows how many of a sample's configs are
        missing, not which (the runner plans them on the device); the message names the device and why."""
        base = {
            "run_id": self.writer.run_id,
            "device": state.device,
            "model": state.entry.id,
            "backend": state.entry.backend,
            "quant": state.entry.quant,
            "max_new_tokens": self.config.max_new_tokens,
            "min_new_tokens": self.config.min_new_tokens,
            "summary_lang": self.config.summary_lang or talk.lang,
        }
        row = error_row(ModelRowContext(base=base), talk, rep, message, None)
        self.errors += 1
        self.slots[(state.device, state.entry.id, talk.id, str(rep))] += 1
        self.writer.write_row(row, {**summary_record(row, talk, ""), "device": state.device})

    def _missing_talks(self, state: JobState) -> list[str]:
        return list(dict.fromkeys(t for t, r in state.samples if self._missing(state, t, r)))

    def _drain(self) -> None:
        while True:
            try:
                msg = self.events.get_nowait()
            except queue.Empty:
                return
            if msg.get("kind") == "row":
                self._row(msg["row"], msg["summary"])
            elif msg.get("kind") == "line":
                device = str(msg.get("job", "")).split("/", 1)[0]
                self.echo(f"[{device}] {msg.get('text', '')}")

    def _finish(self, state: JobState, outcome: str, reason: str = "") -> None:
        state.done = True
        state.outcome = outcome
        state.reason = reason
        n_rows = sum(self.slots[(state.device, state.entry.id, t, str(r))] for t, r in state.samples)
        done = sum(1 for s in self.jobs.values() if s.device == state.device and s.done)
        total = sum(1 for s in self.jobs.values() if s.device == state.device)
        why = f": {reason}" if reason and outcome != "done" else ""
        self.echo(
            f"[{state.device}] {state.entry.id}: {outcome}{why} | {n_rows}/{len(state.samples) * self.per_slot} "
            f"rows | device {state.device}: {done}/{total} jobs finished"
        )
        self._write_record()

    def _collect(self, state: JobState) -> None:
        """A finished future: its rows, or error rows for what it did not deliver."""
        future = state.future
        if future.status == "error":
            exc = future.exception()
            self._drain()
            self._error_rows(state, f"device {state.device}: job failed: {type(exc).__name__}: {exc}")
            self._finish(state, "failed", str(exc))
            return
        result = future.result()
        self._drain()
        if result["status"] == "refused":
            message = f"device {state.device} refused the job: {result['reason']}"
            self._error_rows(state, message)
            self._finish(state, "refused", result["reason"])
            return
        for row, summary in zip(result["rows"], result["summaries"], strict=True):
            self._row(row, summary)
        state.run_json = result["run_json"]
        if result["status"] == "done":
            self._error_rows(state, f"device {state.device}: the job ended without this sample")
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
                    talks = self._missing_talks(state)
                    self.echo(f"[{state.device}] rejoined: running {state.entry.id} once more ({len(talks)} talk(s))")
                    self._submit(state, talks)
                elif now - state.lost_at >= max(LOST_GRACE_S, self.retry_window_s if self._may_retry(state) else 0):
                    self._drain()
                    self._error_rows(
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
            self.devices[name] = fleet[name]

    # ------------------------------------------------------------------------------------------------
    def _write_record(self) -> None:
        record = self.record
        devices: dict[str, Any] = {}
        models: dict[str, Any] = {}
        prompts: dict[str, Any] = {}
        warnings_: list[str] = []
        for name, device in self.devices.items():
            devices[name] = {
                "worker": device.address,
                "tags": device.tags,
                "fingerprint": device.fingerprint,
                "jobs": {},
            }
        for state in self.jobs.values():
            job_json = state.run_json
            entry: dict[str, Any] = {"outcome": state.outcome, "attempts": state.attempt}
            if state.reason:
                entry["reason"] = state.reason
            model_json = (job_json.get("models") or {}).get(state.entry.id) or {}
            if model_json:
                entry["sha256"] = model_json.get("sha256")
                entry["provider"] = model_json.get("provider")
                entry["load_s"] = model_json.get("load_s")
                merged = models.setdefault(state.entry.id, {**model_json, "sha256_by_device": {}})
                merged["sha256_by_device"][state.device] = model_json.get("sha256")
            if job_json.get("environment") and "environment" not in devices[state.device]:
                devices[state.device]["environment"] = job_json["environment"]
            if job_json.get("overhead"):
                entry["overhead"] = job_json["overhead"]
            prompts.update(job_json.get("prompts") or {})
            warnings_ += [f"{state.device}: {w}" for w in job_json.get("warnings") or []]
            devices[state.device]["jobs"][state.entry.id] = entry
        for model_id, merged in models.items():
            shas = {s for s in merged["sha256_by_device"].values() if s}
            if len(shas) > 1:
                warnings_.append(
                    f"{model_id}: the devices ran different weights (sha256 differs: "
                    + ", ".join(f"{d}={s[:12]}" for d, s in merged["sha256_by_device"].items() if s)
                    + ")"
                )
        record.update(devices=devices, models=models, prompts=prompts, warnings=warnings_ + self.extra_warnings)
        if len(devices) == 1:
            # One device: its environment is the run's, so compare's like-for-like check applies as usual.
            only = next(iter(devices.values()))
            record["environment"] = only.get("environment") or only["fingerprint"].get("environment")
        record["written_rows"] = sum(self.slots.values())
        self.writer.write_run_json(record)

    def _summarise(self) -> None:
        import pandas as pd

        from harness.results.summary import summarise_frame

        path = self.writer.dir / RESULTS_CSV
        try:
            df = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"talk_id": str, "device": str})
        except (OSError, pd.errors.EmptyDataError):
            return
        if df.empty:
            return
        # Per device (each job printed its own tables as it finished): a device column leads each file.
        per_talk, per_model, summary = [], [], {}
        for device in dict.fromkeys(df["device"]):
            result = summarise_frame(df[df["device"] == device])
            summary[device] = result.run_json
            per_talk.append(result.per_talk.assign(device=device))
            per_model.append(pd.DataFrame(result.per_model).assign(device=device))
        for frames, name in ((per_talk, SUMMARY_CSV), (per_model, SUMMARY_MODELS_CSV)):
            table = pd.concat(frames)
            table = table[["device", *[c for c in table.columns if c != "device"]]]
            # Never through a planted link (harness.safefs): a fresh temporary renamed over the file.
            safefs.write_atomic(self.writer.dir / name, table.to_csv(index=False, float_format="%.6g"))
        self.record["summary"] = {"by_device": summary}

    def _start_record(self) -> None:
        cfg = self.config
        from harness.models.sources import file_sha256

        self.record = {
            "run_id": self.writer.run_id,
            "harness_version": __version__,
            "git_commit": git_commit(),
            "command": cfg.command,
            "started_at": datetime.now(timezone.utc).isoformat(),
            "status": "running",
            "config": {
                **{k: (str(v) if isinstance(v, Path) else v) for k, v in self._job_config().items()},
                "models": [e.id for e in self.entries],
                "talks": [t.id for t in self.talks],
                "corpus": corpus_label(cfg.corpus),
                "corpus_sha256": file_sha256(corpus_path(cfg.corpus)),
            },
            "fleet": {
                "scheduler": self.scheduler,
                "devices_requested": self.device_spec,
                "devices": sorted(self.devices),
                "retry_window_s": self.retry_window_s,
            },
            "planned_samples": len(self.jobs) * len(self.samples) * self.per_slot,
            "written_rows": 0,
        }

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
                state = JobState(device.name, entry, list(self.samples))
                self.jobs[state.job_id] = state
        self._start_record()
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
                    refusal = self._device_refusal(self.devices[state.device])
                    if refusal:
                        self._error_rows(state, f"device {state.device} refused the job: {refusal}")
                        self._finish(state, "refused", refusal)
                    else:
                        self._submit(state, [t.id for t in self.talks])
                self._loop()
        except (KeyboardInterrupt, RunInterrupted) as exc:
            self._interrupt(exc.signal_name if isinstance(exc, RunInterrupted) else "SIGINT")
            raise
        finally:
            self._close()
        return self.writer.dir, self.errors

    def _device_refusal(self, device: Device) -> str | None:
        fp = device.fingerprint
        if fp.get("harness_version") != __version__:
            return f"it runs harness {fp.get('harness_version')}, the driver {__version__}; install the same version"
        mismatch = version_mismatch(
            {"packages": self._my_dask_versions()}, {"packages": device.dask_versions}, f"device {device.name}"
        )
        return f"Dask versions differ: {mismatch}" if mismatch else None

    @staticmethod
    def _my_dask_versions() -> dict[str, str | None]:
        from distributed.versions import get_versions

        return get_versions()["packages"]

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
                    for row, summary in zip(result["rows"], result["summaries"], strict=True):
                        self._row(row, summary)
                    state.run_json = result["run_json"]
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
        self.record["status"] = "interrupted"
        self.record["signal"] = signal_name

    def _close(self) -> None:
        with contextlib.suppress(Exception):  # the scheduler may be gone; the run directory still closes
            self.client.unsubscribe_topic(self.topic)
        self.writer.close()
        if self.record.get("status") == "running":
            self.record["status"] = "complete"
        self.record["finished_at"] = datetime.now(timezone.utc).isoformat()
        self._summarise()
        self._write_record()
        per_device = [f"{name} {sum(n for k, n in self.slots.items() if k[0] == name)} rows" for name in self.devices]
        self.echo(
            f"fleet: {', '.join(per_device)}; {self.errors} error row(s); status {self.record['status']}; "
            f"{self.writer.dir}"
        )


def run_fleet(
    config: Any, scheduler: str, devices: str = "all", retry_window_s: float = 0.0, echo: Printer = print
) -> tuple[Path, int]:
    return FleetRun(config, scheduler, devices, retry_window_s, echo).run()
