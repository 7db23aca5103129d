"""Validity probes: before its scores are used, the judge must show it can tell a true summary from a wrong one.

(a) Reference probe. For each talk, its own reference summary and the reference of another talk (the next
    one, cyclically) are judged pairwise as summaries of that talk, in both orders. Each order is one trial,
    a success when the judge names the true reference; an invalid answer is a failure. The agreement rate
    comes with a 95 % Wilson interval (scipy.stats.binomtest(...).proportion_ci). A judge whose rate is below
    `MIN_REFERENCE_AGREEMENT` is unfit: it cannot even tell which talk a summary belongs to, and its scores are
    marked unfit wherever they are shown.
(b) Position consistency. The share of pairs whose two orders agree (harness.judge.pairwise), over the probe's
    pairs and, in pairwise mode, over the real pairs; below `MIN_POSITION_CONSISTENCY` the pairwise verdicts
    are marked unfit.

With a handful of talks the interval is wide (4 of 4 trials gives a Wilson lower bound near 0.5): the verdict
uses the observed rate against the stated threshold, and the interval says how little that proves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from scipy import stats

from harness.judge.client import JudgeClient
from harness.judge.pairwise import PairResult, judge_pair
from harness.judge.rubric import JudgePrompt

MIN_REFERENCE_AGREEMENT: Final = 0.8
MIN_POSITION_CONSISTENCY: Final = 0.7
CI_LEVEL: Final = 0.95


def wilson(successes: int, trials: int, level: float = CI_LEVEL) -> tuple[float | None, float | None]:
    """Wilson score interval of a binomial proportion; (None, None) without trials."""
    if trials <= 0:
        return None, None
    ci = stats.binomtest(successes, trials).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def rate_record(successes: int, trials: int, threshold: float) -> dict[str, Any]:
    """A probe's figures for run.json and the printed report: rate, Wilson CI, threshold, pass/fail."""
    low, high = wilson(successes, trials)
    rate = successes / trials if trials else None
    return {
        "successes": successes,
        "trials": trials,
        "rate": rate,
        "ci_low": low,
        "ci_high": high,
        "ci": f"{int(CI_LEVEL * 100)}% Wilson",
        "threshold": threshold,
        "passed": None if rate is None else rate >= threshold,
    }


@dataclass(frozen=True)
class ProbeTalk:
    talk_id: str
    source: str
    reference: str


@dataclass
class ProbeTrial:
    talk_id: str
    other_talk: str
    pair: PairResult  # x = the talk's own reference, y = the other talk's

    def record(self) -> dict[str, Any]:
        return {
            "kind": "probe",
            "probe": "reference",
            "talk_id": self.talk_id,
            "other_talk": self.other_talk,
            # Which reference the judge picked: "true", "other", "tie", or None (no valid answer).
            "picked_when_true_is_A": _named(self.pair.first_winner),
            "picked_when_true_is_B": _named(self.pair.second_winner),
            "consistent": self.pair.consistent,
            "errors": [a.error for a in (self.pair.first, self.pair.second) if a.error],
            "raw": self.pair.raw,
        }


def _named(winner: str | None) -> str | None:
    return {"x": "true", "y": "other", "tie": "tie"}.get(winner) if winner is not None else None


@dataclass
class ProbeResult:
    trials: list[ProbeTrial] = field(default_factory=list)
    note: str = ""  # why the probe could not run

    @property
    def successes(self) -> int:
        return sum((t.pair.first_winner == "x") + (t.pair.second_winner == "x") for t in self.trials)

    def summary(self) -> dict[str, Any]:
        reference = rate_record(self.successes, 2 * len(self.trials), MIN_REFERENCE_AGREEMENT)
        consistency = rate_record(
            sum(t.pair.consistent for t in self.trials), len(self.trials), MIN_POSITION_CONSISTENCY
        )
        out: dict[str, Any] = {"reference": reference, "position_consistency": consistency}
        if self.note:
            out["note"] = self.note
        return out

    @property
    def fit(self) -> bool | None:
        """False when probe (a) failed; None when it could not run (fewer than two talks with a reference)."""
        return rate_record(self.successes, 2 * len(self.trials), MIN_REFERENCE_AGREEMENT)["passed"]


def reference_probe(
    client: JudgeClient,
    prompt: JudgePrompt,
    talks: list[ProbeTalk],
    limit: int,
    after_pair: Callable[[PairResult], None] | None = None,
) -> ProbeResult:
    """Probe (a) over `talks` (each with its own reference); needs two talks or more. `after_pair` sees each
    judged pair (the command stops there when the judge keeps failing)."""
    usable = [t for t in talks if t.reference.strip() and t.source.strip()]
    if len(usable) < 2:
        return ProbeResult(note="needs two talks with a reference; not run, so the judge is unvalidated")
    result = ProbeResult()
    for i, talk in enumerate(usable):
        other = usable[(i + 1) % len(usable)]
        pair = judge_pair(client, prompt, talk.source, talk.reference, other.reference, limit)
        result.trials.append(ProbeTrial(talk.talk_id, other.talk_id, pair))
        if after_pair is not None:
            after_pair(pair)
    return result
