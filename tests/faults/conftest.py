"""Fixtures of the fault suite (issue 11) and the case count printed at the end; the suite itself is
described in faultcli.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from faultcli import DUMMY_ENTRY, FAULTS_DIR, Started


@pytest.fixture
def start_cli() -> Iterator[Callable[..., Started]]:
    started: list[Started] = []

    def _start(*args: str | Path, env: dict[str, str] | None = None) -> Started:
        s = Started(*args, env=env)
        started.append(s)
        return s

    yield _start
    for s in started:  # never leave a run (or its workers) behind a failed test
        if s.proc.poll() is None:
            s.kill_group()
            s.proc.communicate()


@pytest.fixture
def dummy_models(write_models, dummy_model_file: Path) -> Callable[..., Path]:
    """models.yaml with dummy entries: dummy_models(fast={}, slow={"tok_per_s": 5})."""

    def _write(**entries: dict[str, object]) -> Path:
        body = "".join(DUMMY_ENTRY.format(id=name, path=dummy_model_file, opts=opts) for name, opts in entries.items())
        return write_models(body)

    return _write


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from forkcli import close_server

    close_server()  # the fork server of run_cli (forkcli.py) ends with the session


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """One line at the end: how many fault cases ran and how they ended."""
    prefix = FAULTS_DIR.relative_to(config.rootpath).as_posix() + "/"
    rank = {"passed": 0, "xfailed": 1, "xpassed": 1, "skipped": 2, "error": 3, "failed": 4}
    outcome: dict[str, str] = {}
    for category, reports in terminalreporter.stats.items():
        if category not in rank:
            continue
        for report in reports:
            nodeid = getattr(report, "nodeid", "")
            if nodeid.startswith(prefix) and rank[category] >= rank.get(outcome.get(nodeid, "passed"), 0):
                outcome[nodeid] = category
    if outcome:
        counts = {k: sum(1 for v in outcome.values() if v == k) for k in rank}
        detail = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
        terminalreporter.write_line(f"fault suite (tests/faults): {len(outcome)} cases: {detail}")
