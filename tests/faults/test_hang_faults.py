"""Hangs (issue 21): every phase of a worker -- start, load, warm-up, sample, stop -- has a deadline enforced
from the parent (harness.launchers.watchdog.PhaseDeadlines), and the HTTP client an overall per-request
deadline, not only a per-read one. Each case: the run ends by itself within the bound stated in the test,
with error rows naming the phase, no traceback, and exit 4 (every sample failed)."""

from __future__ import annotations

import csv
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from faultcli import Started, assert_no_traceback, run_args, run_cli
from hostile import hostile_server, openai_entry, trickle

from harness.launchers.protocol import Loaded, Ready, WarmedUp
from harness.launchers.session import SessionFailed, WorkerSession
from harness.launchers.watchdog import PhaseDeadlines, phase_deadlines


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "results.csv").open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _model_workers(run: Started) -> list[int]:
    import psutil

    pids = []
    for pid in run.worker_pids():
        try:
            if "spawn_main" in " ".join(psutil.Process(pid).cmdline()):
                pids.append(pid)
        except psutil.Error:
            continue
    assert pids, "no worker process found"
    return pids


# --- the parent's deadlines, through the real CLI ---------------------------------------------------------
def test_a_worker_stopped_during_warm_up_is_killed_at_the_warm_up_deadline(
    start_cli: Callable[..., Started], dummy_models: Callable[..., Path], tmp_path: Path
) -> None:
    # Warm-up of 8 tokens at 2 tok/s takes 4 s: long enough to SIGSTOP it mid-way. Deadline: 1 run x 5 s.
    models = dummy_models(slow={"tok_per_s": 2})
    run = start_cli(*run_args(models, tmp_path / "out", "slow", "--sample-timeout", "5"))
    run.wait_for_line(lambda line: "warming up" in line, timeout=60)
    for pid in _model_workers(run):  # not multiprocessing's resource tracker: the parent waits on it at exit
        os.kill(pid, signal.SIGSTOP)
    result = run.finish(timeout=40)  # bound: 5 s deadline + kill + writing two error rows
    assert result.returncode == 4, result.explain()  # every sample failed (commands/run.py)
    assert_no_traceback(result)
    rows = _rows(result.run_dir)
    assert len(rows) == 2 and all(r["status"] == "error" for r in rows)
    assert "warm-up did not finish within 5 s" in rows[0]["error"]


def test_the_default_phase_deadlines_are_bounded_and_scale() -> None:
    small, big = phase_deadlines(30.0, 0, 1), phase_deadlines(30.0, 20 * 2**30, 3)
    assert small.start_s and small.load_s and small.warmup_s == 30.0
    assert big.load_s is not None and small.load_s is not None and big.load_s > small.load_s
    assert big.warmup_s == 90.0


# --- the session's deadlines with a launcher that never answers (no process: fast and exact) --------------
class _SilentLauncher:
    """Answers the messages in `script`, then nothing: a stalled worker at the next phase."""

    def __init__(self, script: list[object]) -> None:
        self.script = list(script)
        self.killed = False
        self.waits: list[float | None] = []

    pid = os.getpid()

    def start(self) -> None:
        return

    def send(self, msg: object) -> None:
        return

    def recv(self, timeout_s: float | None = None) -> object:
        self.waits.append(timeout_s)
        if self.script:
            return self.script.pop(0)
        if timeout_s is None:
            raise AssertionError("a phase without a deadline would wait for ever here")
        raise TimeoutError

    def kill(self) -> None:
        self.killed = True

    def close(self, timeout_s: float = 10.0) -> None:
        return


@pytest.fixture
def job() -> Iterator[object]:
    from harness.backends.base import BackendOptions
    from harness.launchers.worker import WorkerJob
    from harness.prompts import load_template

    yield WorkerJob("m", "dummy", "", "chat", BackendOptions(threads=1, n_ctx=512), load_template("zh", "chat"),
                    "summarize", None)  # fmt: skip


LOADED = Loaded(0.1, "cpu", 512, True)


@pytest.mark.parametrize(
    ("script", "phase", "deadline"),
    [([], "worker start", 1.5), ([Ready()], "model load", 2.5), ([Ready(), LOADED], "warm-up", 3.5)],
    ids=["start", "load", "warm-up"],
)
def test_each_phase_that_never_answers_fails_at_its_deadline(
    job: object, script: list[object], phase: str, deadline: float
) -> None:
    from harness.scenarios.base import SampleSpec

    launcher = _SilentLauncher(script)
    session = WorkerSession(
        job,  # type: ignore[arg-type]
        [],
        launcher_factory=lambda _job: launcher,  # type: ignore[arg-type,return-value]
        deadlines=PhaseDeadlines(start_s=1.5, load_s=2.5, warmup_s=3.5),
    )
    with pytest.raises(SessionFailed, match=f"{phase} did not finish within {deadline:g} s"):
        session.open(SampleSpec(-1, "t", -1, "text"), 1)
    assert launcher.killed
    assert None not in launcher.waits


