"""Compare runs against a baseline, model by model, paired by talk.

Method (docs/comparing.md says the same in fewer words):

- Samples are matched on model x talk (x provider when both runs record one); only status=ok rows count.
  Each talk's value is the mean over its repeats (harness.results.aggregate, shared with summary and report).
- The change of a model's metric is the mean, over the talks both runs have, of (new talk mean / baseline
  talk mean - 1), with a 95 % Student-t interval over those talks.
- The test is paired on talks: Student's t on those per-talk ratios (scipy.stats.ttest_rel of the ratios
  against 1), so the printed change, its interval and the p-value describe one quantity and cannot
  disagree. Pooling every sample instead (Welch) lets the spread *between* talks swamp a change that hits
  every talk alike; repeats shrink each talk mean's noise, they are not extra talks.
- Deterministic metrics (the schema's `deterministic`: ROUGE, token counts; identical on every repeat under
  greedy decoding) are one value per talk.
- With exactly one shared talk, Welch's t-test on that talk's repeats (at least 2 a side; never for a
  deterministic metric, whose repeats are copies).
- Holm-Bonferroni over every test the regression gate considers (`judge`): all rows with a direction of
  better and a p-value, across all runs compared with the baseline.
- Runs that are not like-for-like (machine, settings, harness version) get the verdict "not comparable"
  unless forced; git commit and engine package versions that differ are listed, since a code change is
  what a comparison is usually for.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness.errors import unknown
from harness.report.load import Run, column_values, join_values, norm
from harness.results import aggregate
from harness.results.record import RunRecord
from harness.results.schema import DIRECTIONS, SETTINGS, SPECS, view
from harness.scoring.signals import MOSTLY_DEGENERATE
from harness.scoring.stats import holm, t_interval, welch_difference

DEFAULT_METRICS: tuple[str, ...] = view("compare")

TEST_PAIRED = "paired t-test"
TEST_WELCH = "Welch t-test"
TEST_NAMES = {
    TEST_PAIRED: "paired t-test over the shared talks on new/baseline talk-mean ratios (scipy.stats.ttest_rel "
    "of the ratios against 1)",
    TEST_WELCH: "Welch's t-test on the repeats of the one shared talk (scipy.stats.ttest_ind, equal_var=False)",
}
CORRECTION = "Holm-Bonferroni"

REGRESSION = "REGRESSION"
IMPROVED = "improved"
NO_CHANGE = "ok"
UNTESTED = "n/a"
NOT_COMPARABLE = "not comparable"



@dataclass
class MetricRow:
    """One metric of one model: baseline vs new run."""

    baseline_run: str
    run: str
    model: str
    provider: str
    metric: str
    better: str
    baseline: float | None  # mean over the shared talks of the baseline's talk means
    new: float | None
    change_pct: float | None  # mean over the shared talks of 100 * (new / baseline - 1)
    change_ci_lo: float | None  # 95 % interval of change_pct
    change_ci_hi: float | None
    test: str  # TEST_PAIRED, TEST_WELCH or "" (no test)
    p_value: float | None
    p_holm: float | None  # Holm-adjusted over every test the gate considers
    talks: int  # talks both runs have a value for
    n_baseline: int  # samples (repeats) behind the baseline value
    n_new: int
    verdict: str = UNTESTED
    note: str = ""
    model_label: str = ""  # model, plus the provider where the model ran on several, plus the config (sweeps)
    config_id: str = ""  # the config compared, when either run swept settings (harness.params)
    # Samples flagged `noisy` (harness.trackers.noise) left out of this speed metric, per side.
    noisy_left_out_baseline: int = 0
    noisy_left_out_new: int = 0

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
    mismatches: list[str] = field(default_factory=list)  # not like-for-like: verdicts "not comparable"
    versions: list[str] = field(default_factory=list)  # code that differs: listed, never blocking
    comparable: bool = True  # like-for-like, or forced

    @property
    def regressions(self) -> list[MetricRow]:
        return [r for r in self.rows if r.verdict == REGRESSION]

    @property
    def tested(self) -> list[MetricRow]:
        """Rows the gate considers: a direction of better, a p-value, runs comparable."""
        return [r for r in self.rows if self.comparable and r.better and r.p_value is not None]


def available_metrics(runs: Sequence[Run]) -> list[str]:
    """Numeric columns that are measurements: the schema's metrics, plus numeric columns a newer harness
    wrote that this version does not know."""
    cols: set[str] = set()
    for run in runs:
        cols |= {c for c in run.results.columns if pd.api.types.is_numeric_dtype(run.results[c])}
    return sorted(c for c in cols if c not in SPECS or SPECS[c].kind == "metric")


def resolve_metrics(requested: Sequence[str] | None, runs: Sequence[Run]) -> list[str]:
    """Requested metric names (comma lists allowed) checked against the runs' columns; default set else."""
    available = available_metrics(runs)
    if not requested:
        # Default metrics that no run measured (e.g. ROUGE in unscored runs) are left out, not shown as n/a.
        measured = {m for ok in (run.ok for run in runs) for m in available if m in ok and ok[m].notna().any()}
        return [m for m in DEFAULT_METRICS if m in measured]
    names = [n.strip() for item in requested for n in item.split(",") if n.strip()]
    for name in names:
        if name not in available:
            raise unknown("metric", name, available)
    return list(dict.fromkeys(names))


