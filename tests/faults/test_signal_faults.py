"""Signals and stalls through the real CLI: SIGTERM and Ctrl-C stop a run at once with run.json saying
so, `--resume` completes it without duplicates, a killed parent leaves no worker behind, and the
watchdog turns a stalled worker (SIGSTOP) into a timeout row while the run goes on."""

from __future__ import annotations

import csv
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from faultcli import Started, assert_no_traceback, run_args, run_cli

# Model "slow" takes ~2 s per sample (8 tokens at 4 tok/s): long enough to be caught mid-sample.
SLOW = {"tok_per_s": 4}
TALKS = "alibaba-qwen,qualcomm-npu,ant-codefuse"
NO_WARMUP = ("--warmup", "0")  # warm-up would cost a slow model's sample time per worker


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "results.csv").open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text(encoding="utf-8"))


def _workers(run: Started) -> list[psutil.Process]:
    """The spawned model workers (not multiprocessing's resource tracker)."""
    procs = psutil.Process(run.proc.pid).children(recursive=True)
    return [p for p in procs if "spawn_main" in " ".join(p.cmdline())]


def _sample_line(model: str, talk: str) -> Callable[[str], bool]:
    """The progress line printed as `model`'s sample of `talk` starts: `[2/6] slow · qualcomm-npu · r0 …`."""
    return lambda line: f"] {model} · {talk} · r0" in line


