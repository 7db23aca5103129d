"""OpenAI-compatible HTTP servers as a backend: llama-server, ollama, LM Studio, Foundry Local, vLLM, ...

Most people run their GGUF models behind a local server, and NPU runtimes (Foundry Local, Lemonade) are often
reachable only that way. This backend sends the same rendered prompts as the in-process backends over HTTP and
times the streamed answer, so rows compare column for column with llama.cpp in-process.

Why httpx and not the `openai` SDK: the SDK hides the raw chunks and drops fields it does not know, and the
figures below need exactly those -- llama-server's `timings`, ollama's native `eval_count`/`eval_duration` --
and the arrival time of each chunk. httpx streams the response; its `iter_lines()` does the line framing, and
this module only splits the `data:` lines of server-sent events.

How each figure is defined (also in docs/servers.md):

    t0   = just before the request is written (after rendering the prompt; includes connection set-up)
    t1   = arrival of the first chunk that carries generated text
    tN   = arrival of the last such chunk
    ttft_s       = t1 - t0                     (HTTP + server queueing + prefill + first sample + first flush)
    output_tokens from the server, never from counting chunks: usage.completion_tokens, llama-server
                 timings.predicted_n, ollama eval_count; llama-cpp-python's server streams no usage: a
                 generation stopped by the cap has max_tokens, one stopped by EOS is counted by the server's
                 /extras/tokenize/count endpoint (output_tokens_source says which)
    decode_tok_s = (output_tokens - 1) / (tN - t1)
    itl          = gaps between chunk arrivals; itl_unit = "token" when the server sent one chunk per counted
                 token, else "chunk" (a chunk can carry several tokens: a Chinese character is often several)
    engine_*     = the server's own counters (llama-server timings, ollama durations), so that
                 decode_vs_engine_pct is the HTTP + server overhead as a number

Prefix caches would fake TTFT on repeats, as in-process: llama-server gets `cache_prompt: false` and its
evaluated-prompt count (timings.prompt_n) must equal the prompt's tokens; llama-cpp-python's server reuses the
longest common prefix of the previous request with no switch and no count, so a one-token request whose first
token differs from every prompt's is sent before each sample; ollama has no switch, so its evaluated count
(prompt_eval_count) must never drop below the count first seen for the same prompt. A failed check makes the
sample an error, never a number.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import httpx
from pydantic import Field

from harness.backends.base import (
    Backend,
    BackendFlags,
    BackendOptions,
    EngineCounters,
    GenerationRequest,
    GenerationResult,
    LoadInfo,
)
from harness.backends.llama_cpp import encode_prompt, gguf_chat_formatter
from harness.errors import HarnessError
from harness.prompts import RenderedPrompt

Flavor = Literal["llama-server", "llama-cpp-python", "ollama", "openai"]
ServerKind = Literal["auto", "llama-server", "llama-cpp-python", "ollama", "openai"]

# Sent before each sample to llama-cpp-python's server so that the next prompt shares no prefix with the
# cached one. No prompt template starts with a form feed; a model that prepends BOS keeps that one token.
FLUSH_PROMPT = "\f"
SEED = 0


@dataclass(frozen=True)
class EndpointConfig(BackendFlags):
    """Where and how to reach one served model: the models.yaml `flags` of an `openai` entry (a managed
    server fills them in itself)."""

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
    """One request failed (refused, HTTP error, cut stream, unreadable answer): the sample becomes an error row."""


# Bounds on what a server may send (issue 21): a hostile or broken server must end in an error row, never in a
# hang, a huge parent-side ROUGE computation, or a figure that cannot be true.
MAX_LINE_CHARS = 1 << 20  # one SSE / NDJSON line; a server that never ends its line is cut off here
MAX_BODY_BYTES = 32 << 20  # one non-streamed answer (model list, tokenize of a long talk)
MAX_COUNT = 2**31 - 1  # a token count above this (or below 0) is not a count
ANSWER_CHARS_PER_TOKEN = 64  # the longest token of a real vocabulary is well under this many characters
ANSWER_SLACK_CHARS = 4096


def answer_cap(max_new_tokens: int) -> int:
    """Most characters an answer of `max_new_tokens` tokens can have; a longer one ignores max_tokens."""
    return max_new_tokens * ANSWER_CHARS_PER_TOKEN + ANSWER_SLACK_CHARS


def server_count(value: Any, name: str) -> int:
    """A token count from the server, checked: a whole number in [0, MAX_COUNT], else RequestError."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RequestError(f"server reported {name} {value!r}: not a token count")
    if value != int(value) or not 0 <= value <= MAX_COUNT:
        raise RequestError(f"server reported {name} {value!r}: not a plausible token count")
    return int(value)


