"""Reading a streamed answer: server-sent events (OpenAI, llama-server, llama-cpp-python) or JSON lines
(ollama's native API) into a `StreamOutcome` -- chunk arrival times, text and the server's own counters.

Why a parser of our own, not the `openai` SDK: the SDK hides the raw chunks and drops fields it does not know,
and the figures need exactly those -- llama-server's `timings`, ollama's `eval_count`/`eval_duration` -- and
the arrival time of each chunk. httpx streams the response; `bounded_lines` does the line framing under an
overall deadline and a line-length cap, and `StreamParser` reads each line.

What a server may send is bounded (issue 21): a hostile or broken server ends in an error (`RequestError`),
never in a hang, a huge parent-side ROUGE computation, or a figure that cannot be true (`server_count`,
`server_ms`, `answer_cap`). Used by the `openai` backend (one sample at a time) and harness.load (N in flight).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from harness.backends.base import EngineCounters
from harness.http.endpoint import EndpointConfig, RequestError, error_message, timed_out

MAX_LINE_CHARS = 1 << 20  # one SSE / NDJSON line; a server that never ends its line is cut off here
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
        """`token` when the server's count says each chunk held one token, else `chunk`."""
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


# --- line framing ---------------------------------------------------------------------------------------
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


def stream_lines(lines: Iterable[str], parser: StreamParser, clock: Any = time.perf_counter_ns) -> StreamOutcome:
    """Feed every line of `lines` to `parser`, stamped by `clock`; the finished outcome."""
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


# --- output tokens the stream did not count -----------------------------------------------------------------
COUNT_PATH = "/extras/tokenize/count"


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
