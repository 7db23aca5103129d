"""Command line: `python -m harness <command>`.

Each command lives in `harness/commands/<name>.py` with `register(subparsers)`, which adds its parser
and sets `func` to a callable taking the parsed args and returning an exit code. User mistakes raise
`HarnessError` and print as one line; nothing else is caught here.

Help pages are made uniform here rather than in each command: every page gets `HelpFormatter` (an
option's default is appended where its help does not state one) and its examples from `EXAMPLES`, and
`prog` is the command as typed (`.venv/bin/python -m harness`), so the examples can be pasted as shown.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import textwrap
from collections.abc import Iterator, Sequence
from typing import Any

from harness import __version__
from harness.env import harness_command
from harness.errors import HarnessError, suggest

COMMANDS = (
    "run", "models", "score", "compare", "report", "providers", "prepare", "corpus", "fleet", "db", "leaderboard",
    "crosscheck", "tools", "judge",
)


# Examples shown at the end of each help page, keyed by the command path ("" = top level).
# `%(prog)s` is that page's own command line, e.g. `.venv/bin/python -m harness run`.
EXAMPLES: dict[str, tuple[tuple[str, str], ...]] = {
    "": (
        ("run", "benchmark the default models on the built-in corpus"),
        ("run --models tiny-qwen2 --talks alibaba-qwen", "plumbing check in seconds, no download"),
        ("report results/<run>", "report.html + report.md for a run"),
        ("compare results/baseline results/<run>", "changes against the committed baseline"),
        ("models", "which models exist and which are cached"),
        ("COMMAND --help", "options and examples of one command"),
    ),
    "run": (
        ("", "default models, every talk, one repeat"),
        ("--models tiny-qwen2 --talks alibaba-qwen --max-new-tokens 32", "seconds, no download"),
        ("--repeats 3 --out results", "three timed samples per model x talk"),
        ("--models smollm2-135m-instruct-q4_1 --summary-lang en", "English summaries of the Chinese talks"),
        ("--offline", "only models already in the cache; exit 2 if one is missing"),
    ),
    "models": (
        ("", "every model with source, size and whether it is cached"),
        ("pull smollm2-135m-instruct-q4_1", "download now (verified by sha256)"),
        ("--models-file my-models.yaml", "your own models file"),
    ),
    "models pull": (("tiny-qwen2 smollm2-135m-instruct-q4_1", "generate / download into the cache"),),
    "score": (
        ("results/<run>", "re-score a run's summaries.jsonl"),
        ("predictions.jsonl --lang zh", "lines: {prediction, references[, lang, source, id]}"),
        ("results/<run> --tokenizer jieba --out scores.jsonl", "Chinese scored by words"),
    ),
    "compare": (
        ("results/baseline results/<run>", "per-model changes against the baseline"),
        ("results/a results/b --metrics decode_tok_s,ttft_s --format md", "two metrics, Markdown"),
        ("results/a results/b --fail-on-regression 10", "CI gate: exit 1 on a significant 10 %% loss"),
    ),
    "report": (
        ("results/<run>", "report.html and report.md in the run directory"),
        ("results/a results/b --out reports/ab", "two runs side by side"),
    ),
    "providers": (("", "what this machine offers"), ("--json", "the same as one JSON object")),
    "prepare": (("onnx smollm2-135m-instruct-q4_1 --precision int8", "GGUF -> ONNX, offline"),),
    "prepare onnx": (
        ("smollm2-135m-instruct-q4_1 --precision int8", "registered as smollm2-135m-instruct-onnx-int8"),
        ("smollm2-135m-instruct-q4_1 --precision int4 --builder-option block_size=64", "builder option"),
    ),
    "corpus": (
        ("list", "the built-in talks"),
        ("list --corpus my-talks.jsonl", "check your own corpus file"),
        ("derive --check", "is the shipped corpus up to date with the seeds?"),
    ),
    "corpus list": (("", "the built-in talks"), ("--corpus my-talks.jsonl", "your own corpus")),
    "corpus derive": (("--check", "exit 1 if the shipped files are stale"), ("", "rebuild them")),
    "fleet": (
        ("worker --scheduler tcp://10.0.0.5:8786 --device pi5", "join this device to a fleet"),
    ),
    "fleet worker": (
        ("--scheduler tcp://10.0.0.5:8786 --device pi5", "join the scheduler `dask scheduler` started"),
        ("--scheduler tcp://10.0.0.5:8786 --device laptop --tags npu,arm", "with tags for --devices tag:npu"),
    ),
    "db": (
        ("ingest results/<run>", "add a run to results/harness.duckdb"),
        ('query "select model, avg(decode_tok_s) from rows group by 1"', "one read-only SQL statement"),
        ("export --parquet exports/", "every table as Parquet"),
    ),
    "db ingest": (("results/<run> results/baseline", "add (or replace) runs"),),
    "db query": (('"select device, count(*) from rows group by 1"', "samples per device"),),
    "db export": (("--parquet exports/", "runs, rows, devices, summaries as Parquet"),),
    "leaderboard": (
        ("", "best config per model and device, from the results store"),
        ("--metric decode_tok_s,peak_rss_mb --device pi5", "rank by speed, then memory, on one device"),
    ),
    "crosscheck": (
        ("--models smollm2-135m-instruct-q4_1 --rounds 6", "harness vs llama-bench on the longest talk"),
        ("--models smollm2-135m-instruct-q4_1 --talks qualcomm-npu --poll 0 --rounds 4", "llama-bench busy-wait off"),
    ),
    "tools": (("build", "build llama-bench and llama-server once per machine (cached)"),),
    "judge": (
        ("results/<run> --judge-endpoint http://127.0.0.1:8080 --judge-model qwen", "rubric scores + probes"),
        ("results/<run> --judge-model qwen2.5-coder-1.5b-instruct-q4_k_m --via llama-cpp-server", "served here"),
        ("results/a --pairwise results/b --judge-endpoint http://127.0.0.1:8080 --judge-model qwen", "pairwise"),
    ),
    "tools build": (("", "10-20 min on 2 cores the first time, instant when cached"),),
    "tools where": (("", "the cached build's manifest and directory"),),
}


class HelpFormatter(argparse.HelpFormatter):
    """Wraps prose but keeps indented lines (the examples) as written, and appends `(default: X)` to an
    option whose help does not state its default (options without a value, and None or empty defaults,
    explain themselves)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out: list[str] = []
        paragraph: list[str] = []

        def flush() -> None:
            if paragraph:
                out.append(textwrap.fill(" ".join(paragraph), width, initial_indent=indent,
                                         subsequent_indent=indent))
                paragraph.clear()

        for line in text.splitlines():
            if line.startswith(" ") or not line.strip() or line.endswith(":"):
                flush()
                out.append(indent + line if line.strip() else "")
            else:
                paragraph.append(line.strip())
        flush()
        return "\n".join(out)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            "default" in text
            or not action.option_strings
            or action.nargs == 0
            or action.default in (None, argparse.SUPPRESS)
            or action.default == []
        ):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """Every parser of the CLI (sub-commands inherit the class through `add_parser`).

    Abbreviations are off: argparse would take `--thread 1` as `--threads 1`, and a benchmark must not guess
    what was meant. An unknown option instead gets a "did you mean" from the options of the command it was
    given to (`--max-tokens` -> `--max-new-tokens`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def option_strings(self) -> list[str]:
        return [s for action in self._actions for s in action.option_strings if s.startswith("--")]

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        # The innermost parser returns first; its attributes are copied to the parent's namespace, so the
        # first one set names the command whose options an unknown flag should be matched against.
        if not hasattr(parsed, _LEAF):
            setattr(parsed, _LEAF, self)
        return parsed, extras

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        parsed, extras = self.parse_known_args(args, namespace)
        leaf = getattr(parsed, _LEAF, self)
        delattr(parsed, _LEAF)
        if extras:
            leaf.error(unrecognized_message(extras, leaf.option_strings()))
        return parsed


_LEAF = "_harness_parser"


def unrecognized_message(extras: Sequence[str], options: Sequence[str]) -> str:
    """argparse's "unrecognized arguments" line, plus a "did you mean" for the first unknown option."""
    message = f"unrecognized arguments: {' '.join(extras)}"
    for extra in extras:
        if extra.startswith("--"):
            hint = suggest(extra.split("=", 1)[0], options)
            return f"{message}.{hint}" if hint else message
    return message


