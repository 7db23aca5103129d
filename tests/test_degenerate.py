"""The degenerate-output rule: a loop that ran into the cap, or the wrong language."""

from __future__ import annotations

import json

import pytest

from harness.corpus import builtin_corpus_path
from harness.scoring import score_summary
from harness.scoring.signals import DEGENERATE_REPETITION, is_degenerate

LOOP = "在这篇会议中，李冕提到了企业级的关系。" + "生命中" * 60


@pytest.mark.parametrize(
    ("stop_reason", "repetition", "lang_match", "expected"),
    [
        ("length", 0.85, True, True),  # hit the cap while looping
        ("length", DEGENERATE_REPETITION, True, False),  # at the threshold: not above it
        ("length", 0.05, True, False),  # cut off, but not looping: a long summary
        ("eos", 0.6, True, False),  # stopped on its own: a repetitive list is not a stuck model
        ("eos", 0.0, False, True),  # wrong language, whatever else
        ("length", None, None, None),  # nothing known (an error row)
        ("error", None, None, None),
        ("length", float("nan"), True, False),
    ],
)
def test_rule(stop_reason: str, repetition: float | None, lang_match: bool | None, expected: bool | None) -> None:
    assert is_degenerate(stop_reason, repetition, lang_match) is expected


def test_threshold_separates_the_references_from_a_loop() -> None:
    """Every hand-written reference of the built-in corpus stays well below the threshold; a loop is above."""
    for line in builtin_corpus_path().read_text(encoding="utf-8").splitlines():
        talk = json.loads(line)
        for ref in talk["references"]:
            scores = score_summary(ref, talk["references"], "zh", talk["text"])
            assert is_degenerate("length", scores["repetition_rate"], scores["lang_match"]) is False
            assert scores["repetition_rate"] < DEGENERATE_REPETITION / 2
    loop = score_summary(LOOP, ["参考"], "zh")
    assert is_degenerate("length", loop["repetition_rate"], loop["lang_match"]) is True
    english = score_summary("The speaker presented the model family and its results.", ["参考"], "zh")
    assert is_degenerate("eos", english["repetition_rate"], english["lang_match"]) is True
