"""The run options table: sweep grammar, validation, config ids, help and the docs options table generated from it."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from harness import params
from harness.errors import HarnessError
from harness.params import PARAMS, Config, expand, impossible, int_range, parse_int, parse_sweep

# The options table lives in docs/running.md (generated: .venv/bin/python tools/docs_tables.py).
OPTIONS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "running.md"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness run")
    params.add_arguments(parser)
    return parser


def _values(*argv: str) -> dict:
    return params.collect(_parser().parse_args(list(argv)))


# --- grammar -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4", [4]),
        ("1,2,4", [1, 2, 4]),
        ("1-4", [1, 2, 3, 4]),
        ("1-8+2", [1, 3, 5, 7]),
        ("1-16*2", [1, 2, 4, 8, 16]),
        ("1-20*3", [1, 3, 9]),
        ("512,1024-2048*2", [512, 1024, 2048]),
        ("3-3", [3]),
    ],
)
def test_llama_bench_sweep_grammar(text: str, expected: list[int]) -> None:
    assert parse_sweep(text, parse_int) == expected


@pytest.mark.parametrize("item", ["4-1", "1-8+0", "1-8*1", "0-8*2", "a-b", "1-", "1--2", "1-4/2", "1.5"])
def test_bad_ranges_are_rejected(item: str) -> None:
    with pytest.raises(ValueError):
        int_range(item)


def test_range_that_would_explode_is_rejected() -> None:
    with pytest.raises(ValueError, match="more than"):
        int_range("1-100000")


def test_threads_range_equals_list() -> None:
    assert _values("--threads", "1-2+1")["threads"] == _values("--threads", "1,2")["threads"] == [1, 2]


def test_repeated_flag_adds_values_like_llama_bench() -> None:
    assert _values("--threads", "1", "--threads", "2,4")["threads"] == [1, 2, 4]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ((), None),
        (("--flash-attn",), [True]),
        (("--no-flash-attn",), [False]),
        (("--flash-attn", "0,1"), [False, True]),
        (("--flash-attn", "off,on"), [False, True]),
    ],
)
def test_flash_attn_forms(argv: tuple[str, ...], expected: list[bool] | None) -> None:
    assert _values(*argv)["flash_attn"] == expected


def test_defaults_when_nothing_given() -> None:
    v = _values()
    assert v["models"] == [] and v["talks"] == [] and v["repeats"] == 1 and v["max_new_tokens"] == 256
    assert v["threads"] is None and v["n_ctx"] is None and v["long_strategy"] == "truncate"
    assert v["interleave"] is False and v["dry_run"] is False


# --- validation: one line, naming the flag ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (("--threads", "0"), ["--threads 0", "1 or more"]),
        (("--n-ctx", "0"), ["--n-ctx 0", "1 or more"]),
        (("--n-ctx", "-5"), ["--n-ctx -5"]),
        (("--threads", "-1"), ["--threads -1"]),
        (("--max-new-tokens", "0"), ["--max-new-tokens 0"]),
        (("--min-new-tokens", "-1"), ["--min-new-tokens -1"]),
        (("--n-gpu-layers", "-2"), ["--n-gpu-layers -2"]),
        (("--repeats", "0"), ["--repeats 0"]),
        (("--warmup", "-1"), ["--warmup -1"]),
        (("--cooldown", "-1"), ["--cooldown -1"]),
        (("--cooldown", "nan"), ["--cooldown nan"]),
        (("--models", "a,a"), ["--models a,a", '"a" is given twice']),
        (("--talks", "x,x"), ["--talks x,x", '"x" is given twice']),
        (("--threads", "1,2", "--threads", "2"), ['"2" is given twice']),
        (("--threads", "1,2,1-2"), ['"1" is given twice']),
        (("--provider", "cpu,cpu"), ['"cpu" is given twice']),
        (("--threads", "two"), ["--threads two", "not a number or a range"]),
        (("--models", "a,,b"), ["empty item"]),
        (("--summary-lang", "fr"), ["zh, en"]),
        (("--long-strategy", "chunk"), ["map-reduce"]),
        (("--flash-attn", "2"), ["0 or 1"]),
    ],
)
def test_bad_values_are_one_line_usage_errors(argv: tuple[str, ...], words: list[str]) -> None:
    with pytest.raises(HarnessError) as err:
        _values(*argv)
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_cli_prints_one_line_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    for argv in (["--threads", "0"], ["--n-ctx", "0"], ["--models", "x,x"], ["--talks", "a,a"]):
        assert main(["run", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and argv[0] in err


# --- configs ---------------------------------------------------------------------------------------------


def test_cartesian_product_in_table_order_with_labels() -> None:
    configs = expand({"threads": [1, 2], "max_new_tokens": [16, 32]})
    assert len(configs) == 4
    assert [(c["max_new_tokens"], c["threads"]) for c in configs] == [(16, 1), (16, 2), (32, 1), (32, 2)]
    assert configs[0].swept == ("max_new_tokens", "threads")
    assert configs[1].label == "max_new_tokens=16 threads=2"
    assert len({c.config_id for c in configs}) == 4
    assert all(re.fullmatch(r"[0-9a-f]{8}", c.config_id) for c in configs)


def test_config_id_depends_on_settings_not_on_position_or_sweep() -> None:
    swept = {c["threads"]: c for c in expand({"threads": [1, 2, 4], "max_new_tokens": 64})}
    alone = expand({"threads": 2, "max_new_tokens": 64})[0]
    assert alone.config_id == swept[2].config_id
    assert alone.label == "" and swept[2].label == "threads=2"
    assert expand({"threads": 2, "max_new_tokens": 65})[0].config_id != alone.config_id


def test_config_id_ignores_unset_settings() -> None:
    # A sweep option added later (unset = None) must not change the ids of existing configs.
    base = Config((("threads", 2), ("max_new_tokens", 16)))
    extended = Config((("threads", 2), ("max_new_tokens", 16), ("concurrency", None)))
    assert base.config_id == extended.config_id


def test_no_sweep_gives_one_config_of_defaults() -> None:
    (config,) = expand({})
    assert config["max_new_tokens"] == 256 and config["min_new_tokens"] == 0 and config["threads"] is None
    assert config.swept == ()


@pytest.mark.parametrize(
    ("settings", "n_ctx", "reason"),
    [
        ({"min_new_tokens": 64, "max_new_tokens": 32}, None, "--min-new-tokens 64 is above --max-new-tokens 32"),
        ({"max_new_tokens": 1024, "n_ctx": 1024}, None, "no room for a prompt in n_ctx 1024"),
        ({"max_new_tokens": 512}, 256, "no room for a prompt in n_ctx 256"),
    ],
)
def test_impossible_combinations_are_named(settings: dict, n_ctx: int | None, reason: str) -> None:
    (config,) = expand(settings)
    assert reason in (impossible(config, n_ctx) or "")


def test_possible_combination() -> None:
    (config,) = expand({"max_new_tokens": 16, "n_ctx": 1024})
    assert impossible(config) is None


def test_thread_warning_above_usable_cores() -> None:
    configs = expand({"threads": [1, 64]})
    (warning,) = params.thread_warnings(configs, cores=2)
    assert "--threads 64" in warning and "2 CPU(s)" in warning
    assert params.thread_warnings(expand({"threads": [1, 2]}), cores=2) == []


# --- help and docs -------------------------------------------------------------------------------------


def test_help_shows_every_option_and_its_default() -> None:
    text = _parser().format_help()
    for p in PARAMS:
        assert p.flag in text
    assert "(default: 256)" in text and "(default: usable physical cores)" in text
    assert "first-last[+step|*mult]" in text


def test_every_option_fills_a_runconfig_field_or_is_the_commands_own() -> None:
    import dataclasses

    from harness.run import RunConfig

    fields = {f.name for f in dataclasses.fields(RunConfig)}
    missing = [p.flag for p in PARAMS if p.config and p.name not in fields]
    assert missing == []


def test_docs_options_table_is_generated_from_the_table() -> None:
    text = OPTIONS_PAGE.read_text(encoding="utf-8")
    start, end = "<!-- options:start", "<!-- options:end -->"
    assert start in text and end in text
    block = text[text.index(start) :].split("\n", 1)[1]
    block = block[: block.index(end)].strip()
    assert block == params.describe()
