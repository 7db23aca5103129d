"""Derive the built-in corpora from the seed articles: the talks (`data/talks.jsonl`, `data/context.jsonl`)
and the whole reports (`data/summit-reports.jsonl`).

The seeds are two Chinese news articles about one AIGC summit. They overlap (the second repeats the
talks of the first and adds two more), headlines are sometimes glued to the previous sentence with no
newline, and the longer article opens with a summit intro and a section header that belong to no talk.

Only the five talks' metadata is tabled here (id, speaker, organisation, headline); everything else is
computed: each headline is located in each file, a talk's text runs from the end of its headline to
the next headline (or end of file), text before the first headline is non-talk context, and the copies
of a talk found in several files are compared and merged. Reference summaries are hand-written in
`data/references.yaml` and attached by talk id.

The `summit-reports` corpus keeps each seed article whole, as one long document (they are 2.2k and 3.9k
characters, beyond the talks' 0.5-0.8k): the article's text unchanged except that every headline, the
summit intro and the section header become paragraphs of their own (the articles glue them to the
neighbouring sentence), so a long-document strategy can split on paragraph boundaries. Which seed file is
which report is tabled (`REPORT_TABLE`); the references are in `data/summit-reports.references.yaml`.

Run `python -m harness corpus derive` to regenerate, `--check` to verify the shipped files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import yamlload
from harness.errors import HarnessError, unknown

DATA_DIR = Path(__file__).resolve().parent / "data"
TALKS_FILE = DATA_DIR / "talks.jsonl"
CONTEXT_FILE = DATA_DIR / "context.jsonl"
REFERENCES_FILE = DATA_DIR / "references.yaml"
REPORTS_FILE = DATA_DIR / "summit-reports.jsonl"
REPORT_REFERENCES_FILE = DATA_DIR / "summit-reports.references.yaml"
# Relative to the current directory, which is the repo root when run from a checkout.
DEFAULT_SEEDS = Path("..") / "shared" / "seeds"
SEED_GLOB = "*.txt"
LANG = "zh"

# A sentence is finished by one of these; a run of text after the last of them with none of its own is
# a heading (e.g. "AIGC模型层：微软阿里高通等玩家谈落地"), not part of the prose before it.
_SENTENCE_END = re.compile(r"[。！？!?…][”’」』）)\"']*")
_MAX_HEADER_CHARS = 60


@dataclass(frozen=True)
class TalkMeta:
    id: str
    speaker: str
    organisation: str
    title: str  # the article's headline for the talk, exactly as printed; used to find the talk


# Summit order is computed from the seeds, not taken from this table.
TALK_TABLE: tuple[TalkMeta, ...] = (
    TalkMeta("microsoft-azure", "李冕", "微软", "微软李冕：AI应用已进入新阶段，微软助力企业级应用全球落地"),
    TalkMeta(
        "kunlun-tiangong",
        "方汉",
        "昆仑万维",
        "昆仑万维方汉：天工SkyMusic音乐大模型将大大降低音乐创作的门槛和成本",
    ),
    TalkMeta("alibaba-qwen", "林俊旸", "阿里巴巴", "阿里通义千问林俊旸：智能模型应融入对视觉/语音的理解"),
    TalkMeta(
        "qualcomm-npu",
        "万卫星",
        "高通",
        "高通万卫星：具有异构计算系统的高通AI引擎可以充分满足生成式AI的多样性要求",
    ),
    TalkMeta("ant-codefuse", "李建国", "蚂蚁集团", "蚂蚁李建国：超70%代码问题单纯靠基座模型是解决不了的"),
)


@dataclass(frozen=True)
class ReportMeta:
    file: str  # seed file name
    id: str
    title: str  # a description: the articles have no headline of their own in the seed text


REPORT_TABLE: tuple[ReportMeta, ...] = (
    ReportMeta("000_90d166baeb45be4e.txt", "report-qwen-qualcomm-ant", "AIGC产业峰会报道：阿里、高通、蚂蚁三场演讲"),
    ReportMeta("001_0479221b74e2f0e0.txt", "report-model-layer", "AIGC产业峰会梳理：开场与模型层五场演讲"),
)


@dataclass
class Derivation:
    """The derived corpus plus notes on what was merged (differing copies of a talk, etc.)."""

    talks: list[dict[str, Any]]
    context: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Piece:
    """One copy of a talk or context block as found in one seed file."""

    key: str  # talk id, or "<kind>-<talk id it precedes>" for context
    text: str
    source: str
    kind: str = "talk"  # talk | intro | section
    before_talk: str = ""


def split_trailing_header(segment: str) -> tuple[str, str]:
    """Split `segment` into (prose, header): header is the unpunctuated tail after the last sentence."""
    segment = segment.strip()
    ends = list(_SENTENCE_END.finditer(segment))
    cut = ends[-1].end() if ends else 0
    tail = segment[cut:].strip()
    # A long unpunctuated tail is more likely a sentence missing its full stop than a heading.
    if not tail or len(tail) > _MAX_HEADER_CHARS or "\n" in tail:
        return segment, ""
    return segment[:cut].strip(), tail


def _find_headlines(text: str, source: str) -> list[tuple[int, TalkMeta]]:
    found: list[tuple[int, TalkMeta]] = []
    for meta in TALK_TABLE:
        count = text.count(meta.title)
        if count > 1:
            raise HarnessError(
                f'{source}: headline of talk "{meta.id}" appears {count} times; '
                "each seed article should print a talk once"
            )
        if count == 1:
            found.append((text.index(meta.title), meta))
    return sorted(found, key=lambda item: item[0])


def _split_file(text: str, source: str) -> tuple[list[str], list[_Piece]]:
    """Cut one seed article into talk pieces and context pieces; also return the talk order."""
    heads = _find_headlines(text, source)
    if not heads:
        return [], []
    pieces: list[_Piece] = []
    first_pos, first_meta = heads[0]
    intro, section = split_trailing_header(text[:first_pos])
    if intro:
        pieces.append(_Piece(f"intro-{first_meta.id}", intro, source, "intro", first_meta.id))
    if section:
        pieces.append(_Piece(f"section-{first_meta.id}", section, source, "section", first_meta.id))
    for i, (pos, meta) in enumerate(heads):
        end = heads[i + 1][0] if i + 1 < len(heads) else len(text)
        body, header = split_trailing_header(text[pos + len(meta.title) : end])
        if not body:
            raise HarnessError(f'{source}: talk "{meta.id}" has a headline but no text after it')
        pieces.append(_Piece(meta.id, body, source))
        if header and i + 1 < len(heads):
            # A heading just before the next talk opens a new section of the article.
            nxt = heads[i + 1][1].id
            pieces.append(_Piece(f"section-{nxt}", header, source, "section", nxt))
        elif header:
            pieces.append(_Piece(f"trailer-{meta.id}", header, source, "trailer", meta.id))
    return [meta.id for _, meta in heads], pieces


def _merge_order(sequences: Sequence[Sequence[str]]) -> list[str]:
    """One summit order from each file's talk order: longest file first, others slotted in after
    their predecessor, so a file holding a subset of the talks never reorders them."""
    order: list[str] = []
    for seq in sorted(sequences, key=len, reverse=True):
        for i, talk_id in enumerate(seq):
            if talk_id in order:
                continue
            # seq[i - 1] was placed on the previous step, so it is always in `order` here.
            at = order.index(seq[i - 1]) + 1 if i else 0
            order.insert(at, talk_id)
    return order


def _first_difference(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def _merge_copies(key: str, copies: list[_Piece], notes: list[str]) -> tuple[str, list[str]]:
    """Pick one text among a block's copies: identical copies merge; otherwise keep the longest
    (the other article cut it short or abridged it) and say so in `notes`."""
    texts = {c.text for c in copies}
    if len(texts) == 1:
        return copies[0].text, sorted(c.source for c in copies)
    # Longest wins; ties go to the first file by name so the result stays deterministic.
    kept = max(sorted(copies, key=lambda c: c.source), key=lambda c: len(c.text))
    for other in copies:
        if other.text == kept.text:
            continue
        at = _first_difference(kept.text, other.text)
        how = "is a truncated copy" if kept.text.startswith(other.text) else f"differs from char {at}"
        notes.append(
            f'"{key}": the copy in {other.source} ({len(other.text)} chars) {how} of the one in '
            f"{kept.source} ({len(kept.text)} chars); kept {kept.source}"
        )
    return kept.text, sorted(c.source for c in copies if c.text == kept.text)


def _str_list(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise HarnessError(f"{where}: must be a non-empty list of non-empty strings")
    refs = [v.strip() for v in value]
    if len(set(refs)) != len(refs):
        raise HarnessError(f"{where}: has duplicate summaries; each reference must be distinct")
    return refs


def load_references(path: Path, talk_ids: Sequence[str]) -> dict[str, dict[str, list[str]]]:
    """`{talk id: {lang: [summary, ...]}}` from the YAML file, checked against the derived talk ids."""
    if not path.is_file():
        raise HarnessError(f"references file not found: {path}; pass --references FILE.yaml")
    raw = yamlload.load_file(path)  # strict: no aliases, no duplicate keys, not-UTF-8 is one line
    if not isinstance(raw, dict):
        raise HarnessError(f"{path}: expected a mapping of talk id to {{zh: [...], en: [...]}}")
    refs: dict[str, dict[str, list[str]]] = {}
    for talk_id, by_lang in raw.items():
        if talk_id not in talk_ids:
            raise unknown("talk id in " + str(path), str(talk_id), talk_ids)
        if not isinstance(by_lang, dict):
            raise HarnessError(f"{path}: {talk_id}: expected a mapping of language to a list of summaries")
        refs[talk_id] = {str(lang): _str_list(v, f"{path}: {talk_id}.{lang}") for lang, v in by_lang.items()}
    for talk_id in talk_ids:
        if LANG not in refs.get(talk_id, {}):
            raise HarnessError(f'{path}: talk "{talk_id}" has no "{LANG}" references; add at least one')
    return refs


def derive(seeds_dir: Path, references_path: Path = REFERENCES_FILE) -> Derivation:
    if not seeds_dir.is_dir():
        raise HarnessError(f"seeds directory not found: {seeds_dir}; pass --seeds DIR")
    files = sorted(seeds_dir.glob(SEED_GLOB))
    if not files:
        raise HarnessError(f"no {SEED_GLOB} files in seeds directory {seeds_dir}; pass --seeds DIR")
    sequences: list[list[str]] = []
    pieces: dict[str, list[_Piece]] = {}
    for path in files:
        order, found = _split_file(path.read_text(encoding="utf-8"), path.name)
        if order:
            sequences.append(order)
        for piece in found:
            pieces.setdefault(piece.key, []).append(piece)
    order = _merge_order(sequences)
    missing = [m.id for m in TALK_TABLE if m.id not in order]
    if missing:
        raise HarnessError(
            f"headline of talk(s) {', '.join(missing)} not found in any file in {seeds_dir}; "
            "pass --seeds DIR with the summit articles"
        )

    notes: list[str] = []
    refs = load_references(references_path, order)
    meta = {m.id: m for m in TALK_TABLE}
    talks: list[dict[str, Any]] = []
    for talk_id in order:
        text, sources = _merge_copies(talk_id, pieces[talk_id], notes)
        talk_refs = refs[talk_id]
        talks.append(
            {
                "id": talk_id,
                "speaker": meta[talk_id].speaker,
                "organisation": meta[talk_id].organisation,
                "title": meta[talk_id].title,
                "lang": LANG,
                "text": text,
                "references": talk_refs[LANG],
                "references_by_lang": {lang: r for lang, r in sorted(talk_refs.items()) if lang != LANG},
                "source_files": sources,
            }
        )

    context: list[dict[str, Any]] = []
    kind_rank = {"intro": 0, "section": 1, "trailer": 2}
    context_keys = [k for k, copies in pieces.items() if copies[0].kind != "talk"]
    for key in sorted(
        context_keys, key=lambda k: (order.index(pieces[k][0].before_talk), kind_rank[pieces[k][0].kind])
    ):
        text, sources = _merge_copies(key, pieces[key], notes)
        first = pieces[key][0]
        context.append(
            {
                "id": key,
                "kind": first.kind,
                # A trailer follows its talk; intros and section headers open the talk after them.
                ("after_talk" if first.kind == "trailer" else "before_talk"): first.before_talk,
                "lang": LANG,
                "text": text,
                "source_files": sources,
            }
        )
    return Derivation(talks, context, notes)


def report_paragraphs(text: str, source: str) -> list[str]:
    """The article as paragraphs: intro, section header, then per talk its headline, its text and any
    header after it; the article's own line breaks are kept inside these."""
    heads = _find_headlines(text, source)
    if not heads:
        return [p.strip() for p in text.splitlines() if p.strip()]
    intro, section = split_trailing_header(text[: heads[0][0]])
    paragraphs = [intro, section]
    for i, (pos, meta) in enumerate(heads):
        end = heads[i + 1][0] if i + 1 < len(heads) else len(text)
        body, header = split_trailing_header(text[pos + len(meta.title) : end])
        paragraphs += [meta.title, body, header]
    # Inner newlines of the article stay paragraph breaks; empty pieces go.
    return [line.strip() for p in paragraphs for line in p.splitlines() if line.strip()]


