"""A loopback HTTP server that replays scripted answers, for testing the `openai` backend and the load module
without a model: recorded llama-server / ollama streams, HTTP errors, cut streams, non-OpenAI answers.

Each route maps (method, path) to a `Reply`; a reply streams its lines with chunked transfer encoding and an
optional pause between lines, so that chunk arrival times are distinct. Requests are recorded for assertions.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data" / "servers"


@dataclass
class Reply:
    status: int = 200
    content_type: str = "text/event-stream"
    lines: list[str] = field(default_factory=list)  # each sent as one chunk, newline-terminated
    pause_s: float = 0.0  # between lines
    cut_after: int | None = None  # close the connection after this many lines, mid-body
    body: str | None = None  # a plain (non-streamed) body instead of lines
    delay_s: float = 0.0  # before the status line


Route = Reply | Callable[[dict[str, Any]], Reply]


def recorded(name: str) -> list[str]:
    """Lines of a recorded stream in tests/data/servers/ (blank lines of SSE framing kept)."""
    return (DATA / name).read_text(encoding="utf-8").splitlines()


def json_reply(payload: Any, status: int = 200) -> Reply:
    return Reply(status=status, content_type="application/json", body=json.dumps(payload))


class FakeServer:
    def __init__(self, routes: dict[tuple[str, str], Route]) -> None:
        self.routes = dict(routes)
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        self.headers: list[dict[str, str]] = []  # of each request, same order
        self.in_flight = 0
        self.max_in_flight = 0  # most requests being answered at once
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else {}
                server.requests.append((method, self.path, body))
                server.headers.append(dict(self.headers))
                route = server.routes.get((method, self.path))
                reply = route(body) if callable(route) else route
                if reply is None:
                    reply = json_reply({"error": {"message": f"no route {method} {self.path}"}}, 404)
                time.sleep(reply.delay_s)
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                if reply.body is not None:
                    data = reply.body.encode("utf-8")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i, line in enumerate(reply.lines):
                    if reply.cut_after is not None and i >= reply.cut_after:
                        self.wfile.flush()
                        self.connection.shutdown(socket.SHUT_RDWR)
                        self.close_connection = True
                        return
                    data = (line + "\n").encode("utf-8")
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()
                    if reply.pause_s and line.strip():
                        time.sleep(reply.pause_s)
                self.wfile.write(b"0\r\n\r\n")

            def _safely(self, method: str) -> None:
                with server._lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    self._handle(method)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
                    self.close_connection = True
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def do_GET(self) -> None:
                self._safely("GET")

            def do_POST(self) -> None:
                self._safely("POST")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def posts(self, path: str) -> list[dict[str, Any]]:
        return [body for method, p, body in self.requests if method == "POST" and p == path]


@contextmanager
def fake_server(routes: dict[tuple[str, str], Route]) -> Iterator[FakeServer]:
    server = FakeServer(routes)
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def closed_port() -> int:
    """A loopback port with nothing listening (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
