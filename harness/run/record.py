"""run.json, built step by step: the only code that changes a run's record.

The run (local or fleet) holds one `RecordBuilder` and calls it at each stage -- start, resume, the
engine check, each model prepared, loaded and reported on by its trackers, warnings, rows, and the
finish -- and hands `builder.record` (a typed `harness.results.record.RunRecord`) to the writer after
each step, so run.json on disk is always a complete record of what has happened so far. Readers
(report, compare, db, --resume) read the same type back.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness import __version__
from harness.corpus import Talk, corpus_label, corpus_path
from harness.env import collect_environment
from harness.errors import HarnessError
from harness.launchers.worker import one_line
from harness.models.registry import ModelEntry
from harness.params import Config, describe_config
from harness.prompts import PromptTemplate
from harness.results.record import (
    SCHEMA_VERSION,
    ConfigRecord,
    Environment,
    ModelRecord,
    NoiseRecord,
    Overhead,
    RunRecord,
    Status,
    _build,
)
from harness.resume import ResumeState, check_same, check_weights, code_fingerprint
from harness.run.config import RunConfig, RunSetup
from harness.run.plan import PlannedSample, plan_record
from harness.trackers import TrackerContext, make_trackers


def now() -> str:
    return datetime.now(timezone.utc).isoformat()


def code_sha256() -> str:
    """sha256 of the harness package's code: --resume refuses to mix rows of two code versions."""
    return code_fingerprint()


def file_sha256_or_none(path: Path) -> str | None:
    from harness.models.sources import file_sha256

    try:
        return file_sha256(path)
    except OSError:
        return None


class RecordBuilder:
    """Builds one `RunRecord`; every method is one stage's contribution to run.json."""

    def __init__(self, record: RunRecord) -> None:
        self.record = record

    # -- start --------------------------------------------------------------------------------------
    @classmethod
    def start(
        cls,
        *,
        run_id: str,
        command: list[str],
        environment: dict[str, Any],
        config: dict[str, Any],
        planned_samples: int,
        written_rows: int = 0,
        warnings: Sequence[str] = (),
        code_sha256: str | None = None,
    ) -> RecordBuilder:
        """The first run.json of a run: who, where, what was asked, the machine; status running."""
        record = RunRecord(
            schema_version=SCHEMA_VERSION,
            run_id=run_id,
            harness_version=__version__,
            git_commit=environment.get("git_commit"),
            code_sha256=code_sha256,
            command=list(command),
            cwd=str(Path.cwd()),
            pid=os.getpid(),
            status="running",
            started_at=now(),
            planned_samples=planned_samples,
            written_rows=written_rows,
            config=_build(ConfigRecord, config),
            environment=_build(Environment, environment),
            warnings=list(warnings),
        )
        return cls(record)

    def resume_of(self, old: dict[str, Any], rows_before: int) -> None:
        """Continue the interrupted run's record (`old`, checked by the caller against this one), with this
        resume appended to `resumes`; what described the end of the last attempt is cleared."""
        fresh = self.record
        record = RunRecord.from_dict({"schema_version": SCHEMA_VERSION, **old})
        record.resumes = [
            *record.resumes,
            {
                "at": fresh.started_at,
                "command": fresh.command,
                "rows_before": rows_before,
                "previous_status": old.get("status"),
                "stopped_by": old.get("interrupted_by") or old.get("failure"),
            },
        ]
        record.interrupted_by = record.failure = record.finished_at = None
        record.overhead = None
        record.summary = None
        record.status, record.pid, record.written_rows = "running", fresh.pid, rows_before
        self.record = record

    def to_dict(self) -> dict[str, Any]:
        return self.record.to_dict()

    # -- during the run -----------------------------------------------------------------------------
    def warn(self, line: str) -> None:
        self.record.warnings.append(line)

    def prompt(self, template: PromptTemplate) -> None:
        """A prompt template the run used: its file name and sha256 prefix."""
        self.record.prompts[template.name] = template.sha

    def engine_check(self, check: dict[str, Any]) -> None:
        self.record.engine_check = check

    def model(self, model_id: str) -> ModelRecord:
        return self.record.models.setdefault(model_id, ModelRecord())

    def model_prepared(
        self,
        model_id: str,
        config: Config | None,
        *,
        backend: str,
        quant: str | None,
        source: str,
        size_bytes: int,
        sha256: str | None,
        provenance: Any,
    ) -> ModelRecord:
        """The model's weights as resolved: the record its load facts go to (the model's own; with several
        configs, the config's entry under `configs`)."""
        model = self.model(model_id)
        model.backend, model.quant, model.source = backend, quant, source
        model.size_bytes, model.sha256, model.provenance = size_bytes, sha256, provenance or None
        if config is None:
            return model
        return model.configs.setdefault(config.config_id, ModelRecord(settings=describe_config(config)))

    @staticmethod
    def model_served(group: ModelRecord, serving: dict[str, Any]) -> None:
        group.serving = serving

    @staticmethod
    def model_loaded(group: ModelRecord, **facts: Any) -> None:
        """Load and warm-up facts of a model's worker (load_s, provider, n_ctx, mmap, engine, …)."""
        group.merge(facts)

    @staticmethod
    def model_reports(group: ModelRecord, records: Sequence[dict[str, Any]]) -> None:
        """What the trackers reported when the model's worker closed (their own keys, e.g. load_peak_rss_mb)."""
        for values in records:
            group.merge(values)

    @staticmethod
    def model_load_levels(group: ModelRecord, levels: Any) -> None:
        group.load = levels

    def rows(self, written: int, ok: int | None = None, errors: int | None = None) -> None:
        self.record.written_rows = written
        if ok is not None:
            self.record.ok_rows, self.record.error_rows = ok, errors

    # -- the end ------------------------------------------------------------------------------------
    def interrupted(self, signal_name: str) -> None:
        self.record.status, self.record.interrupted_by = "interrupted", signal_name

    def failed(self, why: str) -> None:
        self.record.status, self.record.failure = "failed", why

    def finish(self, status: Status, overhead: Overhead | None = None) -> None:
        self.record.status, self.record.finished_at = status, now()
        if overhead is not None:
            self.record.overhead = overhead

    def summary(self, run_json: dict[str, Any]) -> None:
        self.record.summary = run_json

    def noise(self, values: dict[str, Any]) -> None:
        self.record.noise = _build(NoiseRecord, values)


