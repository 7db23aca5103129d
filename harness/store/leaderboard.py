"""The leaderboard: per device, each model's best config, quality/speed/memory side by side, Pareto marked.

A *config* is everything that changes how a model ran besides the model itself: backend, provider,
quantisation and the settings columns (threads, n_ctx, flash attention, mmap, generation caps, language,
prompt hash, sweep config id). Over every stored `status=ok` row of a device, each metric of a model x
config is the mean over talks of the per-talk mean over repeats (talks weigh equally, as in `compare`);
a metric the schema aggregates by its peak (peak_rss_mb) takes the largest sample instead.

The best config of a model on a device is the first when sorted by the metrics in the order given,
each in its better direction (ties on the first -- e.g. ROUGE, identical under greedy decoding whatever
the thread count -- fall to the next). Among the models' best configs on a device, a row is
Pareto-optimal when no other row is at least as good on every metric and better on one. Two kinds of row
take no part in that mark (`excluded` names why): models with random weights (run.json records their
source kind as "generate": tiny-qwen2 and its variants exist to test the plumbing, and being fast with
noise output would otherwise make them "optimal"), and configs whose outputs are mostly degenerate
(more than MOSTLY_DEGENERATE of the judged samples), whose ROUGE counts copied text, not summaries.

Names: a peak metric is shown as `<metric>_max` (the largest sample), as in summary_models.csv; the
report's summary and `compare` show the mean of the sample peaks, named `<metric>_mean` there.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import HarnessError, unknown
from harness.results.schema import DIRECTIONS, SPECS
from harness.scoring.signals import MOSTLY_DEGENERATE, is_degenerate
from harness.store.duck import connect, quote_ident, table_columns

DEFAULT_METRICS: tuple[str, ...] = ("rougeL_f", "decode_tok_s", "peak_rss_mb")
CONFIG_COLUMNS: tuple[str, ...] = (
    "backend",
    "provider",
    "quant",
    "config_id",
    "threads",
    "n_ctx",
    "n_gpu_layers",
    "flash_attn",
    "mmap",
    "max_new_tokens",
    "min_new_tokens",
    "summary_lang",
    "prompt_sha",
)


RANDOM_WEIGHTS = "random weights"
MOSTLY_DEGENERATE_TEXT = "mostly degenerate"
RANDOM_SOURCE_KINDS = frozenset({"generate"})  # models written locally by a generator: random weights


def display_name(metric: str) -> str:
    """The column name a leaderboard shows: a peak metric is the largest sample, `peak_rss_mb_max`."""
    return f"{metric}_max" if getattr(SPECS.get(metric), "aggregate", "") == "max" else metric


@dataclass
class Leaderboard:
    # device, model, config columns, metrics, talks, samples, runs, last_run, degenerate, judged, excluded,
    # pareto
    table: pd.DataFrame
    metrics: list[str]
    config_columns: list[str]

    def _varying(self) -> list[str]:
        """Config columns that differ between rows; quantisation and provider are always shown."""
        return [c for c in self.config_columns if c in ("provider", "quant") or self.table[c].nunique() > 1]

    def config_text(self, row: pd.Series) -> str:
        """The settings that tell this row's config apart (the shared ones are in `shared_text`)."""
        parts = []
        for col in self._varying():
            value = row[col]
            if value in ("", None) or (isinstance(value, float) and math.isnan(value)):
                continue
            parts.append(str(value) if col in ("backend", "provider", "quant") else f"{col}={value}")
        return " ".join(parts)

    def shared_text(self) -> str:
        """`threads=4 n_ctx=8192 …`: settings every row of the leaderboard has in common."""
        varying = set(self._varying())
        shared = [c for c in self.config_columns if c not in varying and self.table[c].iloc[0] != ""]
        return " ".join(f"{c}={self.table[c].iloc[0]}" for c in shared)


def _check_metrics(requested: list[str], available: dict[str, str]) -> list[str]:
    numeric = [c for c, t in available.items() if t in ("DOUBLE", "FLOAT", "INTEGER", "BIGINT")]
    out = []
    for name in requested:
        if name not in available:
            raise unknown("metric", name, [c for c in numeric if c in DIRECTIONS])
        if name not in DIRECTIONS:
            ranked = ", ".join(c for c in numeric if c in DIRECTIONS)
            raise HarnessError(f'metric "{name}" has no better direction to rank by; use one of: {ranked}')
        out.append(name)
    if not out:
        raise HarnessError("--metric needs at least one metric, e.g. rougeL_f,decode_tok_s,peak_rss_mb")
    return list(dict.fromkeys(out))


