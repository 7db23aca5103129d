"""OpenAI-compatible HTTP servers as a backend: llama-server, ollama, LM Studio, Foundry Local, vLLM, ...

Most people run their GGUF models behind a local server, and NPU runtimes (Foundry Local, Lemonade) are often
reachable only that way. This backend sends the same rendered prompts as the in-process backends over HTTP and
times the streamed answer, so rows compare column for column with llama.cpp in-process.

The HTTP side -- endpoint, requests, streamed-answer parsing, bounds, one-line failures -- is the project's
shared client (harness.http, also used by load levels, the judge and the managed servers); this module is what
makes it a backend: the `Backend` protocol, fitting prompts into n_ctx (a local GGUF tokenizer, the server's
tokenize endpoint, or an estimate), the prefix-cache checks, and turning a streamed answer into a
GenerationResult.

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
import time
from pathlib import Path
from typing import Any, ClassVar

import httpx

from harness.backends.base import (
    Backend,
    BackendFlags,
    BackendOptions,
    GenerationRequest,
    GenerationResult,
    LoadInfo,
)
from harness.backends.llama_cpp import encode_prompt, gguf_chat_formatter
from harness.errors import HarnessError
from harness.http.endpoint import (
    MAX_BODY_BYTES,
    EndpointConfig,
    Flavor,
    RequestError,
    build_request,
    detect_flavor,
    error_message,
    http_failure,
    one_line,
    read_bounded,
    response_json,
)
from harness.http.stream import (
    COUNT_PATH,
    StreamOutcome,
    StreamParser,
    answer_cap,
    bad_stream,
    bounded_lines,
    count_difference,
    needs_text_count,
    stream_ok,
)
from harness.prompts import RenderedPrompt

# Sent before each sample to llama-cpp-python's server so that the next prompt shares no prefix with the
# cached one. No prompt template starts with a form feed; a model that prepends BOS keeps that one token.
FLUSH_PROMPT = "\f"


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
            raise HarnessError(f"cannot reach {self.endpoint.root}: {one_line(exc)}; is the server running?") from None
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
