"""Hostile engine and server input (issue 21): a server's counters that cannot be true, an answer far past
max_tokens, malformed JSON, a redirect; a GGUF header out of bounds; a context size the engine or the model
cannot take. Each ends as an error row with one line naming the server's (or file's) fault, or as a one-line
usage error (exit 2) -- never a Python exception name, a traceback, or an `ok` row built on a fiction."""

from __future__ import annotations

import contextlib
import csv
import json
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from faultcli import assert_no_traceback, assert_one_line_error, run_args, run_cli
from hostile import hostile_server, openai_entry, redirect, sse, text_chunk

from harness.http import RequestError, StreamParser, answer_cap

DONE = {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}


def _feed(chunks: list[object], max_chars: int | None = None, ndjson: bool = False) -> StreamParser:
    parser = StreamParser(0, ndjson=ndjson, max_chars=max_chars)
    for i, chunk in enumerate(chunks):
        payload = chunk if isinstance(chunk, str) else json.dumps(chunk)
        parser.feed(payload if ndjson else f"data: {payload}", i + 1)
    return parser


# --- counters that cannot be true (unit: the parser both the backend and `harness load` use) --------------
@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": -5, "completion_tokens": 8},
        {"prompt_tokens": 10, "completion_tokens": 10**12},
        {"prompt_tokens": 10, "completion_tokens": "eight"},
        {"prompt_tokens": 1.5, "completion_tokens": 8},
    ],
    ids=["negative", "10^12", "a-string", "fractional"],
)
def test_impossible_token_counts_are_refused(usage: dict[str, object]) -> None:
    with pytest.raises(RequestError, match=r"not a (plausible )?token count"):
        _feed([text_chunk("a"), {"choices": [], "usage": usage}])


@pytest.mark.parametrize("bad", [float("nan"), -1, float("inf")], ids=["nan", "minus-one", "inf"])
def test_impossible_server_timings_are_refused(bad: float) -> None:
    timings = {"prompt_n": 10, "prompt_ms": bad, "predicted_n": 4, "predicted_ms": 20.0}
    # json.dumps writes NaN/Infinity, which Python's json (and llama-server's bugs) accept on the way back
    with pytest.raises(RequestError, match="not a duration"):
        _feed([text_chunk("a"), {"choices": [], "timings": timings}])


def test_ollama_impossible_counters_are_refused() -> None:
    chunk = {"message": {"content": "a"}, "done": True, "prompt_eval_count": 5, "eval_count": -3}
    with pytest.raises(RequestError, match="eval_count"):
        _feed([chunk], ndjson=True)


def test_an_answer_far_past_max_tokens_is_cut_off_not_scored() -> None:
    cap = answer_cap(8)
    with pytest.raises(RequestError, match="ignores max_tokens"):
        _feed([text_chunk("字" * 10_000)] * 21, max_chars=cap)  # 210 000 characters for max_tokens 8
    assert len(_feed([text_chunk("x" * 100), DONE], max_chars=cap).outcome.text) == 100


@pytest.mark.parametrize(
    "chunk",
    [
        {"choices": ["not an object"]},
        {"choices": [{"delta": {"content": "a"}}], "usage": {"prompt_tokens": [1]}},
        {"choices": [{"delta": {"content": "a"}}], "timings": {"prompt_n": {"x": 1}}},
        '{"choices": [' * 5000,
        '{"choices": [], "usage": {"completion_tokens": ' + "9" * 5000 + "}}",
    ],
    ids=["choice-not-object", "usage-list", "timings-dict", "deep-nesting", "5000-digit-int"],
)
def test_malformed_json_is_one_line_naming_the_stream(chunk: object) -> None:
    with pytest.raises(RequestError) as info:
        _feed([chunk])
    message = str(info.value)
    assert "\n" not in message and "not" in message
    assert not message.startswith(("AttributeError", "TypeError", "KeyError"))


# --- through the real CLI: error rows, one line each -------------------------------------------------------
def _rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "results.csv").open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


SERVER_CASES = {
    "negative-counters": (
        sse([text_chunk("好", "length"), {"choices": [], "usage": {"prompt_tokens": -7, "completion_tokens": 8}}]),
        "not a plausible token count",
    ),
    "answer-200k-chars": (sse([text_chunk("字" * 50_000)] * 4 + [DONE]), "ignores max_tokens"),
    "malformed-json": (sse(["{not json"]), "not an OpenAI-compatible stream"),
    "redirect-302": (redirect(), "HTTP 302 redirect"),
}


