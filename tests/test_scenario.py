from __future__ import annotations

from pathlib import Path

import pytest

from harness.backends.base import Backend, BackendOptions, GenerationRequest, GenerationResult, LoadInfo
from harness.errors import HarnessError
from harness.prompts import PromptTemplate, RenderedPrompt
from harness.scenarios.summarize import SummarizeConfig, SummarizeScenario


class CharBackend(Backend):
    """One token per character of the rendered prompt: makes budgets exact."""

    name = "chars"

    def load(self) -> LoadInfo:
        return LoadInfo(provider="test", n_ctx=self.options.n_ctx, model_files=[], mmap=False)

    def tokenize_prompt(self, prompt: RenderedPrompt) -> list[int]:
        return [ord(c) for c in prompt.content]

    def generate(self, request: GenerationRequest) -> GenerationResult:
        raise NotImplementedError


TEMPLATE = PromptTemplate(name="t.txt", lang="zh", style="chat", body="摘要：{text}")  # 3 chars + text


def _scenario(n_ctx: int, max_new: int, engine_n_ctx: int | None = None) -> SummarizeScenario:
    backend = CharBackend(Path("x"), BackendOptions(threads=1, n_ctx=n_ctx), "chat")
    info = LoadInfo(provider="test", n_ctx=engine_n_ctx or n_ctx, model_files=[], mmap=False)
    return SummarizeScenario(backend, TEMPLATE, info, SummarizeConfig(max_new_tokens=max_new))


def test_short_text_is_not_truncated() -> None:
    p = _scenario(100, 20).prepare("短文本")
    assert not p.truncated and p.input_chars == 3 and len(p.ids) == 6


def test_long_text_is_cut_to_the_longest_prefix_that_fits() -> None:
    text = "长" * 500
    p = _scenario(100, 20).prepare(text)
    # budget 80 tokens = 3 template chars + 77 text chars
    assert p.truncated
    assert len(p.ids) == 80
    assert p.input_chars == 77
    assert p.rendered.text == text[:77]


def test_template_larger_than_budget_is_a_clear_error() -> None:
    with pytest.raises(HarnessError, match="template alone"):
        _scenario(22, 20).prepare("长" * 50)


def test_max_new_tokens_filling_the_context_is_an_error() -> None:
    with pytest.raises(HarnessError, match="--max-new-tokens"):
        _scenario(20, 20).prepare("x")


@pytest.mark.parametrize("requested", [1000, 300])
def test_budget_uses_the_requested_context_when_the_engine_pads_it(requested: int) -> None:
    # llama.cpp pads n_ctx up to a multiple of 256 and reports the padded value; llama-cpp-python's own
    # buffers have the requested size, so the prompt must fit the smaller of the two.
    padded = -(-requested // 256) * 256
    p = _scenario(requested, 20, engine_n_ctx=padded).prepare("长" * 5000)
    assert p.truncated and len(p.ids) == requested - 20
