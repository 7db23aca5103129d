"""`harness compare`: per-model tables, significance, regression gate, like-for-like warning, formats."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from runfactory import make_run

from harness.cli import main
from harness.report.compare import DEFAULT_METRICS, mean_of_talk_means, verdict, welch_p
from harness.report.compare_output import WARNING_TITLE


def run_cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    rc = main(["compare", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def flagged_rows(out: str) -> list[str]:
    """Table rows (not the footer) whose verdict is REGRESSION."""
    return [line for line in out.splitlines() if "│" in line and "REGRESSION" in line]


def as_json(capsys: pytest.CaptureFixture[str], *argv: object) -> list[dict]:
    rc, out, _ = run_cli(capsys, *argv, "--format", "json")
    assert rc == 0
    return json.loads(out)


def test_identical_model_runs_print_a_table_per_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = make_run(tmp_path, "run-a", seed=1)
    b = make_run(tmp_path, "run-b", seed=2)
    rc, out, _ = run_cli(capsys, a, b)
    assert rc == 0
    for model in ("m-small", "m-large"):
        assert f"{model}: run-b vs baseline run-a" in out
    for metric in DEFAULT_METRICS:
        assert out.count(metric) == 2  # one row per model table
    assert WARNING_TITLE not in out
    assert flagged_rows(out) == []
    assert "Welch" in out and "equal_var=False" in out  # the footer names the test


def test_halved_decode_speed_fails_the_gate_and_names_the_metric(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = make_run(tmp_path, "run-a", seed=1, repeats=3, noise=0.02)
    b = make_run(tmp_path, "run-b", seed=2, repeats=3, noise=0.02, scale={"decode_tok_s": 0.5})
    rc, out, err = run_cli(capsys, a, b, "--fail-on-regression", "10")
    assert rc == 1
    triggered = [line for line in err.splitlines() if "regression:" in line]
    assert len(triggered) == 2  # both models
    assert all("decode_tok_s" in line for line in triggered)
    rows = flagged_rows(out)
    assert len(rows) == 2 and all("decode_tok_s" in r for r in rows)


def test_change_within_noise_passes_the_gate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = make_run(tmp_path, "run-a", seed=1, noise=0.02)
    b = make_run(tmp_path, "run-b", seed=2, noise=0.02, scale={"decode_tok_s": 0.99})
    rc, out, err = run_cli(capsys, a, b, "--fail-on-regression", "10")
    assert rc == 0
    assert "regression" not in err
    assert flagged_rows(out) == []


@pytest.mark.parametrize(
    ("metric", "factor", "fails"),
    [
        ("decode_tok_s", 2.0, False),  # higher is better: faster is an improvement
        ("ttft_s", 1.5, True),  # lower is better: slower first token is a regression
        ("ttft_s", 0.6, False),
        ("peak_rss_mb", 1.3, True),
        ("rougeL_f", 0.7, True),
        ("e2e_s", 1.4, True),
        ("prefill_tok_s", 0.6, True),
    ],
)
def test_direction_of_better_per_metric(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], metric: str, factor: float, fails: bool
) -> None:
    a = make_run(tmp_path, "run-a", seed=1)
    b = make_run(tmp_path, "run-b", seed=2, scale={metric: factor})
    rc, _, err = run_cli(capsys, a, b, "--fail-on-regression", "10")
    assert rc == (1 if fails else 0)
    if fails:
        assert metric in err
    rows = as_json(capsys, a, b, "--metrics", metric)
    assert {r["verdict"] for r in rows} == {"REGRESSION" if fails else "improved"}


def test_significant_change_below_threshold_does_not_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = make_run(tmp_path, "run-a", seed=1, noise=0.005)
    b = make_run(tmp_path, "run-b", seed=2, noise=0.005, scale={"decode_tok_s": 0.95})
    rows = as_json(capsys, a, b, "--metrics", "decode_tok_s")
    assert all(r["significant"] and -7 < r["change_pct"] < -3 for r in rows)
    assert run_cli(capsys, a, b, "--fail-on-regression", "10")[0] == 0
    assert run_cli(capsys, a, b, "--fail-on-regression", "2")[0] == 1


def test_large_change_with_single_samples_is_untested(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = make_run(tmp_path, "run-a", seed=1, repeats=1, talks=("t1",))
    b = make_run(tmp_path, "run-b", seed=2, repeats=1, talks=("t1",), scale={"decode_tok_s": 0.5})
    rc, out, _ = run_cli(capsys, a, b, "--fail-on-regression", "10")
    assert rc == 0
    assert "n/a" in out
    rows = as_json(capsys, a, b, "--metrics", "decode_tok_s")
    assert all(r["p_value"] is None and r["verdict"] == "n/a" and r["change_pct"] < -40 for r in rows)


def test_mismatched_threads_and_cpu_warn_at_the_top(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = make_run(tmp_path, "run-a", seed=1)
    b = make_run(tmp_path, "run-b", seed=2, threads=8, cpu_brand="Other CPU 9000")
    rc, out, _ = run_cli(capsys, a, b)
    assert rc == 0
    assert out.index(WARNING_TITLE) < out.index("m-small: run-b")
    warning = out[out.index(WARNING_TITLE) : out.index("m-large: run-b")]
    assert "threads: run-a=4 vs run-b=8" in warning
    assert "Other CPU 9000" in warning


def test_csv_only_settings_are_checked_without_run_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = make_run(tmp_path, "run-a", seed=1)
    b = make_run(
        tmp_path, "run-b", seed=2, run_json=False, overrides={"n_ctx": 4096, "prompt_sha": "ffffffffffff"}
    )
    rc, out, _ = run_cli(capsys, a / "results.csv", b / "results.csv")
    assert rc == 0
    assert WARNING_TITLE in out
    assert "n_ctx: run-a=8192 vs run-b=4096" in out
    assert "prompt_sha" in out
    assert "run-b: no run.json" in out


def test_models_in_only_one_run_are_listed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = make_run(tmp_path, "run-a", models=("m-shared", "m-old"))
    b = make_run(tmp_path, "run-b", models=("m-shared", "m-new"), seed=3)
    rc, out, _ = run_cli(capsys, a, b)
    assert rc == 0
    assert "only in run-a (not compared): m-old" in out
    assert "only in run-b (not compared): m-new" in out
    rows = as_json(capsys, a, b)
    assert {r["model"] for r in rows} == {"m-shared"}


def test_no_common_model_is_not_a_crash(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = make_run(tmp_path, "run-a", models=("m1",))
    b = make_run(tmp_path, "run-b", models=("m2",))
    rc, out, _ = run_cli(capsys, a, b, "--fail-on-regression", "5")
    assert rc == 0
    assert "nothing to compare" in out


def test_error_rows_are_skipped_and_counted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = make_run(tmp_path, "run-a", seed=1)
    b = make_run(tmp_path, "run-b", seed=2, errors=2)
    rc, out, _ = run_cli(capsys, a, b)
    assert rc == 0
    assert "run-b: skipped 2 error row(s)" in out
    rows = as_json(capsys, a, b, "--metrics", "decode_tok_s")
    assert {r["n_new"] for r in rows} == {6}  # 2 talks x 3 repeats; error rows left out


def test_formats_parse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = make_run(tmp_path, "run-a", seed=1)
    b = make_run(tmp_path, "run-b", seed=2, threads=8)
    n_rows = 2 * len(DEFAULT_METRICS)

    rc, out, err = run_cli(capsys, a, b, "--format", "json")
    rows = json.loads(out)
    assert rc == 0 and len(rows) == n_rows
    assert {"model", "metric", "baseline", "new", "change_pct", "p_value", "verdict"} <= rows[0].keys()
    assert WARNING_TITLE in err  # warnings leave stdout machine-readable

    rc, out, err = run_cli(capsys, a, b, "--format", "csv")
    df = pd.read_csv(io.StringIO(out))
    assert rc == 0 and len(df) == n_rows
    assert set(df["metric"]) == set(DEFAULT_METRICS)
    assert np.allclose(df["change_pct"], [r["change_pct"] for r in rows])
    assert WARNING_TITLE in err

    rc, out, _ = run_cli(capsys, a, b, "--format", "md")
    assert rc == 0
    assert out.index(WARNING_TITLE) < out.index("## ")
    table = [line for line in out.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header[:4] == ["metric", "better", "baseline", "new"]
    body = [line for line in table if not line.startswith("| metric")]
    assert len(body) == n_rows
    assert all(len(line.strip("|").split("|")) == len(header) for line in body)


def test_bare_csv_and_metric_selection(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = make_run(tmp_path, "run-a", seed=1, run_json=False, summaries=False)
    b = make_run(tmp_path, "run-b", seed=2, run_json=False, summaries=False)
    rows = as_json(capsys, a / "results.csv", b / "results.csv", "--metrics", "itl_p99_ms,rouge1_f", "load_s")
    assert [r["metric"] for r in rows[:3]] == ["itl_p99_ms", "rouge1_f", "load_s"]
    assert {r["run"] for r in rows} == {"run-b"}  # label from the run_id column


def test_old_csv_without_optional_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.results.schema import REQUIRED_COLUMNS

    a = make_run(tmp_path, "run-a", seed=1, columns=REQUIRED_COLUMNS)
    b = make_run(tmp_path, "run-b", seed=2, provider="")  # a provider left blank joins on model alone
    rows = as_json(capsys, a, b)
    assert len(rows) == 2 * len(DEFAULT_METRICS)
    assert all(r["n_baseline"] == r["n_new"] == 6 for r in rows)


def test_same_model_on_different_providers_is_not_matched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = make_run(tmp_path, "run-a", seed=1, models=("m1",), provider="CPUExecutionProvider")
    b = make_run(tmp_path, "run-b", seed=2, models=("m1",), provider="CUDAExecutionProvider")
    rc, out, _ = run_cli(capsys, a, b)
    assert rc == 0
    assert "only in run-a (not compared): m1 [CPUExecutionProvider]" in out
    assert "only in run-b (not compared): m1 [CUDAExecutionProvider]" in out


def test_three_runs_compare_each_to_the_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = make_run(tmp_path, "run-a", seed=1)
    b = make_run(tmp_path, "run-b", seed=2)
    c = make_run(tmp_path, "run-c", seed=3, scale={"e2e_s": 2.0})
    rc, _, err = run_cli(capsys, a, b, c, "--fail-on-regression", "10")
    assert rc == 1
    assert "in run-c vs run-a" in err and "run-b vs" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--metrics", "decod_tok_s"], 'Did you mean "decode_tok_s"'),
        (["--alpha", "1.5"], "--alpha"),
        (["--fail-on-regression", "-3"], "negative"),
    ],
)
def test_user_mistakes_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    a = make_run(tmp_path, "run-a", seed=1)
    b = make_run(tmp_path, "run-b", seed=2)
    rc, _, err = run_cli(capsys, a, b, *argv)
    assert rc == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_missing_or_malformed_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = make_run(tmp_path, "run-a", seed=1)
    rc, _, err = run_cli(capsys, a, tmp_path / "nope")
    assert rc == 2 and "no such run directory" in err
    rc, _, err = run_cli(capsys, a)
    assert rc == 2 and "at least two runs" in err
    bad = tmp_path / "bad.csv"
    bad.write_text("model,talk_id\nm,t\n", encoding="utf-8")
    rc, _, err = run_cli(capsys, a, bad)
    assert rc == 2 and "missing required column" in err


def test_welch_p_and_verdict_rules() -> None:
    assert welch_p(np.array([1.0]), np.array([1.0, 2.0])) is None
    assert welch_p(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 1.0
    assert welch_p(np.array([1.0, 1.0]), np.array([2.0, 2.0])) == 0.0
    assert verdict("higher", -20.0, 0.01, 0.05, 10) == "REGRESSION"
    assert verdict("lower", -20.0, 0.01, 0.05, 10) == "improved"
    assert verdict("lower", 20.0, 0.2, 0.05, 10) == "ok"  # not significant
    assert verdict("lower", 8.0, 0.001, 0.05, 10) == "ok"  # within threshold
    assert verdict("", 50.0, 0.001, 0.05, 10) == "n/a"  # no direction known


def test_model_value_weights_talks_equally() -> None:
    # Four repeats of a fast talk must not outweigh one repeat of a slow one.
    df = pd.DataFrame({"talk_id": ["t1"] * 4 + ["t2"], "x": [1.0, 1.0, 1.0, 1.0, 3.0]})
    assert mean_of_talk_means(df, "x") == pytest.approx(2.0)
