"""The report's sweep views: a metric against each swept numeric setting (decode tok/s vs threads, say).

A setting counts as swept in a run when its rows hold more than one value of it for one model (e.g.
`harness run --threads 1,2,4`). For each such setting the report draws one line per model -- and per
combination of the run's other swept settings, so a `--threads 1,2 --max-new-tokens 16,32` run gives two
lines per model in the threads plot -- through the metric's mean at each value: the mean over talks of
the per-talk means over repeats (harness.results.aggregate), with a Student-t interval over the talks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.params import PARAMS, parse_int
from harness.results import aggregate
from harness.results.schema import SPECS

# Numeric settings a sweep can vary: the integer sweep options of `harness run` (their CSV columns have
# the same names); columns the rows do not have are skipped.
NUMERIC_SETTINGS: tuple[str, ...] = tuple(p.name for p in PARAMS if p.sweeps and p.parse is parse_int)
SWEEP_METRIC = "decode_tok_s"


def _numbers(df: pd.DataFrame, column: str) -> pd.Series:
    return pd.to_numeric(df[column], errors="coerce") if column in df else pd.Series(np.nan, index=df.index)


def swept_settings(samples: pd.DataFrame) -> list[str]:
    """The numeric settings that take more than one value for some model within one run."""
    if samples.empty:
        return []
    run = samples["run"].astype(str) if "run" in samples else pd.Series("", index=samples.index)
    out = []
    for setting in NUMERIC_SETTINGS:
        values = _numbers(samples, setting)
        if values.notna().any() and values.groupby([run, samples["model"].astype(str)]).nunique().max() > 1:
            out.append(setting)
    return out


@dataclass(frozen=True)
class SweepLine:
    label: str  # model (+ the other swept settings, + run when several)
    model: str
    run: str
    x: tuple[float, ...]
    mean: tuple[float, ...]
    lo: tuple[float, ...]  # Student-t interval over talks (NaN with one talk)
    hi: tuple[float, ...]


def sweep_lines(samples: pd.DataFrame, setting: str, metric: str, swept: Sequence[str] = ()) -> list[SweepLine]:
    """One line per run x model x combination of the other swept settings: (value, mean, interval) points,
    values ascending. ok samples only."""
    ok = aggregate.ok_rows(samples)
    ok = ok[_numbers(ok, setting).notna()].copy()
    if ok.empty or not aggregate.has_values(ok, metric):
        return []
    others = [s for s in swept if s != setting and s in ok]
    several_runs = ok["run"].astype(str).nunique() > 1 if "run" in ok else False

    def label_of(row: pd.Series) -> str:
        parts = [str(row["model"])]
        parts += [f"{s}={row[s]}" for s in others]
        if several_runs:
            parts.append(f"@ {row['run']}")
        return " ".join(parts)

    ok["_line"] = ok.apply(label_of, axis=1)
    ok["_x"] = _numbers(ok, setting).map(lambda v: f"{v:g}")
    stats = aggregate.group_metrics(ok, [metric], by=("_line", "_x"))
    lines = []
    for line, rows in ok.groupby("_line", sort=False):
        xs = sorted({float(v) for v in rows["_x"]})
        points = [stats[(str(line), f"{x:g}")][metric] for x in xs]
        first = rows.iloc[0]
        lines.append(
            SweepLine(
                label=str(line),
                model=str(first["model"]),
                run=str(first.get("run", "")),
                x=tuple(xs),
                mean=tuple(np.nan if p.mean is None else p.mean for p in points),
                lo=tuple(p.ci.lo for p in points),
                hi=tuple(p.ci.hi for p in points),
            )
        )
    return lines


def axis_label(column: str) -> str:
    spec = SPECS.get(column)
    if spec is None:
        return column
    # "decode, tok/s": a comma, since the y label appends "(higher is better)" in parentheses
    return f"{spec.label or spec.name}, {spec.unit}" if spec.unit and spec.unit != "0-1" else spec.label or spec.name


__all__ = ["NUMERIC_SETTINGS", "SWEEP_METRIC", "SweepLine", "axis_label", "sweep_lines", "swept_settings"]
