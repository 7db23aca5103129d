"""Extractive fragment statistics (Grusky et al. 2018) on hand-made summaries, Chinese and English."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.scoring import SCORE_KEYS, score_summary
from harness.scoring.extractive import EXTRACTIVE_KEYS, fragment_stats, fragments
from harness.scoring.tokenizers import tokenize_cached

SOURCE_ZH = "今天我们发布通义千问的新模型。它在端侧设备上推理很快，内存占用也很低。"


def test_fragments_are_greedy_longest_matches_in_summary_order() -> None:
    assert fragments(list("abcxyzab"), list("xxabcdxyz")) == [3, 3, 2]
    # At "b" the longest match ("bcd", 3) wins over the first one met ("b", 1).
    assert fragments(list("bcd"), list("ab_bcd")) == [3]
    assert fragments(list("qq"), list("abc")) == []


def test_pasted_sentence_has_full_coverage_and_high_density() -> None:
    pasted = "它在端侧设备上推理很快"
    stats = score_summary(pasted, ["参考"], "zh", source=SOURCE_ZH)
    n = len(tokenize_cached("char", pasted))
    assert stats["extractive_coverage"] == 1.0
    assert stats["longest_fragment"] == n
    assert stats["extractive_density"] == pytest.approx(n)  # one fragment of length n: n^2 / n


def test_abstractive_summary_has_lower_density_than_a_pasted_one() -> None:
    pasted = score_summary("它在端侧设备上推理很快，内存占用也很低", ["x"], "zh", source=SOURCE_ZH)
    rephrased = score_summary("新模型在手机上运行迅速且省内存", ["x"], "zh", source=SOURCE_ZH)
    assert rephrased["extractive_density"] < pasted["extractive_density"]
    assert rephrased["extractive_coverage"] < pasted["extractive_coverage"]
    assert 0 < rephrased["extractive_coverage"] < 1  # 新模型, 内存 are copied, 手机 is not


def test_english_uses_rouge_tokens() -> None:
    source = "The speaker presented a small model that runs quickly on phones."
    s = score_summary("A small model runs on phones.", ["x"], "en", source=source)
    # porter tokens: a small model | run(s) | on phone(s): fragments 3, 1, 2 of 6 tokens.
    assert s["extractive_coverage"] == 1.0
    assert s["longest_fragment"] == 3
    assert s["extractive_density"] == pytest.approx((9 + 1 + 4) / 6)


def test_no_source_gives_none_and_empty_summary_gives_zero() -> None:
    assert fragment_stats(["a"], None) == dict.fromkeys(EXTRACTIVE_KEYS)
    assert fragment_stats([], ["a"]) == {"extractive_coverage": 0.0, "extractive_density": 0.0, "longest_fragment": 0}
    assert score_summary("端侧", ["端侧"], "zh")["extractive_coverage"] is None


def test_columns_are_score_keys() -> None:
    assert set(EXTRACTIVE_KEYS) <= set(SCORE_KEYS)


def test_report_draws_the_coverage_density_plot(tmp_path: Path) -> None:
    from harness.cli import main
    from tests.runfactory import make_run

    run = make_run(tmp_path, repeats=1, overrides={"extractive_coverage": 0.6, "extractive_density": 3.5})
    assert main(["report", str(run), "--out", str(tmp_path / "rep")]) == 0
    png = tmp_path / "rep" / "report-coverage-density.png"
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "coverage" in (tmp_path / "rep" / "report.md").read_text(encoding="utf-8")
