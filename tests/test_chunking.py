"""Chunking and the long-document strategies, with a character-count "tokenizer" standing in for a model's."""

from __future__ import annotations

import pytest

from harness.corpus import load_corpus
from harness.scenarios.chunking import (
    ChunkError,
    chunk_text,
    longest_fitting_prefix,
    map_reduce,
    refine,
    split_sentences,
)


def budget(limit: int, overhead: int = 0):
    """A fits() whose prompt costs one token per character plus a fixed template overhead."""
    return lambda text: overhead + len(text) <= limit


def test_sentences_keep_their_punctuation_and_round_trip() -> None:
    text = "第一句。第二句！“引号里。”Qwen1.5 is 3.5x faster. Next one? 尾巴"
    parts = split_sentences(text)
    assert "".join(parts) == text
    assert parts[:3] == ["第一句。", "第二句！", "“引号里。”"]
    assert "Qwen1.5 is 3.5x faster. " in parts  # decimals do not end a sentence
    assert parts[-1] == "尾巴"


def test_whole_paragraphs_while_they_fit() -> None:
    paras = ["甲" * 30, "乙" * 30, "丙" * 30, "丁" * 30]
    chunks = chunk_text("\n".join(paras), budget(70))
    assert chunks == ["\n".join(paras[:2]), "\n".join(paras[2:])]


def test_a_paragraph_too_long_is_cut_at_sentences_then_characters() -> None:
    para = "这是一个句子。" * 10 + "没" * 50  # ten 7-char sentences, then one 50-char sentence
    chunks = chunk_text(para, budget(40, overhead=10))
    assert all(len(c) + 10 <= 40 for c in chunks)
    assert "".join(chunks) == para
    assert chunks[0] == "这是一个句子。" * 4  # greedy: as many whole sentences as fit (28 of 30)
    assert [len(c) for c in chunks[-2:]] == [30, 20]  # the long sentence: longest prefix, then the rest


def test_chunks_of_a_real_report_fit_and_lose_nothing() -> None:
    doc = next(d for d in load_corpus("summit-reports") if d.id == "report-model-layer")
    fits = budget(500, overhead=60)
    chunks = chunk_text(doc.text, fits)
    assert len(chunks) > 1 and all(fits(c) for c in chunks)
    assert "".join(chunks).replace("\n", "") == doc.text.replace("\n", "")
    lines = set(doc.text.splitlines())
    for c in chunks:  # every cut is at a paragraph end or a sentence end (no sentence here exceeds the budget)
        last = c.splitlines()[-1]
        assert last in lines or last.endswith(("。", "！", "？", "；", "”")), last[-20:]


def test_template_alone_too_long_is_a_chunk_error() -> None:
    with pytest.raises(ChunkError):
        chunk_text("一些文字。", budget(10, overhead=10))


def test_longest_fitting_prefix() -> None:
    assert longest_fitting_prefix("abcdefgh", budget(5)) == 5
    assert longest_fitting_prefix("abc", budget(5)) == 3
    assert longest_fitting_prefix("abc", budget(0)) == 0


class Recorder:
    """Fake summariser: a 'summary' is the first n characters; records each stage."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.calls: list[tuple[str, int]] = []

    def summarize(self, text: str) -> str:
        self.calls.append(("map", len(text)))
        return text[: self.n]

    def combine(self, text: str) -> str:
        self.calls.append(("reduce", len(text)))
        return text[: self.n]

    def update(self, summary: str, text: str) -> str:
        self.calls.append(("refine", len(summary) + len(text)))
        return (summary + text)[-self.n :]


def test_map_reduce_one_call_when_the_document_fits() -> None:
    rec = Recorder(10)
    result = map_reduce("短文。", fits_map=budget(100), fits_reduce=budget(100), summarize=rec.summarize,
                        combine=rec.combine)
    assert (result.chunks, result.stages, result.levels, result.truncated) == (1, 1, 0, False)
    assert rec.calls == [("map", 3)]


def test_map_reduce_maps_each_chunk_then_reduces_once() -> None:
    rec = Recorder(10)
    text = "\n".join(["句子。" * 10] * 4)  # four 30-char paragraphs
    result = map_reduce(text, fits_map=budget(40), fits_reduce=budget(100), summarize=rec.summarize,
                        combine=rec.combine)
    assert [k for k, _ in rec.calls] == ["map"] * 4 + ["reduce"]
    assert (result.chunks, result.stages, result.levels, result.truncated) == (4, 5, 1, False)


def test_map_reduce_recurses_when_partials_do_not_fit_one_prompt() -> None:
    rec = Recorder(20)
    text = "\n".join(["字" * 30] * 8)
    result = map_reduce(text, fits_map=budget(40), fits_reduce=budget(45), summarize=rec.summarize,
                        combine=rec.combine)
    kinds = [k for k, _ in rec.calls]
    assert kinds.count("map") == 8 and kinds.count("reduce") > 1 and result.levels > 1
    assert result.stages == len(rec.calls) and not result.truncated
    assert all(n <= 45 for k, n in rec.calls if k == "reduce")


def test_map_reduce_that_cannot_halve_the_partials_truncates_and_says_so() -> None:
    rec = Recorder(40)  # every partial is as long as the reduce budget
    text = "\n".join(["字" * 40] * 3)
    result = map_reduce(text, fits_map=budget(40), fits_reduce=budget(40), summarize=rec.summarize,
                        combine=rec.combine)
    assert result.truncated and rec.calls[-1] == ("reduce", 40)


def test_refine_sizes_each_chunk_against_the_current_summary() -> None:
    rec = Recorder(15)
    text = "\n".join(["句" * 10] * 9)
    result = refine(
        text,
        fits_first=budget(35),
        fits_refine=lambda summary: budget(35, overhead=len(summary)),
        summarize=rec.summarize,
        update=rec.update,
    )
    assert rec.calls[0] == ("map", 32)  # three 10-char paragraphs and two separators
    assert all(k == "refine" and n <= 35 for k, n in rec.calls[1:])
    assert result.stages == result.chunks == len(rec.calls) > 2


def test_refine_cuts_a_summary_that_leaves_no_room_and_says_so() -> None:
    rec = Recorder(40)  # every summary fills the whole budget
    result = refine("\n".join(["句" * 30] * 3), fits_first=budget(40),
                    fits_refine=lambda s: budget(40, overhead=len(s)), summarize=rec.summarize, update=rec.update)
    assert result.truncated and result.chunks > 1
    assert all(n <= 40 for k, n in rec.calls if k == "refine")


def test_refine_with_a_template_too_long_for_any_text_is_a_chunk_error() -> None:
    rec = Recorder(5)
    with pytest.raises(ChunkError):
        refine("\n".join(["句" * 30] * 3), fits_first=budget(40),
               fits_refine=lambda s: budget(40, overhead=40), summarize=rec.summarize, update=rec.update)
