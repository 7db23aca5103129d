"""judgements.jsonl in a run directory, and the judge_* columns it adds to that run's rows.

Each rubric judgement names the summaries.jsonl record it judged by position (`row`, 0-based; the run writes
summaries.jsonl and results.csv row for row, harness.results.durable), so compare and report join the scores
to results.csv without a key that sweeps or repeats could make ambiguous; model, talk and repeat are checked
too. Only the latest judge's lines join (the file may hold several judges; each `harness judge` pass replaces
its own judge's lines and appends at the end).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from harness.jsonl import read_objects
from harness.judge.rubric import CRITERIA
from harness.results.durable import AppendOnlyFile, stderr_warning

JUDGEMENTS_JSONL = "judgements.jsonl"
SCORE_COLUMNS: tuple[str, ...] = (*(f"judge_{c}" for c in CRITERIA), "judge_overall")
JUDGE_COLUMNS: tuple[str, ...] = (*SCORE_COLUMNS, "judge", "judge_fit")


def read_judgements(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / JUDGEMENTS_JSONL
    if not path.is_file():
        return []
    return [obj for _, _, obj in read_objects(path, torn_tail=stderr_warning)]


def latest_judge(records: Sequence[dict[str, Any]]) -> str | None:
    labels = [r.get("judge") for r in records if r.get("kind") == "rubric" and isinstance(r.get("judge"), str)]
    return labels[-1] if labels else None


def join_judgements(results: pd.DataFrame, run_dir: Path) -> pd.DataFrame:
    """`results` with the judge_* columns of the latest judge filled where a summary was judged; unchanged
    when the run has no judgements.jsonl."""
    records = read_judgements(run_dir)
    judge = latest_judge(records)
    if judge is None:
        return results
    mine = [r for r in records if r.get("kind") == "rubric" and r.get("judge") == judge]
    out = results.copy()
    for col in SCORE_COLUMNS:
        out[col] = math.nan
    out["judge"] = ""
    out["judge_fit"] = ""
    fallback = {(str(r.get("model")), str(r.get("talk_id")), _norm(r.get("repeat"))): r for r in mine}
    keys = list(zip(out["model"].astype(str), out["talk_id"].astype(str), out["repeat"].map(_norm), strict=True))
    by_row = {r.get("row"): r for r in mine if isinstance(r.get("row"), int)}
    for i, key in enumerate(keys):
        record = by_row.get(i)
        if record is None or (str(record.get("model")), str(record.get("talk_id")), _norm(record.get("repeat"))) != key:
            record = fallback.get(key)
        if record is None:
            continue
        out.iat[i, out.columns.get_loc("judge")] = judge
        fit = record.get("fit")
        out.iat[i, out.columns.get_loc("judge_fit")] = "" if fit is None else str(bool(fit)).lower()
        scores = record.get("scores") or {}
        for c in CRITERIA:
            if isinstance(scores.get(c), (int, float)):
                out.iat[i, out.columns.get_loc(f"judge_{c}")] = float(scores[c])
        if isinstance(record.get("overall"), (int, float)):
            out.iat[i, out.columns.get_loc("judge_overall")] = float(record["overall"])
    return out


def _norm(value: Any) -> str:
    try:
        return str(int(float(value)))
    except (TypeError, ValueError):
        return str(value)


class JudgementsWriter:
    """Appends judgements durably (each line written and fsynced as one committed unit, like summaries.jsonl),
    after dropping the lines an earlier pass of the same judge left."""

    def __init__(self, run_dir: Path, judge: str) -> None:
        from harness import safefs

        self.path = run_dir / JUDGEMENTS_JSONL
        kept = [r for r in read_judgements(run_dir) if r.get("judge") != judge]
        safefs.write_atomic(self.path, "".join(_line(r) for r in kept))
        self._file = AppendOnlyFile(self.path, create=False)
        self.judge = judge

    def write(self, record: dict[str, Any]) -> None:
        self._file.append(_line({"judge": self.judge, **record}).encode("utf-8", errors="backslashreplace"))
        self._file.sync()
        self._file.commit()

    def write_all(self, records: Iterable[dict[str, Any]]) -> None:
        for r in records:
            self.write(r)

    def close(self) -> None:
        self._file.close()


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False) + "\n"
