"""Compare runs against a baseline: per-model metric means, relative change and Welch's t-test.

Aggregation: samples are matched on model x talk (x provider when both runs record it); a model's value
is the mean over its matched talks of the per-talk mean over repeats, so a talk with more repeats does not
weigh more. The significance test uses the individual samples of those matched talks.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from harness.registry import unknown
from harness.report.load import Run, column_values, join_values, norm

Better = Literal["lower", "higher"]

DEFAULT_METRICS: tuple[str, ...] = (
    "ttft_s",
    "prefill_tok_s",
    "decode_tok_s",
    "peak_rss_mb",
    "rougeL_f",
    "e2e_s",
)

# Direction of "better" for every schema metric where one exists; others are compared but never flagged.
DIRECTIONS: dict[str, Better] = {
    "load_s": "lower",
    "ttft_s": "lower",
    "prefill_tok_s": "higher",
    "decode_tok_s": "higher",
    "e2e_s": "lower",
    "peak_rss_mb": "lower",
    "rss_after_load_mb": "lower",
    "peak_uss_mb": "lower",
    "peak_pss_mb": "lower",
    "uss_mb": "lower",
    "pss_mb": "lower",
    "itl_p50_ms": "lower",
    "itl_p90_ms": "lower",
    "itl_p99_ms": "lower",
    "engine_prefill_tok_s": "higher",
    "engine_decode_tok_s": "higher",
    "decode_bw_util": "higher",
    "repetition_rate": "lower",
    **{f"rouge{k}_{s}": "higher" for k in ("1", "2", "L", "Lsum") for s in ("f", "p", "r")},
}

TEST_NAME = "Welch's two-sample t-test (scipy.stats.ttest_ind, equal_var=False)"

REGRESSION = "REGRESSION"
IMPROVED = "improved"
NO_CHANGE = "ok"
UNTESTED = "n/a"


@dataclass
class MetricRow:
    """One metric of one model: baseline vs new run."""

    baseline_run: str
    run: str
    model: str
    provider: str
    metric: str
    better: str
    baseline: float | None
    new: float | None
    change_pct: float | None
    p_value: float | None
    n_baseline: int
    n_new: int
    verdict: str
    note: str = ""
    model_label: str = ""  # model, plus the provider where the model ran on several

    def record(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Comparison:
    baseline: Run
    other: Run
    rows: list[MetricRow]
    only_baseline: list[str]
    only_other: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[MetricRow]:
        return [r for r in self.rows if r.verdict == REGRESSION]


# Numeric columns that are settings, not measurements: compared in the like-for-like check instead.
_SETTINGS = {"repeat", "threads", "max_new_tokens", "min_new_tokens", "n_ctx"}


def available_metrics(runs: Sequence[Run]) -> list[str]:
    cols: set[str] = set()
    for run in runs:
        cols |= {c for c in run.results.columns if pd.api.types.is_numeric_dtype(run.results[c])}
    return sorted(cols - _SETTINGS)


def resolve_metrics(requested: Sequence[str] | None, runs: Sequence[Run]) -> list[str]:
    """Requested metric names (comma lists allowed) checked against the runs' columns; default set else."""
    available = available_metrics(runs)
    if not requested:
        # Default metrics that no run measured (e.g. ROUGE in unscored runs) are left out, not shown as n/a.
        measured = {m for run in runs for m in available if m in run.results and run.ok[m].notna().any()}
        return [m for m in DEFAULT_METRICS if m in measured]
    names = [n.strip() for item in requested for n in item.split(",") if n.strip()]
    for name in names:
        if name not in available:
            raise unknown("metric", name, available)
    return list(dict.fromkeys(names))


def _key_columns(a: Run, b: Run) -> list[str]:
    # Provider joins only when both runs record one, so a run whose provider cells are blank (or a CSV
    # from before the column existed) still compares by model alone.
    if column_values(a.results, "provider") and column_values(b.results, "provider"):
        return ["model", "provider"]
    return ["model"]


