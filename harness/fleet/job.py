"""One fleet job: an ordinary single-machine run of one model on one device.

The job runs inside a Dask worker (`run_job`, submitted by the driver). It builds a `RunConfig` from the
driver's options, runs `Runner(config).run()` into a temporary directory, and hands the result back as
plain data: the rows of results.csv (cells as written), the lines of summaries.jsonl and run.json. While
the run goes on, every finished row and every line the runner prints is also sent to the driver as a
Dask event (`log_event`), so the driver writes rows as they finish and a device lost mid-job loses only
its unfinished samples.

Before running, the device may refuse the job: a harness version other than the driver's, options this
device cannot honour (the runner's preflight: an execution provider it lacks), or weights larger than the
device's memory limit. A refusal is a result (`status: refused` + reason), which the driver turns into one
error row per sample.

Ctrl-C on the driver sets a Dask `Event`; the job checks it whenever the runner prints (at least once
per sample) and stops the run there, which kills the model's process.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness import __version__, safefs
from harness.errors import HarnessError

Sink = Callable[[dict[str, Any]], None]

POLL_S = 0.25


@dataclass(frozen=True)
class FleetJob:
    """What the driver sends: plain data only (see harness.fleet)."""

    run_id: str
    job_id: str  # "<device>/<model>", unique in the run
    device: str
    model: str
    attempt: int
    config: dict[str, Any]  # RunConfig fields other than models/talks/out/corpus/models_file
    talks: list[str]
    topic: str  # Dask event topic the driver listens on
    cancel_event: str  # name of the Dask Event the driver sets on Ctrl-C
    harness_version: str = __version__
    corpus_name: str | None = None  # a built-in corpus (every device has it)
    corpus_text: str | None = None  # or the driver's --corpus file, sent whole
    models_text: str | None = None  # the driver's --models-file, sent whole
    memory_limit_bytes: int | None = None  # from the device's fingerprint

    def wire(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class JobResult:
    status: str  # done | refused | cancelled
    reason: str = ""
    rows: list[dict[str, str]] = field(default_factory=list)
    summaries: list[dict[str, Any]] = field(default_factory=list)
    run_json: dict[str, Any] = field(default_factory=dict)

    def wire(self) -> dict[str, Any]:
        return asdict(self)


def _write_new(path: Path, text: str) -> None:
    """A new file in the job's own temporary folder, created exclusively through harness.safefs: never an
    existing file or a link planted under the name (as every file the harness writes)."""
    with os.fdopen(safefs.create_new(path), "w", encoding="utf-8", newline="") as fh:
        fh.write(text)


class JobCancelled(BaseException):
    """The driver was interrupted: stop this run. Raised from the runner's echo; a BaseException (like
    KeyboardInterrupt) so that no `except Exception` on the way turns it into an error row."""


def _dask_sink() -> Sink | None:
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    return lambda msg: worker.log_event(msg["topic"], msg)


def _cancel_check(name: str) -> Callable[[], bool]:
    """`is_set` of the driver's cancel Event, callable from any thread of this task. The Event gets the
    worker's client explicitly: without one it binds lazily to the calling thread's context, which the
    row-streaming thread does not have."""
    try:
        from distributed import Event, get_client, get_worker

        get_worker()
        event = Event(name, client=get_client())
    except (ImportError, ValueError):
        return lambda: False
    return event.is_set


def read_run_files(run_dir: Path) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """Complete rows of results.csv (cells as written) and the summaries.jsonl objects beside them.

    A row counts once its CSV record and its JSONL line are both complete (ending in a newline), so a
    row being written at this moment is picked up on the next read.
    """
    rows: list[dict[str, str]] = []
    try:
        text = (run_dir / "results.csv").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""
    cut = text.rfind("\n")
    text = text[: cut + 1] if cut >= 0 else ""
    # A newline inside a quoted cell is no record end: keep whole records only (an even number of quotes).
    while text and text.count('"') % 2:
        cut = text.rfind("\n", 0, len(text) - 1)
        text = text[: cut + 1] if cut >= 0 else ""
    if text:
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    summaries: list[dict[str, Any]] = []
    try:
        lines = (run_dir / "summaries.jsonl").read_text(encoding="utf-8").split("\n")[:-1]
    except (OSError, UnicodeDecodeError):
        lines = []
    for line in lines:
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            break
        summaries.append(obj if isinstance(obj, dict) else {})
    n = min(len(rows), len(summaries))
    return rows[:n], summaries[:n]


class RowStreamer:
    """Sends each newly completed row of the job's run directory to the driver, from a polling thread."""

    def __init__(self, parent: Path, job: FleetJob, sink: Sink | None, cancelled: Callable[[], bool]) -> None:
        self.parent = parent
        self.job = job
        self.sink = sink
        self.cancelled = cancelled
        self.sent = 0
        self.cancel_seen = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="harness-fleet-rows", daemon=True)

    def _run_dir(self) -> Path | None:
        dirs = [p for p in self.parent.iterdir() if p.is_dir()] if self.parent.is_dir() else []
        return dirs[0] if len(dirs) == 1 else None

    def poll(self) -> None:
        with self._lock:
            run_dir = self._run_dir()
            if run_dir is None or self.sink is None:
                return
            rows, summaries = read_run_files(run_dir)
            for row, summary in zip(rows[self.sent :], summaries[self.sent :], strict=True):
                self.sink(
                    {
                        "topic": self.job.topic,
                        "kind": "row",
                        "job": self.job.job_id,
                        "attempt": self.job.attempt,
                        "row": {**row, "device": self.job.device},
                        "summary": {**summary, "device": self.job.device},
                    }
                )
                self.sent += 1

    def _loop(self) -> None:
        while not self._stop.wait(POLL_S):
            self.poll()
            if not self.cancel_seen:
                try:
                    self.cancel_seen = bool(self.cancelled())
                except Exception:  # scheduler gone: the driver will not read more rows either
                    self.cancel_seen = False

    def __enter__(self) -> RowStreamer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.poll()


