"""Bootstrap confidence intervals for mean scores (e.g. a model's mean ROUGE-L over talks).

Method: scipy.stats.bootstrap of the mean with the BCa interval (bias-corrected and accelerated, scipy's
default and better than the plain percentile interval for the small, skewed samples a benchmark has),
2000 resamples, seeded with numpy's default_rng so the same scores always give the same interval. When
BCa is undefined (scipy returns NaN for some tiny samples) the percentile interval is used instead.
NaN/None values are dropped first; one value (or all values equal) gives lo = hi = mean; none gives NaN.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ScoreCI:
    mean: float
    lo: float
    hi: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.lo:.3f}, {self.hi:.3f}]"

    def as_dict(self) -> dict[str, float | int | None]:
        """JSON-ready: NaN (no data) becomes None, which JSON can hold."""

        def clean(x: float) -> float | None:
            return None if math.isnan(x) else x

        return {"mean": clean(self.mean), "lo": clean(self.lo), "hi": clean(self.hi), "n": self.n}


def bootstrap_ci(
    values: Sequence[float | None], n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> ScoreCI:
    """Mean of `values` with a seeded BCa bootstrap interval; NaN and None are ignored."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    arr = np.array([np.nan if v is None else float(v) for v in values], dtype=float)
    arr = arr[~np.isnan(arr)]
    n = int(arr.size)
    if n == 0:
        return ScoreCI(math.nan, math.nan, math.nan, 0)
    mean = float(arr.mean())
    if n == 1 or bool(np.all(arr == arr[0])):
        # Nothing to resample: scipy would warn about degenerate data and return NaN.
        return ScoreCI(mean, mean, mean, n)

    from scipy import stats  # deferred: scipy.stats takes about a second to import

    # scipy >= 1.15 takes `rng`; older releases (pyproject allows 1.10) call it `random_state`.
    seed_kw = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            # BCa's NaN fallback is handled here; its DegenerateDataWarning would only be noise.
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", stats.DegenerateDataWarning)
            res = stats.bootstrap(
                (arr,),
                np.mean,
                n_resamples=n_resamples,
                confidence_level=confidence,
                method=method,
                vectorized=True,
                **{seed_kw: np.random.default_rng(seed)},
            )
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if not (math.isnan(lo) or math.isnan(hi)):
            break
    return ScoreCI(mean, lo, hi, n)