def test_hostile_server_answers_are_error_rows_with_one_line(write_models: Callable[..., Path], tmp_path: Path) -> None:
    # One run over one model per hostile server (a CLI run costs seconds of start-up on 2 cores).
    with contextlib.ExitStack() as stack:
        servers = {
            case: stack.enter_context(hostile_server({("POST", "/v1/chat/completions"): route}))
            for case, (route, _needle) in SERVER_CASES.items()
        }
        models = write_models("".join(openai_entry(case, server.url) for case, server in servers.items()))
        result = run_cli(*run_args(models, tmp_path / "out", ",".join(SERVER_CASES), "--warmup", "0"), timeout=150)
    assert result.returncode == 4, result.explain()  # every sample failed
    assert_no_traceback(result)
    rows = _rows(result.run_dir)
    assert len(rows) == 2 * len(SERVER_CASES) and all(r["status"] == "error" for r in rows)
    for case, (_route, needle) in SERVER_CASES.items():
        errors = [r["error"] for r in rows if r["model"] == case]
        assert len(errors) == 2 and all(needle in e and "\n" not in e for e in errors), (case, errors)
        assert all("no content type" not in e for e in errors)


# --- context size bounds -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n_ctx", "needle"),
    [("4294967808", "use at most 16777216"), ("100000000000000000000", "use at most"), ("0", "use 1 or more")],
    ids=["wraps-uint32", "1e20", "zero"],
)
def test_n_ctx_beyond_the_engine_limit_is_one_line(
    dummy_models: Callable[..., Path], tmp_path: Path, n_ctx: str, needle: str
) -> None:
    result = run_cli(*run_args(dummy_models(m={}), tmp_path / "out", "m", "--n-ctx", n_ctx))
    assert_one_line_error(result, "--n-ctx", needle)
    assert not (tmp_path / "out").exists()


def test_models_yaml_n_ctx_beyond_the_engine_limit_is_one_line(write_models: Callable[..., Path], tmp_path: Path,
                                                                dummy_model_file: Path) -> None:  # fmt: skip
    models = write_models(
        f"- id: huge\n  backend: dummy\n  quant: none\n  n_ctx: 5000000000000000000000000\n  prompt_style: chat\n"
        f"  source: {{kind: path, path: {dummy_model_file}}}\n"
    )
    result = run_cli(*run_args(models, tmp_path / "out", "huge"))
    assert result.returncode == 2, result.explain()
    assert_no_traceback(result)
    assert "n_ctx" in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.explain()


def test_n_ctx_above_the_models_trained_context_is_refused(tmp_path: Path) -> None:
    # tiny-qwen2's GGUF header says context_length 32768 (generated, no download)
    result = run_cli("run", "--models", "tiny-qwen2", "--talks", "alibaba-qwen", "--max-new-tokens", "8",
                     "--no-bandwidth", "--n-ctx", "65536", "--out", tmp_path / "out")  # fmt: skip
    assert result.returncode == 4, result.explain()
    assert_no_traceback(result)
    (row,) = _rows(result.run_dir)
    assert "above the model's trained context of 32768" in row["error"]


# --- GGUF headers out of bounds, through the CLI (parsed in the parent before any worker) -------------------
def _gguf(tmp_path: Path, name: str, kv: bytes, n_kv: int, tensors: bytes = b"", n_tensors: int = 0) -> Path:
    path = tmp_path / f"{name}.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv) + kv + tensors + b"\0" * 64)
    return path


def _s(text: str) -> bytes:
    return struct.pack("<Q", len(text)) + text.encode()


GGUF_CASES = {
    "unknown-tensor-type": lambda d: _gguf(d, "t", b"", 0, _s("w") + struct.pack("<IQIQ", 1, 4, 999, 0), 1),
    "block-count-2-40": lambda d: _gguf(
        d,
        "b",
        _s("general.architecture")
        + struct.pack("<I", 8)
        + _s("llama")
        + _s("llama.block_count")
        + struct.pack("<IQ", 10, 2**40),
        2,
    ),
    "50000-nested-arrays": lambda d: _gguf(
        d, "n", _s("x") + struct.pack("<I", 9) + struct.pack("<IQ", 9, 1) * 50_000 + struct.pack("<IQ", 4, 0), 1
    ),
}


def test_hostile_gguf_headers_never_crash_the_run(write_models: Callable[..., Path], tmp_path: Path) -> None:
    entries = "".join(
        f"- id: {case}\n  backend: llama_cpp\n  quant: Q4_0\n  n_ctx: 512\n  prompt_style: completion\n"
        f"  source: {{kind: path, path: {make(tmp_path)}}}\n"
        for case, make in GGUF_CASES.items()
    )
    models = write_models(entries)
    result = run_cli(
        *run_args(models, tmp_path / "out", ",".join(GGUF_CASES), "--talks", "alibaba-qwen", "--warmup", "0")
    )
    assert_no_traceback(result)
    assert result.returncode == 4, result.explain()  # each model's sample an error row, the run carried on
    rows = _rows(result.run_dir)
    assert sorted(r["model"] for r in rows) == sorted(GGUF_CASES)
    assert all(r["status"] == "error" and r["error"] and "\n" not in r["error"] for r in rows)
