"""`harness corpus`: inspect the talks, and rebuild the built-in corpus from the seed articles.

`python -m harness corpus list [--corpus FILE.jsonl]` prints a table of talks;
`python -m harness corpus derive [--seeds DIR] [--out FILE] [--references FILE] [--check]` rebuilds
talks.jsonl and context.jsonl (or, with --check, exits 1 if the shipped files are stale).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from harness.corpus import load_corpus
from harness.corpus.derive import DEFAULT_SEEDS, REFERENCES_FILE, TALKS_FILE, check_corpus, write_corpus


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "corpus", help="list the talks, or rebuild the built-in corpus from the seed articles"
    )
    sub = parser.add_subparsers(dest="corpus_command", metavar="ACTION", required=True)

    lister = sub.add_parser("list", help="table of talks: id, speaker, organisation, length, references")
    lister.add_argument(
        "--corpus", type=Path, default=None, metavar="FILE", help="a JSONL corpus (default: built-in)"
    )
    lister.set_defaults(func=_list)

    derive = sub.add_parser(
        "derive",
        help="rebuild talks.jsonl and context.jsonl from the seed articles and references.yaml",
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
        metavar="FILE",
        help="talks JSONL to write; context.jsonl goes beside it (default: the built-in corpus)",
    )
    derive.add_argument(
        "--references",
        type=Path,
        default=REFERENCES_FILE,
        metavar="FILE",
        help="hand-written reference summaries (default: the built-in references.yaml)",
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
    for column in ("id", "speaker", "organisation", "lang"):
        table.add_column(column)
    table.add_column("chars", justify="right")
    table.add_column("references", justify="right")
    for talk in talks:
        counts = {talk.lang: len(talk.references)}
        counts.update({lang: len(refs) for lang, refs in sorted(talk.references_by_lang.items())})
        table.add_row(
            talk.id,
            talk.speaker,
            talk.organisation,
            talk.lang,
            str(len(talk.text)),
            " ".join(f"{lang}:{n}" for lang, n in counts.items()),
        )
    Console().print(table)
    return 0


def _derive(args: argparse.Namespace) -> int:
    if args.check:
        stale = check_corpus(args.seeds, args.out, args.references)
        for path in stale:
            print(
                f"{path} differs from a fresh derivation; run `python -m harness corpus derive`",
                file=sys.stderr,
            )
        if not stale:
            print(f"{args.out} is up to date with {args.seeds}")
        return 1 if stale else 0
    written, notes = write_corpus(args.seeds, args.out, args.references)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    for path in written:
        print(f"wrote {path}")
    return 0