def server_ms(value: Any, name: str, scale: float = 1.0) -> float:
    """A duration from the server (in ms after `scale`), checked: finite and not negative, else RequestError
    (a NaN or -1 would otherwise feed engine_* and outside_engine_ms_per_tok)."""
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise RequestError(f"server reported {name} {value!r}: not a duration")
    return float(value) * scale


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


# --- responses ------------------------------------------------------------------------------------------
@dataclass
class StreamOutcome:
    """One streamed answer, as received: chunk arrival times, text and whatever counters the server sent."""

    start_ns: int
    chunk_ns: list[int] = field(default_factory=list)
    text_parts: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    done: bool = False  # [DONE] (SSE) or done:true (ollama) seen
    prompt_tokens: int | None = None  # usage.prompt_tokens
    completion_tokens: int | None = None
    output_tokens_source: str = ""
    prompt_evaluated: int | None = None  # tokens the server actually evaluated (cache misses)
    counters: EngineCounters | None = None
    end_ns: int | None = None

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    @property
    def complete(self) -> bool:
        return self.done or self.finish_reason is not None

    @property
    def itl_unit(self) -> str:
        """"token" when the server's count says each chunk held one token, else "chunk"."""
        n = self.completion_tokens
        return "token" if n is not None and n == len(self.chunk_ns) else "chunk"


