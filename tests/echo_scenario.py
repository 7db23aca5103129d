"""A throwaway scenario for tests/test_scenario_plugin.py: a subclass in a module outside harness/, as a plugin
or a new contributor's first draft would be. Importing this module registers it as "first-sentence" (alias
"lead"); the run's worker process imports it again from its `scenario_ref`.

The summary is the document's first sentence, cut to `max_chars`: no backend generation, so its rows show
that this scenario -- not summarize -- produced them, whatever the backend would have written.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

from harness.scenarios.base import SampleResult, SampleSpec, Scenario, ScenarioSettings, ScenarioSetup
from harness.scenarios.chunking import split_sentences
from harness.trackers.latency import LatencyStats


@dataclass(frozen=True)
class FirstSentenceConfig:
    max_chars: int


class FirstSentenceScenario(Scenario):
    name: ClassVar[str] = "first-sentence"
    aliases: ClassVar[tuple[str, ...]] = ("lead",)
    config_class: ClassVar[type] = FirstSentenceConfig
    config: FirstSentenceConfig

    @classmethod
    def build_config(cls, settings: ScenarioSettings) -> ScenarioSetup:
        # Derived from the run's settings: a summary no longer than the generation cap, in characters.
        return ScenarioSetup(FirstSentenceConfig(max_chars=settings.max_new_tokens))

    def warmup(self, spec: SampleSpec, runs: int) -> None:
        return None  # nothing to page in: the backend is never called

    def run_sample(self, spec: SampleSpec) -> SampleResult:
        start = time.perf_counter()
        sentences = split_sentences(spec.text.strip())
        text = (sentences[0].strip() if sentences else "")[: self.config.max_chars]
        latency = LatencyStats(
            prompt_tokens=0,
            output_tokens=0,
            ttft_s=None,
            prefill_tok_s=None,
            decode_tok_s=None,
            e2e_s=time.perf_counter() - start,
            itl_p50_ms=None,
            itl_p90_ms=None,
            itl_p99_ms=None,
        )
        return SampleResult(
            index=spec.index,
            text=text,
            latency=latency,
            stop_reason="eos",
            truncated=False,
            input_chars=len(spec.text),
        )
