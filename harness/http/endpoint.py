"""Reaching an OpenAI-compatible server: where it is (`EndpointConfig`), which server it is (`ServerKind`,
`detect_flavor`), the request for one greedy generation (`build_request`), whole answers read under bounds
(`read_bounded`), and every failure as one line (`RequestError`, `http_failure`, `error_message`).

Shared by the `openai` backend, the load levels (harness.load), the judge (harness.judge.client) and the
managed servers (harness.servers), so that each of them talks to a server, and fails, the same way.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import httpx
from pydantic import Field

from harness.backends.base import BackendFlags
from harness.errors import HarnessError
from harness.prompts import RenderedPrompt

Flavor = Literal["llama-server", "llama-cpp-python", "ollama", "openai"]
ServerKind = Literal["auto", "llama-server", "llama-cpp-python", "ollama", "openai"]

SEED = 0
# A non-streamed answer (model list, tokenize of a long talk) larger than this is a broken or hostile server
# (issue 21): an error, never a parent-side memory blow-up.
MAX_BODY_BYTES = 32 << 20


@dataclass(frozen=True)
class EndpointConfig(BackendFlags):
    """Where and how to reach one served model: the models.yaml `flags` of an `openai` entry (a managed
    server fills them in itself). A `BackendFlags` because it is the `openai` backend's flags type."""

    endpoint: str = ""  # base URL: http://127.0.0.1:8080 or .../v1
    served_model: str = ""  # the server's name for the model ("model" in each request)
    api_key_env: str | None = None  # environment variable holding the API key, if the server wants one
    tokenizer: str | None = None  # a GGUF whose tokenizer + chat template fit talks into n_ctx locally
    # Without a GGUF and without a server tokenize endpoint, prompt tokens for the n_ctx budget are estimated as
    # characters / chars_per_token. 1.0 over-counts for Qwen-style tokenizers (about 1.5 chars/token on Chinese,
    # 4 on English), so talks are cut early rather than overflow; a run's tokens_per_char column gives the
    # model's real figure (chars_per_token = 1 / tokens_per_char).
    chars_per_token: Annotated[float, Field(gt=0)] = 1.0
    server: ServerKind = "auto"  # which server: decides the no-cache option and where counters come from
    timeout_s: Annotated[float, Field(gt=0)] = 300.0  # per request, from sending to the last byte
    connect_timeout_s: Annotated[float, Field(gt=0)] = 10.0

    @property
    def root(self) -> str:
        url = self.endpoint.rstrip("/")
        return url[: -len("/v1")] if url.endswith("/v1") else url

    def headers(self) -> dict[str, str]:
        if not self.api_key_env:
            return {}
        key = os.environ.get(self.api_key_env)
        if not key:
            raise HarnessError(
                f"models.yaml names api_key_env {self.api_key_env} but it is not set; export {self.api_key_env}=..."
            )
        return {"Authorization": f"Bearer {key}"}

    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout_s, connect=self.connect_timeout_s)


class RequestError(RuntimeError):
    """One request failed (refused, HTTP error, cut stream, unreadable answer): the sample becomes an error row.
    `lost_connection`: the connection itself failed (refused, reset, cut mid-stream), not the server's answer."""

    def __init__(self, message: str, lost_connection: bool = False) -> None:
        super().__init__(message)
        self.lost_connection = lost_connection


# --- requests -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HttpRequest:
    path: str
    body: dict[str, Any]
    ndjson: bool  # ollama's native API streams JSON lines, not server-sent events


def build_request(
    flavor: str,
    config: EndpointConfig,
    prompt: RenderedPrompt,
    max_new_tokens: int,
    n_ctx: int,
    chat_template_kwargs: dict[str, Any] | None = None,
) -> HttpRequest:
    """The request for one greedy generation of `prompt`: chat endpoint for chat-style entries (the server
    applies the model's template), completion endpoint with the whole prompt for completion-style ones."""
    chat = prompt.style == "chat"
    if flavor == "ollama":
        options = {"temperature": 0, "top_k": 1, "seed": SEED, "num_predict": max_new_tokens, "num_ctx": n_ctx}
        if chat:
            return HttpRequest(
                "/api/chat",
                {"model": config.served_model, "messages": prompt.messages(), "stream": True, "options": options},
                ndjson=True,
            )
        body = {"model": config.served_model, "prompt": prompt.content, "raw": True, "stream": True}
        return HttpRequest("/api/generate", {**body, "options": options}, ndjson=True)
    body: dict[str, Any] = {
        "model": config.served_model,
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0,
        "top_p": 1,
        "seed": SEED,
        "max_tokens": max_new_tokens,
    }
    if flavor == "llama-server":
        body.update(cache_prompt=False, top_k=1)
    elif flavor == "llama-cpp-python":
        body.update(top_k=1, repeat_penalty=1.0, min_p=0.0)
    if chat:
        body["messages"] = prompt.messages()
        if chat_template_kwargs:
            body["chat_template_kwargs"] = chat_template_kwargs
        return HttpRequest("/v1/chat/completions", body, ndjson=False)
    body["prompt"] = prompt.content
    return HttpRequest("/v1/completions", body, ndjson=False)


