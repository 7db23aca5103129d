"""Sweeps and long documents through the real runner (in-process workers, the model-free dummy backend)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.corpus import load_corpus
from harness.errors import HarnessError
from harness.launchers.session import in_process_launcher
from harness.run import RunConfig, Runner

REPO = Path(__file__).resolve().parent.parent
TALKS = ["alibaba-qwen", "qualcomm-npu"]


@pytest.fixture
def dummy_models(write_models, dummy_model_file: Path) -> Path:
    def entry(model_id: str) -> str:
        return (
            f"- id: {model_id}\n  backend: dummy\n  quant: none\n  n_ctx: 4096\n  prompt_style: chat\n"
            f"  source: {{kind: path, path: {dummy_model_file}}}\n  flags: {{tok_per_s: 5000}}\n"
        )

    return write_models(entry("dummy-a") + entry("dummy-b"))


def _run(cfg: RunConfig) -> tuple[Path, pd.DataFrame, dict]:
    run_dir, errors = Runner(cfg, echo=lambda _line: None, launcher_factory=in_process_launcher).run()
    assert errors == 0
    df = pd.read_csv(run_dir / "results.csv", dtype=str, keep_default_na=False)
    return run_dir, df, json.loads((run_dir / "run.json").read_text(encoding="utf-8"))


def _cfg(models_file: Path, out: Path, **kw) -> RunConfig:
    base = {"models": ["dummy-a"], "models_file": models_file, "out": out, "talks": TALKS, "measure_bandwidth": False}
    return RunConfig(**{**base, **kw})


def test_sweep_runs_the_cartesian_product_with_config_columns(dummy_models: Path, tmp_path: Path) -> None:
    cfg = _cfg(dummy_models, tmp_path, sweep={"threads": [1, 2], "max_new_tokens": [8, 16]})
    run_dir, df, record = _run(cfg)
    assert len(df) == 4 * len(TALKS) and (df["status"] == "ok").all()
    assert df["config_id"].nunique() == 4
    combos = set(zip(df["threads"], df["max_new_tokens"], strict=True))
    assert combos == {("1", "8"), ("1", "16"), ("2", "8"), ("2", "16")}
    assert set(df["sweep"]) == {f"max_new_tokens={m} threads={t}" for t, m in combos}
    assert (df["output_tokens"] == df["max_new_tokens"]).all()  # each config's cap took effect
    # A model's configs alternate sample by sample (all four workers loaded), talks round-robin.
    assert df["sample_seq"].tolist() == [str(i) for i in range(8)]
    assert df["talk_id"].tolist() == [TALKS[0]] * 4 + [TALKS[1]] * 4
    assert df["config_id"].iloc[:4].nunique() == 4
    config = record["config"]
    assert config["sweep"] == {"max_new_tokens": [8, 16], "threads": [1, 2]}
    assert {c["config_id"] for c in config["configs"]} == set(df["config_id"])
    assert [s[2] for s in config["order"]["samples"]] == df["config_id"].tolist()
    # summary.csv and summary_models.csv group by model x config
    per_model = pd.read_csv(run_dir / "summary_models.csv", dtype=str)
    assert len(per_model) == 4 and set(per_model["config_id"]) == set(df["config_id"])
    assert len(pd.read_csv(run_dir / "summary.csv")) == 4 * len(TALKS)


def test_interleave_alternates_models(dummy_models: Path, tmp_path: Path) -> None:
    _, df, record = _run(_cfg(dummy_models, tmp_path, models=["dummy-a", "dummy-b"], interleave=True, repeats=2))
    assert df["model"].tolist() == ["dummy-a", "dummy-b", "dummy-b", "dummy-a"] * 2
    assert df["repeat"].tolist() == ["0"] * 4 + ["1"] * 4
    assert record["config"]["order"]["mode"] == "interleaved"


def test_default_order_is_models_in_turn_round_robin(dummy_models: Path, tmp_path: Path) -> None:
    _, df, record = _run(_cfg(dummy_models, tmp_path, models=["dummy-a", "dummy-b"], repeats=2))
    assert df["model"].tolist() == ["dummy-a"] * 4 + ["dummy-b"] * 4
    assert df["talk_id"].tolist() == TALKS * 4
    assert record["config"]["order"]["mode"] == "round-robin"


def test_impossible_combination_is_skipped_and_named(dummy_models: Path, tmp_path: Path) -> None:
    cfg = _cfg(dummy_models, tmp_path, max_new_tokens=16, sweep={"min_new_tokens": [0, 32]})
    _, df, record = _run(cfg)
    assert set(df["min_new_tokens"]) == {"0"} and len(df) == len(TALKS)
    (skipped,) = record["config"]["skipped_configs"]
    assert "--min-new-tokens 32 is above --max-new-tokens 16" in skipped["reason"]
    assert any("--min-new-tokens 32" in w for w in record["warnings"])


def test_nothing_runnable_is_one_line_error(dummy_models: Path, tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match=r"nothing can run: .*n_ctx 64") as err:
        Runner(_cfg(dummy_models, tmp_path, n_ctx=64, sweep={"max_new_tokens": [64, 128]}))
    assert "\n" not in str(err.value)


def test_provider_on_a_backend_without_providers_names_it(dummy_models: Path, tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="backend dummy, which has no execution providers"):
        Runner(_cfg(dummy_models, tmp_path, provider="qnn"))


def test_threads_above_usable_cores_warn_in_run_json(dummy_models: Path, tmp_path: Path) -> None:
    from harness.threads import usable_cpus

    threads = usable_cpus() + 1
    _, df, record = _run(_cfg(dummy_models, tmp_path, threads=threads, talks=TALKS[:1]))
    assert df["threads"].tolist() == [str(threads)]
    assert any(f"--threads {threads} is more than" in w for w in record["warnings"])
    assert record["config"]["threads"] == threads


def test_overrides_are_recorded_in_run_json(dummy_models: Path, tmp_path: Path) -> None:
    _, _, record = _run(_cfg(dummy_models, tmp_path, n_ctx=2048, talks=TALKS[:1], max_new_tokens=8))
    config = record["config"]
    assert config["n_ctx"] == 2048 and config["max_new_tokens"] == 8 and config["corpus"] == "builtin:talks"
    assert {"n_gpu_layers", "provider", "flash_attn", "long_strategy"} <= set(config)


@pytest.mark.parametrize("strategy", ["map-reduce", "refine"])
def test_long_document_strategies_keep_the_whole_document(strategy: str, dummy_models: Path, tmp_path: Path) -> None:
    # The dummy tokenizer is one token per character: a 2.2k-character report needs several 1k chunks.
    cfg = _cfg(dummy_models, tmp_path, corpus="summit-reports", talks=[], n_ctx=1024, max_new_tokens=32,
               long_strategy=strategy)
    _, df, record = _run(cfg)
    lengths = {d.id: len(d.text) for d in load_corpus("summit-reports")}
    assert (df["status"] == "ok").all() and len(df) == 2
    assert (df["long_strategy"] == strategy).all() and (df["truncated"] == "false").all()
    chunks, stages = df["chunks"].astype(int), df["stages"].astype(int)
    assert (chunks > 1).all() and (stages > 1).all()
    assert (stages == (chunks + 1 if strategy == "map-reduce" else chunks)).all()
    for _, row in df.iterrows():
        timings = json.loads(row["stage_timings"])
        assert len(timings) == int(row["stages"])
        assert int(row["prompt_tokens"]) == timings[0][1]  # headline figures are the first stage's
        assert int(row["total_prompt_tokens"]) == sum(t[1] for t in timings)
        assert float(row["e2e_s"]) >= sum(t[4] for t in timings) * 0.99  # e2e covers every stage
        assert all(t[1] <= 1024 - 32 for t in timings)  # every stage fits n_ctx - max_new_tokens
        assert int(row["input_chars"]) == lengths[row["talk_id"]]  # the whole document went in
    assert float(df["rougeL_f"].iloc[0]) >= 0  # scored against the report references
    assert {"map.zh.chat.txt", "reduce.zh.chat.txt", "refine.zh.chat.txt"} <= set(record["prompts"])


def test_truncate_strategy_marks_long_reports_truncated(dummy_models: Path, tmp_path: Path) -> None:
    cfg = _cfg(dummy_models, tmp_path, corpus="summit-reports", talks=[], n_ctx=1024, max_new_tokens=32)
    _, df, _ = _run(cfg)
    assert (df["truncated"] == "true").all() and (df["long_strategy"] == "truncate").all()
    assert (df["rouge1_f"] != "").all()


def test_long_strategy_on_a_document_that_fits_is_one_call(dummy_models: Path, tmp_path: Path) -> None:
    cfg = _cfg(dummy_models, tmp_path, talks=TALKS[:1], max_new_tokens=16, long_strategy="map-reduce")
    _, df, _ = _run(cfg)
    assert df["chunks"].tolist() == ["1"] and df["stages"].tolist() == ["1"] and df["truncated"].tolist() == ["false"]


def test_cli_dry_run_prints_the_plan_and_runs_nothing(dummy_models: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--models-file", str(dummy_models), "--models", "dummy-a,dummy-b",
         "--threads", "1-2+1", "--max-new-tokens", "16,32", "--talks", ",".join(TALKS), "--dry-run", "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert "4 config(s) x 2 model(s) x 2 document(s) x 1 repeat(s) = 16 samples" in proc.stdout
    assert "dry run: nothing was run" in proc.stdout
    assert not out.exists()


def test_compare_and_report_group_by_config(dummy_models: Path, tmp_path: Path) -> None:
    from harness.report.build import sweep_figures
    from harness.report.compare import compare_runs
    from harness.report.data import collect_samples
    from harness.report.load import load_run

    run_dir, df, _ = _run(_cfg(dummy_models, tmp_path, sweep={"threads": [1, 2]}, max_new_tokens=8))
    run = load_run(run_dir)
    comp = compare_runs(run, run, ["decode_tok_s"])
    assert sorted(r.model_label for r in comp.rows) == ["dummy-a [threads=1]", "dummy-a [threads=2]"]
    assert {r.config_id for r in comp.rows} == set(df["config_id"]) and {r.provider for r in comp.rows} == {"dummy"}
    samples, order = collect_samples([run])
    assert order == ["dummy-a [threads=1]", "dummy-a [threads=2]"]
    (figure,) = sweep_figures(samples)
    assert figure.slug == "report-sweep-threads" and figure.png is not None