class StreamParser:
    """Turns the lines of a streamed answer into a StreamOutcome. Feed it each line with its arrival time."""

    def __init__(self, start_ns: int, ndjson: bool, max_chars: int | None = None) -> None:
        self.outcome = StreamOutcome(start_ns=start_ns)
        self.ndjson = ndjson
        self.max_chars = max_chars  # answer_cap(max_tokens): a longer answer is an error, not scored
        self._chars = 0

    def feed(self, line: str, now_ns: int) -> None:
        line = line.strip()
        if not line:
            return
        try:
            if self.ndjson:
                self._ollama(self._json(line), now_ns)
                return
            if not line.startswith("data:"):
                return  # SSE comments (": ping"), event:/id: fields
            payload = line[5:].strip()
            if payload == "[DONE]":
                self.outcome.done = True
                return
            self._openai(self._json(payload), now_ns)
        except (AttributeError, TypeError, ValueError, KeyError) as exc:
            # JSON of the wrong shape (a list for a choice, a string for usage): one line naming the server's
            # fault, never a Python exception name in the error row.
            raise RequestError(f"not an OpenAI-compatible stream: malformed chunk {line[:80]!r} ({exc})") from None

    @staticmethod
    def _json(text: str) -> dict[str, Any]:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):  # ValueError covers JSONDecodeError and 5000-digit integers
            raise RequestError(f"not an OpenAI-compatible stream: unreadable line {text[:80]!r}") from None
        if not isinstance(data, dict):
            raise RequestError(f"not an OpenAI-compatible stream: {text[:80]!r}")
        if "error" in data:
            err = data["error"]
            raise RequestError(f"server error mid-stream: {err.get('message', err) if isinstance(err, dict) else err}")
        return data

    def _content(self, text: Any, now_ns: int) -> None:
        if isinstance(text, str) and text:
            self._chars += len(text)
            if self.max_chars is not None and self._chars > self.max_chars:
                raise RequestError(
                    f"server sent more than {self.max_chars} characters for this request's max_tokens "
                    "(it ignores max_tokens): answer cut off, not scored"
                )
            self.outcome.chunk_ns.append(now_ns)
            self.outcome.text_parts.append(text)

    def _openai(self, data: dict[str, Any], now_ns: int) -> None:
        out = self.outcome
        choices = data.get("choices")
        if not isinstance(choices, list):
            raise RequestError(f"not an OpenAI-compatible stream: chunk without choices: {json.dumps(data)[:120]}")
        for choice in choices:
            if not isinstance(choice, dict):
                raise RequestError(f"not an OpenAI-compatible stream: a choice is not an object: {choice!r:.80}")
            delta = choice.get("delta")
            self._content(delta.get("content") if isinstance(delta, dict) else choice.get("text"), now_ns)
            if choice.get("finish_reason"):
                out.finish_reason = choice["finish_reason"]
        usage = data.get("usage")
        if isinstance(usage, dict):
            if usage.get("prompt_tokens") is not None:
                out.prompt_tokens = server_count(usage["prompt_tokens"], "usage.prompt_tokens")
            if usage.get("completion_tokens") is not None:
                out.completion_tokens = server_count(usage["completion_tokens"], "usage.completion_tokens")
                out.output_tokens_source = "usage"
        timings = data.get("timings")  # llama-server
        if isinstance(timings, dict) and timings.get("prompt_n") is not None:
            out.prompt_evaluated = server_count(timings["prompt_n"], "timings.prompt_n")
            out.counters = EngineCounters(
                prompt_tokens=out.prompt_evaluated,
                prompt_ms=server_ms(timings.get("prompt_ms"), "timings.prompt_ms"),
                decode_tokens=server_count(timings.get("predicted_n") or 0, "timings.predicted_n"),
                decode_ms=server_ms(timings.get("predicted_ms"), "timings.predicted_ms"),
            )
            if out.completion_tokens is None and timings.get("predicted_n") is not None:
                out.completion_tokens = server_count(timings["predicted_n"], "timings.predicted_n")
                out.output_tokens_source = "timings"

    def _ollama(self, data: dict[str, Any], now_ns: int) -> None:
        out = self.outcome
        message = data.get("message")
        if isinstance(message, dict):
            self._content(message.get("content"), now_ns)
        elif "response" in data:
            self._content(data.get("response"), now_ns)
        elif "done" not in data:
            raise RequestError(f"not an ollama stream: {json.dumps(data)[:120]}")
        if data.get("done"):
            out.done = True
            out.finish_reason = data.get("done_reason") or "stop"
            if data.get("prompt_eval_count") is not None:
                out.prompt_evaluated = out.prompt_tokens = server_count(data["prompt_eval_count"], "prompt_eval_count")
            if data.get("eval_count") is not None:
                out.completion_tokens = server_count(data["eval_count"], "eval_count")
                out.output_tokens_source = "eval_count"
                out.counters = EngineCounters(
                    prompt_tokens=server_count(data.get("prompt_eval_count") or 0, "prompt_eval_count"),
                    prompt_ms=server_ms(data.get("prompt_eval_duration"), "prompt_eval_duration", 1e-6),
                    decode_tokens=out.completion_tokens,
                    decode_ms=server_ms(data.get("eval_duration"), "eval_duration", 1e-6),
                )

    def finish(self, now_ns: int) -> StreamOutcome:
        out = self.outcome
        out.end_ns = now_ns
        if not out.complete:
            raise RequestError(
                f"stream ended mid-generation after {len(out.chunk_ns)} chunks (no finish_reason / [DONE])"
            )
        return out


def timed_out(config: EndpointConfig) -> RequestError:
    return RequestError(f"request timed out (overall limit {config.timeout_s:g} s per request)")


