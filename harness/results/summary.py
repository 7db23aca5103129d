"""Aggregate a run's rows: per model x talk over repeats (summary.csv), and per model over talks
(summary_models.csv).

Per model x talk (summary.csv): mean, median, stdev and CV% of each metric over the repeats (only
status=ok rows). Per model: ROUGE means with a 95 % bootstrap confidence interval over talks (each talk
first averaged over its repeats, so repeats do not count as independent evidence of quality).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from harness.scoring import bootstrap_ci

METRICS = (
    "ttft_s",
    "prefill_tok_s",
    "decode_tok_s",
    "e2e_s",
    "peak_rss_mb",
    "rouge1_f",
    "rouge2_f",
    "rougeL_f",
)
QUALITY = ("rouge1_f", "rouge2_f", "rougeL_f")


@dataclass
class RunSummary:
    per_talk: pd.DataFrame
    per_model: list[dict[str, Any]]
    error_rows: int

    @property
    def run_json(self) -> dict[str, Any]:
        return {"per_model": self.per_model, "error_rows": self.error_rows}

    def lines(self, width: int = 150) -> list[str]:
        table = Table(
            title="per model x talk (mean ± stdev over repeats; CV% of decode)", title_justify="left"
        )
        for col in (
            "model",
            "talk",
            "n",
            "ttft s",
            "prefill tok/s",
            "decode tok/s",
            "CV%",
            "peak MiB",
            "ROUGE-L",
        ):
            table.add_column(col, justify="left" if col in ("model", "talk") else "right")
        for r in self.per_talk.to_dict("records"):
            table.add_row(
                r["model"],
                r["talk_id"],
                str(int(r["n"])),
                _ms(r, "ttft_s", ".3f"),
                _ms(r, "prefill_tok_s", ".1f"),
                _ms(r, "decode_tok_s", ".1f"),
                _f(r.get("decode_tok_s_cv_pct"), ".1f"),
                _f(r.get("peak_rss_mb_mean"), ".0f"),
                _ms(r, "rougeL_f", ".3f"),
            )
        models = Table(title="per model (ROUGE: mean over talks [95% bootstrap CI])", title_justify="left")
        for col in ("model", "talks", "ROUGE-1", "ROUGE-2", "ROUGE-L", "decode tok/s", "ttft s", "peak MiB"):
            models.add_column(col, justify="left" if col == "model" else "right")
        for m in self.per_model:
            models.add_row(
                m["model"],
                str(m["talks"]),
                m["rouge1_f_ci"],
                m["rouge2_f_ci"],
                m["rougeL_f_ci"],
                _f(m["decode_tok_s_mean"], ".1f"),
                _f(m["ttft_s_mean"], ".3f"),
                _f(m["peak_rss_mb_max"], ".0f"),
            )
        console = Console(width=width, no_color=True, highlight=False)
        with console.capture() as cap:
            console.print(table)
            console.print(models)
            if self.error_rows:
                console.print(f"{self.error_rows} sample(s) failed: see status/error in results.csv")
        return cap.get().rstrip("\n").splitlines()


def _f(v: Any, spec: str) -> str:
    return "-" if v is None or pd.isna(v) else format(v, spec)


def _ms(r: dict[str, Any], metric: str, spec: str) -> str:
    mean, sd = r.get(f"{metric}_mean"), r.get(f"{metric}_stdev")
    if mean is None or pd.isna(mean):
        return "-"
    return format(mean, spec) + ("" if sd is None or pd.isna(sd) else f" ± {format(sd, spec)}")


def aggregate_repeats(df: pd.DataFrame) -> pd.DataFrame:
    ok = df[df["status"] == "ok"]
    rows = []
    for (model, talk), group in ok.groupby(["model", "talk_id"], sort=False):
        row: dict[str, Any] = {"model": model, "talk_id": talk, "n": len(group)}
        for m in METRICS:
            values = pd.to_numeric(group[m], errors="coerce").dropna()
            mean = values.mean() if len(values) else None
            sd = values.std(ddof=1) if len(values) > 1 else None
            row[f"{m}_mean"] = mean
            row[f"{m}_median"] = values.median() if len(values) else None
            row[f"{m}_stdev"] = sd
            row[f"{m}_cv_pct"] = 100 * sd / mean if sd is not None and mean else None
        rows.append(row)
    return pd.DataFrame(rows)


def summarise_frame(df: pd.DataFrame) -> RunSummary:
    per_talk = aggregate_repeats(df)
    per_model = []
    for model in dict.fromkeys(df["model"]):
        sub = per_talk[per_talk["model"] == model] if len(per_talk) else per_talk
        entry: dict[str, Any] = {"model": model, "talks": len(sub)}
        for q in QUALITY:
            ci = bootstrap_ci(list(sub[f"{q}_mean"].astype(float))) if len(sub) else None
            entry[f"{q}_mean"] = ci.mean if ci else None
            entry[f"{q}_ci_lo"] = ci.lo if ci else None
            entry[f"{q}_ci_hi"] = ci.hi if ci else None
            entry[f"{q}_ci"] = str(ci) if ci and ci.n else "-"
        for m in ("decode_tok_s", "prefill_tok_s", "ttft_s"):
            entry[f"{m}_mean"] = float(sub[f"{m}_mean"].mean()) if len(sub) else None
        entry["peak_rss_mb_max"] = float(sub["peak_rss_mb_mean"].max()) if len(sub) else None
        per_model.append(entry)
    errors = int((df["status"] != "ok").sum())
    return RunSummary(per_talk=per_talk, per_model=per_model, error_rows=errors)


def summarise_run(run_dir: Path) -> RunSummary | None:
    """Write summary.csv beside results.csv and return the summary; None when there are no rows."""
    csv_path = run_dir / "results.csv"
    if not csv_path.is_file():
        return None
    df = pd.read_csv(csv_path, keep_default_na=False, na_values=[""])
    if df.empty:
        return None
    summary = summarise_frame(df)
    summary.per_talk.to_csv(run_dir / "summary.csv", index=False, float_format="%.6g")
    pd.DataFrame(summary.per_model).to_csv(run_dir / "summary_models.csv", index=False, float_format="%.6g")
    return summary