def _labeller(keys: set[tuple[str, ...]]) -> Callable[[tuple[str, ...]], str]:
    """Name a model x provider key; the provider is shown only where one model ran on several."""
    providers: dict[str, set[str]] = {}
    for key in keys:
        providers.setdefault(key[0], set()).add(key[1] if len(key) > 1 else "")

    def label(key: tuple[str, ...]) -> str:
        if len(key) > 1 and key[1] and len(providers[key[0]]) > 1:
            return f"{key[0]} [{key[1]}]"
        return key[0]

    return label


def welch_p(a: np.ndarray, b: np.ndarray) -> float | None:
    """Two-sided Welch p-value; None when a side has fewer than 2 samples."""
    if len(a) < 2 or len(b) < 2:
        return None
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        # scipy returns NaN for two constant samples; identical constants are "no difference" (p=1),
        # different constants are as certain as data gets (p=0).
        return 1.0 if a[0] == b[0] else 0.0
    with warnings.catch_warnings():
        # Near-constant samples warn about precision loss; the p-value is still the right answer.
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return None if math.isnan(p) else p


def mean_of_talk_means(samples: pd.DataFrame, metric: str) -> float | None:
    values = samples[["talk_id", metric]].dropna()
    if values.empty:
        return None
    return float(values.groupby("talk_id")[metric].mean().mean())


def verdict(
    better: str, change_pct: float | None, p: float | None, alpha: float, threshold_pct: float
) -> str:
    if better not in ("lower", "higher") or change_pct is None or p is None:
        return UNTESTED
    worse = change_pct > 0 if better == "lower" else change_pct < 0
    if p < alpha and abs(change_pct) > threshold_pct:
        return REGRESSION if worse else IMPROVED
    return NO_CHANGE


def compare_runs(
    baseline: Run, other: Run, metrics: Sequence[str], *, alpha: float = 0.05, threshold_pct: float = 5.0
) -> Comparison:
    keys = _key_columns(baseline, other)
    a_ok = baseline.ok.copy()
    b_ok = other.ok.copy()
    for df in (a_ok, b_ok):
        for k in keys:
            df[k] = df[k].fillna("").astype(str)
    a_groups = {tuple(k if isinstance(k, tuple) else (k,)): g for k, g in a_ok.groupby(keys, sort=True)}
    b_groups = {tuple(k if isinstance(k, tuple) else (k,)): g for k, g in b_ok.groupby(keys, sort=True)}
    common = sorted(set(a_groups) & set(b_groups))
    _label = _labeller(set(a_groups) | set(b_groups))
    comp = Comparison(
        baseline=baseline,
        other=other,
        rows=[],
        only_baseline=sorted(_label(k) for k in set(a_groups) - set(b_groups)),
        only_other=sorted(_label(k) for k in set(b_groups) - set(a_groups)),
    )
    for key in common:
        a_all, b_all = a_groups[key], b_groups[key]
        talks = sorted(set(a_all["talk_id"]) & set(b_all["talk_id"]))
        label = _label(key)
        only_a = sorted(set(a_all["talk_id"]) - set(talks))
        only_b = sorted(set(b_all["talk_id"]) - set(talks))
        if only_a or only_b:
            comp.notes.append(
                f"{label}: talks compared {len(talks)}; "
                f"only in {baseline.label}: {', '.join(only_a) or '-'}; "
                f"only in {other.label}: {', '.join(only_b) or '-'}"
            )
        a = a_all[a_all["talk_id"].isin(talks)]
        b = b_all[b_all["talk_id"].isin(talks)]
        for metric in metrics:
            row = _metric_row(baseline, other, key, metric, a, b, alpha, threshold_pct)
            row.model_label = label
            comp.rows.append(row)
    return comp


