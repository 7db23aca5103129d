"""The `openai` backend against a loopback fake server replaying recorded llama-server, ollama and
llama-cpp-python streams: request bodies, figures from chunk times and server counters, prefix-cache checks,
and every failure mode as a one-line error."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fakeserver import Reply, closed_port, fake_server, json_reply, recorded

from harness.backends.base import BackendOptions, GenerationRequest
from harness.backends.openai_http import OpenAIHttpBackend
from harness.errors import HarnessError
from harness.http import EndpointConfig, RequestError
from harness.prompts import load_template
from harness.trackers.latency import LatencyStats

PROMPT = load_template("zh", "chat").render("通义千问团队介绍了开源模型。")
COMPLETION_PROMPT = load_template("zh", "completion").render("通义千问团队介绍了开源模型。")

LLAMA_SERVER_MODELS = json_reply({"object": "list", "data": [{"id": "qwen2.5-0.5b", "owned_by": "llamacpp"}]})
LCP_MODELS = json_reply({"object": "list", "data": [{"id": "tiny", "owned_by": "me", "permissions": []}]})


def backend_for(url: str, **flags: Any) -> OpenAIHttpBackend:
    config = EndpointConfig(endpoint=url, served_model=flags.pop("served_model", "qwen2.5-0.5b"), **flags)
    backend = OpenAIHttpBackend(Path("served"), BackendOptions(threads=1, n_ctx=4096, flags=config), "chat")
    backend.load()
    return backend


def generate(backend: OpenAIHttpBackend, prompt: Any = PROMPT, max_new_tokens: int = 16) -> Any:
    return backend.generate(GenerationRequest(prompt_ids=[], max_new_tokens=max_new_tokens, prompt=prompt))


def test_llama_server_stream_gives_server_counts_and_engine_counters() -> None:
    routes = {
        ("GET", "/v1/models"): LLAMA_SERVER_MODELS,
        ("POST", "/v1/chat/completions"): Reply(lines=recorded("llama_server_chat.sse"), pause_s=0.01),
    }
    with fake_server(routes) as server:
        backend = backend_for(server.url + "/v1")
        result = generate(backend)
        backend.close()
    body = server.posts("/v1/chat/completions")[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0 and body["seed"] == 0 and body["max_tokens"] == 16
    assert body["cache_prompt"] is False  # llama-server's prefix cache off
    assert body["messages"] == PROMPT.messages() and body["model"] == "qwen2.5-0.5b"
    assert backend.flavor == "llama-server"
    assert result.text == "本次演讲介绍了通义千问。"
    assert result.stop_reason == "eos"
    # 6 content chunks but 7 tokens by the server's count: the count is the server's, ITL is per chunk.
    assert len(result.token_ns) == 6 and result.output_tokens == 7 and result.itl_unit == "chunk"
    assert result.output_tokens_source == "usage"
    stats = LatencyStats.from_generation(0, result)
    assert stats.prompt_tokens == 1187 and stats.output_tokens == 7
    span_s = (result.token_ns[-1] - result.token_ns[0]) / 1e9
    assert stats.decode_tok_s == pytest.approx(6 / span_s)
    assert stats.engine_prompt_tokens == 1187 and stats.engine_decode_tokens == 7
    assert stats.engine_decode_tok_s == pytest.approx(7 / 0.118406)
    assert stats.engine_prefill_tok_s == pytest.approx(1187 / 2.310512)
    assert stats.decode_vs_engine_pct == pytest.approx(100 * (stats.decode_tok_s / stats.engine_decode_tok_s - 1))
    assert stats.itl_unit == "chunk" and stats.ttft_s is not None and stats.ttft_s > 0


def test_llama_server_prefix_reuse_is_an_error() -> None:
    lines = [
        line.replace('"prompt_n":1187', '"prompt_n":3').replace('"cached_tokens":0', '"cached_tokens":1184')
        for line in recorded("llama_server_chat.sse")
    ]
    routes = {
        ("GET", "/v1/models"): LLAMA_SERVER_MODELS,
        ("POST", "/v1/chat/completions"): Reply(lines=lines),
    }
    with fake_server(routes) as server, pytest.raises(RequestError, match="evaluated 3 of 1187 prompt tokens"):
        generate(backend_for(server.url))


def test_ollama_native_stream_fills_engine_counters_and_catches_its_prefix_cache() -> None:
    lines = recorded("ollama_chat.ndjson")
    replies = iter([lines, [line.replace('"prompt_eval_count":1190', '"prompt_eval_count":12') for line in lines]])

    def chat(body: dict[str, Any]) -> Reply:
        return Reply(content_type="application/x-ndjson", lines=next(replies), pause_s=0.01)

    routes = {
        ("GET", "/v1/models"): json_reply({"object": "list", "data": [{"id": "qwen2.5:0.5b", "owned_by": "library"}]}),
        ("GET", "/api/version"): json_reply({"version": "0.12.3"}),
        ("POST", "/api/chat"): chat,
    }
    with fake_server(routes) as server:
        backend = backend_for(server.url, served_model="qwen2.5:0.5b")
        result = generate(backend)
        with pytest.raises(RequestError, match="evaluated 12 of 1190"):
            generate(backend)  # the same prompt again, served from ollama's cached context
        backend.close()
    body = server.posts("/api/chat")[0]
    assert backend.flavor == "ollama"
    assert body["options"]["temperature"] == 0 and body["options"]["num_predict"] == 16
    assert body["options"]["num_ctx"] == 4096 and body["stream"] is True
    assert result.stop_reason == "length" and result.output_tokens == 7 and result.output_tokens_source == "eval_count"
    stats = LatencyStats.from_generation(0, result)
    assert stats.prompt_tokens == 1190
    assert stats.engine_decode_tok_s == pytest.approx(7 / 0.112345678)
    assert stats.engine_prefill_tok_s == pytest.approx(1190 / 2.401234567)


def test_llama_cpp_python_server_is_flushed_and_counts_tokens_itself() -> None:
    counts = {"": 0, "Hello world.": 3}
    length = recorded("llama_cpp_python_chat.sse")
    eos = [line.replace('"finish_reason":"length"', '"finish_reason":"stop"') for line in length]
    replies = iter([length, length, eos])

    def count(body: dict[str, Any]) -> Reply:
        return json_reply({"count": counts[body["input"]]})

    routes = {
        ("GET", "/v1/models"): LCP_MODELS,
        ("POST", "/v1/completions"): json_reply({"choices": [{"text": "x", "finish_reason": "length"}]}),
        ("POST", "/v1/chat/completions"): lambda body: Reply(lines=next(replies), pause_s=0.01),
        ("POST", "/extras/tokenize/count"): count,
    }
    with fake_server(routes) as server:
        backend = backend_for(server.url, served_model="tiny")
        capped = [generate(backend) for _ in range(2)]
        stopped = generate(backend)
    paths = [path for method, path, _ in server.requests if method == "POST" and "tokenize" not in path]
    # A one-token request that shares no prefix with the prompt goes before every sample.
    assert paths == ["/v1/completions", "/v1/chat/completions"] * 3
    flush = server.posts("/v1/completions")[0]
    assert flush["max_tokens"] == 1 and not PROMPT.content.startswith(flush["prompt"])
    assert backend.flavor == "llama-cpp-python"
    # Stopped by the cap: exactly max_tokens (its stream has no usage), not a count of the text.
    assert all(r.output_tokens == 16 and r.output_tokens_source == "max_tokens" for r in capped)
    assert capped[0].itl_unit == "chunk" and capped[0].counters is None and capped[0].stop_reason == "length"
    # Stopped by EOS: the server's own tokenizer counts the text (minus the BOS it adds to "").
    assert stopped.output_tokens == 3 and stopped.output_tokens_source == "server_tokenize"
    assert stopped.itl_unit == "token" and stopped.stop_reason == "eos"


def test_completion_style_posts_the_whole_prompt() -> None:
    lines = [
        'data: {"choices":[{"text":"Summary","index":0,"finish_reason":null}]}',
        'data: {"choices":[{"text":" here","index":0,"finish_reason":"length"}],'
        '"usage":{"prompt_tokens":40,"completion_tokens":2,"total_tokens":42}}',
        "data: [DONE]",
    ]
    routes = {
        ("GET", "/v1/models"): json_reply({"data": [{"id": "m", "owned_by": "vllm"}]}),
        ("POST", "/v1/completions"): Reply(lines=lines, pause_s=0.01),
    }
    with fake_server(routes) as server:
        result = generate(backend_for(server.url, served_model="m"), prompt=COMPLETION_PROMPT)
    body = server.posts("/v1/completions")[0]
    assert body["prompt"] == COMPLETION_PROMPT.content and "messages" not in body and "cache_prompt" not in body
    assert result.text == "Summary here" and result.output_tokens == 2 and result.itl_unit == "token"


# --- failures: one line each, never a traceback ----------------------------------------------------
def _failure(reply: Reply) -> RequestError:
    routes = {("GET", "/v1/models"): LLAMA_SERVER_MODELS, ("POST", "/v1/chat/completions"): reply}
    with fake_server(routes) as server:
        backend = backend_for(server.url, timeout_s=2.0)
        with pytest.raises(RequestError) as info:
            generate(backend)
    assert "\n" not in str(info.value)
    return info.value


def _failing(reply: Reply) -> str:
    return str(_failure(reply))


def test_http_error_carries_the_servers_message() -> None:
    error = {"error": {"code": 400, "message": "the request exceeds the available context size", "type": "x"}}
    message = _failing(json_reply(error, status=400))
    assert message.startswith("HTTP 400") and "exceeds the available context size" in message


def test_server_error_500_with_plain_text() -> None:
    message = _failing(Reply(status=500, content_type="text/plain", body="model crashed"))
    assert "HTTP 500" in message and "model crashed" in message


def test_stream_cut_mid_generation() -> None:
    failure = _failure(Reply(lines=recorded("llama_server_chat.sse"), cut_after=6))
    assert "stream cut" in str(failure) or "mid-generation" in str(failure)
    assert failure.lost_connection  # the parent waits for a managed server's own exit before naming the cause


def test_an_answered_error_is_not_a_lost_connection() -> None:
    assert not _failure(Reply(status=500, content_type="text/plain", body="model crashed")).lost_connection


def test_stream_that_ends_without_finishing() -> None:
    lines = recorded("llama_server_chat.sse")[:6]
    assert "mid-generation" in _failing(Reply(lines=lines))


def test_non_openai_answer() -> None:
    assert "not an OpenAI-compatible stream" in _failing(Reply(content_type="text/html", body="<html>hi</html>"))
    garbage = _failing(Reply(lines=["data: <html>"]))
    assert "not an OpenAI-compatible stream" in garbage


def test_error_event_inside_the_stream() -> None:
    lines = ['data: {"error": {"message": "slot unavailable", "type": "server_error"}}']
    assert "slot unavailable" in _failing(Reply(lines=lines))


def test_per_request_timeout() -> None:
    assert "timed out" in _failing(Reply(lines=recorded("llama_server_chat.sse"), delay_s=3.0))


def test_connection_refused_at_load_is_a_usage_error() -> None:
    with pytest.raises(HarnessError, match="cannot reach"):
        backend_for(f"http://127.0.0.1:{closed_port()}")


def test_connection_refused_mid_run_is_a_sample_error() -> None:
    routes = {("GET", "/v1/models"): LLAMA_SERVER_MODELS}
    with fake_server(routes) as server:
        backend = backend_for(server.url)
    backend.endpoint = replace(backend.endpoint, endpoint=f"http://127.0.0.1:{closed_port()}")  # server gone
    with pytest.raises(RequestError, match=r"connection to .* failed"):
        generate(backend)


def test_unknown_served_model_names_the_served_ones() -> None:
    with (
        fake_server({("GET", "/v1/models"): LLAMA_SERVER_MODELS}) as server,
        pytest.raises(HarnessError, match=r'does not serve "nope".*qwen2.5-0.5b'),
    ):
        backend_for(server.url, served_model="nope")


def test_preflight_needs_endpoint_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    options = BackendOptions(threads=1, n_ctx=512, flags=EndpointConfig())
    with pytest.raises(HarnessError, match="needs flags endpoint"):
        OpenAIHttpBackend.preflight(options)
    flags = EndpointConfig(endpoint="http://127.0.0.1:1", served_model="m", api_key_env="HARNESS_TEST_KEY")
    monkeypatch.delenv("HARNESS_TEST_KEY", raising=False)
    with pytest.raises(HarnessError, match="HARNESS_TEST_KEY"):
        OpenAIHttpBackend.preflight(replace(options, flags=flags))


def test_api_key_is_sent_as_bearer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_TEST_KEY", "sk-local")
    with fake_server({("GET", "/v1/models"): LLAMA_SERVER_MODELS}) as server:
        backend_for(server.url, api_key_env="HARNESS_TEST_KEY", server="llama-server")
    assert server.headers and all(h.get("Authorization") == "Bearer sk-local" for h in server.headers)