def bounded_lines(chunks: Iterable[str], deadline: float, config: EndpointConfig) -> Iterator[str]:
    """The lines of a streamed body, under an overall deadline (time.monotonic()) checked at every chunk that
    arrives -- httpx's read timeout restarts at each byte, so a server trickling bytes without a newline would
    otherwise hold the request for ever -- and a cap on one line's length. A server that sends nothing at all
    is ended by the read timeout, so a request ends within about twice config.timeout_s at worst."""
    pending = ""
    for chunk in chunks:
        if time.monotonic() > deadline:
            raise timed_out(config)
        pending += chunk
        if "\n" in pending:
            *lines, pending = pending.split("\n")
            for line in lines:
                yield line.rstrip("\r")
        if len(pending) > MAX_LINE_CHARS:
            raise RequestError(f"not an OpenAI-compatible stream: a line longer than {MAX_LINE_CHARS} characters")
    if pending:
        yield pending.rstrip("\r")


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


def stream_lines(lines: Iterable[str], parser: StreamParser, clock: Any = time.perf_counter_ns) -> StreamOutcome:
    for line in lines:
        parser.feed(line, clock())
    return parser.finish(clock())


def stream_ok(response: httpx.Response, ndjson: bool) -> bool:
    """Whether `response` is a stream this module reads (before reading its body)."""
    wanted = ("application/x-ndjson", "application/json") if ndjson else ("text/event-stream",)
    return response.status_code < 400 and response.headers.get("content-type", "").startswith(wanted)


def bad_stream(response: httpx.Response) -> RequestError:
    """Why a response that failed `stream_ok` is no stream (its body read): HTTP errors carry the server's
    message; a 200 with another content type is a non-OpenAI answer."""
    if response.status_code >= 400:
        return RequestError(error_message(response))
    if 300 <= response.status_code < 400:
        # httpx does not follow redirects (a POST must not be replayed elsewhere unasked): say where it points.
        where = response.headers.get("location") or "no Location header"
        return RequestError(
            f"HTTP {response.status_code} redirect from {response.request.url.path} to {where}: set the entry's "
            "endpoint to the server's final URL"
        )
    kind = response.headers.get("content-type", "") or "no content type"
    return RequestError(
        f"not an OpenAI-compatible stream: {response.request.url.path} answered {kind} ({response.text[:80]!r})"
    )


def needs_text_count(flavor: str, outcome: StreamOutcome, max_new_tokens: int) -> bool:
    """llama-cpp-python's stream carries no usage. Stopped by the cap, it generated exactly max_tokens (filled
    in here); stopped by EOS, True: its own tokenizer must count the text (/extras/tokenize/count), which can
    differ from the ids it sampled by a token."""
    if outcome.completion_tokens is not None or flavor != "llama-cpp-python":
        return False
    if outcome.finish_reason == "length":
        outcome.completion_tokens, outcome.output_tokens_source = max_new_tokens, "max_tokens"
        return False
    return True


COUNT_PATH = "/extras/tokenize/count"


def count_difference(full: httpx.Response, empty: httpx.Response) -> int | None:
    """Tokens of a text from two /extras/tokenize/count answers: the text's and the empty string's (the BOS
    the endpoint adds for models that want one)."""
    for response in (full, empty):
        if response.status_code >= 400:
            raise RequestError(error_message(response))
    try:
        n, base = full.json().get("count"), empty.json().get("count")
    except (ValueError, AttributeError, RecursionError):
        raise RequestError(f"{COUNT_PATH} answered without a count: {full.text[:80]!r}") from None
    if n is None:
        return None
    return server_count(n, "count") - server_count(base or 0, "count")


STOP_REASONS = {"stop": "eos", "eos": "eos", "length": "length"}


