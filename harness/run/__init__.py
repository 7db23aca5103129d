"""The benchmark run, as its stages: settings (`config`), the order of samples (`plan`), the engine
check (`engine_check`), preparing a model (`models`), its worker session (`sessions`), rows (`rows`), the
run.json record (`record`), console lines (`echo`), and the orchestration that wires them (`runner`)."""

from harness.run.config import RunConfig
from harness.run.plan import PlannedSample, plan
from harness.run.runner import Runner
from harness.run.sessions import engine_gap_warning

__all__ = ["PlannedSample", "RunConfig", "Runner", "engine_gap_warning", "plan"]