def derive_reports(
    seeds_dir: Path, references_path: Path = REPORT_REFERENCES_FILE
) -> tuple[list[dict[str, Any]], list[str]]:
    """(reports, notes): one document per seed article in REPORT_TABLE, with its references attached.
    A tabled article missing from `seeds_dir` is left out with a note (a `--check` then fails)."""
    if not seeds_dir.is_dir():
        raise HarnessError(f"seeds directory not found: {seeds_dir}; pass --seeds DIR")
    present = [m for m in REPORT_TABLE if (seeds_dir / m.file).is_file()]
    notes = [
        f"report {m.id}: seed file {m.file} not in {seeds_dir}; left out" for m in REPORT_TABLE if m not in present
    ]
    if not present:
        return [], notes
    refs = load_references(references_path, [m.id for m in present])
    reports: list[dict[str, Any]] = []
    for meta in present:
        text = (seeds_dir / meta.file).read_text(encoding="utf-8")
        report_refs = refs[meta.id]
        reports.append(
            {
                "id": meta.id,
                "title": meta.title,
                "lang": LANG,
                "text": "\n".join(report_paragraphs(text, meta.file)),
                "references": report_refs[LANG],
                "references_by_lang": {lang: r for lang, r in sorted(report_refs.items()) if lang != LANG},
                "talks": [m.id for _, m in _find_headlines(text, meta.file)],
                "source_files": [meta.file],
            }
        )
    return reports, notes


