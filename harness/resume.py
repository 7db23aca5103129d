"""`harness run --resume RUN_DIR`: complete an interrupted (or failed) run in its own directory.

Why: a long run stopped by SIGTERM, Ctrl-C, a full disk or a power cut has rows worth keeping; running
it again from scratch wastes them, and a second directory would split one measurement in two.

Rules (docs/running.md, "Failures and interruptions"):

- The configuration is the run's own: the command line recorded in run.json is parsed again (in the
  working directory it was started from), so a resumed run cannot silently differ from the original.
  Options other than --resume are refused.
- Refused when the code version (harness version, or the sha256 of the package's code and prompt
  templates: `code_sha256` in run.json), the models (ids or weight sha256), the
  corpus (sha256) or the plan (talks, repeats, number of samples) changed, when the run is complete, or
  while the process that started it is still alive.
- Every planned sample that already has a row -- `ok` or `error` -- is skipped, matched by its position
  in the plan (`sample_seq`) and checked against its model, talk and repeat. Error rows are results
  (a timeout, a crash, an exception) and are not retried: the resumed run ends with exactly one row per
  planned sample. To retry failed samples, start a new run with the same options.
  A sample that was running when the run stopped has no row (an interrupt never writes one) and runs.
- Rows are appended; a torn last row left by a hard kill is trimmed first (`RunWriter.reopen`).
  run.json keeps its record and gains one entry per resume under `resumes` (when, how many rows were
  there, the signal or failure that stopped the previous attempt).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shlex
import typing
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.env import harness_command
from harness.errors import HarnessError
from harness.results.durable import committed_csv_text
from harness.results.layout import RESULTS_CSV, RUN_JSON

RowKey = tuple[str, str, int]  # model, talk_id, repeat


@dataclass
class ResumeState:
    dir: Path
    record: dict[str, Any]  # run.json as written by the interrupted run
    done: dict[int, RowKey] = field(default_factory=dict)  # sample_seq -> what the row at it holds

    @property
    def argv(self) -> list[str]:
        """The original `harness run` arguments (after the command name)."""
        return run_arguments(self.record.get("command") or [], self.dir)

    @property
    def cwd(self) -> Path | None:
        cwd = self.record.get("cwd")
        return Path(cwd) if isinstance(cwd, str) else None


def run_arguments(command: list[str], where: Path) -> list[str]:
    """The arguments after `run` in a recorded command line (argv of `python -m harness run ...`)."""
    if not isinstance(command, list) or not all(isinstance(a, str) for a in command):
        raise HarnessError(f'{where / RUN_JSON}: "command" must be a list of strings; this run cannot be resumed')
    if "run" not in command:
        raise HarnessError(f"{where / RUN_JSON}: no `run` command line recorded; this run cannot be resumed")
    return list(command[command.index("run") + 1 :])


def load_state(run_dir: Path) -> ResumeState:
    """What `--resume RUN_DIR` continues from; a one-line HarnessError when it cannot be resumed.

    The run's lock (`RunLock`, an OS lock on `<run dir>/.lock`) is taken first and kept for the rest of
    the process (the writer shares it): a second `--resume` of the same run, or a resume of a run still
    in progress, is refused before either reads the rows."""
    from harness.results.durable import RunLock
    from harness.results.record import RunRecord, read_run_json

    if not run_dir.is_dir():
        raise HarnessError(f"--resume {run_dir}: no such run directory; pass results/<run_id>")
    path = run_dir / RUN_JSON
    if not path.is_file():
        raise HarnessError(f"--resume {run_dir}: no {RUN_JSON}; this run cannot be resumed")
    check_run_files(run_dir)
    RunLock.hold(run_dir)
    record = read_run_json(path)
    RunRecord.validated(record, path)  # the fields the resume reads have the types it expects
    status = record.get("status")
    if status == "complete":
        raise HarnessError(f"--resume {run_dir}: the run is already complete; nothing to resume")
    pid = record.get("pid")
    if status == "running" and isinstance(pid, int) and pid != os.getpid() and _alive(pid):
        # A run of an older harness (no lock file) that is still going.
        raise HarnessError(f"--resume {run_dir}: the run is still going (process {pid}); stop it first")
    state = ResumeState(run_dir, record)
    state.done = rows_done(run_dir)
    planned = record.get("planned_samples")
    stray = sorted(seq for seq in state.done if isinstance(planned, int) and not 0 <= seq < planned)
    if stray:
        # A row the plan never had (an edited or merged results.csv) would survive into a run of more rows
        # than planned; refusing keeps every row the user has, where silently dropping one would not.
        raise HarnessError(
            f"--resume {run_dir}: {RESULTS_CSV} has {len(stray)} row(s) that are not in the run's plan of {planned} "
            f"samples (sample_seq {', '.join(map(str, stray[:3]))}); remove them or start a new run"
        )
    return state


def check_run_files(run_dir: Path) -> None:
    """Refuse, before anything is written, a run directory where a file the run writes is a symbolic link
    or not a regular file (a planted link would otherwise be truncated and appended to; see harness.safefs).
    Each write also opens its file without following links; this check makes the refusal one line up front
    rather than a run stopped halfway."""
    from harness import safefs
    from harness.load import LOAD_REQUESTS_FILE, LOAD_SUMMARY_FILE
    from harness.results.durable import LOCK_FILE, LOCK_PID_FILE
    from harness.results.layout import SUMMARIES_JSONL, SUMMARY_CSV, SUMMARY_MODELS_CSV
    from harness.results.writer import RESERVE

    for name in (RESULTS_CSV, SUMMARIES_JSONL, SUMMARY_CSV, SUMMARY_MODELS_CSV, RUN_JSON, RESERVE, LOCK_FILE,
                 LOCK_PID_FILE, LOAD_REQUESTS_FILE, LOAD_SUMMARY_FILE):  # fmt: skip
        safefs.check_target(run_dir / name)


class _QuietParser(argparse.ArgumentParser):
    """An argument parser whose errors are a HarnessError, not a usage block on stderr and SystemExit."""

    def error(self, message: str) -> typing.NoReturn:
        raise HarnessError(message)

    def exit(self, status: int = 0, message: str | None = None) -> typing.NoReturn:
        raise HarnessError(message or f"exit {status}")


def parse_recorded(state: ResumeState) -> argparse.Namespace:
    """The recorded `harness run` arguments parsed again; a tampered or outdated command line is one line."""
    from harness import params

    parser = _QuietParser(prog="harness run", add_help=False)
    params.add_arguments(parser)
    try:
        return parser.parse_args(state.argv)
    except HarnessError as exc:
        raise HarnessError(
            f'--resume {state.dir}: the command line recorded in {RUN_JSON} ("command") no longer parses '
            f"({str(exc).strip()}); start a new run"
        ) from None


def _alive(pid: int) -> bool:
    try:
        import psutil

        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and "harness" in " ".join(proc.cmdline())
    except Exception:
        return False


def rows_done(run_dir: Path) -> dict[int, RowKey]:
    """sample_seq -> (model, talk, repeat) of every complete row of results.csv."""
    csv_path = run_dir / RESULTS_CSV
    if not csv_path.is_file():
        return {}
    done: dict[int, RowKey] = {}
    for row in csv.DictReader(io.StringIO(committed_csv_text(csv_path, warn=lambda _m: None), newline="")):
        try:
            seq = int(row.get("sample_seq") or "")
            key = (row["model"], row["talk_id"], int(row["repeat"]))
        except (KeyError, ValueError):
            raise HarnessError(
                f"--resume {run_dir}: {RESULTS_CSV} has a row without sample_seq/model/talk_id/repeat; "
                "it was written by an older harness and cannot be resumed"
            ) from None
        if seq in done:
            raise HarnessError(f"--resume {run_dir}: {RESULTS_CSV} has two rows for sample {seq}; fix it by hand")
        done[seq] = key
    return done


# What must not change between the interrupted run and its resumption, and how to name it.
SAME_CONFIG = {
    "models": "the models",
    "talks": "the talks",
    "repeats": "--repeats",
    "corpus_sha256": "the corpus (sha256)",
    "planned_samples": "the plan (number of samples)",
}


def code_fingerprint() -> str:
    """sha256 over the harness package's code and prompt templates: what "the same code" means for a
    resume. A git commit is not enough (uncommitted edits, or an installed wheel with no git at all)."""
    import hashlib

    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".txt") and p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def check_same(old: dict[str, Any], new: dict[str, Any], run_dir: Path) -> None:
    """Refuse to resume when the code or the configuration differs from the recorded run."""
    for key, label in (("harness_version", "the harness version"), ("code_sha256", "the code (sha256 of harness/)")):
        if old.get(key) != new.get(key):
            raise HarnessError(
                f"--resume {run_dir}: {label} changed ({old.get(key)} -> {new.get(key)}); figures from two "
                "code versions must not mix: start a new run"
            )
    old_cfg, new_cfg = old.get("config") or {}, new.get("config") or {}
    for key, label in SAME_CONFIG.items():
        if key in old_cfg and old_cfg.get(key) != new_cfg.get(key):
            raise HarnessError(
                f"--resume {run_dir}: {label} changed since the run started ({_short(old_cfg.get(key))} -> "
                f"{_short(new_cfg.get(key))}); start a new run"
            )


def check_weights(model_id: str, recorded: str | None, actual: str | None, run_dir: Path) -> None:
    if recorded and actual and recorded != actual:
        raise HarnessError(
            f"--resume {run_dir}: the weights of {model_id} changed (sha256 {recorded[:12]}… -> {actual[:12]}…); "
            "start a new run"
        )


def check_no_foreign_rows(
    done: Mapping[int, RowKey], planned: AbstractSet[int] | Mapping[int, RowKey], run_dir: Path
) -> None:
    """Refuse a results.csv row that the recorded plan does not have, before anything is written.

    `done` is `rows_done(run_dir)`; `planned` the plan's sample_seq numbers, or sample_seq -> (model, talk,
    repeat) to refuse as well a row whose seq is planned but which holds another model, talk or repeat. Why
    refuse: a row kept would make a run of more rows than planned (or report a sample the plan never ran),
    and a row dropped would lose something the user has; only the user knows which one is right. Checked
    once, up front, so a refused resume leaves every file of the run as it was."""
    keyed = planned if isinstance(planned, Mapping) else None
    for seq in sorted(done):
        row = done[seq]
        if seq in planned and (keyed is None or keyed[seq] == row):
            continue
        what = "/".join(map(str, row))
        if seq in planned and keyed is not None:
            why = f"the plan has {'/'.join(map(str, keyed[seq]))} at sample_seq {seq}"
        else:
            why = f"the plan has no sample_seq {seq}"
        raise HarnessError(
            f"--resume {run_dir}: {RESULTS_CSV} row sample_seq {seq} ({what}) is not in the run's plan of "
            f"{len(planned)} samples ({why}); remove that row from {RESULTS_CSV} or start a new run"
        )


def resume_hint(run_dir: Path) -> str:
    return f"{harness_command()} run --resume {shlex.quote(str(run_dir))}"


def _short(value: Any) -> str:
    text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return text if len(text) <= 40 else text[:39] + "…"


__all__ = [
    "ResumeState",
    "check_no_foreign_rows",
    "check_run_files",
    "check_same",
    "check_weights",
    "code_fingerprint",
    "load_state",
    "parse_recorded",
    "resume_hint",
    "rows_done",
]
