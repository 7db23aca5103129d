"""Read run directories (or bare results.csv files) for `compare` and `report`.

A run is what `harness run` wrote: results.csv (required), run.json and summaries.jsonl (optional, so a
results.csv copied out of its run directory still compares). Identity and setting columns stay strings
so that talk ids such as "007" keep their zeros; the schema's numeric columns become floats. run.json is
read as a typed `RunRecord` (harness.results.record).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.jsonl import read_objects
from harness.results.durable import committed_csv_text, stderr_warning
from harness.results.layout import RESULTS_CSV, RUN_JSON, SUMMARIES_JSONL
from harness.results.record import RunRecord
from harness.results.schema import COLUMNS, NUMERIC_COLUMNS, REQUIRED_COLUMNS
from harness.resume import resume_hint

TEXT_COLUMNS: frozenset[str] = frozenset(COLUMNS) - NUMERIC_COLUMNS
_DECIMAL = re.compile(r"-?\d+\.\d+")


@dataclass
class Run:
    """One run's rows and metadata. `label` is unique among the runs loaded together."""

    label: str
    path: Path
    results: pd.DataFrame
    record: RunRecord | None = None  # run.json; None for a bare results.csv
    summaries: list[dict[str, Any]] = field(default_factory=list)
    has_summaries: bool = False

    @property
    def has_run_json(self) -> bool:
        return self.record is not None

    @property
    def directory(self) -> Path:
        return self.path if self.path.is_dir() else self.path.parent

    @property
    def ok(self) -> pd.DataFrame:
        """Rows that count in aggregates: a failed generation has no meaningful latency or score."""
        return self.results[self.results["status"] == "ok"]

    @property
    def n_error(self) -> int:
        return int((self.results["status"] != "ok").sum())


def _resolve(path: Path) -> tuple[Path, Path]:
    """(csv file, directory holding run.json/summaries.jsonl) for a run dir or a results.csv path."""
    if path.is_dir():
        csv_path = path / RESULTS_CSV
        if not csv_path.is_file():
            raise HarnessError(
                f"{path}: no {RESULTS_CSV} in this directory; pass a run directory written by "
                f"`harness run` (e.g. results/<run_id>) or a results.csv file"
            )
        return csv_path, path
    if path.is_file():
        return path, path.parent
    raise HarnessError(f"{path}: no such run directory or file; pass a run directory or a results.csv file")


def read_results(csv_path: Path) -> pd.DataFrame:
    """results.csv as a DataFrame; metric columns numeric, everything else str ('' when blank)."""
    try:
        # A run cut off while writing (crash, full disk) may end in a torn row: dropped with a warning.
        text = committed_csv_text(csv_path, warn=stderr_warning)
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise HarnessError(
            f"{csv_path}: not a readable results CSV ({str(exc).splitlines()[0]}); "
            f"pass a results.csv written by `harness run`"
        ) from None
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise HarnessError(
            f"{csv_path}: missing required column(s) {', '.join(missing)}; "
            f"is this a results.csv written by `harness run`?"
        )
    if df.empty:
        raise HarnessError(f"{csv_path}: has a header but no rows; the run wrote no samples")
    for col in df.columns:
        blank = df[col].str.strip() == ""
        if col in NUMERIC_COLUMNS:
            df[col] = pd.to_numeric(df[col].where(~blank, np.nan), errors="coerce")
        elif col not in TEXT_COLUMNS and not blank.all():
            # A column this version does not know (a newer harness wrote it): numeric only if every
            # filled cell parses, so free text is never silently turned into NaN.
            parsed = pd.to_numeric(df[col].where(~blank, np.nan), errors="coerce")
            if parsed[~blank].notna().all():
                df[col] = parsed
    df["status"] = df["status"].str.strip().str.lower()
    return df


def read_summaries(path: Path) -> list[dict[str, Any]]:
    return [obj for _, _, obj in read_objects(path, torn_tail=stderr_warning)]


def load_run(path: str | Path) -> Run:
    csv_path, directory = _resolve(Path(path))
    results = read_results(csv_path)
    # `harness judge` scores live in judgements.jsonl beside the run; joined here so compare and report see columns.
    from harness.judge.columns import join_judgements

    results = join_judgements(results, directory)
    run_json = directory / RUN_JSON
    summaries_path = directory / SUMMARIES_JSONL
    record = RunRecord.load(run_json) if run_json.is_file() else None
    summaries = read_summaries(summaries_path) if summaries_path.is_file() else []
    ids = sorted({str(v) for v in results["run_id"] if str(v).strip()})
    if record is not None and isinstance(record.run_id, str) and record.run_id:
        label = record.run_id
    elif len(ids) == 1:
        label = ids[0]
    else:
        label = directory.name if csv_path.name == RESULTS_CSV else csv_path.stem
    if record is not None and record.status != "complete":
        stderr_warning(incomplete_note(label, record, directory))
    return Run(
        label=label,
        path=Path(path),
        results=results,
        record=record,
        summaries=summaries,
        has_summaries=summaries_path.is_file(),
    )


def incomplete_note(label: str, record: RunRecord, directory: Path) -> str:
    """One line for a run whose run.json says it did not finish: its figures cover part of the plan."""
    why = record.extra.get("interrupted_by") or record.extra.get("failure") or ""
    rows = f"{record.written_rows} of {record.planned_samples} samples" if record.planned_samples else "some samples"
    hint = f"; `{resume_hint(directory)}` completes it" if record.status in ("interrupted", "failed") else ""
    return (
        f"run {label} is not complete (status {record.status}{': ' + str(why)[:80] if why else ''}; "
        f"{rows} written){hint}"
    )


def load_runs(paths: Sequence[str | Path]) -> list[Run]:
    """Load runs in order, making labels unique (the same run given twice becomes 'id', 'id#2')."""
    runs = [load_run(p) for p in paths]
    seen: dict[str, int] = {}
    for run in runs:
        n = seen.get(run.label, 0) + 1
        seen[run.label] = n
        if n > 1:
            run.label = f"{run.label}#{n}"
    return runs


def column_values(df: pd.DataFrame, column: str) -> list[str]:
    """Distinct non-blank values of a column as normalised strings (sorted); [] when absent."""
    if column not in df.columns:
        return []
    return sorted({norm(v) for v in df[column] if norm(v) != ""})


def norm(value: Any) -> str:
    """Canonical string for comparing settings across runs: 4 == 4.0 == '4', True == 'true'."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float, np.integer, np.floating)):
        if isinstance(value, (float, np.floating)) and np.isnan(value):
            return ""
        return str(int(value)) if float(value).is_integer() else f"{float(value):g}"
    text = str(value).strip()
    if text.lower() in {"true", "false"}:
        return text.lower()
    # Only "4.0"-style decimals are folded to numbers: digit-only hashes such as a prompt_sha must stay
    # exactly as written.
    if _DECIMAL.fullmatch(text):
        return norm(float(text))
    return text


def join_values(values: Iterable[str]) -> str:
    return ",".join(values) or "?"