def derive_corpus(seeds_dir: Path, references_path: Path = REFERENCES_FILE) -> tuple[list[dict], list[dict]]:
    """(talks, context) derived from the seed articles and the hand-written references."""
    result = derive(seeds_dir, references_path)
    return result.talks, result.context


def to_jsonl(records: Sequence[dict[str, Any]]) -> str:
    # Key order is the order the records were built in, so the output is byte-stable.
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def render(seeds_dir: Path, references_path: Path = REFERENCES_FILE) -> tuple[str, str, list[str]]:
    """(talks.jsonl text, context.jsonl text, notes)."""
    result = derive(seeds_dir, references_path)
    return to_jsonl(result.talks), to_jsonl(result.context), result.notes


def context_path_for(talks_path: Path) -> Path:
    """context.jsonl lives beside talks.jsonl."""
    return talks_path.with_name(CONTEXT_FILE.name)


def reports_path_for(talks_path: Path) -> Path:
    """summit-reports.jsonl lives beside talks.jsonl."""
    return talks_path.with_name(REPORTS_FILE.name)


def _rendered_files(
    seeds_dir: Path, out: Path, references_path: Path, report_references: Path
) -> tuple[list[tuple[Path, str]], list[str]]:
    talks_text, context_text, notes = render(seeds_dir, references_path)
    reports, report_notes = derive_reports(seeds_dir, report_references)
    files = [(out, talks_text), (context_path_for(out), context_text), (reports_path_for(out), to_jsonl(reports))]
    return files, notes + report_notes


def write_corpus(
    seeds_dir: Path,
    out: Path = TALKS_FILE,
    references_path: Path = REFERENCES_FILE,
    report_references: Path = REPORT_REFERENCES_FILE,
) -> tuple[list[Path], list[str]]:
    """Write talks.jsonl to `out`, context.jsonl and summit-reports.jsonl beside it; return (paths, notes)."""
    files, notes = _rendered_files(seeds_dir, out, references_path, report_references)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for path, text in files:
        with path.open("w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        written.append(path)
    return written, notes


def check_corpus(
    seeds_dir: Path,
    out: Path = TALKS_FILE,
    references_path: Path = REFERENCES_FILE,
    report_references: Path = REPORT_REFERENCES_FILE,
) -> list[Path]:
    """The files at `out` (and beside it) that differ from a fresh derivation; empty when up to date."""
    files, _ = _rendered_files(seeds_dir, out, references_path, report_references)
    return [path for path, text in files if not path.is_file() or path.read_text(encoding="utf-8") != text]


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m harness.corpus.derive [SEEDS_DIR]`: regenerate the shipped files."""
    seeds = Path(argv[0]) if argv else DEFAULT_SEEDS
    written, notes = write_corpus(seeds)
    for note in notes:
        print(f"note: {note}")
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