def _metric_row(
    baseline: Run,
    other: Run,
    key: tuple[str, ...],
    metric: str,
    a: pd.DataFrame,
    b: pd.DataFrame,
    alpha: float,
    threshold_pct: float,
) -> MetricRow:
    better = DIRECTIONS.get(metric, "")
    missing = [r.label for r, df in ((baseline, a), (other, b)) if metric not in df.columns]
    if missing:
        va = vb = np.array([])
        base = new = None
    else:
        va = a[metric].dropna().to_numpy(dtype=float)
        vb = b[metric].dropna().to_numpy(dtype=float)
        base = mean_of_talk_means(a, metric)
        new = mean_of_talk_means(b, metric)
    change = None
    if base is not None and new is not None and base != 0:
        change = 100.0 * (new - base) / abs(base)
    p = welch_p(va, vb)
    note = f"no {metric} column in {', '.join(missing)}" if missing else ""
    if not note and (len(va) < 2 or len(vb) < 2):
        note = "fewer than 2 samples on a side: no test"
    return MetricRow(
        baseline_run=baseline.label,
        run=other.label,
        model=key[0],
        provider=key[1] if len(key) > 1 else "",
        metric=metric,
        better=better,
        baseline=base,
        new=new,
        change_pct=change,
        p_value=p,
        n_baseline=len(va),
        n_new=len(vb),
        verdict=verdict(better, change, p, alpha, threshold_pct),
        note=note,
    )


# --- like-for-like check -------------------------------------------------------------------------

# Machine-wide facts, from run.json only (a bare results.csv does not carry them).
_RUN_FIELDS: dict[str, tuple[str, ...]] = {
    "CPU": ("environment", "cpu", "brand"),
    "CPU arch": ("environment", "cpu", "arch"),
    "physical cores": ("environment", "cores_physical"),
    "logical cores": ("environment", "cores_logical"),
    "harness version": ("harness_version",),
}

# Per-sample settings: the CSV column wins; run.json's config is the fallback for older CSVs.
_SAMPLE_FIELDS: tuple[str, ...] = (
    "threads",
    "prompt_sha",
    "max_new_tokens",
    "min_new_tokens",
    "n_ctx",
    "flash_attn",
    "summary_lang",
    "mmap",
)


def _sample_setting(run: Run, model: str | None, name: str) -> str:
    df = run.results if model is None else run.results[run.results["model"] == model]
    values = column_values(df, name)
    if values:
        return join_values(values)
    config = run.meta_get("config") or {}
    fallback: Any = None
    if name in ("threads", "max_new_tokens", "min_new_tokens", "summary_lang"):
        fallback = config.get(name) if isinstance(config, dict) else None
    elif name == "mmap" and isinstance(config, dict) and config.get("no_mmap") is not None:
        fallback = not bool(config["no_mmap"])
    elif name == "n_ctx" and model is not None:
        fallback = run.meta_get("models", model, "n_ctx")
    elif name == "prompt_sha" and isinstance(run.meta_get("prompts"), dict):
        fallback = join_values(sorted(norm(v) for v in run.meta_get("prompts").values()))
    return norm(fallback)


def environment_mismatches(baseline: Run, other: Run) -> list[str]:
    """One line per setting that differs; settings unknown on either side are not reported."""
    lines: list[str] = []
    a_name, b_name = baseline.label, other.label
    for label, path in _RUN_FIELDS.items():
        va, vb = norm(baseline.meta_get(*path)), norm(other.meta_get(*path))
        if va and vb and va != vb:
            lines.append(f"{label}: {a_name}={va} vs {b_name}={vb}")
    models = sorted(set(baseline.results["model"]) & set(other.results["model"]))
    for name in _SAMPLE_FIELDS:
        diffs: dict[tuple[str, str], list[str]] = {}
        for model in models or [None]:
            va, vb = _sample_setting(baseline, model, name), _sample_setting(other, model, name)
            if va and vb and va != vb:
                diffs.setdefault((va, vb), []).append(model or "all models")
        if len(diffs) == 1 and len(next(iter(diffs.values()))) == len(models or [None]):
            (va, vb), _ = next(iter(diffs.items()))
            lines.append(f"{name}: {a_name}={va} vs {b_name}={vb}")
        else:
            for (va, vb), where in diffs.items():
                lines.append(f"{name} ({', '.join(where)}): {a_name}={va} vs {b_name}={vb}")
    return lines


def run_notes(runs: Sequence[Run]) -> list[str]:
    """What was skipped or could not be checked, per run."""
    notes: list[str] = []
    for run in runs:
        if run.n_error:
            notes.append(f"{run.label}: skipped {run.n_error} error row(s) (status != ok)")
        if not run.has_run_json:
            notes.append(
                f"{run.label}: no run.json beside results.csv; CPU, cores and harness version not checked"
            )
    return notes
