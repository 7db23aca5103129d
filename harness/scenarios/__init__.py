"""Scenarios by name, imported lazily (a scenario may pull in what only it needs).

`SCENARIO_MODULES` maps a scenario name to the module that defines it; the class is the module's
`Scenario` subclass whose `name` matches. The run config names the scenario; the worker looks it up here.
"""

from __future__ import annotations

import importlib

from harness.errors import unknown
from harness.scenarios.base import Scenario

SCENARIO_MODULES: dict[str, str] = {
    "summarize": "harness.scenarios.summarize",
    "map-reduce": "harness.scenarios.long_document",
    "refine": "harness.scenarios.long_document",
}


def scenario_class(name: str) -> type[Scenario]:
    if name not in SCENARIO_MODULES:
        raise unknown("scenario", name, SCENARIO_MODULES)
    module = importlib.import_module(SCENARIO_MODULES[name])
    for obj in vars(module).values():
        if isinstance(obj, type) and issubclass(obj, Scenario) and getattr(obj, "name", None) == name:
            return obj
    raise LookupError(f"{SCENARIO_MODULES[name]} defines no Scenario named {name!r}")
