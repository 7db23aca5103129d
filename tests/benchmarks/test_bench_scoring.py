"""Scoring cost per sample: one ~150-character Chinese summary, 2 references, a 1500-character talk."""

from __future__ import annotations

import random

from pytest_benchmark.fixture import BenchmarkFixture

from harness.scoring import SCORE_KEYS, score_summary
from harness.scoring.tokenizers import tokenize_cached

CLAUSES = [
    "端侧大模型在手机上的推理速度",
    "量化到四比特以后内存占用明显下降",
    "首个词元的延迟主要取决于预填充",
    "解码速度受内存带宽限制",
    "我们在三款芯片上测试了Qwen2.5和Llama3",
    "长上下文会让键值缓存迅速增长",
    "中文摘要的质量用ROUGE评估",
    "演讲者认为开源生态正在快速成熟",
]


def chinese_text(n_chars: int, seed: int) -> str:
    rng = random.Random(seed)
    parts: list[str] = []
    while sum(map(len, parts)) < n_chars:
        parts.append(rng.choice(CLAUSES) + rng.choice("，。；！"))
    return "".join(parts)[:n_chars]


SOURCE = chinese_text(1500, seed=0)
SUMMARY = chinese_text(150, seed=1)
REFERENCES = [chinese_text(150, seed=2), chinese_text(150, seed=3)]


def _score() -> dict[str, object]:
    return score_summary(SUMMARY, REFERENCES, "zh", source=SOURCE)


def test_bench_score_chinese_summary(benchmark: BenchmarkFixture) -> None:
    # Clear the token cache before each round so the talk is tokenised every time, as for a new talk.
    result = benchmark.pedantic(_score, setup=tokenize_cached.cache_clear, rounds=20, warmup_rounds=1)
    assert set(result) == set(SCORE_KEYS)
    assert 0.0 < result["rougeL_f"] < 1.0
