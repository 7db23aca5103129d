"""A load level's minimums (`--level-requests N`, `--level-seconds S`, issue 22), through `Serving` as the run uses
it against a loopback fake llama-server: a level held for a minimum time repeats the corpus's requests until it
has passed, both minimums are recorded per level (load_summary.csv, run.json `load`), and bad values or values
without `--concurrency` are one line each."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from fakeserver import Reply, fake_server, json_reply, recorded

from harness.backends.base import BackendOptions
from harness.corpus import Talk
from harness.errors import HarnessError
from harness.http import EndpointConfig
from harness.load import LEVEL_LIMIT_S, LOAD_REQUESTS_FILE, LOAD_SUMMARY_FILE, level_time_limit
from harness.models.registry import ModelEntry, load_models
from harness.prompts import load_template
from harness.serving import Serving

TEMPLATE = load_template("zh", "chat")
TALK = Talk("t0", "通义千问团队介绍了开源模型。", ("介绍开源模型。",))
ROUTES = {
    ("GET", "/v1/models"): json_reply({"object": "list", "data": [{"id": "m", "owned_by": "llamacpp"}]}),
    # Unpaced: each request takes milliseconds, so a minimum time of a second means many repeats.
    ("POST", "/v1/chat/completions"): Reply(lines=recorded("llama_server_chat.sse")),
}


def _entry(write_models, url: str = "http://127.0.0.1:9") -> ModelEntry:
    path = write_models(f"""\
        - id: served
          backend: openai
          quant: Q4_K_M
          n_ctx: 2048
          prompt_style: chat
          source: {{kind: remote}}
          flags: {{endpoint: '{url}', served_model: m, server: llama-server}}
        """)
    return load_models(path, include_registered=False)["served"]


def _options(url: str) -> BackendOptions:
    flags = EndpointConfig(endpoint=url, served_model="m", server="llama-server", timeout_s=10.0)
    return BackendOptions(threads=1, n_ctx=2048, flags=flags)


def test_a_level_held_for_its_minimum_seconds_repeats_requests(write_models, tmp_path: Path) -> None:
    lines: list[str] = []
    with fake_server(ROUTES) as server:
        entry = _entry(write_models, server.url)
        serving = Serving(None, None, "1", None, [entry], level_requests=1, level_seconds=1.0)
        served = serving.start(entry, None, _options(server.url), tmp_path, lines.append)
        (level,) = serving.finish(served, TEMPLATE, [TALK], 1, 16, tmp_path, lines.append)
    # One talk, one repeat, at least one request asked for: every request past the first is the minimum time's.
    assert level["errors"] == 0 and level["requests"] > 1 and level["wall_s"] >= 1.0
    assert level["min_requests"] == 1 and level["min_seconds"] == 1.0
    rows = list(csv.DictReader((tmp_path / LOAD_REQUESTS_FILE).open(encoding="utf-8")))
    assert [int(r["cycle"]) for r in rows] == list(range(len(rows)))  # the one request, pass after pass
    assert {r["talk_id"] for r in rows} == {"t0"}
    (summary,) = csv.DictReader((tmp_path / LOAD_SUMMARY_FILE).open(encoding="utf-8"))
    assert summary["min_requests"] == "1" and float(summary["min_seconds"]) == 1.0
    assert any("(at least 1 request and 1 s each)" in line for line in lines)


def test_a_level_held_for_its_minimum_requests_repeats_the_corpus(write_models, tmp_path: Path) -> None:
    with fake_server(ROUTES) as server:
        entry = _entry(write_models, server.url)
        serving = Serving(None, None, "2", None, [entry], level_requests=5)
        served = serving.start(entry, None, _options(server.url), tmp_path, lambda _: None)
        (level,) = serving.finish(served, TEMPLATE, [TALK], 2, 16, tmp_path, lambda _: None)
    assert level["requests"] == 5 and level["errors"] == 0  # 2 repeats of one talk, repeated to 5
    assert level["min_requests"] == 5 and level["min_seconds"] == 0.0


def test_without_minimums_a_level_records_its_defaults(write_models, tmp_path: Path) -> None:
    with fake_server(ROUTES) as server:
        entry = _entry(write_models, server.url)
        serving = Serving(None, None, "3", None, [entry])
        served = serving.start(entry, None, _options(server.url), tmp_path, lambda _: None)
        (level,) = serving.finish(served, TEMPLATE, [TALK], 1, 16, tmp_path, lambda _: None)
    assert level["requests"] == level["min_requests"] == 2 * 3  # two per slot
    assert level["min_seconds"] == 0.0


@pytest.mark.parametrize(
    ("concurrency", "requests", "seconds", "needle"),
    [
        (None, 10, None, "--level-requests applies to --concurrency levels"),
        (None, None, 30.0, "--level-seconds applies to --concurrency levels"),
        ("1,2", 0, None, "--level-requests 0: give a whole number from 1"),
        ("1,2", 10**9, None, "--level-requests 1000000000: give a whole number from 1"),
        ("1,2", None, math.nan, "--level-seconds nan"),
        ("1,2", None, -1.0, "--level-seconds -1"),
    ],
)
def test_bad_minimums_are_one_line(
    write_models, concurrency: str | None, requests: int | None, seconds: float | None, needle: str
) -> None:
    entry = _entry(write_models)
    with pytest.raises(HarnessError, match=needle.replace("-", r"\-")) as info:
        Serving(None, None, concurrency, None, [entry], level_requests=requests, level_seconds=seconds)
    assert "\n" not in str(info.value)


def test_a_long_minimum_time_lengthens_the_level_limit() -> None:
    assert level_time_limit(0.0, 300.0) == LEVEL_LIMIT_S  # as before: 600 s
    assert level_time_limit(900.0, 300.0) == 1200.0  # the minimum, then one request's timeout to finish


def _cli_run(tmp_path: Path, env: dict[str, str], url: str, *extra: str) -> Path:
    import subprocess
    import sys

    models = tmp_path / "models.yaml"
    models.write_text(
        "models:\n  - id: served\n    backend: openai\n    quant: Q4_K_M\n    n_ctx: 2048\n    prompt_style: chat\n"
        f"    source: {{kind: remote}}\n    flags: {{endpoint: '{url}', served_model: m, server: llama-server}}\n",
        encoding="utf-8",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--models-file", str(models), "--models", "served", "--talks",
         "alibaba-qwen", "--warmup", "0", "--max-new-tokens", "8", "--no-bandwidth", "--out", str(tmp_path / "runs"),
         "--concurrency", "1", *extra],
        capture_output=True, text=True, env=env, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return Path(proc.stdout.strip().splitlines()[-1])


def _levels(run_dir: Path) -> tuple[dict[str, str], dict[str, object]]:
    import json

    (summary,) = csv.DictReader((run_dir / LOAD_SUMMARY_FILE).open(encoding="utf-8"))
    (level,) = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["models"]["served"]["load"]
    return summary, level


def test_the_cli_records_the_default_minimums(tmp_path: Path, cli_env: dict[str, str]) -> None:
    with fake_server(ROUTES) as server:
        run_dir = _cli_run(tmp_path, cli_env, server.url)
    summary, level = _levels(run_dir)
    assert summary["min_requests"] == "2" and float(summary["min_seconds"]) == 0.0  # 1 request, 2 per slot
    assert level["min_requests"] == 2 and level["min_seconds"] == 0.0 and level["requests"] == 2


def _has_level_options() -> bool:
    from harness.params import BY_NAME

    return "level_requests" in BY_NAME and "level_seconds" in BY_NAME


@pytest.mark.skipif(not _has_level_options(), reason="--level-requests/--level-seconds are not in harness.params yet")
def test_the_cli_options_reach_every_level(tmp_path: Path, cli_env: dict[str, str]) -> None:
    with fake_server(ROUTES) as server:
        run_dir = _cli_run(tmp_path, cli_env, server.url, "--level-requests", "3", "--level-seconds", "0.5")
    summary, level = _levels(run_dir)
    assert summary["min_requests"] == "3" and float(summary["min_seconds"]) == 0.5
    assert level["min_requests"] == 3 and level["min_seconds"] == 0.5
    assert isinstance(level["requests"], int) and level["requests"] >= 3 and level["wall_s"] >= 0.5  # type: ignore[operator]
