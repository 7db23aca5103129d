"""Tables behind the report: ok samples labelled by series, per-series means, environment, summaries."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from harness.report.load import Run, column_values, norm
from harness.results import aggregate
from harness.results.record import Environment, RunRecord
from harness.results.schema import SPECS, view
from harness.results.summary import peak_heading
from harness.scoring.signals import MOSTLY_DEGENERATE, is_degenerate
from harness.trackers.noise import noisy_flags

# Summary-table columns: (column, heading), the schema's "report" view, measurements before quality scores.
# Means are over repeats per talk, then over talks (harness.results.aggregate).
# A peak metric's mean over samples is headed "peak RSS mean MiB": the run's own per-model table and the
# leaderboard show the largest sample instead, named "max" (harness.results.summary.peak_heading).
SUMMARY_METRICS: tuple[tuple[str, str], ...] = tuple(
    (m, peak_heading(m, "mean")) for m in sorted(view("report"), key=lambda m: SPECS[m].deterministic)
)


def _column(df: pd.DataFrame, name: str) -> pd.Series:
    return df[name].fillna("").astype(str) if name in df else pd.Series("", index=df.index)


def _series_labeller(runs: Sequence[Run]) -> dict[tuple[str, str, str, str, str], str]:
    """(run, device, model, provider, sweep) -> display label: the model, plus provider, config (the swept
    settings, e.g. `threads=2`), device (a fleet run: `on a`) and run only where needed."""
    keys: list[tuple[str, str, str, str, str]] = []
    for run in runs:
        df = run.results
        rows = zip(
            _column(df, "device"), df["model"].astype(str), _column(df, "provider"), _column(df, "sweep"), strict=True
        )
        for device, model, provider, sweep in dict.fromkeys(rows):
            keys.append((run.label, device, model, provider, sweep))
    providers = {(r, m): {p for r2, _, m2, p, _ in keys if (r2, m2) == (r, m)} for r, _, m, _, _ in keys}
    devices = {r: {d for r2, d, _, _, _ in keys if r2 == r} for r, *_ in keys}
    labels: dict[tuple[str, str, str, str, str], str] = {}
    for run_label, device, model, provider, sweep in keys:
        label = model
        if len(providers[(run_label, model)]) > 1 and provider:
            label += f" [{provider}]"
        if sweep:
            label += f" [{sweep}]"
        if len(devices[run_label]) > 1 and device:  # a fleet run: one series per device, never pooled
            label += f" on {device}"
        if len(runs) > 1:
            label += f" @ {run_label}"
        labels[(run_label, device, model, provider, sweep)] = label
    return labels


def collect_samples(runs: Sequence[Run]) -> tuple[pd.DataFrame, list[str]]:
    """All rows of all runs with run/series columns, and the series in first-seen order."""
    labels = _series_labeller(runs)
    frames = []
    for run in runs:
        df = run.results.copy()
        df["run"] = run.label
        df["device"] = _column(df, "device")
        df["provider"] = _column(df, "provider")
        df["sweep"] = _column(df, "sweep")
        df["model"] = df["model"].astype(str)
        df["series"] = [
            labels[(run.label, d, m, p, w)]
            for d, m, p, w in zip(df["device"], df["model"], df["provider"], df["sweep"], strict=True)
        ]
        frames.append(df)
    samples = pd.concat(frames, ignore_index=True, sort=False)
    return samples, list(dict.fromkeys(labels.values()))


def _flag(value: Any) -> bool | None:
    """A results.csv boolean cell (`true`/`false`, bool, 1/0) as bool; None when blank or unknown."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = norm(value).lower()
    return {"true": True, "1": True, "false": False, "0": False}.get(text)


def _rate(value: Any) -> float | None:
    try:
        rate = float(value)
    except (TypeError, ValueError):
        return None
    return None if rate != rate else rate


