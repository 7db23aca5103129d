"""`harness compare`: per-model tables, paired tests with Holm correction, the regression gate and its exit
codes, like-for-like warning, formats."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from runfactory import make_run as _make_run

from harness.cli import main
from harness.commands.compare import EXIT_NOTHING_COMPARABLE, EXIT_REGRESSION
from harness.report import compare_output
from harness.report.compare import DEFAULT_METRICS, NOT_COMPARABLE, paired_change, verdict, within_talk_change
from harness.report.compare_output import WARNING_TITLE
from harness.report.load import Run, load_run
from harness.results.record import RunRecord
from harness.scoring.stats import holm

# Five talks, as the built-in corpus has: the paired test has talks - 1 degrees of freedom.
TALKS = ("t1", "t2", "t3", "t4", "t5")
# The committed baseline of 2026-11 (SmolLM2 + Gemma, schema 1, 3 repeats): a fixed run.json and rows, so these
# tests do not change each time results/baseline is re-recorded.
BASELINE = Path(__file__).resolve().parent / "data" / "baseline-2026-11"


def make_run(root: Path, run_id: str = "run-a", **kw: object) -> Path:
    kw.setdefault("talks", TALKS)
    return _make_run(root, run_id, **kw)  # type: ignore[arg-type]


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
    assert "paired t-test" in out and "Holm-Bonferroni over the 12 test(s)" in out  # the footer names them


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


def test_large_change_with_single_samples_is_untested_and_the_gate_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = make_run(tmp_path, "run-a", seed=1, repeats=1, talks=("t1",))
    b = make_run(tmp_path, "run-b", seed=2, repeats=1, talks=("t1",), scale={"decode_tok_s": 0.5})
    rc, out, err = run_cli(capsys, a, b, "--fail-on-regression", "10")
    assert rc == EXIT_NOTHING_COMPARABLE
    assert "n/a" in out
    assert err.strip().splitlines() == [
        "harness compare: failing: nothing comparable: no metric of run-b vs run-a could be tested (one "
        "shared talk with fewer than 2 repeats a side, or no values)"
    ]
    rows = as_json(capsys, a, b, "--metrics", "decode_tok_s")
    assert all(r["p_value"] is None and r["verdict"] == "n/a" and r["change_pct"] < -40 for r in rows)


def test_one_shared_talk_uses_a_within_talk_welch_test(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = make_run(tmp_path, "run-a", seed=1, repeats=4, talks=("t1",), noise=0.02)
    b = make_run(tmp_path, "run-b", seed=2, repeats=4, talks=("t1",), noise=0.02, scale={"decode_tok_s": 0.7})
    rows = as_json(capsys, a, b, "--metrics", "decode_tok_s,rougeL_f")
    decode = [r for r in rows if r["metric"] == "decode_tok_s"]
    assert all(r["test"] == "Welch t-test" and r["talks"] == 1 and r["verdict"] == "REGRESSION" for r in decode)
    assert all(r["change_ci_lo"] < r["change_pct"] < r["change_ci_hi"] < 0 for r in decode)
    # ROUGE is one value per talk: its repeats are copies, not evidence, so one talk gets no test.
    rouge = [r for r in rows if r["metric"] == "rougeL_f"]
    assert all(r["p_value"] is None and "deterministic" in r["note"] for r in rouge)


def test_mismatched_threads_and_cpu_warn_at_the_top_and_withhold_verdicts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = make_run(tmp_path, "run-a", seed=1)
    b = make_run(tmp_path, "run-b", seed=2, threads=8, cpu_brand="Other CPU 9000", scale={"ttft_s": 1.5})
    rc, out, _ = run_cli(capsys, a, b)
    assert rc == 0
    assert out.index(WARNING_TITLE) < out.index("m-small: run-b")
    warning = out[out.index(WARNING_TITLE) : out.index("m-large: run-b")]
    assert "threads: run-a=4 vs run-b=8" in warning
    assert "Other CPU 9000" in warning
    assert flagged_rows(out) == []
    assert {r["verdict"] for r in as_json(capsys, a, b)} == {NOT_COMPARABLE}
    # The gate cannot vouch for runs it may not judge: its own exit code and one line.
    rc, _, err = run_cli(capsys, a, b, "--fail-on-regression", "10")
    assert rc == EXIT_NOTHING_COMPARABLE
    assert len(err.strip().splitlines()) == 1 and "not like-for-like" in err and "--force" in err
    # --force judges anyway.
    rc, _, err = run_cli(capsys, a, b, "--fail-on-regression", "10", "--force")
    assert rc == EXIT_REGRESSION and "ttft_s" in err
    assert "REGRESSION" in {r["verdict"] for r in as_json(capsys, a, b, "--force")}


def test_code_differences_are_listed_but_do_not_block(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = make_run(tmp_path, "run-a", seed=1)
    b = make_run(tmp_path, "run-b", seed=2, scale={"e2e_s": 2.0})
    for run, commit, version in ((a, None, "0.3.36"), (b, "fedcba987654", "0.3.99")):
        record = RunRecord.load(run)
        record.git_commit = commit or record.git_commit
        record.environment.packages["llama-cpp-python"] = version
        (run / "run.json").write_text(record.to_json(), encoding="utf-8")
    rc, out, err = run_cli(capsys, a, b, "--fail-on-regression", "10")
    assert rc == EXIT_REGRESSION and "e2e_s" in err
    assert WARNING_TITLE not in out
    assert "git commit: run-a=0123456789ab vs run-b=fedcba987654" in out
    assert "llama-cpp-python: run-a=0.3.36 vs run-b=0.3.99" in out


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


def test_no_common_model_fails_the_gate_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = make_run(tmp_path, "run-a", models=("m1",))
    b = make_run(tmp_path, "run-b", models=("m2",))
    rc, out, err = run_cli(capsys, a, b)
    assert rc == 0 and "nothing to compare" in out  # without the gate: a report, not a failure
    rc, out, err = run_cli(capsys, a, b, "--fail-on-regression", "5")
    assert rc == EXIT_NOTHING_COMPARABLE
    assert err.strip().splitlines() == [
        "harness compare: failing: nothing comparable: no model is in both run-a (m1) and run-b (m2)"
    ]
    rc, out, err = run_cli(capsys, a, b, "--fail-on-regression", "5", "--format", "json")
    assert rc == EXIT_NOTHING_COMPARABLE and json.loads(out) == []


def test_only_error_rows_fail_the_gate_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = make_run(tmp_path, "run-a", models=("m1",))
    b = make_run(tmp_path, "run-b", models=("m1",), overrides={"status": "error", "error": "RuntimeError: x"})
    rc, _, err = run_cli(capsys, a, b, "--fail-on-regression", "5")
    assert rc == EXIT_NOTHING_COMPARABLE
    assert err.strip().splitlines() == [
        "harness compare: failing: nothing comparable: run-b has only error rows (15)"
    ]


def test_error_rows_are_skipped_and_counted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = make_run(tmp_path, "run-a", seed=1)
    b = make_run(tmp_path, "run-b", seed=2, errors=2)
    rc, out, _ = run_cli(capsys, a, b)
    assert rc == 0
    assert "run-b: skipped 2 error row(s)" in out
    rows = as_json(capsys, a, b, "--metrics", "decode_tok_s")
    assert {r["n_new"] for r in rows} == {15}  # 5 talks x 3 repeats; error rows left out


def test_formats_parse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = make_run(tmp_path, "run-a", seed=1)
    b = make_run(tmp_path, "run-b", seed=2, threads=8)
    n_rows = 2 * len(DEFAULT_METRICS)

    rc, out, err = run_cli(capsys, a, b, "--format", "json")
    rows = json.loads(out)
    assert rc == 0 and len(rows) == n_rows
    assert {"model", "metric", "baseline", "new", "change_pct", "p_value", "verdict"} <= rows[0].keys()
    assert {"change_ci_lo", "change_ci_hi", "test", "p_holm", "talks"} <= rows[0].keys()
    assert {r["test"] for r in rows} == {"paired t-test"}
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
    assert all(r["n_baseline"] == r["n_new"] == 15 for r in rows)


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


def test_verdict_rules() -> None:
    assert verdict("higher", -20.0, 0.01, 0.05, 10) == "REGRESSION"
    assert verdict("lower", -20.0, 0.01, 0.05, 10) == "improved"
    assert verdict("lower", 20.0, 0.2, 0.05, 10) == "ok"  # not significant
    assert verdict("lower", 8.0, 0.001, 0.05, 10) == "ok"  # within threshold
    assert verdict("", 50.0, 0.001, 0.05, 10) == "n/a"  # no direction known


def test_paired_change_is_the_mean_ratio_and_its_test() -> None:
    from scipy import stats

    base = np.array([1.0, 2.0, 4.0, 8.0])
    new = base * np.array([1.10, 1.08, 1.12, 1.06])
    change = paired_change(base, new)
    assert change.change_pct == pytest.approx(9.0)
    ratios = new / base
    assert change.p_value == pytest.approx(stats.ttest_1samp(ratios - 1, 0).pvalue)
    lo, hi = stats.t.interval(0.95, 3, loc=ratios.mean() - 1, scale=stats.sem(ratios))
    assert (change.lo, change.hi) == (pytest.approx(100 * lo), pytest.approx(100 * hi))
    # Identical talk values (a deterministic metric, unchanged): no change, p = 1.
    same = paired_change(base, base.copy())
    assert same.change_pct == 0 and same.p_value == 1.0
    # The same nonzero change on every talk has no spread: not a certainty, no test.
    assert paired_change(base, base * 1.5).p_value is None


def test_within_talk_change_never_calls_two_constants_certain() -> None:
    assert within_talk_change(np.array([1.0]), np.array([1.0, 2.0])).p_value is None
    assert within_talk_change(np.array([1.0, 1.0]), np.array([1.0, 1.0])).p_value == 1.0
    different = within_talk_change(np.array([1.0, 1.0]), np.array([2.0, 2.0]))
    assert different.p_value is None and different.change_pct == pytest.approx(100.0)


def test_holm_adjustment() -> None:
    # Hand-computed: sorted 0.01, 0.03, 0.04 -> 3 x 0.01, 2 x 0.03, max(0.06, 1 x 0.04).
    assert holm([0.04, 0.01, None, 0.03]) == [pytest.approx(0.06), pytest.approx(0.03), None, pytest.approx(0.06)]
    assert holm([0.2, 0.01]) == [pytest.approx(0.2), pytest.approx(0.02)]
    assert holm([0.5, 0.9]) == [1.0, 1.0]  # capped at 1
    assert holm([]) == []


def test_mostly_degenerate_outputs_get_a_note(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = make_run(tmp_path, "run-a", seed=1, models=("m1",))
    b = make_run(tmp_path, "run-b", seed=2, models=("m1",), overrides={"degenerate": "true"})
    _, out, _ = run_cli(capsys, a, b)
    assert "m1: 15/15 outputs degenerate in run-b" in out
    assert "degenerate in run-a" not in out  # the column is empty there (an older run): no claim


# --- acceptance: a real regression is caught, noise is not -------------------------------------------


def _shifted(baseline: Run, name: str, seed: int, factor: float) -> Run:
    """The baseline run with each TTFT sample x factor plus the baseline's own within-talk noise."""
    df = baseline.results.copy()
    rng = np.random.default_rng(seed)
    sd = df.groupby(["model", "talk_id"])["ttft_s"].transform("std")
    df["ttft_s"] = df["ttft_s"] * factor + rng.standard_normal(len(df)) * sd
    df["run_id"] = name
    assert baseline.record is not None
    record = RunRecord.from_dict(baseline.record.to_dict())
    record.run_id = name
    return Run(label=name, path=baseline.path, results=df, record=record)