def _key_columns(a: Run, b: Run) -> list[str]:
    # Provider joins only when both runs record one, so a run whose provider cells are blank (or a CSV
    # from before the column existed) still compares by model alone. A sweep on either side pairs by
    # config_id too (same settings, same id); runs without sweeps pair by model whatever their settings,
    # and the like-for-like warning names what differs.
    keys = ["model"]
    if column_values(a.results, "provider") and column_values(b.results, "provider"):
        keys.append("provider")
    swept = any(len(aggregate.model_keys(r.results)) > 1 for r in (a, b))
    if swept and all("config_id" in r.results.columns for r in (a, b)):
        keys.append("config_id")
    return keys


def _config_labels(*runs: Run) -> dict[str, str]:
    """config_id -> its sweep label (`threads=2`), from whichever run swept it."""
    labels: dict[str, str] = {}
    for run in runs:
        if {"config_id", "sweep"} <= set(run.results.columns):
            for cid, label in zip(run.results["config_id"].astype(str), run.results["sweep"].astype(str), strict=True):
                if label and not labels.get(cid):
                    labels[cid] = label
    return labels


def _labeller(
    keys: set[tuple[str, ...]], columns: Sequence[str] = ("model", "provider"), configs: dict[str, str] | None = None
) -> Callable[[tuple[str, ...]], str]:
    """Name a model (x provider) (x config) key; the provider is shown only where one model ran on several,
    a config by its sweep label (else its id)."""
    providers: dict[str, set[str]] = {}
    for key in keys:
        parts = dict(zip(columns, key, strict=False))
        providers.setdefault(key[0], set()).add(parts.get("provider", ""))

    def label(key: tuple[str, ...]) -> str:
        parts = dict(zip(columns, key, strict=False))
        name = key[0]
        if parts.get("provider") and len(providers[key[0]]) > 1:
            name += f" [{parts['provider']}]"
        if parts.get("config_id"):
            name += f" [{(configs or {}).get(parts['config_id']) or parts['config_id']}]"
        return name

    return label


def verdict(
    better: str, change_pct: float | None, p: float | None, alpha: float, threshold_pct: float
) -> str:
    """REGRESSION / improved when the change is beyond the threshold and p (Holm-adjusted) < alpha."""
    if better not in ("lower", "higher") or change_pct is None or p is None:
        return UNTESTED
    worse = change_pct > 0 if better == "lower" else change_pct < 0
    if p < alpha and abs(change_pct) > threshold_pct:
        return REGRESSION if worse else IMPROVED
    return NO_CHANGE


