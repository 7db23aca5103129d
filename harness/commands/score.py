"""`harness score INPUT`: ROUGE and summary signals for a JSONL file or a finished run directory.

INPUT is either
- a JSONL file, one object per line: {"prediction": str, "references": [str, ...],
  "lang": "zh"|"en" (optional), "source": str (optional, the talk text), "id": any (optional)}, or
- a run directory holding summaries.jsonl (written by `harness run`); rows whose status is not "ok"
  are skipped.

Output is JSON lines: one per scored row with the results.csv column names (plus "line" and "id", or
"line", "model", "talk_id", "repeat" for a run directory), then one final line
{"mean": {...}, "n": ..., "skipped": ...}; for a run directory it also has "by_model": per model and
metric, the mean over talks with a 95% Student-t CI (harness.results.aggregate, the same aggregation as
summary_models.csv, compare and report). Repeats of one talk are averaged first, because they are not
independent samples: the CI is over talks. For metrics on [0, 1] (ROUGE, shares) the interval is clipped
to that range, and such an entry carries "clipped": true (`bounded_ci`).

A row's language is its own "lang" ("summary_lang" in a run), else --lang, else guessed from its
references.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from harness import safefs
from harness.errors import HarnessError
from harness.jsonl import read_objects
from harness.results.layout import SUMMARIES_JSONL

EXPECTED = "a JSON object with prediction and references"

# Kept here rather than imported from harness.scoring so that building the CLI parser does not import
# rouge-score/nltk (about a second); tests check they equal harness.scoring.TOKENIZERS / LANGS.
TOKENIZER_CHOICES: tuple[str, ...] = ("auto", "char", "jieba", "porter")
LANG_CHOICES: tuple[str, ...] = ("zh", "en")
RUN_FILE = SUMMARIES_JSONL


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "score",
        help="ROUGE + summary signals for a JSONL file or a run directory",
        description=(
            "Score summaries against references (ROUGE-1/2/L/Lsum, compression, novel n-grams, repetition, "
            "language match). INPUT is a JSONL file with prediction/references[/lang/source/id] per line, "
            f"or a run directory containing {RUN_FILE}. Writes JSON lines, then a mean line."
        ),
    )
    parser.add_argument(
        "input", type=Path, metavar="INPUT", help=f"JSONL file or run directory with {RUN_FILE}"
    )
    parser.add_argument(
        "--lang",
        choices=LANG_CHOICES,
        help="summary language for rows that do not say (default: guessed from the references)",
    )
    parser.add_argument(
        "--tokenizer",
        choices=TOKENIZER_CHOICES,
        default="auto",
        help="auto (default): characters for zh, rouge-score + Porter stemmer for en; "
        "char; jieba (Chinese words); porter (English only)",
    )
    parser.add_argument(
        "--out", type=Path, metavar="FILE.jsonl", help="write JSON lines here (default: standard output)"
    )
    parser.set_defaults(func=run)


@dataclass
class _Row:
    ident: dict[str, Any]
    prediction: str
    references: list[str]
    lang: str
    source: str | None


def _resolve_lang(obj: dict[str, Any], key: str, default: str | None, refs: list[str], where: str) -> str:
    from harness.corpus import detect_lang

    lang = obj.get(key) or default
    if lang is None:
        if not refs:
            raise HarnessError(f'{where}: no "{key}" and no references to guess it from; pass --lang zh|en')
        lang = detect_lang(" ".join(refs))
    if lang not in LANG_CHOICES:
        raise HarnessError(
            f'{where}: "{key}" must be "zh" or "en", got {json.dumps(lang, ensure_ascii=False)}'
        )
    return str(lang)


def _fields(obj: dict[str, Any], where: str) -> tuple[str, list[str], str | None]:
    prediction = obj.get("prediction")
    if not isinstance(prediction, str):
        raise HarnessError(f'{where}: "prediction" must be a string (the summary to score)')
    refs = obj.get("references")
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise HarnessError(f'{where}: "references" must be a list of strings')
    source = obj.get("source")
    if source is not None and not isinstance(source, str):
        raise HarnessError(f'{where}: "source" must be a string (the talk text) or absent')
    return prediction, refs, source


def _jsonl_rows(path: Path, default_lang: str | None) -> Iterator[_Row]:
    for lineno, where, obj in read_objects(path, EXPECTED):
        prediction, refs, source = _fields(obj, where)
        ident: dict[str, Any] = {"line": lineno}
        if "id" in obj:
            ident["id"] = obj["id"]
        lang = _resolve_lang(obj, "lang", default_lang, refs, where)
        yield _Row(ident, prediction, refs, lang, source)


def _run_rows(path: Path, default_lang: str | None, skipped: Counter[str]) -> Iterator[_Row]:
    from harness.results.durable import stderr_warning

    # A run cut off while writing may end in a torn line: skipped with a warning, the rest is scored.
    for lineno, where, obj in read_objects(path, EXPECTED, torn_tail=stderr_warning):
        status = obj.get("status")
        if status != "ok":
            skipped[str(status)] += 1
            continue
        for key in ("model", "talk_id"):
            if not isinstance(obj.get(key), str):
                raise HarnessError(
                    f'{where}: "{key}" must be a string; is this a {RUN_FILE} from harness run?'
                )
        prediction, refs, source = _fields(obj, where)
        ident = {
            "line": lineno,
            "model": obj["model"],
            "talk_id": obj["talk_id"],
            "repeat": obj.get("repeat"),
        }
        lang = _resolve_lang(obj, "summary_lang", default_lang, refs, where)
        yield _Row(ident, prediction, refs, lang, source)


def _json_value(value: Any) -> Any:
    # JSON has no NaN; an undefined score is null, as it is an empty cell in results.csv.
    return None if isinstance(value, float) and math.isnan(value) else value


def _numeric(value: Any) -> float:
    if value is None or isinstance(value, str):
        return math.nan
    return float(value)  # bool (lang_match) -> 0/1, so its mean is the share of matches


def _means(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key in keys:
        vals = [v for v in (_numeric(r[key]) for r in rows) if not math.isnan(v)]
        out[key] = sum(vals) / len(vals) if vals else None
    return out


def _by_model(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    import pandas as pd

    from harness.results import aggregate

    frame = pd.DataFrame(rows)
    stats = aggregate.group_metrics(frame, keys)
    talks = aggregate.talk_means(frame, [])
    out: dict[str, dict[str, Any]] = {}
    for (model,) in sorted(stats):
        mine = talks[talks["model"] == model]
        entry: dict[str, Any] = {"n_talks": len(mine), "n_samples": int(mine["n"].sum())}
        entry.update({key: bounded_ci(key, stats[(model,)][key].ci.as_dict()) for key in keys})
        out[model] = entry
    return out


def unit_range(key: str) -> tuple[float, float] | None:
    """The range a score cannot leave: [0, 1] for the schema's 0-1 metrics and for true/false shares."""
    from harness.results.schema import SPECS

    spec = SPECS.get(key)
    if spec is not None and (spec.unit == "0-1" or spec.aggregate == "share"):
        return (0.0, 1.0)
    return None


