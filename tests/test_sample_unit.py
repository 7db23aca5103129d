"""The structure of issue 9: a backend defined in one new file (here: this test module) runs through the
real runner, in a thread (InProcessLauncher) and in a spawned worker (ProcessLauncher), and its rows come
out of the one row builder with the trackers' columns."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pandas as pd
import pytest

from harness.backends.base import Backend, GenerationRequest, GenerationResult, LoadInfo
from harness.launchers.session import in_process_launcher, process_launcher
from harness.prompts import RenderedPrompt
from harness.run import RunConfig, Runner, plan


class EchoBackend(Backend):
    """A throwaway backend: emits the first characters of its prompt back, one token per character."""

    name: ClassVar[str] = "test-echo-runner"

    def load(self) -> LoadInfo:
        return LoadInfo(provider="echo", n_ctx=self.options.n_ctx, model_files=[self.model_path], mmap=False)

    def tokenize_prompt(self, prompt: RenderedPrompt) -> list[int]:
        return [ord(c) for c in prompt.content]

    def generate(self, request: GenerationRequest) -> GenerationResult:
        start = self.now_ns()
        ids = request.prompt_ids[: request.max_new_tokens]
        times = [self.now_ns() for _ in ids]
        return GenerationResult(
            token_ids=ids,
            text="".join(map(chr, ids)),
            start_ns=start,
            token_ns=times,
            stop_reason="length",
            prompt_tokens_evaluated=len(request.prompt_ids),
        )


@pytest.mark.parametrize("launcher", [in_process_launcher, process_launcher], ids=["thread", "process"])
def test_a_backend_from_one_new_file_runs_through_the_runner(
    launcher, write_models, dummy_model_file: Path, tmp_path: Path
) -> None:
    models = write_models(
        f"- id: echo\n  backend: test-echo-runner\n  quant: none\n  n_ctx: 4096\n  prompt_style: chat\n"
        f"  source: {{kind: path, path: {dummy_model_file}}}\n"
    )
    cfg = RunConfig(
        models=["echo"], models_file=models, out=tmp_path, talks=["alibaba-qwen", "qualcomm-npu"],
        repeats=2, max_new_tokens=12, measure_bandwidth=False,
    )
    run_dir, errors = Runner(cfg, echo=lambda _line: None, launcher_factory=launcher).run()
    df = pd.read_csv(run_dir / "results.csv")
    assert errors == 0 and (df["status"] == "ok").all()
    assert (df["backend"] == "test-echo-runner").all() and (df["output_tokens"] == 12).all()
    assert df["peak_rss_mb"].notna().all()  # the memory tracker's column, merged by rows.py
    # round-robin over talks: talk 1 r0, talk 2 r0, talk 1 r1, talk 2 r1; sample_seq is the order
    assert df["talk_id"].tolist() == ["alibaba-qwen", "qualcomm-npu"] * 2
    assert df["repeat"].tolist() == [0, 0, 1, 1] and df["sample_seq"].tolist() == [0, 1, 2, 3]


def test_plan_is_round_robin_over_talks() -> None:
    from harness.corpus import load_corpus

    talks = load_corpus(None)[:3]
    plan_ = plan(["a", "b"], [], talks, 2)
    assert [(p.model, p.talk.id, p.repeat) for p in plan_[:6]] == [
        ("a", talks[0].id, 0), ("a", talks[1].id, 0), ("a", talks[2].id, 0),
        ("a", talks[0].id, 1), ("a", talks[1].id, 1), ("a", talks[2].id, 1),
    ]
    assert [p.seq for p in plan_] == list(range(12))
