"""harness.scoring: CJK-aware ROUGE, reference-free signals and Student-t CIs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rouge_score import rouge_scorer

from harness.errors import HarnessError
from harness.results.schema import COLUMNS
from harness.scoring import LANGS, SCORE_KEYS, TOKENIZERS, ScoreCI, score_summary, t_interval
from harness.scoring.signals import detect_language, lang_match, novel_ngram_share, repetition_rate
from harness.scoring.tokenizers import get_tokenizer, resolve_tokenizer, split_sentences

# Han characters only (no punctuation, no spaces), so different strings are different token sequences.
HAN = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5)


def zh(prediction: str, *references: str, **kw: object) -> dict[str, object]:
    return score_summary(prediction, list(references), "zh", **kw)  # type: ignore[arg-type]


# --- keys ----------------------------------------------------------------------------------------


def test_keys_are_exactly_the_results_columns() -> None:
    assert set(SCORE_KEYS) <= set(COLUMNS)
    assert set(zh("端侧模型", "端侧模型")) == set(SCORE_KEYS)
    assert set(score_summary("a cat", ["a cat"], "en", source="a cat sat")) == set(SCORE_KEYS)


# --- hand-computed character-level Chinese ROUGE ---------------------------------------------------


def test_char_rouge_subsequence_hand_computed() -> None:
    # pred 端侧模型推理很快 = 8 chars; ref 端侧大模型的推理速度很快 = 12 chars.
    # ROUGE-1: all 8 pred chars occur in ref -> P = 8/8, R = 8/12, F = 2*8/(8+12) = 0.8
    # ROUGE-2: pred bigrams 端侧 侧模 模型 型推 推理 理很 很快 (7); ref has 11 bigrams
    #          (端侧 侧大 大模 模型 型的 的推 推理 理速 速度 度很 很快); shared 端侧 模型 推理 很快 = 4
    #          -> P = 4/7 = 0.571, R = 4/11 = 0.364, F = 2*4/(7+11) = 0.444
    # ROUGE-L: pred is a subsequence of ref, LCS = 8 -> same as ROUGE-1, F = 0.8
    s = zh("端侧模型推理很快", "端侧大模型的推理速度很快")
    assert s["rouge_tokenizer"] == "char"
    assert s["rouge1_p"] == pytest.approx(1.0, abs=1e-3)
    assert s["rouge1_r"] == pytest.approx(0.667, abs=1e-3)
    assert s["rouge1_f"] == pytest.approx(0.800, abs=1e-3)
    assert s["rouge2_p"] == pytest.approx(0.571, abs=1e-3)
    assert s["rouge2_r"] == pytest.approx(0.364, abs=1e-3)
    assert s["rouge2_f"] == pytest.approx(0.444, abs=1e-3)
    assert s["rougeL_f"] == pytest.approx(0.800, abs=1e-3)


def test_char_rouge_reordered_hand_computed() -> None:
    # pred 推理很快，端侧模型 -> tokens 推理很快端侧模型 (the comma is dropped); ref 端侧模型推理很快.
    # ROUGE-1: same 8 characters -> F = 1.0
    # ROUGE-2: pred bigrams 推理 理很 很快 快端 端侧 侧模 模型 (7),
    #          ref bigrams  端侧 侧模 模型 型推 推理 理很 很快 (7); shared 6 -> F = 2*6/(7+7) = 0.857
    # ROUGE-L: the halves are swapped, LCS = 4 (推理很快 or 端侧模型) -> P = R = 4/8, F = 0.5
    s = zh("推理很快，端侧模型", "端侧模型推理很快")
    assert s["rouge1_f"] == pytest.approx(1.000, abs=1e-3)
    assert s["rouge2_f"] == pytest.approx(0.857, abs=1e-3)
    assert s["rougeL_f"] == pytest.approx(0.500, abs=1e-3)
    # One sentence (a comma does not end one), so ROUGE-Lsum equals ROUGE-L.
    assert s["rougeLsum_f"] == pytest.approx(0.500, abs=1e-3)


def test_rouge_lsum_splits_chinese_sentences() -> None:
    # pred 推理很快。端侧模型。 is two sentences. Summary-level LCS of the one ref sentence 端侧模型推理很快:
    # union of LCS with 推理很快 (ref positions 4-7) and with 端侧模型 (0-3) covers all 8 -> P = R = F = 1.
    # Plain ROUGE-L sees one sequence with the halves swapped: LCS 4/8 -> F = 0.5.
    s = zh("推理很快。端侧模型。", "端侧模型推理很快")
    assert s["rougeLsum_f"] == pytest.approx(1.000, abs=1e-3)
    assert s["rougeL_f"] == pytest.approx(0.500, abs=1e-3)


def test_split_sentences_chinese_and_ascii_marks() -> None:
    text = "端侧模型很快。速度提升3.5倍！真的吗?是的；好\n第二行 It works. Yes"
    assert split_sentences(text) == [
        "端侧模型很快。",
        "速度提升3.5倍！",
        "真的吗?",
        "是的；",
        "好",
        "第二行 It works.",
        "Yes",
    ]


def test_identical_chinese_scores_one() -> None:
    text = "端侧大模型在手机上的推理速度已经可以达到每秒二十个词元。"
    s = zh(text, text)
    for key in ("rouge1_f", "rouge2_f", "rougeL_f", "rougeLsum_f", "rouge1_p", "rouge1_r"):
        assert s[key] == pytest.approx(1.0)


@settings(max_examples=200, deadline=None)
@given(a=st.text(HAN, min_size=1, max_size=40), b=st.text(HAN, min_size=1, max_size=40))
def test_different_chinese_never_rouge_l_one(a: str, b: str) -> None:
    s = zh(a, b)
    if a == b:
        assert s["rougeL_f"] == pytest.approx(1.0)
    else:
        # F = 1 needs LCS = len(a) = len(b), i.e. the same character sequence.
        assert s["rougeL_f"] < 1.0
        if sorted(a) != sorted(b):
            assert s["rouge1_f"] < 1.0


@settings(max_examples=50, deadline=None)
@given(a=st.text(HAN, min_size=1, max_size=20), b=st.text(HAN, min_size=1, max_size=20))
def test_different_chinese_with_shared_latin_word_never_one(a: str, b: str) -> None:
    # rouge-score's default tokeniser reduces both texts to ["qwen"]; ours keeps the Chinese.
    s = zh(f"Qwen {a}", f"Qwen {b}")
    assert (s["rougeL_f"] == pytest.approx(1.0)) == (a == b)


def test_regression_shared_latin_word_is_not_a_perfect_match() -> None:
    pred, ref = "Qwen模型很好", "Qwen推理很慢"
    # Why this test exists: the library default deletes the Chinese and calls these identical.
    plain = rouge_scorer.RougeScorer(["rouge1"]).score(ref, pred)["rouge1"]
    assert plain.fmeasure == 1.0
    # Ours: qwen 模 型 很 好 vs qwen 推 理 很 慢 -> shared qwen, 很 -> F = 2*2/(5+5) = 0.4
    assert zh(pred, ref)["rouge1_f"] == pytest.approx(0.400, abs=1e-3)


# --- English equals plain rouge-score ----------------------------------------------------------------

EN_PRED = "The models were running quickly on phones. Latency dropped by 3.5 times!"
EN_REF = "Small models run fast on mobile phones, and latency fell 3.5x. Memory use also dropped."


def test_english_equals_rouge_score_default() -> None:
    plain = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True).score(EN_REF, EN_PRED)
    ours = score_summary(EN_PRED, [EN_REF], "en")
    assert ours["rouge_tokenizer"] == "porter"
    for rouge_type in ("rouge1", "rouge2", "rougeL"):
        assert ours[f"{rouge_type}_f"] == pytest.approx(plain[rouge_type].fmeasure)
        assert ours[f"{rouge_type}_p"] == pytest.approx(plain[rouge_type].precision)
        assert ours[f"{rouge_type}_r"] == pytest.approx(plain[rouge_type].recall)


def test_english_lsum_equals_rouge_score_on_newline_split_text() -> None:
    # rouge-score's rougeLsum needs sentences on separate lines; we split them ourselves.
    plain = rouge_scorer.RougeScorer(["rougeLsum"], use_stemmer=True).score(
        "\n".join(split_sentences(EN_REF)), "\n".join(split_sentences(EN_PRED))
    )
    assert split_sentences(EN_PRED) == [
        "The models were running quickly on phones.",
        "Latency dropped by 3.5 times!",
    ]
    assert score_summary(EN_PRED, [EN_REF], "en")["rougeLsum_f"] == pytest.approx(plain["rougeLsum"].fmeasure)


WORDS = st.sampled_from(["model", "models", "running", "runs", "fast", "the", "phone", "latency", "3", "A"])


@settings(max_examples=100, deadline=None)
@given(a=st.lists(WORDS, min_size=1, max_size=15), b=st.lists(WORDS, min_size=1, max_size=15))
def test_english_property_equals_rouge_score(a: list[str], b: list[str]) -> None:
    pred, ref = " ".join(a), " ".join(b)
    plain = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True).score(ref, pred)
    ours = score_summary(pred, [ref], "en")
    for rouge_type in ("rouge1", "rouge2", "rougeL"):
        assert ours[f"{rouge_type}_f"] == pytest.approx(plain[rouge_type].fmeasure)


# --- several references ----------------------------------------------------------------------------


def test_multi_reference_takes_the_best() -> None:
    pred = "端侧模型推理很快"
    bad, good = "今天天气不错", "端侧大模型的推理速度很快"
    alone = zh(pred, good)
    both = zh(pred, bad, good)
    reversed_order = zh(pred, good, bad)
    for key in ("rouge1_f", "rouge2_f", "rougeL_f", "rougeLsum_f", "rouge1_p", "rouge1_r", "rougeL_r"):
        assert both[key] == pytest.approx(alone[key])
        assert reversed_order[key] == pytest.approx(alone[key])
    assert both["rouge1_f"] > zh(pred, bad)["rouge1_f"]


def test_multi_reference_precision_recall_come_from_the_best_f_reference() -> None:
    pred = "端侧模型"
    # long (16 chars) contains the 4 pred chars -> P = 4/4, R = 4/16, F = 2*4/(4+16) = 0.4
    long = "端侧模型在手机上运行得非常流畅呀"
    # short (2 chars) shares only 端 -> P = 1/4, R = 1/2, F = 2*1/(4+2) = 0.333: it loses on F although
    # its recall (0.5) beats long's (0.25), so P and R must both come from long.
    short = "端口"
    s = zh(pred, short, long)
    assert s["rouge1_f"] == pytest.approx(0.400, abs=1e-3)
    assert s["rouge1_p"] == pytest.approx(1.000, abs=1e-3)
    assert s["rouge1_r"] == pytest.approx(0.250, abs=1e-3)


def test_no_reference_gives_none_not_zero() -> None:
    s = score_summary("端侧模型", [], "zh", source="端侧模型推理")
    assert s["rouge1_f"] is None and s["rougeL_f"] is None
    assert s["compression_ratio"] == pytest.approx(4 / 6)
    assert zh("端侧模型", "  ")["rouge1_f"] is None


@pytest.mark.parametrize("prediction", ["", "   ", "，。！"])
def test_empty_prediction_scores_zero(prediction: str) -> None:
    s = zh(prediction, "端侧大模型的推理速度很快", source="端侧大模型")
    for key in ("rouge1_f", "rouge2_f", "rougeL_f", "rougeLsum_f", "rouge1_p", "rouge1_r"):
        assert s[key] == 0.0
    assert s["compression_ratio"] == 0.0
    assert s["novel_1gram"] == 0.0 and s["repetition_rate"] == 0.0
    assert s["lang_match"] is False


def test_references_as_bare_string_is_refused() -> None:
    with pytest.raises(TypeError):
        score_summary("端侧", "端侧模型", "zh")  # type: ignore[arg-type]


# --- tokenisation -------------------------------------------------------------------------------------


def test_char_tokenizer_mixed_text() -> None:
    tokens = get_tokenizer("char").tokenize("我用Qwen2.5模型，GPT-4很快！")
    assert tokens == ["我", "用", "qwen2", "5", "模", "型", "gpt", "4", "很", "快"]


def test_full_width_latin_matches_ascii() -> None:
    assert get_tokenizer("char").tokenize("Ｑｗｅｎ２模型") == ["qwen2", "模", "型"]
    assert zh("Ｑｗｅｎ模型", "Qwen模型")["rouge1_f"] == pytest.approx(1.0)


def test_jieba_tokenizer_gives_words() -> None:
    tokens = get_tokenizer("jieba").tokenize("端侧大模型的推理速度很快，Qwen2.5也不错。")
    assert "推理" in tokens and "速度" in tokens
    assert "qwen2" in tokens and "5" in tokens
    assert "，" not in tokens and "。" not in tokens
    s = zh(
        "端侧模型推理很快", "端侧大模型的推理速度很快", tokenizer="jieba", source="端侧大模型的推理速度很快"
    )
    assert s["rouge_tokenizer"] == "jieba"
    # Words are fewer than characters, so jieba's compression ratio differs from char's.
    char = zh("端侧模型推理很快", "端侧大模型的推理速度很快", source="端侧大模型的推理速度很快")
    assert s["compression_ratio"] != char["compression_ratio"]


def test_porter_tokenizer_keeps_cjk_and_matches_rouge_score_elsewhere() -> None:
    assert get_tokenizer("porter").tokenize("Running models 我们 quickly") == [
        "run",
        "model",
        "我",
        "们",
        "quickli",
    ]


def test_auto_tokenizer_per_language() -> None:
    assert resolve_tokenizer("auto", "zh") == "char"
    assert resolve_tokenizer("auto", "en") == "porter"
    assert set(TOKENIZERS) == {"auto", "char", "jieba", "porter"}
    assert LANGS == ("zh", "en")


def test_porter_on_chinese_is_refused() -> None:
    with pytest.raises(HarnessError, match="char or jieba"):
        zh("端侧", "端侧", tokenizer="porter")


def test_unknown_tokenizer_and_language_suggest() -> None:
    with pytest.raises(HarnessError, match='Did you mean "jieba"'):
        zh("端侧", "端侧", tokenizer="jeiba")
    with pytest.raises(HarnessError, match="summary language"):
        score_summary("端侧", ["端侧"], "cn")


# --- signals ------------------------------------------------------------------------------------------


def test_compression_and_novel_ngrams_hand_computed() -> None:
    # source 端侧模型推理很快 (8 tokens); summary 模型推理慢 (5 tokens): compression 5/8 = 0.625.
    # unigrams 模 型 推 理 慢: only 慢 is new -> 1/5 = 0.2
    # bigrams 模型 型推 推理 理慢: only 理慢 is new -> 1/4 = 0.25
    s = zh("模型推理慢", "端侧模型推理很快", source="端侧模型推理很快")
    assert s["compression_ratio"] == pytest.approx(0.625)
    assert s["novel_1gram"] == pytest.approx(0.2)
    assert s["novel_2gram"] == pytest.approx(0.25)


def test_copying_has_no_novel_ngrams_and_abstracting_has_many() -> None:
    source = "今天我们讨论端侧大模型的推理速度和内存占用。"
    assert zh("端侧大模型的推理速度", "x", source=source)["novel_2gram"] == 0.0
    assert zh("手机跑得动吗", "x", source=source)["novel_1gram"] == 1.0


def test_signals_without_source_are_none() -> None:
    s = zh("端侧模型", "端侧模型")
    assert s["compression_ratio"] is None and s["novel_1gram"] is None and s["novel_2gram"] is None
    assert s["repetition_rate"] == 0.0


def test_repetition_rate_degenerate_output() -> None:
    # 的 x 10 -> 10 tokens, 7 4-grams, all equal: 6 repeat an earlier one -> 6/7
    assert zh("的" * 10, "x")["repetition_rate"] == pytest.approx(6 / 7)
    # 端侧模型很快 x 3 -> 18 tokens, 15 4-grams; the first 6 are distinct, the other 9 repeat -> 0.6
    assert zh("端侧模型很快" * 3, "x")["repetition_rate"] == pytest.approx(0.6)
    assert zh("端侧大模型的推理速度很快", "x")["repetition_rate"] == 0.0
    # Fewer than four tokens: no 4-gram, nothing repeated.
    assert repetition_rate(["的", "的", "的"]) == 0.0
    assert novel_ngram_share(["的"], ["端"], 2) == 0.0


def test_repetition_rate_english_phrase_loop() -> None:
    s = score_summary("the model is fast " * 4, ["x"], "en")
    # 16 tokens -> 13 4-grams; period 4, so the first 4 are distinct and 9 repeat.
    assert s["repetition_rate"] == pytest.approx(9 / 13)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("端侧大模型的推理速度很快。", "zh"),
        ("Qwen2.5 在 MMLU 上的表现很好", "zh"),  # Chinese full of Latin terms
        ("The model runs fast on phones.", "en"),
        ("The Qwen model (通义千问) runs fast on phones and laptops.", "en"),
        ("これは日本語の文章です。", "other"),
        ("Модель работает быстро", "other"),
        ("", None),
        ("123，。!", None),
    ],
)
def test_detect_language(text: str, expected: str | None) -> None:
    assert detect_language(text) == expected


def test_lang_match() -> None:
    assert zh("端侧大模型的推理速度很快", "x")["lang_match"] is True
    assert zh("The model is fast.", "x")["lang_match"] is False
    assert score_summary("The model is fast.", ["x"], "en")["lang_match"] is True
    assert score_summary("模型很快", ["x"], "en")["lang_match"] is False
    assert lang_match("これは日本語の文章です。", "zh") is False


# --- Student-t CI ------------------------------------------------------------------------------------

VALUES = [0.21, 0.35, 0.28, 0.40, 0.19, 0.33, 0.30, 0.25, 0.45, 0.22]


def test_t_interval_matches_scipy() -> None:
    from scipy import stats

    ci = t_interval(VALUES)
    lo, hi = stats.t.interval(0.95, len(VALUES) - 1, loc=np.mean(VALUES), scale=stats.sem(VALUES))
    assert (ci.mean, ci.lo, ci.hi, ci.n) == (pytest.approx(np.mean(VALUES)), pytest.approx(lo), pytest.approx(hi), 10)
    wide, narrow = t_interval(VALUES, confidence=0.99), t_interval(VALUES, confidence=0.5)
    assert wide.hi - wide.lo > ci.hi - ci.lo > narrow.hi - narrow.lo


def test_t_interval_is_wider_than_a_bootstrap_for_five_talks() -> None:
    # The committed baseline's ROUGE-L talk means (5 talks per model): a BCa bootstrap interval, which the
    # harness used to print, is too narrow there (about 85 % coverage); the t interval contains it.
    from pathlib import Path

    import pandas as pd
    from scipy import stats

    from harness.results.aggregate import talk_means

    baseline = Path(__file__).resolve().parent.parent / "results" / "baseline" / "results.csv"
    means = talk_means(pd.read_csv(baseline, dtype=str, keep_default_na=False), ["rougeL_f"])
    for _, talks in means.groupby("model"):
        values = talks["rougeL_f"].to_numpy()
        assert len(values) == 5
        boot = stats.bootstrap((values,), np.mean, method="BCa", rng=np.random.default_rng(0)).confidence_interval
        ci = t_interval(values)
        assert ci.lo < boot.low and ci.hi > boot.high


def test_t_interval_ignores_nan_and_none() -> None:
    clean = t_interval([0.1, 0.3, 0.2])
    assert t_interval([0.1, math.nan, 0.3, None, 0.2]) == clean
    assert clean.n == 3


def test_t_interval_degenerate_inputs() -> None:
    one = t_interval([0.42])
    assert one.mean == 0.42 and one.n == 1 and math.isnan(one.lo) and math.isnan(one.hi)  # no interval from one
    assert one.as_dict() == {"mean": 0.42, "lo": None, "hi": None, "n": 1}
    assert str(one) == "0.420 [n=1]"
    same = t_interval([0.3, 0.3, 0.3])
    assert same.lo == same.hi == pytest.approx(0.3)
    empty = t_interval([math.nan])
    assert empty.n == 0 and math.isnan(empty.mean)
    assert empty.as_dict() == {"mean": None, "lo": None, "hi": None, "n": 0}
    with pytest.raises(ValueError):
        t_interval(VALUES, confidence=1.5)


def test_score_ci_str() -> None:
    assert str(ScoreCI(mean=0.3124, lo=0.2811, hi=0.3444, n=10)) == "0.312 [0.281, 0.344]"
