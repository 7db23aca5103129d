"""The one way sample rows become figures: per group x talk over repeats, then per group over talks.

summary.csv / summary_models.csv, `harness score`, `harness compare` and `harness report` all aggregate
through here, so a model's figure means the same thing everywhere:

1. Only status=ok rows count (a failed generation has no meaningful latency or score). Frames without a
   status column (`harness score` rows) count every row.
2. Per group x talk: the mean over that talk's repeats (NaN cells skipped).
3. Per group: the mean over talks of those talk means, so a talk with more repeats does not weigh more,
   with a Student-t interval over the talk means (repeats are not independent evidence about a model:
   talks are). A metric whose schema aggregate is "max" also reports its largest single sample.

A group is a model by default; the grouping keys are a parameter (`by`), so a `config_id` column (sweeps)
or a report's series label can be added to the key without another aggregation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.scoring.stats import ScoreCI, t_interval

TALK = "talk_id"
DEFAULT_BY: tuple[str, ...] = ("model",)
GroupKey = tuple[str, ...]

_TRUE = {"true": 1.0, "false": 0.0, "1": 1.0, "0": 0.0}


def ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows that count in aggregates."""
    if "status" not in df.columns:
        return df
    return df[df["status"].astype(str).str.strip().str.lower() == "ok"]


def values(df: pd.DataFrame, column: str) -> pd.Series:
    """A column as floats: numbers as they are, true/false as 1/0, anything else (and blanks) NaN."""
    if column not in df.columns:
        return pd.Series(np.nan, index=df.index, dtype=float)
    col = df[column]
    if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
        return col.astype(float)
    return pd.to_numeric(col.map(_flag_or_value), errors="coerce").astype(float)


def _flag_or_value(value: object) -> object:
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, str):
        return _TRUE.get(value.strip().lower(), value)
    return value


def has_values(df: pd.DataFrame, column: str) -> bool:
    """True when the column exists and at least one cell is a number or a true/false."""
    return bool(values(df, column).notna().any())


def _frame(df: pd.DataFrame, metrics: Sequence[str], by: Sequence[str]) -> pd.DataFrame:
    """ok rows reduced to the keys, the talk and each metric as floats; keys as strings ('' when blank)."""
    ok = ok_rows(df)
    frame = pd.DataFrame({k: ok[k].fillna("").astype(str) for k in (*by, TALK)}, index=ok.index)
    for m in metrics:
        frame[m] = values(ok, m)
    return frame


# A sweep (harness.params) runs several configs per model: rows carry config_id and its label.
CONFIG_KEYS: tuple[str, ...] = ("config_id", "sweep")


def model_keys(df: pd.DataFrame) -> tuple[str, ...]:
    """The grouping keys of a run's rows: model, plus config_id and its sweep label when the rows hold
    more than one config (a sweep). Without a sweep a model has one config, so the keys stay ("model",)
    and runs of different settings still pair up by model in compare."""
    if not all(k in df.columns for k in CONFIG_KEYS):
        return DEFAULT_BY
    ids = ok_rows(df)["config_id"].astype(str).str.strip()
    return (*DEFAULT_BY, *CONFIG_KEYS) if ids[ids != ""].nunique() > 1 else DEFAULT_BY


def group_name(key: GroupKey, by: Sequence[str]) -> str:
    """`model` or `model [threads=2]`: a group as tables and plots name it."""
    parts = dict(zip(by, key, strict=True))
    label = parts.get("sweep", "")
    return f"{parts.get('model', '')} [{label}]" if label else str(parts.get("model", ""))


def groups(df: pd.DataFrame, by: Sequence[str] = DEFAULT_BY) -> list[GroupKey]:
    """The groups of the ok rows, in first-seen order."""
    frame = _frame(df, (), by)
    return list(dict.fromkeys(zip(*(frame[k] for k in by), strict=True))) if len(frame) else []


def talk_means(df: pd.DataFrame, metrics: Sequence[str], by: Sequence[str] = DEFAULT_BY) -> pd.DataFrame:
    """One row per group x talk (first-seen order): the keys, talk_id, n (ok rows) and each metric's mean
    over the talk's repeats."""
    by = list(by)
    return _talk_means(_frame(df, metrics, by), metrics, by)


def _talk_means(frame: pd.DataFrame, metrics: Sequence[str], by: list[str]) -> pd.DataFrame:
    grouped = frame.groupby([*by, TALK], sort=False)
    out = grouped.size().to_frame("n")
    if metrics:
        out = out.join(grouped[list(metrics)].mean())
    return out.reset_index()


def per_talk_stats(df: pd.DataFrame, metrics: Sequence[str], by: Sequence[str] = DEFAULT_BY) -> pd.DataFrame:
    """summary.csv: per group x talk, n and each metric's mean, median, stdev and CV% over the repeats."""
    by = list(by)
    frame = _frame(df, metrics, by)
    grouped = frame.groupby([*by, TALK], sort=False)
    out = grouped.size().to_frame("n")
    for m in metrics:
        g = grouped[m]
        mean, sd = g.mean(), g.std(ddof=1)
        out[f"{m}_mean"] = mean
        out[f"{m}_median"] = g.median()
        out[f"{m}_stdev"] = sd
        out[f"{m}_cv_pct"] = (100 * sd / mean).where(mean != 0)
    return out.reset_index()


@dataclass(frozen=True)
class GroupMetric:
    """One metric of one group."""

    ci: ScoreCI  # mean over talks of the talk means, Student-t interval over them; ci.n = talks with a value
    samples: int  # ok samples with a value
    max: float | None  # largest single sample
    sd: float | None  # standard deviation over the samples (error bars)
    total: float  # sum over the samples: for a true/false column, how many are true

    @property
    def mean(self) -> float | None:
        return None if np.isnan(self.ci.mean) else self.ci.mean

    @property
    def talks(self) -> int:
        return self.ci.n


def group_metrics(
    df: pd.DataFrame,
    metrics: Sequence[str],
    by: Sequence[str] = DEFAULT_BY,
    *,
    confidence: float = 0.95,
) -> dict[GroupKey, dict[str, GroupMetric]]:
    """Per group (first-seen order), per metric: talk-weighted mean with its interval, max, sd, count."""
    by = list(by)
    frame = _frame(df, metrics, by)
    means = _talk_means(frame, metrics, by)
    out: dict[GroupKey, dict[str, GroupMetric]] = {}
    for key, samples in frame.groupby(by, sort=False):
        key_t = tuple(str(k) for k in (key if isinstance(key, tuple) else (key,)))
        mine = means[np.logical_and.reduce([means[k] == v for k, v in zip(by, key_t, strict=True)])]
        entry: dict[str, GroupMetric] = {}
        for m in metrics:
            v = samples[m].dropna()
            entry[m] = GroupMetric(
                ci=t_interval(mine[m].to_numpy(), confidence),
                samples=len(v),
                max=float(v.max()) if len(v) else None,
                sd=float(v.std(ddof=1)) if len(v) > 1 else None,
                total=float(v.sum()),
            )
        out[key_t] = entry
    return out


def mean_of_talk_means(df: pd.DataFrame, metric: str) -> float | None:
    """One metric over all ok rows of `df` as a single group: the mean over talks of the talk means."""
    means = talk_means(df.assign(_all=""), [metric], by=("_all",))[metric].dropna()
    return float(means.mean()) if len(means) else None