def to_generation(outcome: StreamOutcome) -> GenerationResult:
    """A GenerationResult whose times are chunk arrivals and whose counts are the server's."""
    return GenerationResult(
        token_ids=[],
        text=outcome.text,
        start_ns=outcome.start_ns,
        token_ns=list(outcome.chunk_ns),
        stop_reason=STOP_REASONS.get(outcome.finish_reason or "", outcome.finish_reason or "eos"),
        prompt_tokens_evaluated=None,  # checked against the server's own prompt count in _check_prompt
        counters=outcome.counters,
        prompt_tokens=outcome.prompt_tokens,
        output_tokens=outcome.completion_tokens,
        itl_unit=outcome.itl_unit,
        output_tokens_source=outcome.output_tokens_source,
    )


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


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def http_failure(exc: httpx.HTTPError, config: EndpointConfig) -> RequestError:
    if isinstance(exc, httpx.ConnectError):
        return RequestError(f"connection to {config.root} failed ({_one_line(exc)}): server not running?")
    if isinstance(exc, httpx.TimeoutException):
        return RequestError(f"request timed out ({type(exc).__name__}, limit {config.timeout_s:g} s)")
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
        return RequestError(f"stream cut mid-generation: {_one_line(exc)}")
    return RequestError(_one_line(exc))


# --- local tokenizer (fitting talks into n_ctx) --------------------------------------------------------
class _Discard:
    """A text sink for stderr output that has no reader (see GgufTokenizer)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        return None


class GgufTokenizer:
    """The model's own tokenizer and chat template, from a GGUF loaded vocabulary-only (no weights): counts a
    prompt's tokens exactly as llama.cpp in-process does, so long talks are cut to the same length."""

    def __init__(self, path: Path, chat_template_kwargs: dict[str, Any]) -> None:
        import llama_cpp

        # A vocabulary-only load has no n_ctx_train, so llama.cpp warns "n_ctx_seq (512) > n_ctx_train (0)"
        # through llama-cpp-python's log callback (a print to sys.stderr that verbose=False does not stop):
        # meaningless here, and it would land in the middle of the run's output.
        with contextlib.redirect_stderr(_Discard()):
            self.llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
        self.kwargs = chat_template_kwargs
        self.formatter = gguf_chat_formatter(self.llm)

    def encode(self, prompt: RenderedPrompt) -> list[int]:
        chat = prompt.style == "chat"
        if chat and self.formatter is None:
            raise HarnessError("the tokenizer GGUF has no chat template; set prompt_style: completion")
        return encode_prompt(self.llm, self.formatter, prompt, chat, self.kwargs)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.llm.close()


# --- counting prompt tokens without a local GGUF ---------------------------------------------------------
TOKENIZE_PATHS: dict[str, str] = {"llama-server": "/tokenize", "llama-cpp-python": "/extras/tokenize"}


def prompt_text(prompt: RenderedPrompt) -> str:
    """The text a server-side tokenizer or the estimate counts: the whole prompt, or the chat messages' text."""
    return prompt.content if prompt.style != "chat" else "".join(m["content"] for m in prompt.messages())


def estimate_ids(prompt: RenderedPrompt, chars_per_token: float) -> list[int]:
    """Placeholder ids, as many as the estimate's tokens (ceil(characters / chars_per_token)): only their
    number is used, to fit the talk into n_ctx; the row's prompt_tokens are the server's."""
    return [0] * math.ceil(len(prompt_text(prompt)) / chars_per_token)


