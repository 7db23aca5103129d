"""The project's HTTP client for OpenAI-compatible servers (llama-server, llama-cpp-python's server, ollama,
LM Studio, vLLM, ...): the endpoint and request side in `endpoint`, the streamed answer in `stream`.

One client for everything that talks to a server -- the `openai` backend (harness.backends.openai_http), the
load levels (harness.load), the judge (harness.judge.client), the managed servers (harness.servers) -- so that
each builds the same requests, reads the same streams under the same bounds, and fails with the same one-line
messages. Nothing here is a backend: it imports no engine and no backend module.
"""

from __future__ import annotations

from harness.http.endpoint import (
    MAX_BODY_BYTES,
    SEED,
    EndpointConfig,
    Flavor,
    HttpRequest,
    RequestError,
    ServerKind,
    build_request,
    detect_flavor,
    error_message,
    http_failure,
    one_line,
    read_bounded,
    response_json,
    timed_out,
)
from harness.http.stream import (
    COUNT_PATH,
    MAX_COUNT,
    MAX_LINE_CHARS,
    StreamOutcome,
    StreamParser,
    answer_cap,
    bad_stream,
    bounded_lines,
    count_difference,
    needs_text_count,
    server_count,
    server_ms,
    stream_lines,
    stream_ok,
)

__all__ = [
    "COUNT_PATH",
    "MAX_BODY_BYTES",
    "MAX_COUNT",
    "MAX_LINE_CHARS",
    "SEED",
    "EndpointConfig",
    "Flavor",
    "HttpRequest",
    "RequestError",
    "ServerKind",
    "StreamOutcome",
    "StreamParser",
    "answer_cap",
    "bad_stream",
    "bounded_lines",
    "build_request",
    "count_difference",
    "detect_flavor",
    "error_message",
    "http_failure",
    "needs_text_count",
    "one_line",
    "read_bounded",
    "response_json",
    "server_count",
    "server_ms",
    "stream_lines",
    "stream_ok",
    "timed_out",
]
