"""Numbers that break things (issue 21): non-finite thresholds and timeouts, plans too large to hold, non-finite
values in plotted columns, `$...$` in labels (matplotlib mathtext), a non-string speaker. Usage errors are one
line, exit 2, no traceback, nothing written; a report with such values renders, the bad points left out."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from faultcli import assert_no_traceback, assert_one_line_error, faults_env, run_args, run_cli, run_many

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the synthetic run factory
from runfactory import make_run

from harness.report import plots

WORKER = ["fleet", "worker", "--scheduler", "tcp://127.0.0.1:1", "--device", "d"]


def test_non_finite_and_impossible_numbers_are_one_line(
    tmp_path: Path, dummy_models: Callable[..., Path]
) -> None:
    a, b = (make_run(tmp_path / "runs", name, seed=i) for i, name in enumerate(("run-a", "run-b")))
    models = dummy_models(m={})
    out = tmp_path / "out"
    cases: dict[str, tuple[list[str | Path], tuple[str, ...]]] = {
        "compare-gate-nan": (["compare", a, b, "--fail-on-regression", "nan"], ("--fail-on-regression", "finite")),
        "compare-threshold-nan": (["compare", a, b, "--threshold", "nan"], ("--threshold", "finite")),
        "compare-threshold-inf": (["compare", a, b, "--threshold", "inf"], ("--threshold", "finite")),
        "fleet-death-timeout-nan": (
            [*WORKER, "--death-timeout", "nan"], ("--death-timeout",),
        ),
        "fleet-death-timeout-negative": (
            [*WORKER, "--death-timeout", "-1"], ("--death-timeout",),
        ),
        "repeats-10^12-dry-run": (
            [*run_args(models, out, "m", "--repeats", "1000000000000", "--dry-run")], ("--repeats", "at most"),
        ),
        "plan-too-large": (
            [*run_args(models, out, "m", "--repeats", "10000", "--threads", "1-20", "--dry-run")],
            ("plans", "samples", "at most"),
        ),
        "sweep-10^6-configs": (
            [*run_args(models, out, "m", "--threads", "1-1000", "--min-new-tokens", "0-999", "--dry-run")],
            ("combinations", "at most 1000"),
        ),
        "estimate-from-without-dry-run": (
            [*run_args(models, out, "m", "--estimate-from", a)], ("--estimate-from", "--dry-run"),
        ),
    }  # fmt: skip
    results = run_many({name: argv for name, (argv, _) in cases.items()}, faults_env())
    for name, result in results.items():
        assert result.wall_s < 60, name
        assert_one_line_error(result, *cases[name][1])
    assert not out.exists()  # nothing planned or written


def test_corpus_list_with_a_non_string_speaker(tmp_path: Path) -> None:
    corpus = tmp_path / "c.jsonl"
    talk = {"id": "t1", "text": "一段演讲。", "references": ["摘要。"], "speaker": 42, "organisation": None}
    corpus.write_text(json.dumps(talk, ensure_ascii=False) + "\n", encoding="utf-8")
    result = run_cli("corpus", "list", "--corpus", corpus)
    assert_no_traceback(result)
    if result.returncode == 0:
        assert "42" in result.stdout
    else:  # a corpus reader that refuses a non-string speaker: one line naming it
        assert_one_line_error(result, "speaker")


# --- report: non-finite values and mathtext in labels --------------------------------------------------------
def test_a_report_with_non_finite_values_and_dollar_labels_renders(tmp_path: Path) -> None:
    run = make_run(tmp_path / "runs", "run-$x^{$", models=("m-$\\frac{$", "m-large"))
    csv_path = run / "results.csv"
    df = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    for col in ("decode_tok_s", "ttft_s", "peak_rss_mb", "itl_p50_ms", "rougeL_f"):
        df.loc[0, col] = "inf"
        df.loc[1, col] = "-inf"
    df.to_csv(csv_path, index=False)
    result = run_cli("report", run, "--out", tmp_path / "rep")
    assert result.returncode == 0, result.explain()
    assert_no_traceback(result)
    assert (tmp_path / "rep" / "report.html").stat().st_size > 0


def test_plots_drop_non_finite_values_with_a_note() -> None:
    samples = pd.DataFrame(
        {"series": ["$a$", "$a$", "b$", "b$"], "ttft_s": [1.0, float("inf"), 2.0, float("-inf")],
         "peak_rss_mb": [100.0, 120.0, float("inf"), 90.0]}
    )  # fmt: skip
    colors = plots.palette(["$a$", "b$"])
    for png in (
        plots.ttft_distribution(samples, ["$a$", "b$"], colors),
        plots.peak_memory(samples, ["$a$", "b$"], colors),
    ):
        assert png is not None and png.startswith(b"\x89PNG")
    frame, dropped = plots._finite(samples, ["ttft_s", "peak_rss_mb"])
    assert dropped == 3 and frame["ttft_s"].isna().sum() == 2


@pytest.mark.parametrize("label", ["$\\frac{$", "$$", "a$b$c", "$\\undefinedmacro$"])
def test_quality_plot_labels_are_printed_as_typed(label: str) -> None:
    means = pd.DataFrame({"series": [label, "ok"], "decode_tok_s": [10.0, float("inf")], "rougeL_f": [0.2, 0.3]})
    png = plots.quality_vs_speed(means, plots.palette([label, "ok"]))
    assert png is not None and png.startswith(b"\x89PNG")


def _interrupted_run(dummy_models: Callable[..., Path], tmp_path: Path) -> tuple[Path, list[dict[str, str]]]:
    """A complete 2-sample dummy run marked `interrupted` (so --resume takes it), and its results.csv rows."""
    done = run_cli(*run_args(dummy_models(m={}), tmp_path / "out", "m"))
    assert done.returncode == 0, done.explain()
    run_dir = done.run_dir
    record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    record["status"] = "interrupted"
    (run_dir / "run.json").write_text(json.dumps(record), encoding="utf-8")
    with (run_dir / "results.csv").open(encoding="utf-8", newline="") as fh:
        return run_dir, list(csv.DictReader(fh))


def test_resume_refuses_a_row_that_is_not_in_the_plan(dummy_models: Callable[..., Path], tmp_path: Path) -> None:
    run_dir, rows = _interrupted_run(dummy_models, tmp_path)
    extra = {**rows[-1], "sample_seq": "7"}  # a 3rd row for a plan of 2 samples
    with (run_dir / "results.csv").open("a", encoding="utf-8", newline="") as fh:
        csv.DictWriter(fh, fieldnames=list(rows[0])).writerow(extra)
    lines = (run_dir / "summaries.jsonl").read_text(encoding="utf-8").splitlines()
    (run_dir / "summaries.jsonl").write_text("\n".join([*lines, lines[-1]]) + "\n", encoding="utf-8")
    before = (run_dir / "results.csv").read_bytes()
    result = run_cli("run", "--resume", run_dir)
    assert_one_line_error(result, "not in the run's plan", "sample_seq 7")
    assert (run_dir / "results.csv").read_bytes() == before  # nothing dropped, nothing added


def test_resume_refuses_a_planned_row_that_holds_another_talk(
    dummy_models: Callable[..., Path], tmp_path: Path
) -> None:
    """sample_seq 0 is planned, but the edited row holds a talk the plan never had at that position: refused
    up front with one line naming the row and the fix, before the run directory is touched (run.json keeps its
    `interrupted`, results.csv its bytes)."""
    run_dir, rows = _interrupted_run(dummy_models, tmp_path)
    rows = [{**rows[0], "talk_id": "ant-codefuse"}]  # one row kept (the 2nd sample is "still to run"), edited
    with (run_dir / "results.csv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = (run_dir / "summaries.jsonl").read_text(encoding="utf-8").splitlines()
    (run_dir / "summaries.jsonl").write_text(lines[0] + "\n", encoding="utf-8")
    before = {name: (run_dir / name).read_bytes() for name in ("results.csv", "summaries.jsonl", "run.json")}
    result = run_cli("run", "--resume", run_dir)
    assert_one_line_error(result, "not in the run's plan", "sample_seq 0", "ant-codefuse", "remove that row")
    assert {name: (run_dir / name).read_bytes() for name in before} == before  # untouched: nothing run or marked