def test_a_warm_session_opens_within_its_deadlines(job: object) -> None:
    from harness.scenarios.base import SampleSpec

    launcher = _SilentLauncher([Ready(), LOADED, WarmedUp(0.1, 1)])
    session = WorkerSession(job, [], launcher_factory=lambda _job: launcher)  # type: ignore[arg-type,return-value]
    info = session.open(SampleSpec(-1, "t", -1, "text"), 1)
    assert info.warmed is not None and not launcher.killed


# --- the HTTP client's overall deadline -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("route", "phase_text"),
    [
        (("POST", "/v1/chat/completions"), "request timed out (overall limit 2 s"),
        (("GET", "/v1/models"), "request timed out (overall limit 2 s"),
    ],
    ids=["trickle-during-warm-up", "trickle-models-during-load"],
)
def test_a_server_trickling_bytes_without_a_newline_is_cut_at_the_request_deadline(
    write_models: Callable[..., Path], tmp_path: Path, route: tuple[str, str], phase_text: str
) -> None:
    with hostile_server({route: trickle(seconds=30)}) as server:
        models = write_models(openai_entry("served", server.url, timeout_s=2))
        t0 = time.monotonic()
        result = run_cli(*run_args(models, tmp_path / "out", "served"), timeout=60)
    # bound: 2 s deadline (+ one 50 ms chunk) per request, then error rows; far below the 30 s trickle
    assert time.monotonic() - t0 < 25, result.explain()
    assert result.returncode == 4, result.explain()  # every sample failed (commands/run.py)
    assert_no_traceback(result)
    rows = _rows(result.run_dir)
    assert rows and all(r["status"] == "error" for r in rows)
    assert phase_text in rows[0]["error"], rows[0]["error"]


def test_a_stalled_sample_after_warm_up_is_still_the_sample_watchdog(
    write_models: Callable[..., Path], tmp_path: Path
) -> None:
    # No warm-up: the first request is a sample; its overall deadline ends it, one error row per sample.
    with hostile_server({("POST", "/v1/chat/completions"): trickle(seconds=30)}) as server:
        models = write_models(openai_entry("served", server.url, timeout_s=2))
        result = run_cli(*run_args(models, tmp_path / "out", "served", "--warmup", "0"), timeout=60)
    assert result.returncode == 4, result.explain()  # every sample failed (commands/run.py)
    assert_no_traceback(result)
    rows = _rows(result.run_dir)
    assert len(rows) == 2 and all("request timed out" in r["error"] for r in rows)


# --- a chat template that burns CPU, on llama.cpp ---------------------------------------------------------
# Nested loops of 10^5 x 10^5 iterations: Jinja's sandbox (llama-cpp-python renders the GGUF's template with
# jinja2's ImmutableSandboxedEnvironment) caps each range() at 10^5 items but not the work of nested loops, so
# the template is accepted and renders for hours. Only the parent's deadlines end it.
BURNING_TEMPLATE = (
    "{%- for a in range(100000) %}{%- for b in range(100000) %}{%- endfor %}{%- endfor %}"
    "{%- for message in messages %}{{ message['content'] }}{%- endfor %}"
)


@pytest.fixture(scope="module")
def burning_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny-qwen2 whose tokenizer.chat_template is BURNING_TEMPLATE, and a models.yaml entry `burn` for it."""
    pytest.importorskip("llama_cpp")
    from harness.models import generators

    folder = tmp_path_factory.mktemp("burning-template")
    gguf = folder / "burn.gguf"
    with pytest.MonkeyPatch.context() as mp:  # the generator writes the module's CHATML_TEMPLATE
        mp.setattr(generators, "CHATML_TEMPLATE", BURNING_TEMPLATE)
        generators.write_tiny_qwen2(gguf)
    models = folder / "models.yaml"
    models.write_text(
        "models:\n  - {id: burn, backend: llama_cpp, quant: F32, n_ctx: 2048, prompt_style: chat, "
        f"source: {{kind: path, path: {gguf}}}}}\n",
        encoding="utf-8",
    )
    return models


@pytest.mark.parametrize(
    ("warmup", "error_text"),
    [("1", "warm-up did not finish within 3 s"), ("0", "timeout after 3 s")],
    ids=["warm-up-deadline", "sample-watchdog"],
)
def test_a_chat_template_that_burns_cpu_ends_at_a_deadline(
    burning_gguf: Path, tmp_path: Path, warmup: str, error_text: str
) -> None:
    t0 = time.monotonic()
    result = run_cli(
        *run_args(burning_gguf, tmp_path / "out", "burn", "--sample-timeout", "3", "--warmup", warmup), timeout=90
    )
    # bound: load + 3 s warm-up deadline (or 3 s per sample, 2 samples) + kill + error rows; the template
    # alone would render for hours
    assert time.monotonic() - t0 < 60, result.explain()
    assert result.returncode == 4, result.explain()  # every sample failed (commands/run.py)
    assert_no_traceback(result)
    rows = _rows(result.run_dir)
    assert len(rows) == 2 and all(r["status"] == "error" for r in rows), rows
    assert all(error_text in r["error"] for r in rows), [r["error"] for r in rows]