def _run_dir(result_stdout: str) -> Path:
    return Path(result_stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_mid_sample_stops_at_once_and_resume_completes_the_run(
    tmp_path: Path, dummy_models: Callable[..., Path], start_cli: Callable[..., Started], sig: int, code: int
) -> None:
    models = dummy_models(slow=SLOW, fast={})
    run = start_cli(*run_args(models, tmp_path, "slow,fast", "--talks", TALKS, *NO_WARMUP))
    run.wait_for_line(_sample_line("slow", "qualcomm-npu"))
    time.sleep(0.5)  # inside the 2 s sample
    workers = _workers(run)
    os.kill(run.proc.pid, sig)  # the parent alone, as `timeout` and `kill` do
    sent = time.monotonic()
    result = run.finish(timeout=30)
    assert time.monotonic() - sent < 5, "the run must not wait for the sample to finish"
    assert result.returncode == code, result.explain()
    assert_no_traceback(result)
    assert signal.Signals(sig).name in result.stderr and "--resume" in result.stderr
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
    run_dir = _run_dir(result.stdout)
    record = _record(run_dir)
    assert record["status"] == "interrupted" and record["interrupted_by"] == signal.Signals(sig).name
    assert record["written_rows"] == len(_rows(run_dir)) == 1  # the interrupted sample has no row
    assert record["planned_samples"] == 6
    if sig != signal.SIGTERM:
        return  # resuming does not depend on which signal stopped the run: checked once, after SIGTERM

    resumed = run_cli("run", "--resume", run_dir)
    assert resumed.returncode == 0, resumed.explain()
    rows = _rows(run_dir)
    keys = [(r["model"], r["talk_id"], r["repeat"]) for r in rows]
    assert len(keys) == len(set(keys)) == 6 and all(r["status"] == "ok" for r in rows)
    assert sorted(int(r["sample_seq"]) for r in rows) == list(range(6))
    assert len((run_dir / "summaries.jsonl").read_text(encoding="utf-8").splitlines()) == 6
    record = _record(run_dir)
    assert record["status"] == "complete" and record["written_rows"] == 6
    assert record["resumes"][0]["rows_before"] == 1
    assert record["resumes"][0]["stopped_by"] == signal.Signals(sig).name
    again = run_cli("run", "--resume", run_dir)
    assert "already complete" in again.stderr and again.returncode == 2


def test_ctrl_c_to_the_process_group_is_quiet(
    tmp_path: Path, dummy_models: Callable[..., Path], start_cli: Callable[..., Started]
) -> None:
    run = start_cli(*run_args(dummy_models(slow=SLOW), tmp_path, "slow", *NO_WARMUP))
    run.wait_for_line(_sample_line("slow", "alibaba-qwen"))
    time.sleep(0.5)
    os.killpg(run.proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: parent and worker
    result = run.finish(timeout=30)
    assert result.returncode == 130, result.explain()
    assert_no_traceback(result)  # the worker's stderr is the same pipe: no KeyboardInterrupt from it either
    assert _record(_run_dir(result.stdout))["status"] == "interrupted"


def test_resume_refuses_a_changed_corpus_and_other_options(
    tmp_path: Path, dummy_models: Callable[..., Path], start_cli: Callable[..., Started]
) -> None:
    corpus = tmp_path / "talks.jsonl"
    lines = [json.dumps({"id": f"t{i}", "text": "这是一段演讲。" * 20, "references": ["摘要"]}) for i in range(3)]
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    models = dummy_models(slow=SLOW)
    run = start_cli("run", "--models-file", models, "--models", "slow", "--corpus", corpus, "--max-new-tokens", "8",
                    "--no-bandwidth", "--out", tmp_path / "runs", *NO_WARMUP)  # fmt: skip
    run.wait_for_line(_sample_line("slow", "t1"))
    os.kill(run.proc.pid, signal.SIGTERM)
    result = run.finish(timeout=30)
    assert result.returncode == 143, result.explain()
    run_dir = _run_dir(result.stdout)
    refused = run_cli("run", "--resume", run_dir, "--repeats", "2")
    assert refused.returncode == 2 and "drop --repeats" in refused.stderr
    corpus.write_text("\n".join([*lines, lines[0].replace("t0", "t9")]) + "\n", encoding="utf-8")
    refused = run_cli("run", "--resume", run_dir)
    assert refused.returncode == 2, refused.explain()
    assert "changed" in refused.stderr and "start a new run" in refused.stderr
    assert len(_rows(run_dir)) == 1  # nothing appended by the refused resumes


def test_a_killed_parent_leaves_no_worker_behind(
    tmp_path: Path, dummy_models: Callable[..., Path], start_cli: Callable[..., Started]
) -> None:
    run = start_cli(*run_args(dummy_models(slow={"tok_per_s": 1}), tmp_path, "slow", *NO_WARMUP))  # 8 s samples
    run.wait_for_line(_sample_line("slow", "alibaba-qwen"))
    workers = _workers(run)
    assert workers
    run.proc.kill()  # SIGKILL: no handler runs in the parent
    _gone, alive = psutil.wait_procs(workers, timeout=5)
    assert not alive, "the worker outlived its parent (it should die with it: PR_SET_PDEATHSIG)"
    result = run.finish(timeout=10)
    assert_no_traceback(result)  # no BrokenPipe tracebacks from an orphan


def test_watchdog_turns_a_stalled_worker_into_a_timeout_row(
    tmp_path: Path, dummy_models: Callable[..., Path], start_cli: Callable[..., Started]
) -> None:
    models = dummy_models(slow=SLOW, fast={})
    run = start_cli(*run_args(models, tmp_path, "slow,fast", "--talks", TALKS, "--sample-timeout", "4", *NO_WARMUP))
    run.wait_for_line(_sample_line("slow", "qualcomm-npu"))
    time.sleep(0.3)
    (worker,) = _workers(run)
    worker.suspend()  # SIGSTOP mid-sample: the parent waits on a worker that will never answer
    result = run.finish(timeout=60)  # the run ends by itself
    assert result.returncode == 1, result.explain()  # one error row
    assert_no_traceback(result)
    rows = {(r["model"], r["talk_id"]): r for r in _rows(_run_dir(result.stdout))}
    assert len(rows) == 6
    assert rows[("slow", "qualcomm-npu")]["status"] == "error"
    assert rows[("slow", "qualcomm-npu")]["error"] == "timeout after 4 s"
    # the rest of the model ran in a fresh worker; the other model is complete
    assert rows[("slow", "ant-codefuse")]["status"] == "ok"
    assert all(rows[("fast", t)]["status"] == "ok" for t in TALKS.split(","))
    assert not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE


def test_a_stalled_sample_that_recovers_is_never_ok(
    tmp_path: Path, dummy_models: Callable[..., Path], start_cli: Callable[..., Started]
) -> None:
    models = dummy_models(slow=SLOW)
    run = start_cli(*run_args(models, tmp_path, "slow", "--talks", TALKS, "--sample-timeout", "3", *NO_WARMUP))
    run.wait_for_line(_sample_line("slow", "qualcomm-npu"))
    time.sleep(0.3)
    (worker,) = _workers(run)
    parent = psutil.Process(run.proc.pid)
    parent.suspend()  # the parent too (a suspended laptop): nobody is there to enforce the deadline
    worker.suspend()
    time.sleep(4)  # past the deadline
    worker.resume()
    time.sleep(2.5)  # the worker finishes its sample; its answer waits in the pipe
    parent.resume()
    result = run.finish(timeout=60)
    assert_no_traceback(result)
    rows = {r["talk_id"]: r for r in _rows(_run_dir(result.stdout))}
    assert rows["qualcomm-npu"]["status"] == "error" and rows["qualcomm-npu"]["error"] == "timeout after 3 s"
    assert rows["alibaba-qwen"]["status"] == "ok" and rows["ant-codefuse"]["status"] == "ok"