@dataclass(frozen=True)
class Change:
    """The change of one metric and its test, before correction."""

    change_pct: float | None = None
    lo: float | None = None
    hi: float | None = None
    test: str = ""
    p_value: float | None = None
    note: str = ""


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else x


def paired_change(base: np.ndarray, new: np.ndarray, confidence: float = 0.95) -> Change:
    """Per-talk means, same talks in the same order: mean relative change, t interval, paired t-test."""
    keep = base != 0
    ratios = new[keep] / base[keep] - 1.0
    dropped = "" if keep.all() else f"{int((~keep).sum())} talk(s) with a baseline of 0 left out"
    if len(ratios) < 2:
        return Change(100 * float(ratios.mean()) if len(ratios) else None, note=dropped or "fewer than 2 talks")
    ci = t_interval(ratios, confidence)
    change, lo, hi = 100 * ci.mean, _finite(100 * ci.lo), _finite(100 * ci.hi)
    if np.ptp(ratios) == 0:
        # No spread between talks: identical values (deterministic metrics, unchanged) are no change at all;
        # the same nonzero ratio on every talk has no variance to test against.
        if ratios[0] == 0:
            return Change(change, lo, hi, TEST_PAIRED, 1.0, dropped)
        return Change(change, lo, hi, note="the same change on every talk: no spread to test against")
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(stats.ttest_rel(ratios + 1.0, np.ones_like(ratios)).pvalue)
    return Change(change, lo, hi, TEST_PAIRED, _finite(p), dropped)


def within_talk_change(base: np.ndarray, new: np.ndarray, confidence: float = 0.95) -> Change:
    """One shared talk: the change of the repeat means, with Welch's test and interval on the repeats."""
    if len(base) == 0 or len(new) == 0:
        return Change()
    base_mean = float(base.mean())
    if base_mean == 0:
        return Change(note="baseline is 0: no relative change")
    change = 100 * (float(new.mean()) / base_mean - 1)
    result = welch_difference(base, new, confidence)
    if result is None:
        return Change(change, note="one shared talk and fewer than 2 repeats on a side: no test")
    scale = 100 / abs(base_mean)
    if result.p_value is None:
        return Change(change, note="constant within the talk on both sides: no test")
    return Change(change, result.lo * scale, result.hi * scale, TEST_WELCH, result.p_value)


def _metric_change(metric: str, a: pd.DataFrame, b: pd.DataFrame, ta: pd.Series, tb: pd.Series) -> Change:
    """`a`/`b`: ok rows of one model on the shared talks; `ta`/`tb`: their talk means (talk-indexed)."""
    shared = [t for t in ta.index if t in tb.index and not (np.isnan(ta[t]) or np.isnan(tb[t]))]
    if not shared:
        return Change(note="no talk with a value in both runs")
    if len(shared) >= 2:
        return paired_change(ta[shared].to_numpy(dtype=float), tb[shared].to_numpy(dtype=float))
    if SPECS.get(metric) is not None and SPECS[metric].deterministic:
        base, new = float(ta[shared[0]]), float(tb[shared[0]])
        change = 100 * (new / base - 1) if base else None
        return Change(change, note="one shared talk, and repeats of a deterministic metric are copies: no test")
    talk = shared[0]
    va = aggregate.values(a[a["talk_id"] == talk], metric).dropna().to_numpy()
    vb = aggregate.values(b[b["talk_id"] == talk], metric).dropna().to_numpy()
    return within_talk_change(va, vb)


def _talk_table(means: pd.DataFrame, keys: list[str], key: tuple[str, ...]) -> pd.DataFrame:
    mask = np.logical_and.reduce([means[k] == v for k, v in zip(keys, key, strict=True)])
    return means[mask].set_index("talk_id")


