"""End-to-end smoke run of the real CLI with the generated tiny-qwen2 GGUF over all talks (llama.cpp)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.corpus import load_corpus
from harness.results.schema import COLUMNS

pytest.importorskip("llama_cpp")


def harness_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness", *args]


TIMING = ["load_s", "ttft_s", "prefill_tok_s", "decode_tok_s", "e2e_s", "peak_rss_mb"]
QUALITY = ["rouge1_f", "rouge2_f", "rougeL_f"]


def _run(tmp_path: Path, env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path / "runs"
    proc = subprocess.run(
        harness_cmd(
            "run",
            "--models",
            "tiny-qwen2",
            "--out",
            str(out),
            "--max-new-tokens",
            "32",
            "--no-bandwidth",
            *args,
        ),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    run_dir = Path(proc.stdout.strip().splitlines()[-1])  # the last line printed is the run directory
    assert run_dir.parent == out and run_dir.is_dir()
    return proc, run_dir


def test_smoke_run_writes_one_row_per_talk(tmp_path: Path, cli_env: dict[str, str]) -> None:
    proc, run_dir = _run(tmp_path, cli_env)
    df = pd.read_csv(run_dir / "results.csv")
    talks = [t.id for t in load_corpus()]
    assert all(f"{talk} r0:" in proc.stdout for talk in talks)  # a progress line per sample
    assert "per model" in proc.stdout
    assert list(df.columns) == list(COLUMNS)
    assert sorted(df["talk_id"]) == sorted(talks) and len(df) == 5
    assert (df["status"] == "ok").all(), df["error"].tolist()
    assert df[TIMING + QUALITY].notna().all().all()
    assert (df[TIMING] > 0).all().all()
    assert ((df[QUALITY] >= 0) & (df[QUALITY] <= 1)).all().all()
    # the engine evaluated exactly the prompt we measured: no hidden prefix reuse
    assert (df["engine_prompt_tokens"] == df["prompt_tokens"]).all()
    assert (df["provider"] == "llama.cpp CPU").all() and (df["backend"] == "llama_cpp").all()
    summaries = [
        json.loads(line) for line in (run_dir / "summaries.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert [s["talk_id"] for s in summaries] == df["talk_id"].tolist()
    assert all(len(s["references"]) >= 2 for s in summaries)
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert run["config"]["models"] == ["tiny-qwen2"]
    assert run["environment"]["cores_logical"] >= 1 and run["environment"]["llama_cpp_system_info"]
    assert len(run["models"]["tiny-qwen2"]["sha256"]) == 64
    assert run["prompts"] == {"summarize.zh.chat.txt": df["prompt_sha"].iloc[0]}
    assert run["overhead"]["wall_s"] >= run["overhead"]["engine_s"] > 0
    assert (run_dir / "summary.csv").is_file()
    per_model = pd.read_csv(run_dir / "summary_models.csv")
    assert per_model.loc[0, "model"] == "tiny-qwen2" and per_model.loc[0, "talks"] == 5
    assert per_model.loc[0, "rougeL_f_ci_lo"] <= per_model.loc[0, "rougeL_f_mean"] <= per_model.loc[0, "rougeL_f_ci_hi"]


def test_repeats_do_not_reuse_the_prompt_cache(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """llama-cpp-python would skip prefill on a repeat of the same prompt; each repeat must prefill fully."""
    _, run_dir = _run(tmp_path, cli_env, "--talks", "alibaba-qwen", "--repeats", "3", "--warmup", "1")
    df = pd.read_csv(run_dir / "results.csv")
    assert df["repeat"].tolist() == [0, 1, 2]
    # Without the reset, llama.cpp's prompt-eval count on a repeat is 1 (one replayed token), not the prompt.
    assert (df["engine_prompt_tokens"] == df["prompt_tokens"]).all()
    summary = pd.read_csv(run_dir / "summary.csv")
    assert summary.loc[0, "n"] == 3 and pd.notna(summary.loc[0, "decode_tok_s_cv_pct"])


def test_long_talk_is_truncated_and_recorded(tmp_path: Path, cli_env: dict[str, str]) -> None:
    proc, run_dir = _run(tmp_path, cli_env, "--talks", "qualcomm-npu", "--n-ctx", "512")
    df = pd.read_csv(run_dir / "results.csv")
    assert df.loc[0, "status"] == "ok" and bool(df.loc[0, "truncated"])
    assert df.loc[0, "prompt_tokens"] <= 512 - 32
    assert "truncated" in proc.stdout