def _weights_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _too_big(job: FleetJob, models_file: Path | None, offline: bool) -> str | None:
    """Fetch the weights into this device's cache (sha256-checked) and refuse them when they exceed the
    device's memory limit. A fetch failure is left to the runner, which records it per sample."""
    if not job.memory_limit_bytes:
        return None
    from harness.models.registry import load_models, select_models
    from harness.models.sources import resolve

    entry = select_models(load_models(models_file), [job.model])[0]
    try:
        path = resolve(entry, offline=offline, progress=False)
        size = _weights_bytes(path) if path is not None else None  # remote: the server's memory, not ours
    except (HarnessError, OSError):
        return None
    if size is None:
        return None
    if size > job.memory_limit_bytes:
        return (
            f"model {job.model} does not fit on device {job.device}: weights {size / 2**30:.2f} GiB > "
            f"memory limit {job.memory_limit_bytes / 2**30:.2f} GiB"
        )
    return None


def run_job(wire: dict[str, Any], sink: Sink | None = None) -> dict[str, Any]:
    """The Dask task: run `wire` (a FleetJob as a dict) on this device; returns a JobResult as a dict.

    `sink` receives the progress events (tests); inside a Dask worker they go to the driver's topic.
    """
    try:
        job = FleetJob(**wire)
    except TypeError as exc:
        return JobResult("refused", f"this device's harness {__version__} cannot read the driver's job ({exc}); "
                         "install the driver's harness version on it").wire()
    if job.harness_version != __version__:
        return JobResult(
            "refused",
            f"device {job.device} runs harness {__version__}, the driver {job.harness_version}; install the same "
            f"version on both",
        ).wire()
    sink = sink or _dask_sink()
    cancelled = _cancel_check(job.cancel_event)

    from harness.run import RunConfig, Runner

    with tempfile.TemporaryDirectory(prefix="harness-fleet-") as tmp_name:
        tmp = Path(tmp_name)
        corpus: str | Path | None = job.corpus_name
        models_file = None
        if job.corpus_text is not None:
            corpus = tmp / "corpus.jsonl"
            _write_new(corpus, job.corpus_text)
        if job.models_text is not None:
            models_file = tmp / "models.yaml"
            _write_new(models_file, job.models_text)
        out = tmp / "runs"
        try:
            config = RunConfig(
                **job.config, models=[job.model], talks=list(job.talks), out=out, corpus=corpus, models_file=models_file
            )
        except TypeError as exc:  # same version number, different code: the options do not fit
            return JobResult(
                "refused",
                f"this device's harness cannot take the driver's run options ({exc}); install the driver's "
                f"harness version and commit on it",
            ).wire()
        streamer = RowStreamer(out, job, sink, cancelled)

        def echo(line: str) -> None:
            # The runner prints a sample's line right after writing its row: send the row first, so a
            # device that dies after the line was seen has delivered the row too.
            streamer.poll()
            if sink is not None:
                sink({"topic": job.topic, "kind": "line", "job": job.job_id, "attempt": job.attempt, "text": line})
            if streamer.cancel_seen:
                raise JobCancelled(f"run interrupted on the driver; {job.job_id} stopped")

        try:
            runner = Runner(config, echo=echo)
            reason = _too_big(job, models_file, bool(job.config.get("offline")))
        except HarnessError as exc:
            return JobResult("refused", str(exc)).wire()
        if reason:
            return JobResult("refused", reason).wire()
        status = "done"
        with streamer:
            try:
                runner.run()
            except JobCancelled:
                status = "cancelled"
        run_dirs = [p for p in out.iterdir() if p.is_dir()] if out.is_dir() else []
        if not run_dirs:
            return JobResult(status, "the run wrote no directory").wire()
        run_dir = run_dirs[0]
        rows, summaries = read_run_files(run_dir)
        try:
            run_json = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            run_json = {}
        return JobResult(
            status,
            rows=[{**r, "device": job.device} for r in rows],
            summaries=[{**s, "device": job.device} for s in summaries],
            run_json=run_json,
        ).wire()
