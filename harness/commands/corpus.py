"""`harness corpus`: inspect the talks, and rebuild the built-in corpus from the seed articles.

`python -m harness corpus list [--corpus FILE.jsonl]` prints a table of talks;
`python -m harness corpus derive [--seeds DIR] [--out FILE] [--references FILE] [--check]` rebuilds
talks.jsonl, context.jsonl and summit-reports.jsonl (or, with --check, exits 1 if the shipped files are stale).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.table import Table

from harness.console import plain_console
from harness.corpus import BUILTIN_CORPORA, BUILTIN_CORPUS, load_corpus
from harness.corpus.derive import (
    DEFAULT_SEEDS,
    REFERENCES_FILE,
    REPORT_REFERENCES_FILE,
    TALKS_FILE,
    check_corpus,
    write_corpus,
)
from harness.env import harness_command


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "corpus",
        help="list the talks, or rebuild the built-in corpus from the seed articles",
        description="Inspect a corpus (`list`), or rebuild the built-in one from the summit articles in "
        "../shared/seeds/ and the hand-written references.yaml (`derive`; `derive --check` only compares).",
    )
    sub = parser.add_subparsers(dest="corpus_command", metavar="ACTION", required=True)

    lister = sub.add_parser(
        "list",
        help="table of talks: id, speaker, organisation, length, references",
        description="One row per talk: id (what --talks takes), speaker, organisation, language, length "
        "in characters and reference summaries per language.",
    )
    lister.add_argument(
        "--corpus",
        default=None,
        metavar="NAME|FILE.jsonl",
        help=f"a built-in corpus ({', '.join(BUILTIN_CORPORA)}) or a JSONL file (default: {BUILTIN_CORPUS})",
    )
    lister.set_defaults(func=_list)

    derive = sub.add_parser(
        "derive",
        help="rebuild talks.jsonl, context.jsonl and summit-reports.jsonl from the seed articles and references",
        description="Split the seed articles into talks (deduplicated across the overlapping articles, "
        "summit intro kept apart in context.jsonl), attach the references, and write the corpus.",
    )
    derive.add_argument(
        "--seeds",
        type=Path,
        default=DEFAULT_SEEDS,
        metavar="DIR",
        help=f"directory of seed articles (*.txt); default {DEFAULT_SEEDS} (relative to the current dir)",
    )
    derive.add_argument(
        "--out",
        type=Path,
        default=TALKS_FILE,
        metavar="FILE.jsonl",
        help="talks JSONL to write; context.jsonl goes beside it (default: the built-in corpus)",
    )
    derive.add_argument(
        "--references",
        type=Path,
        default=REFERENCES_FILE,
        metavar="FILE.yaml",
        help="hand-written reference summaries (default: the built-in references.yaml)",
    )
    derive.add_argument(
        "--report-references",
        type=Path,
        default=REPORT_REFERENCES_FILE,
        metavar="FILE.yaml",
        help=f"reference summaries of the whole reports (default: the built-in {REPORT_REFERENCES_FILE.name})",
    )
    derive.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if the files at --out differ from a fresh derivation",
    )
    derive.set_defaults(func=_derive)


def _list(args: argparse.Namespace) -> int:
    talks = load_corpus(args.corpus)
    table = Table(title=f"{len(talks)} talks")
    # The id is what --talks takes: never cut or wrapped (the other columns shrink instead), so it can be
    # copied from the table whatever the terminal width.
    table.add_column("id", no_wrap=True, min_width=max((len(t.id) for t in talks), default=2))
    for column in ("speaker", "organisation", "lang"):
        table.add_column(column)
    table.add_column("chars", justify="right")
    table.add_column("references", justify="right")
    for talk in talks:
        counts = {talk.lang: len(talk.references)}
        counts.update({lang: len(refs) for lang, refs in sorted(talk.references_by_lang.items())})
        table.add_row(  # str(): a JSONL corpus may give a number (or null) where text is meant
            talk.id,
            "" if talk.speaker is None else str(talk.speaker),
            "" if talk.organisation is None else str(talk.organisation),
            str(talk.lang),
            str(len(talk.text)),
            " ".join(f"{lang}:{n}" for lang, n in counts.items()),
        )
    plain_console(pipe_width=200).print(table)
    return 0


def _derive(args: argparse.Namespace) -> int:
    if args.check:
        stale = check_corpus(args.seeds, args.out, args.references, args.report_references)
        for path in stale:
            print(
                f"{path} differs from a fresh derivation; run `{harness_command()} corpus derive`",
                file=sys.stderr,
            )
        if not stale:
            print(f"{args.out} is up to date with {args.seeds}")
        return 1 if stale else 0
    written, notes = write_corpus(args.seeds, args.out, args.references, args.report_references)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    for path in written:
        print(f"wrote {path}")
    return 0