def invoked_prog(argv0: str | None = None) -> str:
    """How the user started the CLI, for usage lines and examples (harness.env.harness_command)."""
    return harness_command(argv0)


def subparsers_of(
    parser: argparse.ArgumentParser, path: str = ""
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """(command path, parser) for this parser and every sub-command below it, e.g. ("models pull", p)."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from subparsers_of(sub, f"{path} {name}".strip())


def _examples(path: str) -> str | None:
    """The page's examples: each a `# what it does` line over the command, ready to paste."""
    lines = EXAMPLES.get(path, ())
    if not lines:
        return None
    return "examples:\n" + "\n".join(f"  # {what}\n  %(prog)s {cmd}".rstrip() for cmd, what in lines)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = Parser(
        prog=prog or invoked_prog(),
        description="On-device LLM summarisation benchmark: latency, memory and ROUGE per model x talk.",
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"harness.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"harness.commands.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
    for path, page in subparsers_of(parser):
        page.formatter_class = HelpFormatter
        if page.epilog is None:
            page.epilog = _examples(path)
    return parser


def tolerant_stdio() -> None:
    """Characters the terminal's encoding cannot show (PYTHONIOENCODING=ascii, a C locale) print as "?"
    instead of raising UnicodeEncodeError mid-run: talk titles, model output and the progress line are
    Chinese, and a run must not fail because its log cannot show them. Files are written as UTF-8 anyway."""
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "").replace("_", "")
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and encoding not in ("utf8", "utf8sig"):
            with contextlib.suppress(ValueError, OSError):  # a closed or detached stream: leave it as it is
                reconfigure(errors="replace")


def main(argv: Sequence[str] | None = None) -> int:
    tolerant_stdio()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except HarnessError as exc:
        print(f"harness {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"harness {args.command}: interrupted; rows already written are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