def degenerate_flags(rows: pd.DataFrame) -> pd.Series:
    """Per row: True/False/None (unknown). The `degenerate` column where the run wrote it, else the same
    rule (`is_degenerate`) applied to stop_reason, repetition_rate and lang_match (runs from before the
    column existed)."""
    flags = pd.Series(
        [_flag(v) for v in rows["degenerate"]] if "degenerate" in rows else [None] * len(rows),
        index=rows.index,
        dtype=object,
    )
    for pos in np.flatnonzero(flags.isna().to_numpy()):  # derived only where the run wrote no verdict
        r = rows.iloc[pos]
        flags.iloc[pos] = is_degenerate(
            str(r.get("stop_reason", "") or ""), _rate(r.get("repetition_rate")), _flag(r.get("lang_match"))
        )
    return flags


def summary_table(samples: pd.DataFrame, order: Sequence[str]) -> pd.DataFrame:
    """One row per series: counts, means of the headline metrics and the sample sd used for error bars."""
    rows = []
    metrics = [col for col, _ in SUMMARY_METRICS]
    stats = aggregate.group_metrics(samples, metrics, by=("series",))
    for series in order:
        all_rows = samples[samples["series"] == series]
        ok = all_rows[all_rows["status"] == "ok"]
        first = all_rows.iloc[0]
        row: dict[str, Any] = {
            "series": series,
            "run": first["run"],
            "model": first["model"],
            "provider": first.get("provider", ""),
            "backend": first.get("backend", ""),
            "quant": first.get("quant", ""),
            "talks": ok["talk_id"].nunique(),
            "n_ok": len(ok),
            "n_error": len(all_rows) - len(ok),
        }
        flags = degenerate_flags(ok)
        row["n_judged"] = int(flags.notna().sum())  # ok samples with a verdict (scored)
        row["n_degenerate"] = int(sum(flag is True for flag in flags))
        row["mostly_degenerate"] = bool(
            row["n_judged"] and row["n_degenerate"] / row["n_judged"] > MOSTLY_DEGENERATE
        )
        row["n_noisy"] = int(noisy_flags(ok).sum())  # ran on a busy machine (harness.trackers.noise)
        group = stats.get((series,), {})
        for col in metrics:
            row[col] = group[col].mean if col in group else None
            row[f"{col}_sd"] = group[col].sd if col in group else None  # over samples: error bars
        rows.append(row)
    return pd.DataFrame(rows)


def environment_rows(runs: Sequence[Run]) -> list[tuple[str, list[str]]]:
    """(field, value per run) for the report header; '' where a run does not record the field."""

    def rec(run: Run) -> RunRecord:
        return run.record or RunRecord()  # a bare results.csv: every run.json field empty

    def ort(run: Run) -> str:
        o = rec(run).environment.onnxruntime
        return f"{o.version or ''} ({', '.join(o.providers)})" if o is not None else ""

    def csv_or_cfg(col: str) -> Callable[[Run], Any]:
        return lambda run: ",".join(column_values(run.results, col)) or getattr(rec(run).config, col)

    def env(run: Run) -> Environment:
        return rec(run).environment

    fields: list[tuple[str, Callable[[Run], Any]]] = [
        ("results", lambda run: str(run.path)),
        ("started", lambda run: rec(run).started_at),
        ("finished", lambda run: rec(run).finished_at),
        ("harness version", lambda run: rec(run).harness_version),
        ("git commit", lambda run: rec(run).git_commit),
        ("command", lambda run: _command(rec(run).command)),
        ("CPU", lambda run: env(run).cpu.description()),
        ("arch", lambda run: env(run).cpu.arch),
        ("cores (physical / logical)", lambda run: _pair(env(run).cores_physical, env(run).cores_logical)),
        ("RAM GB", lambda run: env(run).ram_gb),
        ("memory bandwidth GB/s", lambda run: env(run).memory_bandwidth_gbs),
        ("OS", lambda run: _pair(env(run).os, env(run).kernel)),
        ("python", lambda run: env(run).python),
        # Older runs recorded absent packages as None: not installed is not worth a row entry.
        ("packages", lambda run: ", ".join(f"{k} {v}" for k, v in sorted(env(run).installed_packages().items()))),
        ("onnxruntime", ort),
        ("models", lambda run: ", ".join(dict.fromkeys(run.results["model"].astype(str)))),
        ("talks", lambda run: str(run.results["talk_id"].nunique())),
        ("repeats / warm-up", lambda run: _pair(rec(run).config.repeats, rec(run).config.warmup)),
        ("threads", csv_or_cfg("threads")),
        (
            "max / min new tokens",
            lambda run: _pair(csv_or_cfg("max_new_tokens")(run), csv_or_cfg("min_new_tokens")(run)),
        ),
        ("summary language", csv_or_cfg("summary_lang")),
        ("corpus", lambda run: rec(run).config.corpus),
        ("mmap", lambda run: ",".join(column_values(run.results, "mmap")) or norm(rec(run).config.mmap)),
        ("samples ok / error", lambda run: f"{len(run.ok)} / {run.n_error}"),
    ]
    out = []
    for name, get in fields:
        values = [_text(get(run)) for run in runs]
        if any(values):
            out.append((name, values))
    return out