def bounded_ci(key: str, ci: dict[str, Any]) -> dict[str, Any]:
    """The Student-t interval clipped to the metric's range, with "clipped": true where an end was cut.

    Clipping rather than a logit or Wilson interval: those need per-sample counts (ROUGE is not a share of
    trials) or break on the exact 0 and 1 a degenerate model scores; the clipped end says honestly that the
    interval reaches the bound, and the unclipped side keeps the same t interval compare and report use.
    """
    bounds = unit_range(key)
    if bounds is None:
        return ci
    low, high = bounds
    out = dict(ci)
    clipped = False
    if out.get("lo") is not None and out["lo"] < low:
        out["lo"], clipped = low, True
    if out.get("hi") is not None and out["hi"] > high:
        out["hi"], clipped = high, True
    if clipped:
        out["clipped"] = True
    return out


def _score_all(rows: Iterator[_Row], tokenizer: str, out: IO[str]) -> list[dict[str, Any]]:
    from harness.scoring import score_summary

    scored: list[dict[str, Any]] = []
    for row in rows:
        scores = score_summary(row.prediction, row.references, row.lang, row.source, tokenizer)
        record = {**row.ident, **scores}
        out.write(json.dumps({k: _json_value(v) for k, v in record.items()}, ensure_ascii=False) + "\n")
        scored.append(record)
    return scored


def _open_out(path: Path) -> IO[str]:
    """--out FILE, its parent folders created; any OS refusal is a one-line error naming the path."""
    if path.is_dir():
        raise HarnessError(f"--out {path} is a directory; give a file name such as {path / 'scores.jsonl'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return safefs.open_output(path)  # never through a planted link or into a FIFO/device (harness.safefs)
    except OSError as exc:
        blocker = next((p for p in reversed(path.parents) if p.is_file()), None)
        why = f"{blocker} is a file, not a folder" if blocker else exc.strerror or str(exc)
        raise HarnessError(f"cannot write --out {path}: {why}; choose another path") from None


def run(args: argparse.Namespace) -> int:
    from harness.scoring import SCORE_KEYS

    path: Path = args.input
    if path.is_dir():
        summaries = path / RUN_FILE
        if not summaries.is_file():
            raise HarnessError(
                f"no {RUN_FILE} in {path}; pass a run directory (out/<run_id>) or a JSONL file"
            )
    elif not path.is_file():
        raise HarnessError(f"input not found: {path}; pass a JSONL file or a run directory")

    numeric_keys = tuple(k for k in SCORE_KEYS if k != "rouge_tokenizer")
    skipped: Counter[str] = Counter()
    rows = _run_rows(path / RUN_FILE, args.lang, skipped) if path.is_dir() else _jsonl_rows(path, args.lang)

    try:
        with _open_out(args.out) if args.out else contextlib.nullcontext(sys.stdout) as out:
            scored = _score_all(rows, args.tokenizer, out)
            if not scored:
                what = "rows with status ok" if path.is_dir() else "lines"
                raise HarnessError(f"nothing to score: {path} has no {what}")
            final: dict[str, Any] = {"mean": _means(scored, numeric_keys), "n": len(scored)}
            if path.is_dir():
                final["skipped"] = skipped.total()
                final["by_model"] = _by_model(scored, numeric_keys)
            out.write(json.dumps(final, ensure_ascii=False) + "\n")
    except OSError as exc:
        if args.out is None:
            raise  # stdout itself failed (a closed pipe): not a file of ours to clean up
        # A full or read-only disk mid-write: no truncated scores file is left to be mistaken for a result.
        with contextlib.suppress(OSError):
            if args.out.is_file() and not args.out.is_symlink():
                args.out.unlink()
        raise HarnessError(
            f"cannot write --out {args.out}: {exc.strerror or exc}; free space or choose another path (nothing kept)"
        ) from None
    if skipped:
        detail = ", ".join(f"{n} {s}" for s, n in sorted(skipped.items()))
        print(
            f"harness score: skipped {skipped.total()} rows whose status is not ok ({detail})",
            file=sys.stderr,
        )
    return 0