def _norm(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def pareto_mask(values: pd.DataFrame, metrics: list[str]) -> list[bool]:
    """True where no other row is at least as good on every metric and strictly better on one. A missing
    value counts as the worst possible, so a row measured on fewer metrics cannot dominate by omission."""
    signed = pd.DataFrame(
        {m: values[m].astype(float) * (1.0 if DIRECTIONS[m] == "higher" else -1.0) for m in metrics}
    ).fillna(-math.inf)
    rows = signed.to_numpy()
    mask = []
    for i, a in enumerate(rows):
        dominated = any(
            j != i and (b >= a).all() and (b > a).any() for j, b in enumerate(rows)
        )
        mask.append(not dominated)
    return mask


def random_weight_models(records: list[Any]) -> set[str]:
    """Models any stored run.json records with a generator source (random weights)."""
    found: set[str] = set()
    for text in records:
        try:
            record = json.loads(text) if isinstance(text, str) else text
        except (ValueError, RecursionError):
            continue  # a damaged record names no source; the row is then ranked as any other
        models = record.get("models") if isinstance(record, dict) else None
        if not isinstance(models, dict):
            continue
        for model, entry in models.items():
            source = entry.get("source") if isinstance(entry, dict) else None
            kind = source.get("kind") if isinstance(source, dict) else source
            if kind in RANDOM_SOURCE_KINDS:
                found.add(str(model))
    return found


def _degenerate_flag(value: Any) -> float:
    """A stored `degenerate` cell as 1/0; NaN when the sample has no verdict (unscored, older runs)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.nan
    text = str(value).strip().lower()
    return {"true": 1.0, "1": 1.0, "1.0": 1.0, "false": 0.0, "0": 0.0, "0.0": 0.0}.get(text, math.nan)


_VERDICT_INPUTS = ("stop_reason", "repetition_rate", "lang_match")


def _degenerate_flags(df: pd.DataFrame) -> list[float]:
    """Per row 1/0/NaN: the stored `degenerate` verdict, else the same rule (`is_degenerate`) applied to
    stop_reason, repetition_rate and lang_match, as the report does for runs from before the column."""
    out = []
    for _, row in df.iterrows():
        flag = _degenerate_flag(row.get("degenerate"))
        if math.isnan(flag) and "repetition_rate" in df.columns:
            rate = pd.to_numeric(pd.Series([row.get("repetition_rate")]), errors="coerce").iloc[0]
            match = _degenerate_flag(row.get("lang_match"))  # the same true/false spelling
            derived = is_degenerate(
                str(row.get("stop_reason") or ""),
                None if pd.isna(rate) else float(rate),
                None if math.isnan(match) else bool(match),
            )
            flag = math.nan if derived is None else float(derived)
        out.append(flag)
    return out


def _exclusion(row: pd.Series, random_models: set[str]) -> str:
    if row["model"] in random_models:
        return RANDOM_WEIGHTS
    if row["judged"] and row["degenerate"] > MOSTLY_DEGENERATE * row["judged"]:
        return MOSTLY_DEGENERATE_TEXT
    return ""


def build(db: Path, metrics: list[str] | None = None, devices: list[str] | None = None) -> Leaderboard:
    with connect(db, read_only=True) as con:
        available = table_columns(con, "rows")
        if not available:
            raise HarnessError(f"the store {db} has no rows; ingest runs with `harness db ingest RUN_DIR`")
        metrics = _check_metrics(list(metrics or DEFAULT_METRICS), available)
        config_cols = [c for c in CONFIG_COLUMNS if c in available]
        known_devices = [r[0] for r in con.execute("SELECT DISTINCT device FROM rows ORDER BY 1").fetchall()]
        for name in devices or []:
            if name not in known_devices:
                raise unknown("device", name, [d for d in known_devices if d])
        # The verdict columns: `degenerate` where the run wrote it, and what older runs let it be derived from.
        extra = [c for c in ("degenerate", *_VERDICT_INPUTS) if c in available and c not in metrics]
        cols = ", ".join(
            quote_ident(c) for c in ["device", "model", "run_id", "talk_id", *config_cols, *metrics, *extra]
        )
        where = "status = 'ok'"
        params: list[Any] = []
        if devices:
            where += f" AND device IN ({', '.join('?' * len(devices))})"
            params += devices
        df = con.execute(f"SELECT {cols} FROM rows WHERE {where}", params).df()
        random_models = random_weight_models([r[0] for r in con.execute("SELECT record FROM runs").fetchall()])
    if df.empty:
        raise HarnessError("no ok rows in the store for these devices; ingest runs with `harness db ingest`")
    keys = ["device", "model", *config_cols]
    for k in keys:
        df[k] = df[k].map(_norm)
    peak = [m for m in metrics if getattr(SPECS.get(m), "aggregate", "") == "max"]
    agg = {m: ("max" if m in peak else "mean") for m in metrics}
    per_talk = df.groupby([*keys, "talk_id"], sort=False).agg(agg).reset_index()
    per_config = per_talk.groupby(keys, sort=False).agg({**agg, "talk_id": "nunique"})
    per_config = per_config.rename(columns={"talk_id": "talks"})
    df["_degenerate"] = _degenerate_flags(df)
    counts = df.groupby(keys, sort=False).agg(samples=("run_id", "size"), runs=("run_id", "nunique"),
                                              last_run=("run_id", "max"), degenerate=("_degenerate", "sum"),
                                              judged=("_degenerate", "count"))
    counts["degenerate"] = counts["degenerate"].astype(int)
    per_config = per_config.join(counts).reset_index()
    ascending = [DIRECTIONS[m] == "lower" for m in metrics]
    ranked = per_config.sort_values(["device", "model", *metrics], ascending=[True, True, *ascending],
                                    na_position="last", kind="stable")
    best = ranked.groupby(["device", "model"], sort=False).head(1).reset_index(drop=True)
    best["excluded"] = [_exclusion(r, random_models) for _, r in best.iterrows()] if len(best) else []
    best["pareto"] = False
    for _device, idx in best.groupby("device").groups.items():
        eligible = [i for i in idx if not best.loc[i, "excluded"]]
        if eligible:
            best.loc[eligible, "pareto"] = pareto_mask(best.loc[eligible], metrics)
    best = best.sort_values(["device", metrics[0]], ascending=[True, ascending[0]], kind="stable")
    return Leaderboard(best.reset_index(drop=True), metrics, config_cols)