def config_record(setup: RunSetup, planned: Sequence[PlannedSample]) -> dict[str, Any]:
    """run.json `config` of a local run: what was asked and what it resolved to (harness.run.config)."""
    config, serving = setup.config, setup.serving
    return {
        "models": [e.id for e in setup.entries],
        "talks": [t.id for t in setup.talks],
        "repeats": config.repeats,
        "warmup": config.warmup,
        # The settings of the (first) config: every override as it took effect (None = models.yaml).
        **setup.configs[0].as_dict(),
        "summary_lang": config.summary_lang or "talk",
        "cooldown_s": config.cooldown_s,
        "wait_quiet_s": config.wait_quiet_s,
        "corpus": corpus_label(config.corpus),
        "corpus_sha256": file_sha256_or_none(corpus_path(config.corpus)),
        "no_mmap": config.no_mmap,
        "offline": config.offline,
        "sample_interval_s": config.sample_interval_s,
        "threads_derivation": setup.threads_how,
        "scenario": setup.scenario.name,
        "long_strategy": setup.long_strategy,
        "serving": {
            "via": config.via,
            "server_pid": config.server_pid,
            "concurrency": serving.levels,
            "slo": str(serving.slo) if serving.levels else None,
            "level_requests": serving.level_requests,
            "level_seconds": serving.level_seconds if serving.levels else None,
        },
        "sweep": {name: list(values) for name, values in config.sweep.items()},
        "configs": [{"config_id": c.config_id, "label": c.label, "settings": c.as_dict()} for c in setup.configs],
        "skipped_configs": [
            {"model": model, "config_id": cid, "reason": why} for (model, cid), why in setup.skipped.items()
        ],
        "interleave": config.interleave,
        "order": plan_record(planned, config.interleave),
        "planned_samples": len(planned),
    }