# --- whole answers --------------------------------------------------------------------------------------
def timed_out(config: EndpointConfig) -> RequestError:
    return RequestError(f"request timed out (overall limit {config.timeout_s:g} s per request)")


def read_bounded(
    client: httpx.Client, method: str, url: str, config: EndpointConfig, body: Any = None
) -> httpx.Response:
    """A whole (non-streamed) answer read under the overall deadline and MAX_BODY_BYTES; raises httpx errors
    as they come and RequestError past a bound."""
    deadline = time.monotonic() + config.timeout_s
    with client.stream(method, url, json=body) as response:
        data = bytearray()
        for chunk in response.iter_bytes():
            data += chunk
            if len(data) > MAX_BODY_BYTES:
                raise RequestError(f"{response.request.url.path} answered more than {MAX_BODY_BYTES >> 20} MiB")
            if time.monotonic() > deadline:
                raise timed_out(config)
        # The body is decoded already: drop the framing headers so the copy is not decoded twice.
        drop = {"content-encoding", "content-length", "transfer-encoding"}
        headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in drop]
        return httpx.Response(response.status_code, headers=headers, content=bytes(data), request=response.request)


def response_json(response: httpx.Response) -> Any:
    """The JSON of an answer; RequestError (one line) for anything unreadable."""
    try:
        return response.json()
    except (ValueError, RecursionError):
        raise RequestError(f"{response.request.url.path} answered no JSON: {response.text[:80]!r}") from None


# --- failures, one line each ------------------------------------------------------------------------------
def error_message(response: httpx.Response) -> str:
    """The server's own words for a failed request, on one line."""
    try:
        data = response.json()
    except ValueError:
        data = None
    message: Any = None
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data.get("message")))
        message = err.get("message", err) if isinstance(err, dict) else err
    text = str(message if message is not None else response.text).strip() or response.reason_phrase
    return f"HTTP {response.status_code} from {response.request.url.path}: {' '.join(text.split())[:300]}"


def one_line(exc: BaseException) -> str:
    """An exception as `Type: message` on one line (httpx messages can span several)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def http_failure(exc: httpx.HTTPError, config: EndpointConfig) -> RequestError:
    if isinstance(exc, httpx.ConnectError):
        message = f"connection to {config.root} failed ({one_line(exc)}): server not running?"
        return RequestError(message, lost_connection=True)
    if isinstance(exc, httpx.TimeoutException):
        return RequestError(f"request timed out ({type(exc).__name__}, limit {config.timeout_s:g} s)")
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
        return RequestError(f"stream cut mid-generation: {one_line(exc)}", lost_connection=True)
    return RequestError(one_line(exc), lost_connection=isinstance(exc, httpx.TransportError))


# --- the server's identity ----------------------------------------------------------------------------
def detect_flavor(client: httpx.Client, config: EndpointConfig, response: httpx.Response | None) -> Flavor:
    """Which server this is, from what it answers (`response`: its GET /v1/models, None when config.server
    names the server): decides the no-cache option and where counters come from."""
    if config.server != "auto":
        return config.server  # type: ignore[return-value]
    if response is not None and response.status_code < 400:
        with contextlib.suppress(ValueError, TypeError, AttributeError, RecursionError):
            models = response.json().get("data") or []
            owners = {m.get("owned_by") for m in models if isinstance(m, dict)}
            if "me" in owners:
                return "llama-cpp-python"
            if "llamacpp" in owners:
                return "llama-server"
    with contextlib.suppress(httpx.HTTPError, ValueError, TypeError, RecursionError, RequestError):
        version = read_bounded(client, "GET", f"{config.root}/api/version", config)
        if version.status_code == 200 and "version" in version.json():
            return "ollama"
    return "openai"
