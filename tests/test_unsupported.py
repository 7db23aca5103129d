"""Unsupported numbers and entities (a hallucination proxy) on hand-made Chinese and English cases."""

from __future__ import annotations

from harness.scoring import SCORE_KEYS, score_summary
from harness.scoring.unsupported import UNSUPPORTED_KEYS, entities, find_unsupported, numbers, unsupported_scores

SOURCE_ZH = (
    "阿里巴巴在杭州发布了Qwen2.5模型。它的参数规模达到1.5亿，在MMLU上的准确率提升了20%。"
    "目前已有3万名开发者使用，2024年5月开源。"
)
SOURCE_EN = (
    "Alibaba released Qwen2.5 in Hangzhou. Accuracy on MMLU rose by 20 percent, and 30,000 developers "
    "used the model in 2024."
)


def test_numbers_normalise_width_multipliers_and_percent() -> None:
    assert numbers("参数１．５亿，增长２０％，共3万人") == ["150000000", "20%", "30000"]
    assert numbers("百分之30，1,200 thousand, 1.50") == ["30%", "1200000", "1.5"]
    # List numbering, digits glued to Latin names and units are not stated figures.
    assert numbers("1. Qwen2.5 与 GPT-4\n2、7B 模型") == []
    assert numbers("<strong>1. 微软\n**2.** 微软\n - 3、共5个") == ["5"]  # markup before the numbering


def test_chinese_summary_true_to_the_source_has_nothing_unsupported() -> None:
    summary = "阿里巴巴在杭州发布Qwen2.5，参数1.5亿，MMLU准确率提升２０％，３万名开发者在使用。"
    found = find_unsupported(summary, SOURCE_ZH, "zh")
    assert found.unsupported_numbers == []
    assert found.unsupported_entities == []
    assert {"阿里巴巴", "杭州", "Qwen2.5", "MMLU"} <= set(found.entities or [])
    assert unsupported_scores(summary, SOURCE_ZH, "zh")["supported_entity_share"] == 1.0


def test_chinese_summary_with_made_up_figures_and_names_is_flagged() -> None:
    summary = "阿里巴巴在北京发布了Qwen3，准确率提升了35%，有5万名开发者。"
    found = find_unsupported(summary, SOURCE_ZH, "zh")
    assert set(found.unsupported_numbers) == {"35%", "50000"}
    assert {"北京", "Qwen3"} <= set(found.unsupported_entities or [])
    scores = found.scores()
    assert scores["unsupported_numbers"] == 2
    assert 0 < scores["supported_entity_share"] < 1  # 阿里巴巴 is supported


def test_percentage_needs_a_percentage_in_the_source() -> None:
    # The source says 20 %, not 20 of something else.
    assert find_unsupported("增长了20%", "有20个模型", "zh").unsupported_numbers == ["20%"]
    assert find_unsupported("增长了百分之二十", "增长了20%", "zh").unsupported_numbers == []  # 二十: not read


def test_english_entities_and_numbers() -> None:
    good = "Alibaba released Qwen2.5; MMLU accuracy rose 20% and 30 thousand developers used it."
    bad = "Google released Gemini in London. Accuracy rose 45% among 2 million users."
    assert unsupported_scores(good, SOURCE_EN, "en") == {
        "unsupported_numbers": 0,
        "unsupported_entities": 0,
        "supported_entity_share": 1.0,
    }
    found = find_unsupported(bad, SOURCE_EN, "en")
    assert set(found.unsupported_entities or []) == {"Google", "Gemini", "London"}
    assert set(found.unsupported_numbers) == {"45%", "2000000"}


def test_sentence_initial_common_words_are_not_entities() -> None:
    text = "Large models help. The Qwen Team said so. Overall, it works."
    assert entities(text, "en", lowercase_pool="large models are large") == ["Qwen Team"]


def test_entities_are_not_checked_across_languages() -> None:
    scores = unsupported_scores("Alibaba released Qwen2.5 with 1.5 亿 parameters.", SOURCE_ZH, "en")
    assert scores["unsupported_entities"] is None
    assert scores["supported_entity_share"] is None
    assert scores["unsupported_numbers"] == 0


def test_no_entities_gives_no_share_and_no_source_gives_none() -> None:
    assert unsupported_scores("模型很快。", SOURCE_ZH, "zh")["supported_entity_share"] is None
    assert unsupported_scores("模型很快", None, "zh") == dict.fromkeys(UNSUPPORTED_KEYS)


def test_run_scores_carry_the_columns() -> None:
    assert set(UNSUPPORTED_KEYS) <= set(SCORE_KEYS)
    s = score_summary("阿里巴巴在北京发布", ["参考"], "zh", source=SOURCE_ZH)
    assert s["unsupported_entities"] == 1