def probe_environment(tracker_context: TrackerContext) -> tuple[dict[str, Any], float | None]:
    """run.json `environment`: the machine, the packages, each tracker's own probe (the device tracker
    measures the memory bandwidth once, for the roofline column); (environment, bandwidth GB/s)."""
    environment = collect_environment()
    trackers_env = {t.name: t.environment() for t in make_trackers(tracker_context)}
    environment["trackers"] = trackers_env
    bandwidth = trackers_env.get("device", {}).get("memory_bandwidth_gbs")
    if bandwidth is not None:
        environment["memory_bandwidth_gbs"] = bandwidth
    return environment, bandwidth


def check_resume(resume: ResumeState, builder: RecordBuilder, entries: Sequence[ModelEntry], run_dir: Path) -> None:
    """Refuse to resume when the code, the configuration or a model's weights differ from the recorded run."""
    from harness.models.sources import cached_sha256, is_ready, local_path

    old = resume.record
    check_same(old, builder.to_dict(), run_dir)
    for entry in entries:
        recorded = ((old.get("models") or {}).get(entry.id) or {}).get("sha256")
        if recorded and is_ready(entry):
            check_weights(entry.id, recorded, cached_sha256(local_path(entry)), run_dir)


def summarise(run_dir: Path, builder: RecordBuilder, warn: Callable[[str], None]) -> list[str]:
    """At the end of a run: summary.csv and run.json `summary` (the per-model table, returned as lines to
    print), and run.json `noise` with the busy-machine line (warned). Never raises but for a full disk."""
    from harness.results.summary import summarise_run
    from harness.trackers.noise import summarise_run as noise_summary

    lines: list[str] = []
    try:
        summary = summarise_run(run_dir)
    except (OSError, HarnessError, ValueError) as exc:
        warn(f"summary.csv not written: {one_line(exc)}")
        summary = None
    if summary is not None:
        builder.summary(summary.run_json)
        lines = summary.lines()
    env = builder.record.environment.trackers.get("noise") or {}
    noise = noise_summary(run_dir, env.get("reason"))
    builder.noise(noise.record())
    if line := noise.warning():
        warn(line)
    return lines


__all__ = [
    "RecordBuilder",
    "check_resume",
    "code_sha256",
    "config_record",
    "file_sha256_or_none",
    "now",
    "probe_environment",
    "summarise",
]


# === fleet =================================================================================================
# `harness run --fleet` (harness.fleet.driver): one run over many devices. Each job is an ordinary local run on
# one device with a run.json of its own; the driver's record adds what only it knows -- the scheduler, the
# devices and their fingerprints, each job's outcome -- and merges what each job's run.json says about its
# model, prompts and warnings.

# RunConfig fields the fleet config record does not copy: it states models, talks and corpus as the driver
# resolved them, and where the driver writes (`out`) or read models.yaml from is no setting of the jobs.
_NOT_FLEET_OPTIONS = frozenset({"models", "talks", "out", "corpus", "models_file"})


def fleet_config_record(config: RunConfig, entries: Sequence[ModelEntry], talks: Sequence[Talk]) -> dict[str, Any]:
    """run.json `config` of a fleet run: the options every job ran with, and the models, documents and corpus
    the driver resolved. No plan or configs: each device resolves its threads and sweep itself."""
    given = asdict(config)
    options = {k: str(v) if isinstance(v, Path) else v for k, v in given.items() if k not in _NOT_FLEET_OPTIONS}
    return {
        **options,
        "models": [e.id for e in entries],
        "talks": [t.id for t in talks],
        "corpus": corpus_label(config.corpus),
        "corpus_sha256": file_sha256_or_none(corpus_path(config.corpus)),
    }


