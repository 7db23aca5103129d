"""Pairwise judging with position swapping (MT-Bench): each pair is judged as (A=x, B=y) and (A=y, B=x).

LLM judges favour a position (often the first). A verdict is given only when both orders name the same
summary (or both say tie); otherwise the pair is "inconsistent" and counts for neither. The share of pairs
whose two orders agree is the judge's position consistency (validity probe b).
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.judge.client import JudgeClient
from harness.judge.rubric import Answer, JudgePrompt, ask, cut_source, parse_winner

SWAP = {"A": "B", "B": "A", "tie": "tie"}


@dataclass
class PairResult:
    """x vs y. `first`: asked with x as A; `second`: asked with y as A. Winners are in x/y terms: "x", "y", "tie"."""

    first: Answer
    second: Answer

    @property
    def first_winner(self) -> str | None:
        return _xy(self.first.value)

    @property
    def second_winner(self) -> str | None:
        return _xy(SWAP[self.second.value]) if self.second.value is not None else None

    @property
    def consistent(self) -> bool:
        return self.first_winner is not None and self.first_winner == self.second_winner

    @property
    def verdict(self) -> str | None:
        """"x", "y" or "tie" when both orders agree; None otherwise."""
        return self.first_winner if self.consistent else None

    @property
    def raw(self) -> list[str]:
        return self.first.raw + self.second.raw


def _xy(winner: str | None) -> str | None:
    return {"A": "x", "B": "y", "tie": "tie"}.get(winner) if winner is not None else None


def judge_pair(client: JudgeClient, prompt: JudgePrompt, source: str, x: str, y: str, limit: int) -> PairResult:
    text = cut_source(source, limit)
    first = ask(client, prompt.render(source=text, summary_a=x, summary_b=y), parse_winner)
    second = ask(client, prompt.render(source=text, summary_a=y, summary_b=x), parse_winner)
    return PairResult(first, second)