def _gate(baseline: Run, other: Run) -> list[str]:
    result = compare_output.build(
        [baseline, other], DEFAULT_METRICS, alpha=0.05, threshold_pct=5.0
    )
    return compare_output.regression_lines(result)


def test_ttft_8pct_slower_on_every_talk_is_caught_and_noise_is_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = load_run(BASELINE)
    caught = [_gate(baseline, _shifted(baseline, f"slow-{s}", s, 1.08)) for s in range(20)]
    # Every failing gate names TTFT and nothing else; with 5 talks x 3 repeats and Holm over the 12 default
    # tests the paired test catches it on 12 of these 20 seeds (pooled Welch, the old test: on none).
    assert all(line.split()[2] == "ttft_s" for lines in caught for line in lines)
    assert sum(bool(lines) for lines in caught) >= 10
    noise = [_gate(baseline, _shifted(baseline, f"same-{s}", s, 1.0)) for s in range(20)]
    assert sum(not lines for lines in noise) >= 19

    # Through the CLI: the run written to disk, the exit code and the message.
    seed = next(s for s, lines in enumerate(caught) if lines)
    slow = _shifted(baseline, "slow", seed, 1.08)
    run_dir = tmp_path / "slow"
    run_dir.mkdir()
    slow.results.to_csv(run_dir / "results.csv", index=False)
    assert slow.record is not None
    (run_dir / "run.json").write_text(slow.record.to_json(), encoding="utf-8")
    rc, _, err = run_cli(capsys, BASELINE, run_dir, "--fail-on-regression", "5")
    assert rc == EXIT_REGRESSION
    assert "ttft_s" in err and "paired t-test" in err


def test_model_value_weights_talks_equally() -> None:
    from harness.results.aggregate import mean_of_talk_means

    # Four repeats of a fast talk must not outweigh one repeat of a slow one.
    df = pd.DataFrame({"talk_id": ["t1"] * 4 + ["t2"], "x": [1.0, 1.0, 1.0, 1.0, 3.0]})
    assert mean_of_talk_means(df, "x") == pytest.approx(2.0)
