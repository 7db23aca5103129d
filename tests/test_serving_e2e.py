"""End to end through llama-cpp-python's own OpenAI-compatible server with the generated tiny-qwen2: the real CLI
with `--via llama-cpp-server` and with an `openai` entry pointing at a server the test starts, against the
in-process backend on the same prompts. The server's verbose log (llama.cpp's per-request timings and
llama-cpp-python's "prefix-match hit" lines) is the ground truth for what it evaluated."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import psutil
import pytest

pytest.importorskip("llama_cpp")
pytest.importorskip("uvicorn")  # llama-cpp-python's [server] extra

from harness.backends.base import BackendOptions, GenerationRequest
from harness.backends.openai_http import OpenAIHttpBackend
from harness.corpus import load_corpus
from harness.load import LOAD_REQUESTS_FILE, LOAD_SUMMARY_FILE
from harness.models.registry import load_models
from harness.models.sources import resolve
from harness.prompts import load_template
from harness.servers import ServerSettings, server_class

TINY = """\
- id: {id}
  backend: {backend}
  quant: F32
  n_ctx: 2048
  prompt_style: chat
  source: {{kind: generate, generator: tiny-qwen2, filename: tiny-qwen2.gguf}}
"""
PROMPT_EVAL = re.compile(r"prompt eval time =\s+[\d.]+ ms /\s+(\d+) tokens")


def _cli(tmp_path: Path, env: dict[str, str], *args: str, ok: bool = True) -> tuple[str, Path]:
    out = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--out", str(out), "--max-new-tokens", "16", "--no-bandwidth", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert (proc.returncode == 0) == ok, proc.stderr + proc.stdout
    return proc.stdout, Path(proc.stdout.strip().splitlines()[-1])


def _results(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "results.csv")


def _evaluated(log: Path) -> list[int]:
    """Prompt tokens llama.cpp evaluated per request, in order (flush requests evaluate 1 or 2)."""
    return [int(n) for n in PROMPT_EVAL.findall(log.read_text(encoding="utf-8", errors="replace"))]


@pytest.fixture(scope="module")
def in_process(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The in-process llama.cpp rows for every talk: the reference for prompt token counts."""
    import os

    cache = tmp_path_factory.getbasetemp() / "model-cache"  # the session's cache (tests/conftest.py)
    cache.mkdir(exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1", HARNESS_CACHE=str(cache))
    _, run_dir = _cli(tmp_path_factory.mktemp("inproc"), env, "--models", "tiny-qwen2", "--warmup", "0")
    return _results(run_dir)


def test_via_llama_cpp_server_matches_in_process_prompts(
    tmp_path: Path, cli_env: dict[str, str], in_process: pd.DataFrame
) -> None:
    stdout, run_dir = _cli(tmp_path, cli_env, "--models", "tiny-qwen2", "--via", "llama-cpp-server")
    df = _results(run_dir)
    talks = [t.id for t in load_corpus()]
    assert sorted(df["talk_id"]) == sorted(talks) and (df["status"] == "ok").all(), df["error"].tolist()
    assert (df["backend"] == "openai").all() and (df["provider"] == "http:llama-cpp-python").all()
    # The same prompts, token for token, as llama.cpp in-process.
    merged = df.merge(in_process, on="talk_id", suffixes=("", "_inproc"))
    assert (merged["prompt_tokens"] == merged["prompt_tokens_inproc"]).all()
    # llama-cpp-python's server reports no counters: engine columns stay empty, never guessed.
    engine = ["engine_prompt_tokens", "engine_decode_tok_s", "engine_prefill_tok_s", "decode_vs_engine_pct"]
    assert df[engine].isna().all().all()
    assert (df["output_tokens"] == 16).all() and (df["output_tokens_source"] == "max_tokens").all()
    assert (df[["ttft_s", "decode_tok_s", "peak_rss_mb", "load_s"]] > 0).all().all()
    # The server evaluated each whole prompt: its own log says so, and reused no prefix.
    log = run_dir / "server-tiny-qwen2.log"
    evaluated = [n for n in _evaluated(log) if n > 2]  # drop the one-token flush requests
    assert evaluated[1:] == df["prompt_tokens"].tolist()  # [0] is the warm-up
    assert "prefix-match hit" not in log.read_text(encoding="utf-8", errors="replace")
    assert "ready in" in stdout


def test_repeats_keep_their_full_prefill_and_load_levels_report_goodput(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    args = ["--models", "tiny-qwen2", "--via", "llama-cpp-server", "--talks", "alibaba-qwen,qualcomm-npu"]
    stdout, run_dir = _cli(tmp_path, cli_env, *args, "--repeats", "3", "--concurrency", "1,2", "--slo", "ttft=30s")
    df = _results(run_dir)
    assert len(df) == 6 and (df["status"] == "ok").all()
    log_text = (run_dir / "server-tiny-qwen2.log").read_text(encoding="utf-8", errors="replace")
    samples_part = log_text.split("prefix-match hit")[0]  # load levels come after every sample
    evaluated = [n for n in _evaluated_text(samples_part) if n > 2]
    assert evaluated[1 : 1 + len(df)] == df["prompt_tokens"].tolist()  # every repeat prefilled in full
    summary = pd.read_csv(run_dir / LOAD_SUMMARY_FILE)
    assert summary["concurrency"].tolist() == [1, 2] and (summary["requests"] == 6).all()
    assert (summary["errors"] == 0).all() and (summary["goodput_pct"] == 100.0).all()
    assert (summary["output_tok_s"] > 0).all() and (summary["slo"] == "ttft=30s").all()
    assert len(pd.read_csv(run_dir / LOAD_REQUESTS_FILE)) == 12
    assert "load c=2:" in stdout


def _evaluated_text(text: str) -> list[int]:
    return [int(n) for n in PROMPT_EVAL.findall(text)]


@pytest.fixture
def tiny_server(tmp_path: Path) -> Iterator[object]:
    """python -m llama_cpp.server with tiny-qwen2 on a free loopback port, started by the test."""
    entry = load_models()["tiny-qwen2"]
    weights = resolve(entry, progress=False)
    settings = ServerSettings("tiny-qwen2", weights, threads=1, n_ctx=2048, log_path=tmp_path / "server.log")
    server = server_class("llama-cpp-server")(settings)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_openai_entry_against_an_external_server(
    tmp_path: Path, cli_env: dict[str, str], in_process: pd.DataFrame, tiny_server: object, write_models
) -> None:
    url = tiny_server.url  # type: ignore[attr-defined]
    models = write_models(
        TINY.format(id="tiny-served", backend="openai")
        + f"  flags: {{endpoint: '{url}/v1', served_model: tiny-qwen2}}\n"
    )
    stdout, run_dir = _cli(tmp_path, cli_env, "--models-file", str(models), "--models", "tiny-served")
    df = _results(run_dir)
    assert (df["status"] == "ok").all(), df["error"].tolist()
    assert (df["backend"] == "openai").all()
    merged = df.merge(in_process, on="talk_id", suffixes=("", "_inproc"))
    assert (merged["prompt_tokens"] == merged["prompt_tokens_inproc"]).all()
    # The server's pid was found by its port: the memory columns are the server's.
    assert f"pid {tiny_server.pid}" in stdout and (df["peak_rss_mb"] > 0).all()  # type: ignore[attr-defined]
    assert "prefix-match hit" not in (tmp_path / "server.log").read_text(encoding="utf-8", errors="replace")


def test_without_the_flush_the_server_reuses_the_prefix(tiny_server: object, tmp_path: Path) -> None:
    """The control for the tests above: llama-cpp-python's server does reuse a repeated prompt's prefix, and its
    log shows it -- so the absence of "prefix-match hit" there is evidence, not an accident."""
    from harness.http import EndpointConfig

    flags = EndpointConfig(endpoint=tiny_server.url, served_model="tiny-qwen2")  # type: ignore[attr-defined]
    backend = OpenAIHttpBackend(Path("."), BackendOptions(threads=1, n_ctx=2048, flags=flags), "chat")
    backend.load()
    backend.flush_prefix_cache = lambda: None  # type: ignore[method-assign]
    prompt = load_template("zh", "chat").render(load_corpus()[0].text[:300])
    for _ in range(2):
        backend.generate(GenerationRequest(prompt_ids=[], max_new_tokens=4, prompt=prompt))
    backend.close()
    assert "prefix-match hit" in (tmp_path / "server.log").read_text(encoding="utf-8", errors="replace")


def test_killed_server_fails_its_remaining_samples_and_the_run_goes_on(
    tmp_path: Path, cli_env: dict[str, str], write_models
) -> None:
    models = write_models(TINY.format(id="tiny-a", backend="llama_cpp") + TINY.format(id="tiny-b", backend="llama_cpp"))
    out = tmp_path / "runs"
    args = ["--models-file", str(models), "--models", "tiny-a,tiny-b", "--via", "llama-cpp-server", "--warmup", "0"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--out", str(out), "--max-new-tokens", "16", "--no-bandwidth", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=cli_env,
    )
    killed: list[int] = []

    def kill_first_server() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            rows = list(out.glob("*/results.csv"))
            if rows and len(rows[0].read_text(encoding="utf-8").splitlines()) >= 2:  # header + one row
                for child in psutil.Process(proc.pid).children(recursive=True):
                    if "llama_cpp_server_main" in " ".join(child.cmdline()):  # the server's launcher process
                        child.kill()
                        killed.append(child.pid)
                        return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_first_server)
    killer.start()
    stdout, _ = proc.communicate(timeout=180)
    killer.join()
    assert killed and proc.returncode == 1, stdout  # error rows -> exit 1, no traceback
    assert "Traceback" not in stdout
    df = _results(Path(stdout.strip().splitlines()[-1]))
    a, b = df[df["model"] == "tiny-a"], df[df["model"] == "tiny-b"]
    assert len(a) == len(b) == 5
    assert a["status"].iloc[0] == "ok" and (a["status"].iloc[1:] == "error").all()
    assert a["error"].iloc[-1] and (b["status"] == "ok").all()
    # The server's own end, not the client's network error.
    assert "was killed by signal SIGKILL" in a["error"].iloc[1], a["error"].iloc[1]
