"""Long documents that do not fit the context: map-reduce and refine (`--long-strategy`).

`truncate` is the `summarize` scenario (keep the longest start that fits). The two scenarios here keep
the whole document instead and call the backend several times per sample; the chunking and the strategy
logic are the pure functions of `harness.scenarios.chunking`, fed with budget checks that render each
stage's prompt and count it with the model's own tokenizer (`n_ctx - max_new_tokens`).

A document that fits whole is summarised in one call with the ordinary summarize prompt, exactly as
`truncate` would, so strategies compare on equal terms where they do not differ.

Per sample (docs/running.md, "Long documents"):
- `ttft_s`, `prefill_tok_s`, `prompt_tokens`, `output_tokens`, `decode_tok_s` and the ITL columns are the
  *first* stage's: what a user waits for before anything appears, measured like a one-call sample.
- `e2e_s` runs from the first stage's prompt submission to the end of the last stage: all stages, and the
  chunking between them.
- `chunks`, `stages`, `total_prompt_tokens`, `total_output_tokens` and `stage_timings` (JSON, one entry per
  backend call) describe the whole sample. Every stage is checked for a clean KV cache (the engine must
  evaluate its whole prompt): a reused prefix would fail the sample, as in one-call samples.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass

from harness.backends.base import GenerationResult
from harness.errors import HarnessError
from harness.prompts import PromptTemplate, RenderedPrompt, load_template
from harness.scenarios.base import (
    SampleResult,
    SampleSpec,
    ScenarioSettings,
    ScenarioSetup,
    StageResult,
    checked_latency,
)
from harness.scenarios.chunking import ChunkError, Fits, LongResult, map_reduce, refine
from harness.scenarios.summarize import PreparedPrompt, SummarizeScenario
from harness.trackers.latency import LatencyStats


@dataclass(frozen=True)
class LongDocumentConfig:
    max_new_tokens: int = 256
    min_new_tokens: int = 0
    # The stage prompts (harness.prompts tasks); the whole-document prompt is the job's summarize template.
    map_template: PromptTemplate | None = None
    reduce_template: PromptTemplate | None = None
    refine_template: PromptTemplate | None = None


@dataclass
class _Stage:
    name: str
    ids: list[int]
    result: GenerationResult
    latency: LatencyStats


class _LongDocumentScenario(SummarizeScenario):
    config: LongDocumentConfig  # type: ignore[assignment]
    config_class = LongDocumentConfig

    @classmethod
    def build_config(cls, settings: ScenarioSettings) -> ScenarioSetup:
        """The stage prompts in the summary language and the entry's prompt style; all three are loaded (and
        recorded in run.json) whichever strategy runs, so both strategies record the same prompts."""
        templates = {
            task: load_template(settings.lang, settings.prompt_style, task=task) for task in ("map", "reduce", "refine")
        }
        config = LongDocumentConfig(
            settings.max_new_tokens, settings.min_new_tokens, templates["map"], templates["reduce"], templates["refine"]
        )
        return ScenarioSetup(config, tuple(templates.values()))

    def _template(self, template: PromptTemplate | None, task: str) -> PromptTemplate:
        if template is None:
            raise HarnessError(f"the {self.name} scenario needs a {task} prompt template in its config")
        return template

    def _fits(self, template: PromptTemplate, **fields: str) -> Fits:
        budget = self.prompt_budget

        def fits(text: str) -> bool:
            return len(self.backend.tokenize_prompt(template.render(text, **fields))) <= budget

        return fits

    def _call(self, name: str, template: PromptTemplate, text: str, **fields: str) -> str:
        rendered: RenderedPrompt = template.render(text, **fields)
        ids = self.backend.tokenize_prompt(rendered)
        result = self.generate(PreparedPrompt(rendered, ids, truncated=False, input_chars=len(text)))
        self._stages.append(_Stage(name, ids, result, checked_latency(ids, result)))
        return result.text

    def _first_stage(self, text: str, map_t: PromptTemplate) -> tuple[Fits, Callable[[str], str]]:
        """The fit check and the call for a first-stage piece. The whole document (it fitted) goes through the
        ordinary prompt, a chunk through the map one; a chunk never equals the document (that was tried
        first, against the same prompt)."""
        whole, fits_map = self._fits(self.template), self._fits(map_t)

        def fits(piece: str) -> bool:
            return whole(piece) if piece == text else fits_map(piece)

        def summarize(piece: str) -> str:
            if piece == text:
                return self._call("whole", self.template, piece)
            return self._call("map", map_t, piece)

        return fits, summarize

    def _strategy(self, text: str) -> LongResult:
        raise NotImplementedError

    def run_sample(self, spec: SampleSpec) -> SampleResult:
        self._stages: list[_Stage] = []
        try:
            outcome = self._strategy(spec.text)
        except ChunkError as exc:
            raise HarnessError(
                f"{self.name}: {exc} (n_ctx {self.n_ctx}, max_new_tokens {self.config.max_new_tokens}); "
                "raise --n-ctx or lower --max-new-tokens"
            ) from None
        first, last = self._stages[0], self._stages[-1]
        last_e2e = last.latency.e2e_s or 0.0
        e2e = (last.result.start_ns - first.result.start_ns) / 1e9 + last_e2e
        timings = [_timing(s) for s in self._stages]
        return SampleResult(
            index=spec.index,
            text=outcome.summary,
            latency=dataclasses.replace(first.latency, e2e_s=e2e),
            stop_reason=last.result.stop_reason,
            truncated=outcome.truncated,
            input_chars=len(spec.text),
            stages=tuple(StageResult(s.name, s.latency, s.result.stop_reason) for s in self._stages),
            columns={
                "chunks": outcome.chunks,
                "stages": outcome.stages,
                "total_prompt_tokens": sum(s.latency.prompt_tokens for s in self._stages),
                "total_output_tokens": sum(s.latency.output_tokens or 0 for s in self._stages),
                "stage_timings": json.dumps(timings) if len(self._stages) > 1 else "",
            },
        )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _timing(stage: _Stage) -> list[object]:
    """[name, prompt_tokens, output_tokens, ttft_s, e2e_s]: one entry of `stage_timings`."""
    lat = stage.latency
    return [stage.name, lat.prompt_tokens, lat.output_tokens, _round(lat.ttft_s), _round(lat.e2e_s)]


class MapReduceScenario(_LongDocumentScenario):
    """Summarise each chunk, then the joined partial summaries (recursively while they do not fit)."""

    name = "map-reduce"
    long_strategy = "map-reduce"

    def _strategy(self, text: str) -> LongResult:
        map_t = self._template(self.config.map_template, "map")
        reduce_t = self._template(self.config.reduce_template, "reduce")
        fits_first, summarize = self._first_stage(text, map_t)
        return map_reduce(
            text,
            fits_map=fits_first,
            fits_reduce=self._fits(reduce_t),
            summarize=summarize,
            combine=lambda joined: self._call("reduce", reduce_t, joined),
        )


class RefineScenario(_LongDocumentScenario):
    """Rolling summary: summarise the first chunk, then update the summary with each next chunk."""

    name = "refine"
    long_strategy = "refine"

    def _strategy(self, text: str) -> LongResult:
        map_t = self._template(self.config.map_template, "map")
        refine_t = self._template(self.config.refine_template, "refine")
        fits_first, summarize = self._first_stage(text, map_t)
        return refine(
            text,
            fits_first=fits_first,
            fits_refine=lambda summary: self._fits(refine_t, summary=summary),
            summarize=summarize,
            update=lambda summary, piece: self._call("refine", refine_t, piece, summary=summary),
        )


__all__ = ["LongDocumentConfig", "MapReduceScenario", "RefineScenario"]