class FleetRecordBuilder(RecordBuilder):
    """The record of a fleet run: the local stages (warnings, rows, interrupted, finish, summary) plus the
    fleet's own -- the fleet, each device, each job's outcome and what its run.json adds."""

    @classmethod
    def start_fleet(
        cls, *, run_id: str, command: list[str], config: dict[str, Any], planned_samples: int, git_commit: str | None
    ) -> FleetRecordBuilder:
        """The first run.json of a fleet run. No environment: the driver measures nothing (see `_environment`)."""
        builder = cls.start(
            run_id=run_id, command=command, environment={}, config=config, planned_samples=planned_samples,
            code_sha256=code_sha256(),
        )  # fmt: skip
        builder.record.git_commit = git_commit  # the driver's checkout, which every device must match
        return builder

    def fleet(self, scheduler: str, requested: str, devices: Sequence[str], retry_window_s: float) -> None:
        self.record.fleet = {
            "scheduler": scheduler,
            "devices_requested": requested,
            "devices": sorted(devices),
            "retry_window_s": retry_window_s,
        }

    def device(self, name: str, worker: str, tags: Sequence[str], fingerprint: dict[str, Any]) -> None:
        """A device of the run (again when it rejoined under a new address): its worker, tags, fingerprint;
        its jobs and measured environment are kept."""
        entry = self.record.devices.setdefault(name, {"worker": worker, "tags": [], "fingerprint": {}, "jobs": {}})
        entry.update(worker=worker, tags=list(tags), fingerprint=fingerprint)
        self._environment()

    def job(self, device: str, model_id: str, outcome: str, attempts: int, reason: str = "") -> None:
        """A job's state: outcome (pending, done, refused, failed, lost, cancelled, ...) and attempts."""
        entry = self.record.devices[device]["jobs"].setdefault(model_id, {})
        entry.update(outcome=outcome, attempts=attempts)
        if reason:
            entry["reason"] = reason

    def merge_job(self, device: str, model_id: str, run_json: dict[str, Any]) -> None:
        """What a job's own run.json adds, once per job: the weights it ran (`models.<id>` from the first
        device, with `sha256_by_device` for each), its load facts and overhead, the device's environment (its
        first job's), the prompts, and its warnings prefixed with the device."""
        device_entry = self.record.devices[device]
        job = device_entry["jobs"].setdefault(model_id, {})
        model_json = (run_json.get("models") or {}).get(model_id) or {}
        if model_json:
            job.update(sha256=model_json.get("sha256"), provider=model_json.get("provider"),
                       load_s=model_json.get("load_s"))  # fmt: skip
            if model_id not in self.record.models:
                self.record.models[model_id] = _build(ModelRecord, {**model_json, "sha256_by_device": {}})
            self.record.models[model_id].sha256_by_device[device] = model_json.get("sha256")
        if run_json.get("environment") and "environment" not in device_entry:
            device_entry["environment"] = run_json["environment"]
        if run_json.get("overhead"):
            job["overhead"] = run_json["overhead"]
        self.record.prompts.update(run_json.get("prompts") or {})
        self.record.warnings += [f"{device}: {w}" for w in run_json.get("warnings") or []]
        self._environment()

    def finish_fleet(self, written: int, errors: int) -> None:
        """The end of a fleet run: rows, a warning per model whose devices ran different weights, and the
        status (`complete` unless interrupted)."""
        for model_id, model in self.record.models.items():
            shas = {d: s for d, s in model.sha256_by_device.items() if s}
            if len(set(shas.values())) > 1:
                self.warn(
                    f"{model_id}: the devices ran different weights (sha256 differs: "
                    + ", ".join(f"{d}={s[:12]}" for d, s in shas.items())
                    + ")"
                )
        self.rows(written, written - errors, errors)
        status = self.record.status
        self.finish("complete" if status == "running" else status or "complete")

    def _environment(self) -> None:
        """With one device its environment is the run's, so compare's like-for-like check applies as to a local
        run; with several there is no one machine (each device's is under `devices`)."""
        env: Any = None
        if len(self.record.devices) == 1:
            only = next(iter(self.record.devices.values()))
            env = only.get("environment") or (only.get("fingerprint") or {}).get("environment")
        self.record.environment = _build(Environment, env) if isinstance(env, dict) else Environment()


__all__ += ["FleetRecordBuilder", "fleet_config_record"]
