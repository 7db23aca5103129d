"""harness.results.summary: the tables a run prints at its end, summary.csv and summary_models.csv."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from runfactory import make_run

from harness.results.layout import RunFiles
from harness.results.summary import summarise_run


def test_peak_rss_max_is_the_largest_sample_not_the_largest_talk_mean(tmp_path: Path) -> None:
    run = RunFiles(make_run(tmp_path, "r", talks=("t1", "t2", "t3"), repeats=4, noise=0.05))
    summary = summarise_run(run.dir)
    assert summary is not None
    df = pd.read_csv(run.results_csv)
    per_model = pd.read_csv(run.summary_models_csv).set_index("model")
    for model, rows in df.groupby("model"):
        assert per_model.loc[model, "peak_rss_mb_max"] == pytest.approx(rows["peak_rss_mb"].max(), rel=1e-5)
        assert rows["peak_rss_mb"].max() > rows.groupby("talk_id")["peak_rss_mb"].mean().max()
        talk_means = rows.groupby("talk_id")["rougeL_f"].mean()
        assert per_model.loc[model, "rougeL_f_mean"] == pytest.approx(talk_means.mean(), rel=1e-5)
        assert per_model.loc[model, "rougeL_f_ci_lo"] < talk_means.mean() < per_model.loc[model, "rougeL_f_ci_hi"]
    per_talk = pd.read_csv(run.summary_csv)
    assert {"n", "ttft_s_mean", "ttft_s_median", "ttft_s_stdev", "ttft_s_cv_pct"} <= set(per_talk.columns)
    text = "\n".join(summary.lines())
    assert "Student-t" in text and "degenerate" not in text  # no degenerate column in this run's rows


def test_degenerate_count_and_tokens_per_char_when_the_rows_have_them(tmp_path: Path) -> None:
    run = RunFiles(make_run(tmp_path, "r", models=("m-loop", "m-fine"), talks=("t1", "t2"), repeats=3))
    df = pd.read_csv(run.results_csv, dtype=str, keep_default_na=False)
    df["degenerate"] = ["true"] * 5 + ["false"] + ["false"] * 6  # m-loop: 5 of 6; m-fine: none
    df["tokens_per_char"] = [str(1.5 + 0.5 * (m == "m-fine")) for m in df["model"]]
    df.to_csv(run.results_csv, index=False)
    summary = summarise_run(run.dir)
    assert summary is not None
    per_model = pd.read_csv(run.summary_models_csv).set_index("model")
    assert (per_model.loc["m-loop", "degenerate"], per_model.loc["m-loop", "degenerate_of"]) == (5, 6)
    assert per_model.loc["m-fine", "degenerate"] == 0
    assert per_model.loc["m-loop", "tokens_per_char_mean"] == pytest.approx(1.5)
    assert per_model.loc["m-fine", "tokens_per_char_mean"] == pytest.approx(2.0)
    lines = summary.lines()
    table_row = [line for line in lines if line.startswith("│ m-loop")][-1]  # the per-model table
    assert "5/6" in table_row and "1.50" in table_row
    notes = [line for line in lines if line.startswith("note:")]
    assert len(notes) == 1 and "m-loop: 5/6 outputs degenerate" in notes[0] and "ROUGE" in notes[0]


def test_error_rows_are_counted_not_averaged(tmp_path: Path) -> None:
    run = RunFiles(make_run(tmp_path, "r", models=("m",), talks=("t1",), repeats=2, errors=2))
    summary = summarise_run(run.dir)
    assert summary is not None and summary.error_rows == 2
    assert pd.read_csv(run.summary_csv).loc[0, "n"] == 2
    assert "2 sample(s) failed" in "\n".join(summary.lines())