def _command(argv: Any) -> str:
    """The recorded command line; `…/harness/__main__.py` (older runs) shown as `python -m harness`."""
    if not isinstance(argv, list) or not argv:
        return ""
    words = [str(a) for a in argv]
    if words[0].replace("\\", "/").endswith("harness/__main__.py"):
        words = ["python", "-m", "harness", *words[1:]]
    return shlex.join(words)


def _pair(a: Any, b: Any) -> str:
    a, b = _text(a), _text(b)
    return f"{a} / {b}" if a or b else ""


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return norm(value)
    return str(value)


@dataclass
class TalkSummary:
    series: str
    prediction: str
    status: str
    repeat: Any
    summary_lang: str
    rouge_l: float | None
    stop_reason: str = ""
    repetition_rate: float | None = None
    degenerate: bool | None = None


@dataclass
class TalkBlock:
    talk_id: str
    references: list[str]
    source: str
    summaries: list[TalkSummary]


def talk_blocks(runs: Sequence[Run], samples: pd.DataFrame, order: Sequence[str]) -> list[TalkBlock]:
    """Per talk: references and, per series, the summary of its first ok repeat (or its first record)."""
    blocks: dict[str, TalkBlock] = {}
    chosen: dict[tuple[str, str], tuple[tuple[int, int], TalkSummary]] = {}
    for run in runs:
        rows = samples[samples["run"] == run.label]
        index = {
            (str(m), str(t), norm(r)): i
            for i, m, t, r in zip(rows.index, rows["model"], rows["talk_id"], rows["repeat"], strict=True)
        }
        for rec in run.summaries:
            talk = str(rec.get("talk_id", ""))
            model = str(rec.get("model", ""))
            block = blocks.setdefault(talk, TalkBlock(talk, [], "", []))
            if not block.references and isinstance(rec.get("references"), list):
                block.references = [str(r) for r in rec["references"]]
            if not block.source and isinstance(rec.get("source"), str):
                block.source = rec["source"]
            i = index.get((model, talk, norm(rec.get("repeat"))))
            row = samples.loc[i] if i is not None else None
            series = (
                row["series"]
                if row is not None
                else next((s for s in order if s == model or s.startswith(f"{model} ")), model)
            )
            status = str(rec.get("status") or (row["status"] if row is not None else ""))
            rouge = row.get("rougeL_f") if row is not None else None
            degenerate = degenerate_flags(samples.loc[[i]]).iloc[0] if i is not None else None
            summary = TalkSummary(
                series=series,
                prediction=str(rec.get("prediction") or ""),
                status=status,
                repeat=rec.get("repeat"),
                summary_lang=str(rec.get("summary_lang") or ""),
                rouge_l=None if rouge is None or pd.isna(rouge) else float(rouge),
                stop_reason=str(row.get("stop_reason", "") or "") if row is not None else "",
                repetition_rate=_rate(row.get("repetition_rate")) if row is not None else None,
                degenerate=degenerate,
            )
            try:
                rep = int(rec.get("repeat", 0))
            except (TypeError, ValueError):
                rep = 0
            rank = (0 if status == "ok" else 1, rep)  # prefer an ok sample, then the earliest repeat
            key = (series, talk)
            if key not in chosen or rank < chosen[key][0]:
                chosen[key] = (rank, summary)
    position = {s: i for i, s in enumerate(order)}
    for (_series, talk), (_, summary) in chosen.items():
        blocks[talk].summaries.append(summary)
    for block in blocks.values():
        block.summaries.sort(key=lambda s: position.get(s.series, len(position)))
    return list(blocks.values())