class ServerTokenizer:
    """The server's own tokenizer over HTTP: llama-server `POST /tokenize {"content"}` (chat prompts rendered
    by its `POST /apply-template` first, when it has one), llama-cpp-python's `POST /extras/tokenize
    {"input"}`. Both answer `{"tokens": [...]}`."""

    def __init__(self, backend: OpenAIHttpBackend, flavor: str) -> None:
        self.backend = backend
        self.flavor = flavor
        self.path = TOKENIZE_PATHS[flavor]
        self.templated = False  # chat prompts rendered by the server's template before counting

    def probe(self) -> None:
        """Raises RequestError when the endpoint is missing (then the backend estimates)."""
        self._tokenize("a", add_special=True)
        if self.flavor == "llama-server":
            with contextlib.suppress(RequestError):
                self._apply_template([{"role": "user", "content": "a"}])
                self.templated = True

    @property
    def description(self) -> str:
        if self.flavor == "llama-server" and self.templated:
            return "server: llama-server /apply-template + /tokenize"
        return f"server: {self.path} (chat prompts: messages' text, the chat template's tokens not counted)"

    def _tokenize(self, text: str, add_special: bool) -> list[int]:
        if self.flavor == "llama-server":
            body: dict[str, Any] = {"content": text, "add_special": add_special, "parse_special": True}
        else:
            body = {"model": self.backend.endpoint.served_model, "input": text}
        data = response_json(self.backend._post(self.path, body))
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(tokens, list):
            raise RequestError(f"{self.path} answered without a tokens list: {json.dumps(data)[:120]}")
        return [t if isinstance(t, int) else 0 for t in tokens]  # llama-server may send {id, piece} pairs

    def _apply_template(self, messages: list[dict[str, str]]) -> str:
        body = {"messages": messages, **self.backend.options.chat_template_kwargs}
        data = response_json(self.backend._post("/apply-template", body))
        if not isinstance(data, dict) or not isinstance(data.get("prompt"), str):
            raise RequestError("/apply-template answered without a prompt")
        return str(data["prompt"])

    def encode(self, prompt: RenderedPrompt) -> list[int]:
        if prompt.style == "chat" and self.templated:
            return self._tokenize(self._apply_template(prompt.messages()), add_special=False)
        return self._tokenize(prompt_text(prompt), add_special=prompt.style != "chat")

    def close(self) -> None:
        """Nothing to release: the backend owns the HTTP client."""


