"""`source: {kind: remote}`: an `openai` entry with no local weights (a model served by ollama, LM Studio, Foundry
Local, ...). Through the real CLI against a loopback fake server: the prompt budget is counted by the server's
tokenize endpoint where it has one, else estimated from characters (recorded as approximate in run.json); rows'
prompt_tokens stay the server's; the model record, `models` listing, `models pull` and `--offline` cope with no
local file; a backend that loads weights refuses the kind with one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fakeserver import Reply, fake_server, json_reply, recorded

from harness.errors import HarnessError
from harness.load import LOAD_REQUESTS_FILE
from harness.models.registry import load_models

N_CTX = 512
MAX_NEW = 16
STREAM = Reply(lines=recorded("llama_server_chat.sse"))  # usage.prompt_tokens 1187, completion 7


def _entry(model_id: str, url: str, backend: str = "openai", extra_flags: str = "") -> str:
    return f"""\
- id: {model_id}
  backend: {backend}
  quant: Q4_K_M
  n_ctx: {N_CTX}
  prompt_style: chat
  source: {{kind: remote}}
  flags: {{endpoint: '{url}/v1', served_model: qwen2.5-0.5b{extra_flags}}}
"""


def _harness(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], capture_output=True, text=True, env=env, timeout=120
    )


def _run(tmp_path: Path, env: dict[str, str], models: Path, model_id: str, *extra: str) -> Path:
    proc = _harness(
        env, "run", "--out", str(tmp_path / "runs"), "--models-file", str(models), "--models", model_id,
        "--max-new-tokens", str(MAX_NEW), "--warmup", "0", "--no-bandwidth", *extra,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return Path(proc.stdout.strip().splitlines()[-1])


def _check_rows_and_record(run_dir: Path, model_id: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    df = pd.read_csv(run_dir / "results.csv")
    assert (df["status"] == "ok").all(), df["error"].tolist()
    assert (df["backend"] == "openai").all()
    assert (df["prompt_tokens"] == 1187).all()  # the server's usage, not the budget's count
    record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["models"][model_id]
    assert record["source"] == "remote" and record["size_bytes"] == 0 and record["sha256"] == ""
    return df, record


def test_remote_entry_budgets_prompts_with_the_servers_tokenizer(
    tmp_path: Path, cli_env: dict[str, str], write_models
) -> None:
    # One token per character of the templated prompt: the budget n_ctx - max_new_tokens is in characters.
    routes = {
        ("GET", "/v1/models"): json_reply({"object": "list", "data": [{"id": "qwen2.5-0.5b", "owned_by": "llamacpp"}]}),
        ("POST", "/apply-template"): lambda body: json_reply({"prompt": f"<u>{body['messages'][0]['content']}</u>"}),
        ("POST", "/tokenize"): lambda body: json_reply({"tokens": list(range(len(body["content"])))}),
        ("POST", "/v1/chat/completions"): STREAM,
    }
    with fake_server(routes) as server:
        models = write_models(_entry("served-remote", server.url))
        run_dir = _run(tmp_path, cli_env, models, "served-remote")
    df, record = _check_rows_and_record(run_dir, "served-remote")
    assert record["tokenizer"] == "server: llama-server /apply-template + /tokenize"
    counted = [body["content"] for body in server.posts("/tokenize") if len(body["content"]) > 1]
    assert counted and all(body["add_special"] is False for body in server.posts("/tokenize")[1:])
    # Every prompt sent fits the budget by the server's count, and talks longer than it were cut.
    sent = [body["messages"][0]["content"] for body in server.posts("/v1/chat/completions")]
    assert len(sent) == len(df) and all(len(f"<u>{s}</u>") <= N_CTX - MAX_NEW for s in sent)
    assert df["truncated"].any()


def test_remote_entry_without_a_tokenize_endpoint_estimates_and_says_so(
    tmp_path: Path, cli_env: dict[str, str], write_models
) -> None:
    routes = {  # a generic OpenAI server (LM Studio, Foundry Local, vLLM): no tokenize endpoint
        ("GET", "/v1/models"): json_reply({"object": "list", "data": [{"id": "qwen2.5-0.5b", "owned_by": "org"}]}),
        ("POST", "/v1/chat/completions"): STREAM,
    }
    with fake_server(routes) as server:
        models = write_models(_entry("served-estimate", server.url, extra_flags=", chars_per_token: 1.25"))
        # --offline: a remote entry has nothing to fetch, so it is never "missing"; one load level too.
        run_dir = _run(tmp_path, cli_env, models, "served-estimate", "--offline", "--concurrency", "1")
    df, record = _check_rows_and_record(run_dir, "served-estimate")
    assert record["tokenizer"] == "estimate (1.25 chars/token)"
    assert "estimate" in record["engine"]["warning"]
    assert not server.posts("/tokenize")
    sent = [body["messages"][0]["content"] for body in server.posts("/v1/chat/completions")]
    assert all(len(s) <= (N_CTX - MAX_NEW) * 1.25 for s in sent) and df["truncated"].any()
    load = pd.read_csv(run_dir / LOAD_REQUESTS_FILE)
    assert len(load) == len(df) and (load["prompt_tokens"] == 1187).all()


def test_remote_source_needs_a_backend_that_talks_to_a_server(write_models) -> None:
    models = write_models(_entry("local-remote", "http://127.0.0.1:9", backend="llama_cpp").replace(
        "  flags: {endpoint: 'http://127.0.0.1:9/v1', served_model: qwen2.5-0.5b}\n", ""
    ))  # fmt: skip
    with pytest.raises(HarnessError) as err:
        load_models(models, include_registered=False)
    message = str(err.value)
    assert "\n" not in message and 'model "local-remote"' in message
    assert "source kind remote" in message and "backend llama_cpp loads weights from a file" in message


def test_models_listing_and_pull_of_a_remote_entry(cli_env: dict[str, str], write_models) -> None:
    models = write_models(_entry("served-remote", "http://127.0.0.1:11434"))
    listing = _harness(cli_env, "models", "--models-file", str(models))
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if "served-remote" in line)
    assert "remote: http://127.0.0.1:11434/v1" in row and "no local weights" in row
    pull = _harness(cli_env, "models", "--models-file", str(models), "pull", "served-remote")
    assert pull.returncode == 0, pull.stderr
    assert pull.stdout.strip() == "served-remote: nothing to pull (remote: http://127.0.0.1:11434/v1)"


def test_llama_cpp_python_server_counts_prompts_with_extras_tokenize() -> None:
    from harness.backends.base import BackendOptions
    from harness.backends.openai_http import OpenAIHttpBackend
    from harness.http import EndpointConfig
    from harness.prompts import load_template

    routes = {
        ("GET", "/v1/models"): json_reply({"object": "list", "data": [{"id": "tiny", "owned_by": "me"}]}),
        ("POST", "/extras/tokenize"): lambda body: json_reply({"tokens": [7] * (len(body["input"]) + 1)}),
    }
    prompt = load_template("en", "completion").render("A short talk.")
    with fake_server(routes) as server:
        config = EndpointConfig(endpoint=server.url, served_model="tiny")
        backend = OpenAIHttpBackend(Path("."), BackendOptions(threads=1, n_ctx=N_CTX, flags=config), "completion")
        info = backend.load()
        ids = backend.tokenize_prompt(prompt)
        backend.close()
    assert ids == [7] * (len(prompt.content) + 1)
    assert server.posts("/extras/tokenize")[-1] == {"model": "tiny", "input": prompt.content}
    assert info.extra["tokenizer"].startswith("server: /extras/tokenize") and "warning" not in info.extra
