"""llama.cpp's weight repacking: the tiny quantised models, the self-check, its cache, the fallback, and what a
user sees when the engine dies (issue "Every real model runs on every CPU").

The real crash happens only on some CPUs (Intel Xeon with AMX, llama.cpp 0c1e570). The fallback is tested on
every CPU through the fault-injection hook HARNESS_FAULT_REPACK_SEGV=1: a process about to run llama.cpp with
repack on kills itself with SIGSEGV where the real crash happens (first decode). Everything else here runs the
real quantised kernels of this machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.backends import llama_cpp_repack as repack_mod
from harness.backends.llama_cpp_repack import FAULT_ENV, check_repack, model_params_repack
from harness.models.generators import GENERATORS

pytest.importorskip("llama_cpp")


def _cli(*args: str, env_extra: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def _run_dir(proc: subprocess.CompletedProcess) -> Path:
    return Path(proc.stdout.strip().splitlines()[-1])


def _dummy(model_id: str, weights: Path, flags: str = "{}") -> str:
    """A models.yaml entry of the model-free dummy backend (its flags script crashes)."""
    return (
        f"- id: {model_id}\n  backend: dummy\n  quant: none\n  n_ctx: 4096\n  prompt_style: chat\n"
        f"  source: {{kind: path, path: {weights}}}\n  flags: {flags}\n"
    )


def _rows(run_dir: Path) -> list[dict[str, str]]:
    import csv

    with (run_dir / "results.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize(("name", "ggml_type"), [("tiny-qwen2-q8_0", "Q8_0"), ("tiny-qwen2-q4_0", "Q4_0")])
def test_tiny_quantised_models_hold_quantised_matrices(tmp_path: Path, name: str, ggml_type: str) -> None:
    import gguf

    path = tmp_path / f"{name}.gguf"
    GENERATORS[name](path)
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(path).tensors}
    assert types["blk.0.attn_q.weight"] == ggml_type
    assert types["blk.1.ffn_down.weight"] == ggml_type
    assert types["token_embd.weight"] == "F32"  # embeddings are looked up, not multiplied: left as is
    assert path.stat().st_size < 400_000


def test_model_params_patch_sets_and_restores_use_extra_bufts() -> None:
    import llama_cpp.llama_cpp as lib

    assert lib.llama_model_default_params().use_extra_bufts is True  # llama.cpp's default
    with model_params_repack(False):
        assert lib.llama_model_default_params().use_extra_bufts is False
    assert lib.llama_model_default_params().use_extra_bufts is True


def test_self_check_runs_once_per_build_and_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FAULT_ENV, raising=False)
    first = check_repack(tmp_path)
    assert first.repack_ok is not None, first.summary  # crash (AMX machines) or ok: a verdict either way
    assert not first.cached
    assert first.seconds < 30
    assert first.build.startswith("llama-cpp-python ")
    assert first.cpu

    def no_child(*_a: object, **_k: object) -> None:
        raise AssertionError("the cached verdict must not start a child process")

    monkeypatch.setattr(repack_mod.subprocess, "run", no_child)
    second = check_repack(tmp_path)
    assert second.cached
    assert second.repack_ok == first.repack_ok
    assert second.key == first.key


def test_self_check_sees_a_crash_and_that_repack_off_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FAULT_ENV, "1")
    verdict = check_repack(tmp_path)
    assert verdict.repack_ok is False
    assert verdict.signal == "SIGSEGV"
    assert verdict.repack_off_ok is True
    assert "killed by SIGSEGV" in verdict.summary and "with repack off it runs" in verdict.summary
    # An injected crash is never cached: the next real check runs the child again.
    assert not list((tmp_path / ".engine-check").glob("repack-*.json"))


def test_quantised_model_runs_in_process_and_records_repack(tmp_path: Path) -> None:
    proc = _cli("run", "--models", "tiny-qwen2-q8_0,tiny-qwen2-q4_0", "--talks", "alibaba-qwen",
                "--max-new-tokens", "8", "--out", str(tmp_path))  # fmt: skip
    assert proc.returncode == 0, proc.stderr + proc.stdout
    rows = _rows(_run_dir(proc))
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert all(int(r["output_tokens"]) > 0 for r in rows)
    record = json.loads((_run_dir(proc) / "run.json").read_text())
    verdict = record["engine_check"]["repack"]
    expected = "true" if verdict["repack_ok"] else "false"
    assert {r["repack"] for r in rows} == {expected}
    assert record["status"] == "complete" and record["ok_rows"] == 2 and record["error_rows"] == 0


def test_repack_crash_falls_back_to_repack_off(tmp_path: Path) -> None:
    proc = _cli("run", "--models", "tiny-qwen2-q8_0", "--talks", "alibaba-qwen", "--max-new-tokens", "8",
                "--out", str(tmp_path), env_extra={FAULT_ENV: "1"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "killed by SIGSEGV" in proc.stdout and "repack off" in proc.stdout  # the one line, and the remedy
    run_dir = _run_dir(proc)
    assert [r["status"] for r in _rows(run_dir)] == ["ok"]
    assert [r["repack"] for r in _rows(run_dir)] == ["false"]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["engine_check"]["repack"]["repack_ok"] is False
    assert record["engine_check"]["applied"].startswith("repack off")
    assert any("SIGSEGV" in w for w in record["warnings"])


def test_forced_repack_on_a_crashing_cpu_names_the_crash_and_fails_the_run(tmp_path: Path) -> None:
    proc = _cli("run", "--models", "tiny-qwen2-q8_0,tiny-qwen2-q4_0", "--talks", "alibaba-qwen,qualcomm-npu",
                "--max-new-tokens", "8", "--repack", "1", "--out", str(tmp_path),
                env_extra={FAULT_ENV: "1"})  # fmt: skip
    assert proc.returncode == 4, proc.stderr + proc.stdout  # every sample failed
    assert "Traceback" not in proc.stderr + proc.stdout
    run_dir = _run_dir(proc)
    rows = _rows(run_dir)
    assert [r["status"] for r in rows] == ["error"] * 4
    assert all("killed by signal SIGSEGV during warm-up" in r["error"] and "--repack 0" in r["error"] for r in rows)
    # One line per model naming the crash (the worker failed at warm-up; its samples are error rows).
    failed_lines = [ln for ln in proc.stdout.splitlines() if "worker failed:" in ln]
    assert len(failed_lines) == 2 and all("SIGSEGV" in ln for ln in failed_lines)
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed"
    assert record["failure"].startswith("every sample failed (4 error rows)")
    assert record["ok_rows"] == 0 and record["error_rows"] == 4
    assert "every sample failed" in proc.stderr


def test_dead_worker_names_phase_sample(tmp_path: Path, write_models, dummy_model_file: Path) -> None:
    models = write_models(_dummy("crashy", dummy_model_file, "{kill_at_call: 2}"))
    proc = _cli("run", "--models-file", str(models), "--models", "crashy", "--talks", "alibaba-qwen,qualcomm-npu",
                "--out", str(tmp_path))  # fmt: skip  # call 1 = warm-up, call 2 = the first sample
    assert proc.returncode == 4, proc.stderr + proc.stdout
    rows = _rows(_run_dir(proc))
    assert "killed by signal SIGKILL during sample" in rows[0]["error"]
    record = json.loads((_run_dir(proc) / "run.json").read_text())
    assert record["status"] == "failed" and record["error_rows"] == 2
    # The report of such a run opens with the errors, not with empty plots.
    report = _cli("report", str(_run_dir(proc)), "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    md = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    first_text = next(ln for ln in md.splitlines()[1:] if ln.strip() and not ln.startswith(("runs:", "_", "#")))
    assert "Every sample failed: 2x worker process killed by signal SIGKILL during sample" in md
    assert "Every sample failed" in first_text, md[:600]


def test_some_failed_samples_are_counted(tmp_path: Path, write_models, dummy_model_file: Path) -> None:
    crashy = _dummy("crashy", dummy_model_file, "{kill_at_call: 1}")
    models = write_models(_dummy("ok-model", dummy_model_file) + crashy)
    proc = _cli("run", "--models-file", str(models), "--models", "ok-model,crashy", "--talks", "alibaba-qwen",
                "--out", str(tmp_path))  # fmt: skip
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert "1 of 2 samples failed" in proc.stderr
    record = json.loads((_run_dir(proc) / "run.json").read_text())
    assert record["status"] == "complete" and record["ok_rows"] == 1 and record["error_rows"] == 1


def test_llama_cpp_server_gets_the_same_repack_setting(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    proc = _cli("run", "--models", "tiny-qwen2-q8_0", "--talks", "alibaba-qwen", "--max-new-tokens", "8",
                "--via", "llama-cpp-server", "--out", str(tmp_path), env_extra={FAULT_ENV: "1"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr + proc.stdout
    run_dir = _run_dir(proc)
    assert [r["status"] for r in _rows(run_dir)] == ["ok"]
    record = json.loads((run_dir / "run.json").read_text())
    command = record["models"]["tiny-qwen2-q8_0"]["serving"]["command"]
    assert command[command.index("--repack") + 1] == "0"


def test_a_server_killed_by_a_signal_is_reported_as_such(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    proc = _cli("run", "--models", "tiny-qwen2-q8_0", "--talks", "alibaba-qwen", "--max-new-tokens", "8",
                "--via", "llama-cpp-server", "--repack", "1", "--warmup", "0", "--out", str(tmp_path),
                env_extra={FAULT_ENV: "1"})  # fmt: skip
    assert proc.returncode == 4, proc.stderr + proc.stdout
    rows = _rows(_run_dir(proc))
    assert "was killed by signal SIGSEGV" in rows[0]["error"], rows[0]["error"]
    assert "peer closed" not in rows[0]["error"]
