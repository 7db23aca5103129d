"""Tables behind the report: ok samples labelled by series, per-series means, environment, summaries."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from harness.report.compare import mean_of_talk_means
from harness.report.load import Run, column_values, norm

# Summary-table columns: (column, heading). Means are over repeats per talk, then over talks.
SUMMARY_METRICS: tuple[tuple[str, str], ...] = (
    ("ttft_s", "TTFT s"),
    ("prefill_tok_s", "prefill tok/s"),
    ("decode_tok_s", "decode tok/s"),
    ("e2e_s", "e2e s"),
    ("peak_rss_mb", "peak RSS MiB"),
    ("itl_p50_ms", "ITL p50 ms"),
    ("rouge1_f", "ROUGE-1 F"),
    ("rouge2_f", "ROUGE-2 F"),
    ("rougeL_f", "ROUGE-L F"),
)


def _series_labeller(runs: Sequence[Run]) -> dict[tuple[str, str, str], str]:
    """(run, model, provider) -> display label: the model, plus provider/run only where needed."""
    keys: list[tuple[str, str, str]] = []
    for run in runs:
        df = run.results
        providers = (
            df["provider"].fillna("").astype(str) if "provider" in df else pd.Series("", index=df.index)
        )
        for model, provider in dict.fromkeys(zip(df["model"].astype(str), providers, strict=True)):
            keys.append((run.label, model, provider))
    per_model = Counter((r, m) for r, m, _ in keys)
    labels: dict[tuple[str, str, str], str] = {}
    for run_label, model, provider in keys:
        label = model
        if per_model[(run_label, model)] > 1 and provider:
            label += f" [{provider}]"
        if len(runs) > 1:
            label += f" @ {run_label}"
        labels[(run_label, model, provider)] = label
    return labels


def collect_samples(runs: Sequence[Run]) -> tuple[pd.DataFrame, list[str]]:
    """All rows of all runs with run/series columns, and the series in first-seen order."""
    labels = _series_labeller(runs)
    frames = []
    for run in runs:
        df = run.results.copy()
        df["run"] = run.label
        df["provider"] = df["provider"].fillna("").astype(str) if "provider" in df else ""
        df["model"] = df["model"].astype(str)
        df["series"] = [labels[(run.label, m, p)] for m, p in zip(df["model"], df["provider"], strict=True)]
        frames.append(df)
    samples = pd.concat(frames, ignore_index=True, sort=False)
    return samples, list(dict.fromkeys(labels.values()))


def summary_table(samples: pd.DataFrame, order: Sequence[str]) -> pd.DataFrame:
    """One row per series: counts, means of the headline metrics and the sample sd used for error bars."""
    rows = []
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
        for col, _ in SUMMARY_METRICS:
            row[col] = mean_of_talk_means(ok, col) if col in ok else None
            row[f"{col}_sd"] = float(ok[col].std()) if col in ok and ok[col].notna().sum() > 1 else None
        rows.append(row)
    return pd.DataFrame(rows)


def environment_rows(runs: Sequence[Run]) -> list[tuple[str, list[str]]]:
    """(field, value per run) for the report header; '' where a run does not record the field."""

    def packages(run: Run) -> str:
        pk = run.meta_get("environment", "packages")
        return ", ".join(f"{k} {v}" for k, v in sorted(pk.items())) if isinstance(pk, dict) else ""

    def ort(run: Run) -> str:
        o = run.meta_get("environment", "onnxruntime")
        if not isinstance(o, dict):
            return ""
        return f"{o.get('version', '')} ({', '.join(o.get('providers') or [])})"

    def cfg(*keys: str) -> Any:
        return lambda run: run.meta_get("config", *keys)

    def csv_or_cfg(col: str) -> Any:
        return lambda run: ",".join(column_values(run.results, col)) or run.meta_get("config", col)

    fields: list[tuple[str, Any]] = [
        ("results", lambda run: str(run.path)),
        ("started", lambda run: run.meta_get("started_at")),
        ("finished", lambda run: run.meta_get("finished_at")),
        ("harness version", lambda run: run.meta_get("harness_version")),
        ("git commit", lambda run: run.meta_get("git_commit")),
        ("command", lambda run: " ".join(map(str, run.meta_get("command") or []))),
        ("CPU", lambda run: run.meta_get("environment", "cpu", "brand")),
        ("arch", lambda run: run.meta_get("environment", "cpu", "arch")),
        (
            "cores (physical / logical)",
            lambda run: _pair(
                run.meta_get("environment", "cores_physical"), run.meta_get("environment", "cores_logical")
            ),
        ),
        ("RAM GB", lambda run: run.meta_get("environment", "ram_gb")),
        ("memory bandwidth GB/s", lambda run: run.meta_get("environment", "memory_bandwidth_gbs")),
        ("OS", lambda run: _pair(run.meta_get("environment", "os"), run.meta_get("environment", "kernel"))),
        ("python", lambda run: run.meta_get("environment", "python")),
        ("packages", packages),
        ("onnxruntime", ort),
        ("models", lambda run: ", ".join(dict.fromkeys(run.results["model"].astype(str)))),
        ("talks", lambda run: str(run.results["talk_id"].nunique())),
        ("repeats / warm-up", lambda run: _pair(cfg("repeats")(run), cfg("warmup")(run))),
        ("threads", csv_or_cfg("threads")),
        (
            "max / min new tokens",
            lambda run: _pair(csv_or_cfg("max_new_tokens")(run), csv_or_cfg("min_new_tokens")(run)),
        ),
        ("summary language", csv_or_cfg("summary_lang")),
        ("corpus", cfg("corpus")),
        (
            "mmap",
            lambda run: (
                ",".join(column_values(run.results, "mmap"))
                or ("" if cfg("no_mmap")(run) is None else str(not cfg("no_mmap")(run)).lower())
            ),
        ),
        ("samples ok / error", lambda run: f"{len(run.ok)} / {run.n_error}"),
    ]
    out = []
    for name, get in fields:
        values = [_text(get(run)) for run in runs]
        if any(values):
            out.append((name, values))
    return out


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
            summary = TalkSummary(
                series=series,
                prediction=str(rec.get("prediction") or ""),
                status=status,
                repeat=rec.get("repeat"),
                summary_lang=str(rec.get("summary_lang") or ""),
                rouge_l=None if rouge is None or pd.isna(rouge) else float(rouge),
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