# --- the backend ----------------------------------------------------------------------------------------
class OpenAIHttpBackend(Backend):
    """Greedy generations over HTTP from an OpenAI-compatible server (or ollama's native API)."""

    name: ClassVar[str] = "openai"
    flags_type: ClassVar[type[BackendFlags]] = EndpointConfig
    requires: ClassVar[dict[str, str]] = {"httpx": "httpx"}
    remote: ClassVar[bool] = True

    def __init__(self, model_path: Path, options: BackendOptions, prompt_style: str) -> None:
        super().__init__(model_path, options, prompt_style)
        flags = self.flags
        assert isinstance(flags, EndpointConfig)
        self.endpoint = flags
        self.client: httpx.Client | None = None
        self.flavor: Flavor = "openai"
        self.tokenizer: GgufTokenizer | ServerTokenizer | None = None
        self.tokenizer_description = ""  # how prompts are counted for the n_ctx budget (run.json)
        self.estimated = False  # prompt token counts for the budget are an estimate (no tokenizer anywhere)
        self._rendered: dict[tuple[int, ...], RenderedPrompt] = {}
        self._first_evaluated: dict[str, int] = {}  # prompt digest -> evaluated count first seen (ollama)

    @classmethod
    def preflight(cls, options: BackendOptions) -> None:
        flags = options.flags
        if not isinstance(flags, EndpointConfig) or not flags.endpoint or not flags.served_model:
            raise HarnessError(
                "backend openai needs flags endpoint (base URL) and served_model (the server's model name), "
                "e.g. flags: {endpoint: http://127.0.0.1:8080, served_model: qwen2.5-0.5b}"
            )
        if not flags.endpoint.startswith(("http://", "https://")):
            raise HarnessError(f"flag endpoint must be an http:// or https:// URL, got {flags.endpoint!r}")
        flags.headers()  # a missing API key is a usage error now, not one error row per sample

    # -- Backend protocol --
    def load(self) -> LoadInfo:
        config = self.endpoint
        self.client = httpx.Client(timeout=config.timeout(), headers=config.headers())
        models = None if config.server == "ollama" else self._get_models()  # one request serves both uses
        self.flavor = detect_flavor(self.client, config, models)
        self._check_model_served(models)
        self._choose_tokenizer()
        if self.flavor == "llama-cpp-python" and self.options.chat_template_kwargs:
            raise HarnessError(
                "llama-cpp-python's server cannot pass chat_template_kwargs to the template; "
                "use --via llama-server or drop chat_template_kwargs"
            )
        extra: dict[str, Any] = {
            "endpoint": config.root,
            "served_model": config.served_model,
            "server": self.flavor,
            "tokenizer": self.tokenizer_description,
            "prefix_cache": {
                "llama-server": "cache_prompt=false, evaluated count checked",
                "llama-cpp-python": "flush request before each sample",
                "ollama": "evaluated count checked against the first sample of the same prompt",
                "openai": "unknown: server reports no evaluated-prompt count",
            }[self.flavor],
        }
        if self.estimated:
            extra["warning"] = (
                f"no tokenizer for this endpoint: talks are fitted to n_ctx by an {self.tokenizer_description}; "
                "rows' prompt_tokens are the server's; set flags.tokenizer to the model's GGUF for exact cuts"
            )
        return LoadInfo(
            provider=f"http:{self.flavor}",
            n_ctx=self.options.n_ctx,
            model_files=[],
            mmap=False,
            extra=extra,
        )

    def _choose_tokenizer(self) -> None:
        """The GGUF named by flags.tokenizer, else the server's tokenize endpoint, else the estimate."""
        config = self.endpoint
        if config.tokenizer:
            self.tokenizer = GgufTokenizer(Path(config.tokenizer), dict(self.options.chat_template_kwargs))
            self.tokenizer_description = f"gguf: {config.tokenizer}"
            return
        if self.flavor in TOKENIZE_PATHS:
            server = ServerTokenizer(self, self.flavor)
            try:
                server.probe()
            except RequestError:
                pass  # an older or restricted server: estimate
            else:
                self.tokenizer, self.tokenizer_description = server, server.description
                return
        self.estimated = True
        self.tokenizer_description = f"estimate ({config.chars_per_token:g} chars/token)"

    def tokenize_prompt(self, prompt: RenderedPrompt) -> list[int]:
        """Token ids to fit n_ctx: the GGUF's or the server's; with neither, placeholders as many as the
        estimate's tokens (only their number is used; the row's prompt_tokens are the server's)."""
        if self.tokenizer is not None:
            try:
                ids = self.tokenizer.encode(prompt)
            except RequestError as exc:
                raise HarnessError(f"cannot count prompt tokens on {self.endpoint.root}: {exc}") from None
        else:
            ids = estimate_ids(prompt, self.endpoint.chars_per_token)
        if len(self._rendered) > 256:
            self._rendered.clear()
        self._rendered[tuple(ids)] = prompt
        return ids

    def generate(self, request: GenerationRequest) -> GenerationResult:
        prompt = getattr(request, "prompt", None) or self._rendered.get(tuple(request.prompt_ids))
        if prompt is None:
            raise RuntimeError("openai backend: prompt was not rendered through tokenize_prompt")
        if request.min_new_tokens:
            raise HarnessError("--min-new-tokens is not available over HTTP (servers differ in how to ignore EOS)")
        if self.flavor == "llama-cpp-python":
            self.flush_prefix_cache()
        outcome = self.stream(prompt, request.max_new_tokens)
        if needs_text_count(self.flavor, outcome, request.max_new_tokens):
            outcome.completion_tokens = self.count_tokens(outcome.text)
            outcome.output_tokens_source = "server_tokenize"
        expected = None if self.estimated else len(request.prompt_ids) or None
        self._check_prompt(prompt, outcome, expected=expected)
        return to_generation(outcome)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.tokenizer is not None:
            self.tokenizer.close()
            self.tokenizer = None

    # -- HTTP --
    def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        assert self.client is not None
        try:
            response = read_bounded(self.client, "POST", f"{self.endpoint.root}{path}", self.endpoint, body)
        except httpx.HTTPError as exc:
            raise http_failure(exc, self.endpoint) from None
        if response.status_code >= 400:
            raise RequestError(error_message(response))
        return response

    def stream(self, prompt: RenderedPrompt, max_new_tokens: int) -> StreamOutcome:
        assert self.client is not None
        req = build_request(
            self.flavor, self.endpoint, prompt, max_new_tokens, self.options.n_ctx, self.options.chat_template_kwargs
        )
        url = f"{self.endpoint.root}{req.path}"
        deadline = time.monotonic() + self.endpoint.timeout_s  # overall, not per line (bounded_lines)
        start = self.now_ns()
        parser = StreamParser(start, req.ndjson, max_chars=answer_cap(max_new_tokens))
        try:
            with self.client.stream("POST", url, json=req.body) as response:
                if not stream_ok(response, req.ndjson):
                    body = bytearray()
                    for chunk in response.iter_bytes():  # an error page, read under the same bounds
                        body += chunk
                        if len(body) > MAX_BODY_BYTES or time.monotonic() > deadline:
                            break
                    response._content = bytes(body)  # what bad_stream quotes
                    raise bad_stream(response)
                for line in bounded_lines(response.iter_text(), deadline, self.endpoint):
                    parser.feed(line, self.now_ns())
                return parser.finish(self.now_ns())
        except httpx.HTTPError as exc:
            raise http_failure(exc, self.endpoint) from None

    def flush_prefix_cache(self) -> None:
        """llama-cpp-python's server keeps the last request's tokens and reuses their longest common prefix.
        One token generated from a prompt that starts differently from every talk's leaves nothing to reuse."""
        self._post(
            "/v1/completions",
            {"model": self.endpoint.served_model, "prompt": FLUSH_PROMPT, "max_tokens": 1, "temperature": 0},
        )

    def count_tokens(self, text: str) -> int | None:
        """Tokens of `text` by the server's own tokenizer (llama-cpp-python's /extras/tokenize/count)."""
        if not text:
            return 0
        model = self.endpoint.served_model
        full, empty = (self._post(COUNT_PATH, {"model": model, "input": t}) for t in (text, ""))
        return count_difference(full, empty)

    def _get_models(self) -> httpx.Response:
        """The server's GET /v1/models answer; HarnessError when the server cannot be reached."""
        assert self.client is not None
        try:
            return read_bounded(self.client, "GET", f"{self.endpoint.root}/v1/models", self.endpoint)
        except httpx.HTTPError as exc:
            raise HarnessError(f"cannot reach {self.endpoint.root}: {_one_line(exc)}; is the server running?") from None
        except RequestError as exc:
            raise HarnessError(f"{self.endpoint.root}/v1/models: {exc}; is this an OpenAI-compatible server?") from None

    def _check_model_served(self, response: httpx.Response | None) -> None:
        if self.flavor == "ollama":
            return  # ollama loads on demand; a missing model is the first request's 404 with its message
        assert response is not None  # fetched unless the entry names ollama
        if response.status_code >= 400:
            raise HarnessError(error_message(response))
        with contextlib.suppress(ValueError, AttributeError, TypeError, RecursionError):
            served = [m.get("id") for m in response.json().get("data") or []]
            if served and self.endpoint.served_model not in served and self.flavor != "llama-cpp-python":
                raise HarnessError(
                    f'{self.endpoint.root} does not serve "{self.endpoint.served_model}"; it serves: '
                    f"{', '.join(map(str, served))} (set source.served_model)"
                )

    def _check_prompt(self, prompt: RenderedPrompt, outcome: StreamOutcome, expected: int | None) -> None:
        """The server must have evaluated the whole prompt: a smaller count means a cached prefix was reused."""
        evaluated = outcome.prompt_evaluated
        if evaluated is None:
            return
        if self.flavor == "ollama":
            key = hashlib.sha256(prompt.content.encode("utf-8")).hexdigest()
            first = self._first_evaluated.setdefault(key, evaluated)
            total = max(first, expected or 0)
        else:
            total = outcome.prompt_tokens if outcome.prompt_tokens is not None else expected
        if total is not None and evaluated < total:
            raise RequestError(
                f"server evaluated {evaluated} of {total} prompt tokens (prefix cache reuse): TTFT would be fiction"
            )
