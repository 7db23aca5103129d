"""The built-in talk corpus, its derivation from the seed articles, and loading user corpora."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from harness.cli import main as cli_main
from harness.corpus import builtin_corpus_path, load_corpus
from harness.corpus.derive import (
    CONTEXT_FILE,
    TALK_TABLE,
    TALKS_FILE,
    derive,
    derive_corpus,
    split_trailing_header,
    to_jsonl,
)
from harness.errors import HarnessError

SEEDS = Path(__file__).resolve().parents[1].parent / "shared" / "seeds"
needs_seeds = pytest.mark.skipif(not SEEDS.is_dir(), reason=f"seed articles not present at {SEEDS}")
IDS = [m.id for m in TALK_TABLE]
TITLES = {m.id: m.title for m in TALK_TABLE}


def _shipped(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# --- the shipped corpus ---------------------------------------------------------------------------


@needs_seeds
def test_shipped_files_equal_fresh_derivation() -> None:
    talks, context = derive_corpus(SEEDS)
    assert TALKS_FILE.read_text(encoding="utf-8") == to_jsonl(talks)
    assert CONTEXT_FILE.read_text(encoding="utf-8") == to_jsonl(context)


@needs_seeds
def test_talks_present_in_both_articles_appear_once() -> None:
    talks = derive(SEEDS).talks
    seed_names = sorted(p.name for p in SEEDS.glob("*.txt"))
    by_id = {t["id"]: t for t in talks}
    for talk_id in ("alibaba-qwen", "qualcomm-npu", "ant-codefuse"):
        assert by_id[talk_id]["source_files"] == seed_names
    joined = "\n".join(t["text"] for t in talks)
    for talk in talks:
        # Any sizeable slice of a talk occurring twice in the corpus means a duplicated copy.
        assert joined.count(talk["text"][:40]) == 1, talk["id"]
        assert joined.count(talk["text"][-40:]) == 1, talk["id"]


def test_builtin_corpus_loads_five_talks_in_summit_order() -> None:
    talks = load_corpus()
    assert [t.id for t in talks] == IDS
    assert len({t.id for t in talks}) == 5
    for talk in talks:
        assert talk.lang == "zh"
        assert talk.title == TITLES[talk.id]
        assert talk.speaker and talk.speaker in talk.text
        assert len(talk.text) > 300


def test_no_talk_contains_the_summit_intro_or_section_header() -> None:
    context = _shipped(CONTEXT_FILE)
    kinds = {c["kind"] for c in context}
    assert {"intro", "section"} <= kinds
    section = next(c for c in context if c["kind"] == "section")
    assert section["text"] == "AIGC模型层：微软阿里高通等玩家谈落地"
    intro = next(c for c in context if c["kind"] == "intro")
    for talk in load_corpus():
        assert section["text"] not in talk.text
        # Sentence by sentence, so a partial leak of the intro is caught too.
        for sentence in filter(None, intro["text"].split("。")):
            assert sentence not in talk.text, (talk.id, sentence)


def test_no_talk_contains_a_headline() -> None:
    for talk in load_corpus():
        for other_id, title in TITLES.items():
            assert title not in talk.text, (talk.id, other_id)


def test_talk_boundaries() -> None:
    by_id = {t.id: t for t in load_corpus()}
    # The Qualcomm talk spans several lines of the article; its text must keep all of them.
    qualcomm = by_id["qualcomm-npu"].text
    assert qualcomm.startswith("高通公司AI产品技术中国区负责人万卫星")
    assert "你只需要在高通一个平台上完成模型的优化部署工作" in qualcomm
    assert qualcomm.endswith("广泛的生态系统和模型支持”。")
    # The Ant talk opens with a pull quote under its headline; the quote is talk text.
    ant = by_id["ant-codefuse"].text
    assert ant.startswith("超70%的问题需要端到端代码生成能力解决")
    assert "蚂蚁代码大模型CodeFuse负责人李建国" in ant
    # The Microsoft talk follows the section header inline; it must start at its own first sentence.
    assert by_id["microsoft-azure"].text.startswith("微软大中华区Azure云事业部总经理李冕")
    for talk in by_id.values():
        assert talk.text == talk.text.strip()


def test_references_per_talk() -> None:
    for talk in load_corpus():
        zh = talk.references_for("zh")
        en = talk.references_for("en")
        assert len(zh) >= 2 and len(en) >= 1, talk.id
        assert len(set(zh)) == len(zh), talk.id
        for ref in zh:
            assert ref not in talk.text  # written, not a copied passage
            assert 60 <= len(ref) <= 400, (talk.id, len(ref))
            assert "。 " not in ref  # YAML folding must not leave spaces between Chinese sentences
        for ref in en:
            assert all(not ("\u4e00" <= ch <= "\u9fff") for ch in ref), talk.id
            assert 40 <= len(ref.split()) <= 160, talk.id


# --- derivation from synthetic seeds --------------------------------------------------------------


def _body(talk_id: str, n: int = 3) -> str:
    return "".join(f"{talk_id}的第{i}句话。" for i in range(n))


def _write_refs(path: Path, ids: list[str] | None = None) -> Path:
    refs = {i: {"zh": [f"{i}摘要一。", f"{i}摘要二。"], "en": [f"{i} summary."]} for i in ids or IDS}
    path.write_text(yaml.safe_dump(refs, allow_unicode=True), encoding="utf-8")
    return path


def _make_seeds(root: Path, *, truncate_last_in_first: bool = False) -> Path:
    """Two articles like the real ones: the first holds the last three talks, the second an intro, a
    section header and all five, with headlines glued to the previous sentence."""
    seeds = root / "seeds"
    seeds.mkdir()
    tail = TALK_TABLE[2:]
    first = "".join(m.title + _body(m.id) for m in tail)
    if truncate_last_in_first:
        first = first.removesuffix(f"{tail[-1].id}的第2句话。")
    (seeds / "a.txt").write_text(first, encoding="utf-8")
    second = "峰会开场介绍。还有一句介绍。第一部分：模型层" + "\n".join(
        m.title + _body(m.id) for m in TALK_TABLE
    )
    (seeds / "b.txt").write_text(second, encoding="utf-8")
    return seeds


def test_derive_splits_inline_headlines_and_keeps_context_apart(tmp_path: Path) -> None:
    result = derive(_make_seeds(tmp_path), _write_refs(tmp_path / "refs.yaml"))
    assert [t["id"] for t in result.talks] == IDS
    for talk in result.talks:
        assert talk["text"] == _body(talk["id"])
        assert talk["references"] == [f"{talk['id']}摘要一。", f"{talk['id']}摘要二。"]
        assert talk["references_by_lang"] == {"en": [f"{talk['id']} summary."]}
    assert [(c["kind"], c["text"]) for c in result.context] == [
        ("intro", "峰会开场介绍。还有一句介绍。"),
        ("section", "第一部分：模型层"),
    ]
    assert result.notes == []


def test_derive_keeps_the_longer_copy_and_reports_the_difference(tmp_path: Path) -> None:
    result = derive(_make_seeds(tmp_path, truncate_last_in_first=True), _write_refs(tmp_path / "r.yaml"))
    last = result.talks[-1]
    assert last["text"] == _body(last["id"])
    assert last["source_files"] == ["b.txt"]
    assert len(result.notes) == 1
    assert last["id"] in result.notes[0] and "a.txt" in result.notes[0] and "truncated" in result.notes[0]


def test_derive_is_deterministic(tmp_path: Path) -> None:
    seeds, refs = _make_seeds(tmp_path), _write_refs(tmp_path / "refs.yaml")
    assert to_jsonl(derive(seeds, refs).talks) == to_jsonl(derive(seeds, refs).talks)


def test_missing_seeds_dir_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="--seeds") as err:
        derive(tmp_path / "absent", _write_refs(tmp_path / "refs.yaml"))
    assert "\n" not in str(err.value)


def test_missing_talk_headline_is_an_error(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "a.txt").write_text(TALK_TABLE[0].title + _body("x"), encoding="utf-8")
    with pytest.raises(HarnessError, match=TALK_TABLE[1].id):
        derive(seeds, _write_refs(tmp_path / "refs.yaml"))


def test_references_for_unknown_talk_suggest_the_closest(tmp_path: Path) -> None:
    refs = _write_refs(tmp_path / "refs.yaml", [*IDS, "alibaba-qwn"])
    with pytest.raises(HarnessError, match='Did you mean "alibaba-qwen"'):
        derive(_make_seeds(tmp_path), refs)


def test_talk_without_own_language_references_is_an_error(tmp_path: Path) -> None:
    refs = tmp_path / "refs.yaml"
    data = {i: {"zh": ["摘要。"], "en": ["Summary."]} for i in IDS}
    data["qualcomm-npu"] = {"en": ["Summary."]}
    refs.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(HarnessError, match="qualcomm-npu"):
        derive(_make_seeds(tmp_path), refs)


def test_split_trailing_header() -> None:
    assert split_trailing_header("介绍。AIGC模型层：玩家谈落地") == ("介绍。", "AIGC模型层：玩家谈落地")
    assert split_trailing_header("他说：“好。”") == ("他说：“好。”", "")
    assert split_trailing_header("没有句号的一段文字" * 10) == ("没有句号的一段文字" * 10, "")


def test_cli_derive_then_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seeds, refs = _make_seeds(tmp_path), _write_refs(tmp_path / "refs.yaml")
    out = tmp_path / "out" / "talks.jsonl"
    common = ["corpus", "derive", "--seeds", str(seeds), "--references", str(refs), "--out", str(out)]
    assert cli_main(common) == 0
    assert (out.parent / "context.jsonl").is_file()
    assert [t.id for t in load_corpus(out)] == IDS
    assert cli_main([*common, "--check"]) == 0
    out.write_text(out.read_text(encoding="utf-8").replace("摘要一", "改过"), encoding="utf-8")
    assert cli_main([*common, "--check"]) == 1
    assert str(out) in capsys.readouterr().err


def test_cli_missing_seeds_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["corpus", "derive", "--seeds", str(tmp_path / "nope"), "--check"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--seeds" in err and len(err.splitlines()) == 1


def test_cli_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["corpus", "list"]) == 0
    out = capsys.readouterr().out
    for talk in load_corpus():
        assert talk.id in out and talk.speaker in out and str(len(talk.text)) in out
    assert "zh:2" in out and "en:1" in out


# --- user corpora ---------------------------------------------------------------------------------

GOOD = {"id": "t1", "text": "A talk about on-device models.", "references": ["Short summary."]}


def _user_corpus(tmp_path: Path, second_line: str) -> Path:
    path = tmp_path / "user.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + second_line + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"id": "t2", "text": ', "not valid JSON"),
        (json.dumps({"id": "t2", "references": ["x"]}), '"text"'),
        (json.dumps({"id": "t2", "text": "body", "references": []}), '"references"'),
        (json.dumps({"id": "t2", "text": "body", "references": [""]}), '"references"'),
        (json.dumps(GOOD), "duplicate"),
    ],
)
def test_malformed_user_line_names_line_number(tmp_path: Path, line: str, problem: str) -> None:
    path = _user_corpus(tmp_path, line)
    with pytest.raises(HarnessError) as err:
        load_corpus(path)
    message = str(err.value)
    assert f"{path}:2:" in message and problem in message and "\n" not in message


def test_user_corpus_lang_is_detected_when_omitted(tmp_path: Path) -> None:
    zh = {"id": "zh1", "text": "高通认为终端侧生成式AI的时代已经到来。", "references": ["端侧AI时代到来。"]}
    en = {"id": "en1", "text": "Qualcomm says on-device generative AI has arrived.", "references": ["x"]}
    given = {**en, "id": "en2", "lang": "zh"}
    path = tmp_path / "user.jsonl"
    path.write_text(
        "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in (zh, en, given)), encoding="utf-8"
    )
    langs = {t.id: t.lang for t in load_corpus(path)}
    assert langs == {"zh1": "zh", "en1": "en", "en2": "zh"}


def test_builtin_path_is_the_shipped_file() -> None:
    assert builtin_corpus_path().resolve() == TALKS_FILE.resolve()


# --- the summit-reports corpus: each seed article whole --------------------------------------------------


def test_named_builtin_corpora_resolve() -> None:
    from harness.corpus import corpus_label, corpus_path

    assert corpus_path(None) == corpus_path("talks") == builtin_corpus_path()
    assert corpus_path("summit-reports").name == "summit-reports.jsonl"
    assert corpus_label(None) == "builtin:talks" and corpus_label("summit-reports") == "builtin:summit-reports"
    assert corpus_label("mine.jsonl") == "mine.jsonl"
    with pytest.raises(HarnessError, match="summit-reports"):
        load_corpus("summit-report")


@needs_seeds
def test_shipped_reports_equal_fresh_derivation() -> None:
    from harness.corpus.derive import REPORTS_FILE, derive_reports

    reports, notes = derive_reports(SEEDS)
    assert notes == []
    assert REPORTS_FILE.read_text(encoding="utf-8") == to_jsonl(reports)


@needs_seeds
def test_each_report_is_its_whole_seed_article() -> None:
    from harness.corpus.derive import REPORT_TABLE

    docs = {d.id: d for d in load_corpus("summit-reports")}
    assert list(docs) == [m.id for m in REPORT_TABLE]
    for meta in REPORT_TABLE:
        seed = (SEEDS / meta.file).read_text(encoding="utf-8")
        text = docs[meta.id].text
        # Only line breaks were added (at headlines and the section header); no character lost or changed.
        assert text.replace("\n", "") == seed.replace("\n", "").strip()
        assert len(text) > 2000
    # Headlines are paragraphs of their own, so a chunker can split on them.
    lines = docs["report-model-layer"].text.splitlines()
    for title in TITLES.values():
        assert title in lines
    assert "AIGC模型层：微软阿里高通等玩家谈落地" in lines


def test_report_references() -> None:
    for doc in load_corpus("summit-reports"):
        zh, en = doc.references_for("zh"), doc.references_for("en")
        assert len(zh) == 2 and len(set(zh)) == 2 and len(en) == 1, doc.id
        for ref in zh:
            assert 150 <= len(ref) <= 300, (doc.id, len(ref))
            assert ref not in doc.text and "。 " not in ref
        assert 100 <= len(en[0].split()) <= 150, doc.id
        assert all(not ("\u4e00" <= ch <= "\u9fff") for ch in en[0])


def test_report_paragraphs_split_glued_headlines() -> None:
    from harness.corpus.derive import report_paragraphs

    first, second = TALK_TABLE[0], TALK_TABLE[1]
    text = "峰会开场介绍。第一部分：模型层" + first.title + _body(first.id) + second.title + _body(second.id)
    assert report_paragraphs(text, "x.txt") == [
        "峰会开场介绍。", "第一部分：模型层", first.title, _body(first.id), second.title, _body(second.id),
    ]


def test_cli_derive_check_covers_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.corpus.derive import REPORT_TABLE

    seeds, refs = _make_seeds(tmp_path), _write_refs(tmp_path / "refs.yaml")
    meta = REPORT_TABLE[0]
    (seeds / meta.file).write_text(TALK_TABLE[0].title + _body(TALK_TABLE[0].id), encoding="utf-8")
    report_refs = tmp_path / "report-refs.yaml"
    report_refs.write_text(
        yaml.safe_dump({meta.id: {"zh": ["摘要一。", "摘要二。"], "en": ["Summary."]}}, allow_unicode=True),
        encoding="utf-8",
    )
    out = tmp_path / "out" / "talks.jsonl"
    common = ["corpus", "derive", "--seeds", str(seeds), "--references", str(refs), "--out", str(out),
              "--report-references", str(report_refs)]
    assert cli_main(common) == 0
    (doc,) = load_corpus(out.with_name("summit-reports.jsonl"))
    assert doc.id == meta.id and doc.references == ("摘要一。", "摘要二。")
    assert cli_main([*common, "--check"]) == 0
    (seeds / meta.file).write_text(TALK_TABLE[0].title + _body(TALK_TABLE[0].id, 4), encoding="utf-8")
    assert cli_main([*common, "--check"]) == 1
    assert "summit-reports.jsonl" in capsys.readouterr().err
