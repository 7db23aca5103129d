"""A loopback OpenAI-compatible server that misbehaves on purpose (issue 21), for the hang and engine-input fault
cases: it trickles bytes without a newline, sends counters that cannot be true, answers far past max_tokens,
malformed JSON, or a redirect. Each route is a function that writes the raw response, so a case states the
exact bytes a broken server sends. `healthy_models` answers GET /v1/models for the model "m"."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Handler = BaseHTTPRequestHandler
Route = Callable[[Handler], None]


def send_json(h: Handler, payload: Any, status: int = 200) -> None:
    data = json.dumps(payload).encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    h.wfile.write(data)


def healthy_models(h: Handler) -> None:
    send_json(h, {"object": "list", "data": [{"id": "m", "owned_by": "someone"}]})


def trickle(seconds: float = 30.0, content_type: str = "text/event-stream") -> Route:
    """A 200 whose body is one byte every 50 ms with no newline, for `seconds` (a per-read timeout never fires)."""

    def route(h: Handler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            h.wfile.write(b"1\r\nx\r\n")
            h.wfile.flush()
            time.sleep(0.05)

    return route


def sse(chunks: list[Any], done: bool = True) -> Route:
    """A server-sent-event stream of `chunks` (dicts are JSON-encoded, strings sent as they are)."""

    def route(h: Handler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.end_headers()
        for chunk in chunks:
            payload = chunk if isinstance(chunk, str) else json.dumps(chunk)
            h.wfile.write(f"data: {payload}\n\n".encode())
        if done:
            h.wfile.write(b"data: [DONE]\n\n")
        h.close_connection = True

    return route


def redirect(location: str = "http://127.0.0.1:9/elsewhere", status: int = 302) -> Route:
    def route(h: Handler) -> None:
        h.send_response(status)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()

    return route


def text_chunk(text: str, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}], **extra}


class HostileServer:
    def __init__(self, routes: dict[tuple[str, str], Route]) -> None:
        routes = {("GET", "/v1/models"): healthy_models, **routes}

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                route = routes.get((method, self.path.split("?")[0]))
                try:
                    if route is None:
                        send_json(self, {"error": {"message": f"no route {method} {self.path}"}}, 404)
                    else:
                        route(self)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up: what the case wants
                    self.close_connection = True

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)


@contextmanager
def hostile_server(routes: dict[tuple[str, str], Route]) -> Iterator[HostileServer]:
    server = HostileServer(routes)
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def openai_entry(model_id: str, url: str, timeout_s: float = 3.0, n_ctx: int = 4096) -> str:
    """A models.yaml entry (list item) for the served model "m" at `url`: generic OpenAI server, no tokenizer
    (the prompt budget is estimated), an overall per-request deadline of `timeout_s`."""
    return f"""\
- id: {model_id}
  backend: openai
  quant: Q4_K_M
  n_ctx: {n_ctx}
  prompt_style: chat
  source: {{kind: remote}}
  flags: {{endpoint: '{url}/v1', served_model: m, server: openai, timeout_s: {timeout_s}, connect_timeout_s: 2}}
"""
