"""Help pages: a description, examples and every option's default on each; one metavar per option; rich
output prints brackets as written."""

from __future__ import annotations

import argparse
import io
import sys
from collections import defaultdict

import pytest
from rich.table import Table

from harness.cli import EXAMPLES, build_parser, invoked_prog, main, subparsers_of
from harness.console import plain_console

# `--out` is a directory for run/report and a file for score/corpus derive; `--device` names this device
# (fleet worker) or filters by a list of them (leaderboard): the metavar says which.
MEANING_DIFFERS = {"--out", "--device"}


def pages() -> list[tuple[str, argparse.ArgumentParser]]:
    return list(subparsers_of(build_parser(prog="harness")))


def value_options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        a for a in parser._actions if a.option_strings and a.nargs != 0 and a.help != argparse.SUPPRESS
    ]


def test_every_page_has_a_description_and_examples() -> None:
    seen = set()
    for path, parser in pages():
        seen.add(path)
        text = parser.format_help()
        if path:  # the top level's description is the program's one-line summary
            assert parser.description, f"`harness {path} --help` has no description"
        assert "examples:\n" in text, f"`harness {path} --help` has no examples"
        examples = text.split("examples:\n", 1)[1]
        assert f"harness {path}".strip() in examples  # %(prog)s expanded to this page's command
        assert "%(" not in text
    assert seen == set(EXAMPLES)  # no example block for a command that does not exist


def test_every_option_states_its_default_and_has_a_metavar() -> None:
    for path, parser in pages():
        formatter = parser._get_formatter()
        for action in value_options(parser):
            flag = action.option_strings[-1]
            assert action.metavar or action.choices, f"{path} {flag}: no explicit metavar"
            if action.required:
                continue
            rendered = formatter._expand_help(action)
            assert "default" in rendered, f"`harness {path} {flag}`: help does not state the default"


def test_metavars_are_consistent_across_commands() -> None:
    metavars: dict[str, set[str]] = defaultdict(set)
    for _, parser in pages():
        for action in value_options(parser):
            if not action.choices:
                metavars[action.option_strings[-1]].add(str(action.metavar))
    mixed = {flag: names for flag, names in metavars.items() if len(names) > 1 and flag not in MEANING_DIFFERS}
    assert not mixed
    assert metavars["--models-file"] == {"FILE.yaml"}


def test_default_is_appended_once() -> None:
    text = build_parser(prog="harness")._subparsers._group_actions[0].choices["compare"].format_help()
    flat = " ".join(text.split())
    assert "(default: table)" in flat and "(default 0.05)" in flat and "(default: 0.05)" not in flat


def test_prog_is_the_command_as_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "orig_argv", [".venv/bin/python", "-m", "harness", "run"], raising=False)
    assert invoked_prog("/x/harness/__main__.py") == ".venv/bin/python -m harness"
    assert invoked_prog("/x/.venv/bin/harness") == "harness"


def test_brackets_print_as_written() -> None:
    buf = io.StringIO()
    console = plain_console(file=buf, width=80)
    table = Table()
    table.add_column("hint [onnx]")
    table.add_row("pip install -e '.[onnx]'")
    console.print(table)
    console.print("model [bold]x[/bold]")
    out = buf.getvalue()
    assert "pip install -e '.[onnx]'" in out and "hint [onnx]" in out and "[bold]x[/bold]" in out


def test_providers_hint_keeps_the_extra(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.commands import providers

    monkeypatch.setattr(providers, "onnx_report", lambda: {"installed": False, "hint": "pip install -e '.[onnx]'"})
    monkeypatch.setattr(providers, "llama_cpp_report", lambda: {"installed": False, "hint": "pip install [x]"})
    assert main(["providers"]) == 0
    out = capsys.readouterr().out
    assert "ONNX Runtime: not installed (pip install -e '.[onnx]')" in out
    assert "llama.cpp: not installed (pip install [x])" in out
