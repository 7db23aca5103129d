"""One judge request: a greedy, seeded, non-streaming chat completion against an OpenAI-compatible endpoint.

Non-streaming because the judge's answer is a few tokens of JSON and no timing is measured. The endpoint
settings, the server's error messages and the one-line HTTP failures are the project's HTTP client's
(harness.http, shared with the `openai` backend), so a judge fails the way a benchmarked server does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import httpx

from harness.errors import HarnessError
from harness.http import SEED, EndpointConfig, error_message, http_failure


class JudgeRequestError(RuntimeError):
    """One request failed (HTTP error, timeout, unreadable answer): that judgement is recorded as invalid."""


@dataclass(frozen=True)
class JudgeSettings:
    """How the judge is asked; recorded in run.json so that scores name their exact judge."""

    endpoint: str
    model: str
    temperature: float = 0.0  # greedy: the same summary gets the same score
    seed: int = SEED
    max_tokens: int = 96  # the answer is one small JSON object
    timeout_s: float = 120.0
    api_key_env: str | None = None
    max_source_chars: int = 6000  # the talk is cut to this many characters in the prompt (judge context)

    def record(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("endpoint", "model")}


class JudgeClient:
    def __init__(self, settings: JudgeSettings) -> None:
        self.settings = settings
        self.config = EndpointConfig(
            endpoint=settings.endpoint,
            served_model=settings.model,
            api_key_env=settings.api_key_env,
            timeout_s=settings.timeout_s,
        )
        self._http = httpx.Client(timeout=self.config.timeout(), headers=self.config.headers())

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> JudgeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check(self) -> None:
        """Before any judging: the endpoint answers and serves the judge model (HarnessError naming the fix)."""
        url = f"{self.config.root}/v1/models"
        try:
            response = self._http.get(url)
        except httpx.HTTPError as exc:
            raise HarnessError(
                f"judge endpoint {self.config.root}: {http_failure(exc, self.config)}; start the server or fix "
                "--judge-endpoint"
            ) from None
        if response.status_code >= 400:
            return  # some servers have no /v1/models; the first judgement will tell
        try:
            served = [m.get("id") for m in response.json().get("data") or [] if isinstance(m, dict)]
        except (ValueError, AttributeError):
            return
        if served and self.settings.model not in served:
            raise HarnessError(
                f'judge endpoint {self.config.root} does not serve "{self.settings.model}" (it serves '
                f"{', '.join(map(str, served))}); pass one of those as --judge-model"
            )

    def complete(self, messages: list[dict[str, str]]) -> str:
        """The judge's answer text; JudgeRequestError on any failure."""
        body = {
            "model": self.settings.model,
            "messages": messages,
            "temperature": self.settings.temperature,
            "top_p": 1,
            "seed": self.settings.seed,
            "max_tokens": self.settings.max_tokens,
            "stream": False,
        }
        try:
            response = self._http.post(f"{self.config.root}/v1/chat/completions", json=body)
        except httpx.HTTPError as exc:
            raise JudgeRequestError(str(http_failure(exc, self.config))) from None
        if response.status_code >= 400:
            raise JudgeRequestError(error_message(response))
        try:
            data = response.json()
            content = data["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise JudgeRequestError(
                f"not an OpenAI-compatible chat answer from {self.config.root}: {response.text[:120]!r}"
            ) from None
        return content if isinstance(content, str) else ""
