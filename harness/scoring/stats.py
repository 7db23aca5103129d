"""Confidence intervals and multiple-test correction for the few-talk means a benchmark produces.

- `t_interval`: the mean of a handful of values (a model's talk means: 5 talks by default) with a Student-t
  interval, mean ± t(n-1) · sd / √n. With five values a bootstrap interval (BCa or percentile) covers only
  about 85 % of the time where it claims 95 %; the t interval is exact for normal data and close for the
  mildly skewed talk means seen here. NaN/None are dropped first; one value gives an undefined (NaN)
  interval, not a zero-width one; equal values give lo = hi = mean.
- `welch_difference`: Welch's t-test of two independent samples (scipy.stats.ttest_ind, equal_var=False)
  with the matching Welch-Satterthwaite interval for the difference of their means.
- `holm`: Holm-Bonferroni adjusted p-values (step-down; controls the chance of any false alarm among m
  tests without assuming they are independent, and is never less powerful than plain Bonferroni).
  Written out here (a sort and a running maximum) rather than pulling in statsmodels for it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CI_METHOD = "Student-t"


@dataclass(frozen=True)
class ScoreCI:
    mean: float
    lo: float
    hi: float
    n: int

    def __str__(self) -> str:
        if math.isnan(self.mean):
            return "-"
        if math.isnan(self.lo) or math.isnan(self.hi):
            return f"{self.mean:.3f} [n={self.n}]"
        return f"{self.mean:.3f} [{self.lo:.3f}, {self.hi:.3f}]"

    def as_dict(self) -> dict[str, float | int | None]:
        """JSON-ready: NaN (no data, or no interval from one value) becomes None, which JSON can hold."""

        def clean(x: float) -> float | None:
            return None if math.isnan(x) else x

        return {"mean": clean(self.mean), "lo": clean(self.lo), "hi": clean(self.hi), "n": self.n}


def finite(values: Sequence[float | None] | np.ndarray) -> np.ndarray:
    """The values as floats with None and NaN removed."""
    arr = np.array([np.nan if v is None else float(v) for v in values], dtype=float)
    return arr[~np.isnan(arr)]


def t_interval(values: Sequence[float | None] | np.ndarray, confidence: float = 0.95) -> ScoreCI:
    """Mean of `values` with a Student-t confidence interval; NaN and None are ignored."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    arr = finite(values)
    n = int(arr.size)
    if n == 0:
        return ScoreCI(math.nan, math.nan, math.nan, 0)
    mean = float(arr.mean())
    if n == 1:
        return ScoreCI(mean, math.nan, math.nan, 1)
    from scipy import stats  # deferred: scipy.stats takes about a second to import

    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * float(arr.std(ddof=1)) / math.sqrt(n)
    return ScoreCI(mean, mean - half, mean + half, n)


@dataclass(frozen=True)
class WelchResult:
    difference: float  # mean(b) - mean(a)
    lo: float
    hi: float
    p_value: float | None  # None where undefined (both samples constant and different)


def welch_difference(a: np.ndarray, b: np.ndarray, confidence: float = 0.95) -> WelchResult | None:
    """Welch's test of mean(b) vs mean(a) with an interval for the difference; None under 2 values a side."""
    a, b = finite(a), finite(b)
    if len(a) < 2 or len(b) < 2:
        return None
    diff = float(b.mean() - a.mean())
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if va + vb == 0:
        # Both constant: the same constant is no difference at all; different constants cannot be tested
        # (scipy returns NaN; calling it certain, p = 0, would pass off two data points as proof).
        return WelchResult(diff, diff, diff, 1.0 if diff == 0 else None)
    from scipy import stats

    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(stats.t.ppf((1 + confidence) / 2, df)) * math.sqrt(va + vb)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # near-constant samples: precision-loss warning only
        p = float(stats.ttest_ind(b, a, equal_var=False).pvalue)
    return WelchResult(diff, diff - half, diff + half, None if math.isnan(p) else p)


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values, in the input order; None entries are not tests and stay None.

    Reject test i at level alpha when its adjusted p < alpha: the smallest raw p is multiplied by m, the
    next by m - 1, and so on, each adjusted value at least the one before it, capped at 1.
    """
    tested = [(p, i) for i, p in enumerate(p_values) if p is not None]
    m = len(tested)
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(tested)):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out
