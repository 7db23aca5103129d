"""The summarisation scenario: fit a talk into the model's context, then generate its summary in one call.

Runs inside the worker process. Backend-agnostic: it only uses the Backend protocol.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.backends.base import GenerationRequest, GenerationResult
from harness.errors import HarnessError
from harness.prompts import RenderedPrompt
from harness.scenarios.base import SampleResult, SampleSpec, Scenario, checked_latency


@dataclass(frozen=True)
class SummarizeConfig:
    max_new_tokens: int = 256
    min_new_tokens: int = 0  # >0 ignores EOS until reached: fixed-length throughput runs


@dataclass(frozen=True)
class PreparedPrompt:
    rendered: RenderedPrompt
    ids: list[int]
    truncated: bool
    input_chars: int  # characters of talk text actually in the prompt


class SummarizeScenario(Scenario):
    name = "summarize"
    long_strategy = "truncate"  # a document too long for the context keeps its longest start that fits
    config_class = SummarizeConfig  # built by Scenario.build_config: max_new_tokens, min_new_tokens
    config: SummarizeConfig

    @property
    def n_ctx(self) -> int:
        """The context the prompt must fit: the smaller of what was requested and what the engine reports.
        llama.cpp pads n_ctx up (to a multiple of 256) while llama-cpp-python sizes its own buffers to the
        requested value, so budgeting with the engine's figure overflows those buffers."""
        return min(self.backend.options.n_ctx, self.load_info.n_ctx)

    @property
    def prompt_budget(self) -> int:
        """Most prompt tokens that still leave room for max_new_tokens in the context; raises when none do."""
        budget = self.n_ctx - self.config.max_new_tokens
        if budget <= 0:
            raise HarnessError(
                f"max_new_tokens {self.config.max_new_tokens} leaves no room for a prompt in n_ctx {self.n_ctx}; "
                "lower --max-new-tokens"
            )
        return budget

    def _encode(self, text: str) -> tuple[RenderedPrompt, list[int]]:
        rendered = self.template.render(text)
        return rendered, self.backend.tokenize_prompt(rendered)

    def prepare(self, text: str) -> PreparedPrompt:
        """Render `text`; when too long, keep the longest prefix whose prompt fits (binary search on chars)."""
        budget = self.prompt_budget
        rendered, ids = self._encode(text)
        if len(ids) <= budget:
            return PreparedPrompt(rendered, ids, truncated=False, input_chars=len(text))
        lo, hi = 0, len(text)  # invariant: text[:lo] fits, text[:hi] does not
        best: tuple[RenderedPrompt, list[int]] | None = None
        while hi - lo > 1:
            mid = (lo + hi) // 2
            cand = self._encode(text[:mid])
            if len(cand[1]) <= budget:
                lo, best = mid, cand
            else:
                hi = mid
        if best is None:
            best = self._encode(text[:lo])
            if len(best[1]) > budget:
                raise HarnessError(
                    f"the prompt template alone needs {len(best[1])} tokens, more than n_ctx - max_new_tokens = "
                    f"{budget}; raise n_ctx in models.yaml or lower --max-new-tokens"
                )
        return PreparedPrompt(best[0], best[1], truncated=True, input_chars=lo)

    def generate(self, prompt: PreparedPrompt, max_new_tokens: int | None = None) -> GenerationResult:
        cap = max_new_tokens or self.config.max_new_tokens
        request = GenerationRequest(
            prompt_ids=prompt.ids,
            max_new_tokens=cap,
            min_new_tokens=min(self.config.min_new_tokens, cap),
            prompt=prompt.rendered,
        )
        return self.backend.generate(request)

    def warmup(self, spec: SampleSpec, runs: int) -> None:
        # Short, but over a real prompt length: pages weights in and sizes the compute buffers.
        prompt = self.prepare(spec.text)
        for _ in range(runs):
            self.generate(prompt, max_new_tokens=min(16, self.config.max_new_tokens))

    def run_sample(self, spec: SampleSpec) -> SampleResult:
        prompt = self.prepare(spec.text)
        result = self.generate(prompt)
        return SampleResult(
            index=spec.index,
            text=result.text,
            latency=checked_latency(prompt.ids, result),
            stop_reason=result.stop_reason,
            truncated=prompt.truncated,
            input_chars=prompt.input_chars,
        )
