"""The scenario registry: a new scenario is one file. Names, aliases and `--long-strategy` values come from the
scenario classes; a subclass registers itself; a scenario defined in a test module runs through the CLI, its
worker process loading it by reference."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import ClassVar

import pandas as pd
import pytest

from harness.cli import main
from harness.corpus import load_corpus
from harness.errors import HarnessError
from harness.prompts import load_template
from harness.scenarios import (
    DEFAULT_LONG_STRATEGY,
    DEFAULT_SCENARIO,
    find_scenario,
    long_strategy_names,
    resolve_scenario,
    scenario_class,
    scenario_names,
    scenario_ref,
    scenarios,
)
from harness.scenarios.base import REGISTERED, Scenario, ScenarioSettings
from harness.scenarios.long_document import LongDocumentConfig, MapReduceScenario, RefineScenario
from harness.scenarios.summarize import SummarizeConfig, SummarizeScenario

TESTS = Path(__file__).resolve().parent
TALK = "alibaba-qwen"
SETTINGS = ScenarioSettings(max_new_tokens=32, min_new_tokens=4, lang="zh", prompt_style="chat")


@pytest.fixture
def plugin() -> Iterator[ModuleType]:
    """Import tests/echo_scenario.py (registering "first-sentence"); unregister it afterwards."""
    sys.path.insert(0, str(TESTS))
    try:
        yield importlib.import_module("echo_scenario")
    finally:
        REGISTERED.pop("first-sentence", None)
        sys.modules.pop("echo_scenario", None)
        sys.path.remove(str(TESTS))


@pytest.fixture
def dummy_models(write_models, dummy_model_file: Path) -> Path:
    return write_models(
        f"- id: dummy\n  backend: dummy\n  quant: none\n  n_ctx: 4096\n  prompt_style: chat\n"
        f"  source: {{kind: path, path: {dummy_model_file}}}\n  flags: {{tok_per_s: 5000}}\n"
    )


def test_shipped_scenarios_register_from_their_modules() -> None:
    found = scenarios()
    assert found["summarize"] is SummarizeScenario
    assert found["map-reduce"] is MapReduceScenario and found["refine"] is RefineScenario
    assert {"map-reduce", "refine", "summarize"} <= set(scenario_names())
    strategies = long_strategy_names()
    assert strategies[0] == DEFAULT_LONG_STRATEGY and {"map-reduce", "refine"} <= set(strategies)


def test_long_strategy_selects_the_scenario_that_declares_it() -> None:
    assert resolve_scenario(DEFAULT_SCENARIO, DEFAULT_LONG_STRATEGY) is SummarizeScenario
    assert resolve_scenario("summarize", "map-reduce") is MapReduceScenario
    assert resolve_scenario("summarize", "refine") is RefineScenario
    assert resolve_scenario("refine", "truncate") is RefineScenario  # the default strategy leaves it to --scenario
    assert resolve_scenario("refine", "refine") is RefineScenario  # both name the same one: no conflict


def test_two_choices_and_unknown_names_are_one_line_errors() -> None:
    with pytest.raises(HarnessError, match=r"--scenario refine and --long-strategy map-reduce both choose"):
        resolve_scenario("refine", "map-reduce")
    with pytest.raises(HarnessError, match=r'unknown scenario "summarise"\. Did you mean "summarize"'):
        resolve_scenario("summarise", "truncate")
    with pytest.raises(HarnessError, match=r'unknown --long-strategy "refin"\. Did you mean "refine"'):
        resolve_scenario("summarize", "refin")
    with pytest.raises(HarnessError, match="cannot import scenario"):
        scenario_class("harness.scenarios.summarize:NoSuchScenario")
    with pytest.raises(HarnessError, match="is not a Scenario subclass"):
        scenario_class("harness.scenarios.summarize:SummarizeConfig")


def test_scenarios_build_their_own_config() -> None:
    summarize = SummarizeScenario.build_config(SETTINGS)
    assert summarize.config == SummarizeConfig(32, 4) and summarize.templates == ()
    for cls in (MapReduceScenario, RefineScenario):
        setup = cls.build_config(SETTINGS)
        expected = [load_template("zh", "chat", task=task) for task in ("map", "reduce", "refine")]
        assert setup.config == LongDocumentConfig(32, 4, *expected)
        assert list(setup.templates) == expected  # recorded in run.json `prompts`


def test_a_scenario_defined_outside_harness_registers_itself(plugin: ModuleType) -> None:
    cls = plugin.FirstSentenceScenario
    assert find_scenario("first-sentence") is cls and find_scenario("lead") is cls  # its alias
    assert {"first-sentence", "lead"} <= set(scenario_names())
    assert cls.long_strategy is None and "first-sentence" not in long_strategy_names()
    assert cls.build_config(SETTINGS).config == plugin.FirstSentenceConfig(max_chars=32)
    ref = scenario_ref(cls)
    assert ref == "echo_scenario:FirstSentenceScenario" and scenario_class(ref) is cls
    assert scenario_ref("summarize") == "harness.scenarios.summarize:SummarizeScenario"
    with pytest.raises(HarnessError, match="--scenario first-sentence and --long-strategy refine both choose"):
        resolve_scenario("first-sentence", "refine")


def test_a_second_class_cannot_take_a_registered_name_alias_or_strategy() -> None:
    taken = (
        {"name": "summarize"},
        {"name": "x-new", "aliases": ("refine",)},
        {"name": "x-new", "long_strategy": "map-reduce"},
    )
    for attrs in taken:
        with pytest.raises(TypeError, match=r"already taken by harness\.scenarios\."):
            type("Clash", (SummarizeScenario,), dict(attrs))
        assert "x-new" not in REGISTERED


def test_a_subclass_with_its_own_name_does_not_inherit_the_cli_names() -> None:
    class Shorter(RefineScenario):
        name: ClassVar[str] = "x-shorter-refine"

    try:
        assert Shorter.long_strategy is None and Shorter.aliases == ()
        assert resolve_scenario("summarize", "refine") is RefineScenario
    finally:
        REGISTERED.pop("x-shorter-refine", None)
    assert issubclass(Shorter, Scenario)


def test_the_throwaway_scenario_runs_through_the_cli(
    plugin: ModuleType, dummy_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "--scenario", "first-sentence", "--models", "dummy", "--models-file", str(dummy_models)]
    argv += ["--talks", TALK, "--repeats", "2", "--max-new-tokens", "40", "--out", str(tmp_path), "--no-bandwidth"]
    assert main(argv) == 0
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert record["config"]["scenario"] == "first-sentence"
    rows = pd.read_csv(run_dir / "results.csv", dtype=str, keep_default_na=False)
    (talk,) = [t for t in load_corpus() if t.id == TALK]
    first = talk.text.strip().split("。")[0] + "。"
    assert len(rows) == 2 and (rows["status"] == "ok").all()
    # The worker ran the plugin (loaded in its own process by reference), with the config its build_config made.
    assert (rows["stop_reason"] == "eos").all() and rows["output_tokens"].tolist() == ["0", "0"]
    summaries = [json.loads(line) for line in (run_dir / "summaries.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [s["prediction"] for s in summaries] == [first[:40]] * 2


def test_cli_refuses_two_scenario_choices_and_unregistered_names(
    plugin: ModuleType, dummy_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs"
    base = ["run", "--models", "dummy", "--models-file", str(dummy_models), "--out", str(out)]
    assert main([*base, "--scenario", "first-sentence", "--long-strategy", "refine"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "both choose a scenario; pass one" in err
    assert main([*base, "--scenario", "no-such-scenario"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "first-sentence" in err and "summarize" in err  # the choices, from the registry
    assert not out.exists() or not any(out.iterdir())  # refused before any run directory exists
