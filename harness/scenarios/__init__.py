"""Scenario registry: the `--scenario` and `--long-strategy` names, read from the scenario classes themselves.

A scenario is one module in this package with a `Scenario` subclass that sets `name`; defining the class
registers it (`Scenario.__init_subclass__`), and the first lookup here imports every module of the package
so that each file registers itself. A subclass defined anywhere else (a test module, a plugin) registers
the same way once its module is imported.

The run picks its scenario with `resolve_scenario(--scenario, --long-strategy)` and builds the worker's
config with `cls.build_config(ScenarioSettings(...))`. Worker processes receive `scenario_ref(cls)`
("module:QualName") and turn it back into the class with `scenario_class(ref)`, which also works for
classes outside this package (e.g. a test module's scenario).
"""

from __future__ import annotations

from harness.errors import HarnessError, unknown
from harness.plugins import PluginPackage, class_ref, import_ref
from harness.scenarios.base import REGISTERED, Scenario, ScenarioSettings, ScenarioSetup

__all__ = [
    "DEFAULT_LONG_STRATEGY",
    "DEFAULT_SCENARIO",
    "Scenario",
    "ScenarioSettings",
    "ScenarioSetup",
    "find_scenario",
    "long_strategy_names",
    "resolve_scenario",
    "scenario_class",
    "scenario_names",
    "scenario_ref",
    "scenarios",
]

# The option defaults (harness/params.py): summarize a document whole, truncating what does not fit. With
# the default strategy, --scenario alone decides; any other strategy is itself the choice of a scenario.
DEFAULT_SCENARIO = "summarize"
DEFAULT_LONG_STRATEGY = "truncate"

_PACKAGE = PluginPackage(__name__)  # imported on the first lookup; remembers modules that failed


def scenarios() -> dict[str, type[Scenario]]:
    """Every registered scenario by name."""
    _PACKAGE.discover()
    return dict(sorted(REGISTERED.items()))


def _by_alias() -> dict[str, type[Scenario]]:
    return {alias: cls for cls in scenarios().values() for alias in cls.aliases}


def _by_strategy() -> dict[str, type[Scenario]]:
    return {cls.long_strategy: cls for cls in scenarios().values() if cls.long_strategy is not None}


def scenario_names() -> list[str]:
    """The `--scenario` choices: every name and alias."""
    return sorted({*scenarios(), *_by_alias()})


def long_strategy_names() -> list[str]:
    """The `--long-strategy` choices: the value each scenario declares, the default first."""
    names = sorted(_by_strategy())
    return sorted(names, key=lambda name: name != DEFAULT_LONG_STRATEGY)


def find_scenario(name: str) -> type[Scenario]:
    """The class registered as `name` or with `name` among its aliases; unknown names get "did you mean"."""
    known = {**_by_alias(), **scenarios()}
    if name in known:
        return known[name]
    raise _PACKAGE.with_broken(unknown("scenario", name, known))


def resolve_scenario(scenario: str, long_strategy: str) -> type[Scenario]:
    """The scenario a run's `--scenario` and `--long-strategy` select.

    The default strategy leaves the choice to `--scenario`; another strategy selects the scenario that
    declares it, and then `--scenario` must be the default (or that same scenario): two different choices
    are one line naming both options.
    """
    chosen = find_scenario(scenario)
    if long_strategy == DEFAULT_LONG_STRATEGY:
        return chosen
    by_strategy = _by_strategy()
    if long_strategy not in by_strategy:
        raise _PACKAGE.with_broken(unknown("--long-strategy", long_strategy, by_strategy))
    strategy = by_strategy[long_strategy]
    if chosen is not strategy and chosen is not find_scenario(DEFAULT_SCENARIO):
        raise HarnessError(
            f"--scenario {scenario} and --long-strategy {long_strategy} both choose a scenario; pass one"
        )
    return strategy


def scenario_ref(scenario: type[Scenario] | str) -> str:
    """An importable reference to a scenario class, "module:QualName", for a worker process."""
    return class_ref(find_scenario(scenario) if isinstance(scenario, str) else scenario)


def scenario_class(name_or_ref: str) -> type[Scenario]:
    """The scenario class for a registered name (or alias) or a `scenario_ref`."""
    return import_ref(name_or_ref, Scenario, "scenario") if ":" in name_or_ref else find_scenario(name_or_ref)
