"""Run directory writer. Every row is flushed to disk as soon as it is complete, so an interrupted or
crashed run keeps every finished sample.

    <out>/<run_id>/results.csv      one row per model x talk x repeat (schema.COLUMNS)
    <out>/<run_id>/summaries.jsonl  generated text per row, with references and source for re-scoring
    <out>/<run_id>/summary.csv      per model x talk aggregate over repeats (written at the end)
    <out>/<run_id>/run.json         configuration, environment, models, overhead
"""

from __future__ import annotations

import csv
import json
import math
import os
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.results.schema import COLUMNS


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


def format_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return ""
        return f"{value:.6g}"
    return str(value)


class RunWriter:
    def __init__(self, out_dir: Path, run_id: str | None = None) -> None:
        self.run_id = run_id or new_run_id()
        self.dir = out_dir / self.run_id
        try:
            self.dir.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise HarnessError(f"run directory {self.dir} already exists; pick another --out") from None
        except OSError as exc:
            raise HarnessError(
                f"cannot create run directory {self.dir}: {exc.strerror}; check --out"
            ) from None
        self.csv_path = self.dir / "results.csv"
        self.summaries_path = self.dir / "summaries.jsonl"
        self.run_json_path = self.dir / "run.json"
        self._csv_fh = self.csv_path.open("w", newline="", encoding="utf-8")
        self._csv = csv.DictWriter(self._csv_fh, fieldnames=list(COLUMNS), extrasaction="raise")
        self._csv.writeheader()
        self._csv_fh.flush()
        self._jsonl_fh = self.summaries_path.open("w", encoding="utf-8")
        self.rows_written = 0

    def write_row(self, row: dict[str, Any], summary: dict[str, Any]) -> None:
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise ValueError(f"row has columns not in the schema: {sorted(unknown)}")
        self._csv.writerow({c: format_cell(row.get(c)) for c in COLUMNS})
        self._jsonl_fh.write(json.dumps(summary, ensure_ascii=False) + "\n")
        for fh in (self._csv_fh, self._jsonl_fh):
            fh.flush()
            os.fsync(fh.fileno())
        self.rows_written += 1

    def write_run_json(self, record: dict[str, Any]) -> None:
        tmp = self.run_json_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
        tmp.replace(self.run_json_path)

    def close(self) -> None:
        self._csv_fh.close()
        self._jsonl_fh.close()
