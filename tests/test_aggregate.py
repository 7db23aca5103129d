"""harness.results.aggregate: the one aggregation behind summary.csv, score, compare and report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness.results import aggregate
from harness.scoring.stats import t_interval


def rows(**columns: list[object]) -> pd.DataFrame:
    return pd.DataFrame(columns)


def test_talks_weigh_equally_whatever_their_repeats() -> None:
    df = rows(
        model=["m"] * 5,
        talk_id=["t1"] * 4 + ["t2"],
        status=["ok"] * 5,
        x=["1", "1", "1", "1", "3"],  # read as text, as compare/report/summary read results.csv
    )
    stats = aggregate.group_metrics(df, ["x"])[("m",)]["x"]
    assert stats.mean == pytest.approx(2.0)  # (1 + 3) / 2, not 7 / 5
    assert stats.talks == 2 and stats.samples == 5 and stats.max == 3.0
    assert aggregate.mean_of_talk_means(df, "x") == pytest.approx(2.0)


def test_only_ok_rows_count_and_blanks_are_skipped() -> None:
    df = rows(
        model=["m"] * 4,
        talk_id=["t1", "t1", "t2", "t2"],
        status=["ok", "error", "ok", "ok"],
        x=[1.0, 100.0, np.nan, 5.0],
    )
    means = aggregate.talk_means(df, ["x"])
    assert means["n"].tolist() == [1, 2]  # ok rows per talk
    assert means["x"].tolist() == [1.0, 5.0]
    assert aggregate.group_metrics(df, ["x"])[("m",)]["x"].samples == 2


def test_interval_is_student_t_over_talk_means() -> None:
    rng = np.random.default_rng(0)
    talks = [f"t{i}" for i in range(5) for _ in range(3)]
    x = rng.normal(10, 1, len(talks))
    df = rows(model=["m"] * len(talks), talk_id=talks, status=["ok"] * len(talks), x=list(x))
    talk_means = pd.Series(x).groupby(talks).mean().to_numpy()
    assert aggregate.group_metrics(df, ["x"])[("m",)]["x"].ci == t_interval(talk_means)


def test_grouping_keys_are_a_parameter() -> None:
    # A config_id column (sweeps) joins the key without another aggregation.
    df = rows(
        model=["m", "m", "m", "m"],
        config_id=["a", "a", "b", "b"],
        talk_id=["t1", "t2", "t1", "t2"],
        status=["ok"] * 4,
        x=[1.0, 3.0, 10.0, 30.0],
    )
    by = ("model", "config_id")
    stats = aggregate.group_metrics(df, ["x"], by=by)
    assert list(stats) == [("m", "a"), ("m", "b")] == aggregate.groups(df, by)
    assert stats[("m", "a")]["x"].mean == pytest.approx(2.0) and stats[("m", "b")]["x"].mean == pytest.approx(20.0)
    per_talk = aggregate.per_talk_stats(df, ["x"], by=by)
    assert list(per_talk.columns[:4]) == ["model", "config_id", "talk_id", "n"]


def test_flags_count_as_true_out_of_samples() -> None:
    df = rows(
        model=["m"] * 4,
        talk_id=["t1", "t1", "t2", "t2"],
        status=["ok"] * 4,
        degenerate=["true", "false", "true", ""],
    )
    flag = aggregate.group_metrics(df, ["degenerate"])[("m",)]["degenerate"]
    assert (flag.total, flag.samples) == (2.0, 3)


def test_values_reads_numbers_flags_and_blanks() -> None:
    out = aggregate.values(rows(x=[True, "false", "", "7.5", "n/a", None]), "x")
    assert out.iloc[:2].tolist() == [1.0, 0.0] and out.iloc[3] == 7.5
    assert out.iloc[[2, 4, 5]].isna().all()
    assert aggregate.values(rows(y=[1]), "missing").isna().all()


def test_per_talk_stats_for_summary_csv() -> None:
    df = rows(model=["m"] * 3, talk_id=["t1"] * 3, status=["ok"] * 3, x=[1.0, 2.0, 3.0])
    r = aggregate.per_talk_stats(df, ["x"]).iloc[0]
    assert (r["n"], r["x_mean"], r["x_median"], r["x_stdev"]) == (3, 2.0, 2.0, 1.0)
    assert r["x_cv_pct"] == pytest.approx(50.0)


def test_frames_without_status_count_every_row() -> None:
    # `harness score` rows have no status column: all of them were scored.
    df = rows(model=["m", "m"], talk_id=["t1", "t2"], x=[0.2, 0.4])
    assert aggregate.group_metrics(df, ["x"])[("m",)]["x"].mean == pytest.approx(0.3)
