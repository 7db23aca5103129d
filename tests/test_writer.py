from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.results.schema import COLUMNS, REQUIRED_COLUMNS, describe
from harness.results.writer import RunWriter, format_cell

# The column list promised by the core-run issue, in order.
ISSUE_COLUMNS = [
    "run_id", "model", "backend", "provider", "quant", "threads", "talk_id", "repeat", "prompt_tokens",
    "output_tokens", "load_s", "ttft_s", "prefill_tok_s", "decode_tok_s", "e2e_s", "peak_rss_mb",
    "rouge1_f", "rouge2_f", "rougeL_f", "status", "error",
]  # fmt: skip


def test_schema_starts_with_the_documented_columns_in_order() -> None:
    assert list(REQUIRED_COLUMNS) == ISSUE_COLUMNS
    assert len(set(COLUMNS)) == len(COLUMNS)


def test_docs_document_every_column() -> None:
    page = (Path(__file__).resolve().parent.parent / "docs" / "results.md").read_text(encoding="utf-8")
    missing = [c for c in COLUMNS if f"`{c}`" not in page]
    assert not missing, f"docs/results.md lacks columns {missing}; run .venv/bin/python tools/docs_tables.py"
    assert describe().splitlines()[0].startswith("| column")


def test_rows_are_on_disk_before_close(tmp_path: Path) -> None:
    w = RunWriter(tmp_path, run_id="r1")
    w.write_row({"run_id": "r1", "model": "m", "status": "ok", "ttft_s": 0.5}, {"prediction": "摘要"})
    # read while the writer is still open: the row must already be there
    rows = list(csv.DictReader(w.csv_path.open(encoding="utf-8")))
    assert rows[0]["ttft_s"] == "0.5" and list(rows[0]) == list(COLUMNS)
    assert json.loads(w.summaries_path.read_text(encoding="utf-8").splitlines()[0])["prediction"] == "摘要"
    w.close()


def test_unknown_column_is_a_bug_not_silently_dropped(tmp_path: Path) -> None:
    w = RunWriter(tmp_path, run_id="r1")
    with pytest.raises(ValueError, match="not in the schema"):
        w.write_row({"nonsense": 1}, {})
    w.close()


def test_existing_run_dir_is_refused(tmp_path: Path) -> None:
    RunWriter(tmp_path, run_id="same").close()
    with pytest.raises(HarnessError, match="already exists"):
        RunWriter(tmp_path, run_id="same")


@pytest.mark.parametrize(
    ("value", "cell"),
    [(None, ""), (True, "true"), (0.123456789, "0.123457"), (float("nan"), ""), (3, "3"), ("x", "x")],
)
def test_format_cell(value: object, cell: str) -> None:
    assert format_cell(value) == cell