def compare_runs(baseline: Run, other: Run, metrics: Sequence[str]) -> Comparison:
    """Rows for every shared model x metric, with changes and raw p-values; `judge` adds the verdicts."""
    keys = _key_columns(baseline, other)
    a_groups = set(aggregate.groups(baseline.results, keys))
    b_groups = set(aggregate.groups(other.results, keys))
    common = sorted(a_groups & b_groups)
    label_of = _labeller(a_groups | b_groups, keys, _config_labels(baseline, other))
    comp = Comparison(
        baseline=baseline,
        other=other,
        rows=[],
        only_baseline=sorted(label_of(k) for k in a_groups - b_groups),
        only_other=sorted(label_of(k) for k in b_groups - a_groups),
    )
    a_means = aggregate.talk_means(baseline.results, metrics, keys)
    b_means = aggregate.talk_means(other.results, metrics, keys)
    a_ok, b_ok = (_narrow(aggregate.ok_rows(r.results), [*keys, "talk_id", *metrics]) for r in (baseline, other))
    for key in common:
        label = label_of(key)
        ta, tb = _talk_table(a_means, keys, key), _talk_table(b_means, keys, key)
        talks = [t for t in ta.index if t in tb.index]
        only_a = [t for t in ta.index if t not in tb.index]
        only_b = [t for t in tb.index if t not in ta.index]
        if only_a or only_b:
            comp.notes.append(
                f"{label}: talks compared {len(talks)}; "
                f"only in {baseline.label}: {', '.join(only_a) or '-'}; "
                f"only in {other.label}: {', '.join(only_b) or '-'}"
            )
        a = _rows_of(a_ok, keys, key, talks)
        b = _rows_of(b_ok, keys, key, talks)
        for metric in metrics:
            comp.rows.append(_metric_row(baseline, other, key, label, metric, a, b, ta, tb, keys))
    comp.notes.extend(degenerate_notes(baseline, other, [label_of(k) for k in common], keys, common))
    return comp


def _narrow(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Only the columns the comparison reads (row filters on a 70-column frame are what costs)."""
    return df[[c for c in dict.fromkeys(columns) if c in df.columns]]


def _rows_of(
    ok: pd.DataFrame, keys: list[str], key: tuple[str, ...], talks: list[str] | None = None
) -> pd.DataFrame:
    """The rows of one group, on the given talks (all talks when None)."""
    mask = np.logical_and.reduce([ok[k].fillna("").astype(str) == v for k, v in zip(keys, key, strict=True)])
    rows = ok[mask]
    return rows if talks is None else rows[rows["talk_id"].astype(str).isin(talks)]


def _metric_row(
    baseline: Run,
    other: Run,
    key: tuple[str, ...],
    label: str,
    metric: str,
    a: pd.DataFrame,
    b: pd.DataFrame,
    ta: pd.DataFrame,
    tb: pd.DataFrame,
    keys: Sequence[str] = ("model", "provider"),
) -> MetricRow:
    missing = [r.label for r, df in ((baseline, a), (other, b)) if metric not in df.columns]
    if missing:
        change = Change(note=f"no {metric} column in {', '.join(missing)}")
        sa = sb = pd.Series(dtype=float)
    else:
        sa, sb = ta[metric].dropna(), tb[metric].dropna()
        change = _metric_change(metric, a, b, sa, sb)
    shared = [t for t in sa.index if t in sb.index]
    n_a = int(aggregate.values(a[a["talk_id"].isin(shared)], metric).notna().sum()) if not missing else 0
    n_b = int(aggregate.values(b[b["talk_id"].isin(shared)], metric).notna().sum()) if not missing else 0
    return MetricRow(
        baseline_run=baseline.label,
        run=other.label,
        model=key[0],
        provider=dict(zip(keys, key, strict=True)).get("provider", ""),
        config_id=dict(zip(keys, key, strict=True)).get("config_id", ""),
        metric=metric,
        better=DIRECTIONS.get(metric, ""),
        baseline=float(sa[shared].mean()) if shared else None,
        new=float(sb[shared].mean()) if shared else None,
        change_pct=change.change_pct,
        change_ci_lo=change.lo,
        change_ci_hi=change.hi,
        test=change.test,
        p_value=change.p_value,
        p_holm=None,
        talks=len(shared),
        n_baseline=n_a,
        n_new=n_b,
        note=change.note,
        model_label=label,
    )


def judge(comparisons: Sequence[Comparison], alpha: float, threshold_pct: float) -> None:
    """Holm-adjust every test the gate considers (all comparisons together), then set each row's verdict.
    Safe to call again after a comparison's `comparable` changed: the family is rebuilt from scratch."""
    for comp in comparisons:
        for row in comp.rows:
            row.p_holm = None
    family = [r for comp in comparisons for r in comp.tested]
    for row, adjusted in zip(family, holm([r.p_value for r in family]), strict=True):
        row.p_holm = adjusted
    for comp in comparisons:
        for row in comp.rows:
            if not comp.comparable:
                row.verdict = NOT_COMPARABLE
            else:
                row.verdict = verdict(row.better, row.change_pct, row.p_holm, alpha, threshold_pct)


def nothing_comparable(comp: Comparison) -> str | None:
    """Why the gate could judge nothing in this comparison, in one clause; None when it could."""
    a, b = comp.baseline, comp.other
    if comp.tested:
        return None
    for run in (b, a):
        if run.ok.empty:
            return f"{run.label} has only error rows ({run.n_error})"
    if not comp.rows:
        models_a = ", ".join(comp.only_baseline) or "-"
        models_b = ", ".join(comp.only_other) or "-"
        return f"no model is in both {a.label} ({models_a}) and {b.label} ({models_b})"
    if not comp.comparable:
        return f"{b.label} is not like-for-like with {a.label} (see the warning; --force judges anyway)"
    return (
        f"no metric of {b.label} vs {a.label} could be tested (one shared talk with fewer than 2 repeats a "
        "side, or no values)"
    )


# --- degenerate outputs -------------------------------------------------------------------------------


def degenerate_notes(
    baseline: Run, other: Run, labels: Sequence[str], keys: list[str], common: Sequence[tuple[str, ...]]
) -> list[str]:
    """A note per model and run whose ok outputs are mostly degenerate (the `degenerate` column, where
    the run wrote it): its ROUGE then measures text copied into a loop, not summary quality."""
    notes = []
    for label, key in zip(labels, common, strict=True):
        for run in (baseline, other):
            flags = aggregate.values(_rows_of(run.ok, keys, key), "degenerate").dropna()
            if len(flags) and flags.sum() > MOSTLY_DEGENERATE * len(flags):
                notes.append(
                    f"{label}: {int(flags.sum())}/{len(flags)} outputs degenerate in {run.label} (looping into "
                    "the token cap, or in the wrong language); its ROUGE compares copied text, not summaries"
                )
    return notes


# --- like-for-like check -------------------------------------------------------------------------


def _cpu(record: RunRecord) -> tuple[str, str]:
    """(identity compared, description shown)."""
    cpu = record.environment.cpu
    return cpu.identity(), cpu.description()


# Machine-wide facts, from run.json only (a bare results.csv does not carry them): (compared, shown).
_RUN_FIELDS: dict[str, Callable[[RunRecord], tuple[Any, Any]]] = {
    "CPU": _cpu,
    "CPU arch": lambda r: (r.environment.cpu.arch,) * 2,
    "physical cores": lambda r: (r.environment.cores_physical,) * 2,
    "logical cores": lambda r: (r.environment.cores_logical,) * 2,
    "harness version": lambda r: (r.harness_version,) * 2,
}

# Per-sample settings (the schema's "setting" columns): the CSV column wins; run.json is the fallback for
# older CSVs.
_SAMPLE_FIELDS: tuple[str, ...] = SETTINGS

# Packages whose version changes what is measured; listed with the git commit when they differ.
_ENGINE_PACKAGES = ("llama-cpp-python", "onnxruntime", "onnxruntime-genai", "onnxruntime-gpu")


def _sample_setting(run: Run, model: str | None, name: str) -> str:
    if name in run.results.columns:
        rows = run.results[[name]] if model is None else run.results.loc[run.results["model"] == model, [name]]
        values = column_values(rows, name)
    else:
        values = []
    if values:
        return join_values(values)
    record = run.record
    if record is None:
        return ""
    fallback: Any = None
    if name in ("threads", "max_new_tokens", "min_new_tokens", "summary_lang"):
        fallback = getattr(record.config, name)
    elif name == "mmap":
        fallback = record.config.mmap
    elif name == "n_ctx" and model is not None and model in record.models:
        fallback = record.models[model].n_ctx
    elif name == "prompt_sha" and record.prompts:
        fallback = join_values(record.prompt_shas())
    return norm(fallback)


def environment_mismatches(baseline: Run, other: Run) -> list[str]:
    """One line per setting that differs; settings unknown on either side are not reported."""
    lines: list[str] = []
    a_name, b_name = baseline.label, other.label
    if baseline.record is not None and other.record is not None:
        for label, get in _RUN_FIELDS.items():
            (ka, shown_a), (kb, shown_b) = get(baseline.record), get(other.record)
            if norm(ka) and norm(kb) and norm(ka) != norm(kb):
                lines.append(f"{label}: {a_name}={norm(shown_a)} vs {b_name}={norm(shown_b)}")
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


def version_differences(baseline: Run, other: Run) -> list[str]:
    """Code that differs between the runs (git commit, engine packages): what a comparison usually tests,
    so listed but never a reason to call the runs not comparable."""
    a, b = baseline.record, other.record
    if a is None or b is None:
        return []
    lines = []
    if a.git_commit and b.git_commit and a.git_commit != b.git_commit:
        lines.append(f"git commit: {baseline.label}={a.git_commit} vs {other.label}={b.git_commit}")
    pa, pb = a.environment.installed_packages(), b.environment.installed_packages()
    for name in _ENGINE_PACKAGES:
        if pa.get(name) and pb.get(name) and pa[name] != pb[name]:
            lines.append(f"{name}: {baseline.label}={pa[name]} vs {other.label}={pb[name]}")
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
        notes.extend(f"{run.label}: {line}" for line in judge_summary(run))
    return notes


def judge_summary(run: Run) -> list[str]:
    """Which judge scored the run (`harness judge`), its probe verdict, and per model the judge's overall
    score with a 95 % Student-t interval over talks (repeats averaged first); [] for an unjudged run."""
    from harness.judge.columns import SCORE_COLUMNS

    df = run.ok
    if "judge_overall" not in df or not df["judge_overall"].notna().any():
        return []
    label = next((str(v) for v in df["judge"] if str(v).strip()), "?") if "judge" in df else "?"
    record = run.record.judges.get(label) if run.record is not None else None
    fit = record.fit if record is not None else None
    head = f"judge {label}"
    if record is not None:
        ref = (record.probes or {}).get("reference") or {}
        shas = ", ".join(f"{name} {sha[:12]}" for name, sha in record.prompts.items())
        probe = (
            f"reference probe {ref['successes']}/{ref['trials']} = {ref['rate']:.2f} "
            f"[95% Wilson {ref['ci_low']:.2f}-{ref['ci_high']:.2f}], needs >= {ref['threshold']:.2f}"
            if ref.get("trials")
            else "reference probe not run"
        )
        verdict = {True: "fit", False: "UNFIT: its scores are not evidence", None: "unvalidated"}[fit]
        head += f" (prompts {shas}; {probe}: {verdict})"
    lines = [head]
    stats = aggregate.group_metrics(df, list(SCORE_COLUMNS), by=("model",))
    for (model,), metrics in stats.items():
        ci = metrics["judge_overall"].ci
        if ci.n == 0:
            continue
        parts = ", ".join(
            f"{col.removeprefix('judge_')} {metrics[col].mean:.2f}"
            for col in SCORE_COLUMNS[:-1]
            if metrics[col].mean is not None
        )
        mark = " (UNFIT judge)" if fit is False else ""
        lines.append(f"judge score {model}: overall {ci} over {ci.n} talk(s){mark}; {parts}")
    return lines
