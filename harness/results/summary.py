"""What a run prints at its end and writes beside results.csv: summary.csv and summary_models.csv.

Per model x talk (summary.csv): mean, median, stdev and CV% of each summary metric over the repeats (only
status=ok rows). Per model (summary_models.csv, and run.json -> summary): each summary metric's mean over
talks of the talk means with a 95 % Student-t interval over the talks (repeats are not independent evidence
about a model: talks are), the largest single sample for peak metrics (`peak_rss_mb_max`), and, where the
rows have them, how many outputs are degenerate and the mean prompt tokens per input character.

Peak metrics have two aggregates with two names everywhere (`peak_heading`): `peak_rss_mb_max` / "peak RSS
max" is the largest sample, `peak_rss_mb_mean` / "peak RSS mean" the mean of the per-sample peaks (the
report and compare use the mean). A sample's peak starts from the worker's RSS at its start (see the
peak_rss_mb column), so memory an earlier, longer sample left resident counts in later samples too.

Which metrics: the schema's "summary" view (harness.results.schema). How they are aggregated:
harness.results.aggregate, shared with score, compare and report.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness import safefs
from harness.results import aggregate
from harness.results.durable import committed_csv_text, stderr_warning
from harness.results.layout import RunFiles
from harness.results.schema import SPECS, view
from harness.scoring.signals import MOSTLY_DEGENERATE
from harness.scoring.stats import CI_METHOD

METRICS: tuple[str, ...] = view("summary")
# Columns newer rows carry: shown per model when the rows have them, skipped for older CSVs.
DEGENERATE = "degenerate"
TOKENS_PER_CHAR = "tokens_per_char"
OPTIONAL: tuple[str, ...] = (DEGENERATE, TOKENS_PER_CHAR)
# Number format per unit in the printed tables.
_FORMAT = {"s": ".3f", "tok/s": ".1f", "MiB": ".0f", "0-1": ".3f"}
# The printed per-model table shows these (summary_models.csv has every summary metric).
_MODEL_TABLE: tuple[str, ...] = tuple(
    m
    for m in (
        "ttft_s", "decode_tok_s", "peak_rss_mb", "rouge1_f", "rouge2_f", "rougeL_f",
        # How much of the summary is copied from the source (harness.scoring.extractive): ROUGE rewards copying.
        # Density and unsupported content are in summary_models.csv and the report.
        "extractive_coverage",
    )
    if m in METRICS
)


def peak_heading(metric: str, which: str) -> str:
    """A column heading that says which aggregate of a peak metric it shows: `peak RSS max MiB` (the largest
    sample: this summary's per-model table, summary_models.csv `peak_rss_mb_max`, the leaderboard) or
    `peak RSS mean MiB` (the mean of the sample peaks: the per-talk table, the report, compare). Other
    metrics keep their schema heading."""
    spec = SPECS[metric]
    if spec.aggregate != "max":
        return spec.heading
    unit = f" {spec.unit}" if spec.unit and spec.unit != "0-1" else ""
    return f"{spec.label or spec.name} {which}{unit}"


@dataclass
class RunSummary:
    per_talk: pd.DataFrame
    per_model: list[dict[str, Any]]
    error_rows: int

    @property
    def run_json(self) -> dict[str, Any]:
        return {"per_model": self.per_model, "error_rows": self.error_rows}

    def lines(self, width: int = 150) -> list[str]:
        console = Console(width=width, no_color=True, highlight=False)
        with console.capture() as cap:
            console.print(self._talk_table())
            console.print(self._model_table())
            for note in degenerate_notes(self.per_model):
                console.print(f"note: {note}", markup=False, soft_wrap=True)
            if self.error_rows:
                console.print(f"{self.error_rows} sample(s) failed: see status/error in results.csv")
        return cap.get().rstrip("\n").splitlines()

    def _talk_table(self) -> Table:
        table = Table(
            title="per model x talk (mean ± stdev over repeats; CV% of decode)", title_justify="left"
        )
        heads = ("model", "talk", "n", "ttft s", "prefill tok/s", "decode tok/s", "CV%", "peak RSS mean MiB", "ROUGE-L")
        for col in heads:
            table.add_column(col, justify="left" if col in ("model", "talk") else "right")
        by = [k for k in ("model", *aggregate.CONFIG_KEYS) if k in self.per_talk.columns]
        for r in self.per_talk.to_dict("records"):
            table.add_row(
                escape(aggregate.group_name(tuple(str(r[k]) for k in by), by)),  # "[...]" is not markup
                r["talk_id"],
                str(int(r["n"])),
                _ms(r, "ttft_s", ".3f"),
                _ms(r, "prefill_tok_s", ".1f"),
                _ms(r, "decode_tok_s", ".1f"),
                _f(r.get("decode_tok_s_cv_pct"), ".1f"),
                _f(r.get("peak_rss_mb_mean"), ".0f"),
                _ms(r, "rougeL_f", ".3f"),
            )
        return table

    def _model_table(self) -> Table:
        title = (
            f"per model (mean over talks of the per-talk means; quality ± 95% {CI_METHOD} CI over talks; "
            "peak RSS max: largest sample)"
        )
        table = Table(title=title, title_justify="left")
        table.add_column("model", justify="left", no_wrap=True)
        table.add_column("talks", justify="right")
        for m in _MODEL_TABLE:
            table.add_column(peak_heading(m, "max"), justify="right")
        keys = {DEGENERATE: DEGENERATE, TOKENS_PER_CHAR: f"{TOKENS_PER_CHAR}_mean"}
        shown = [c for c in OPTIONAL if any(keys[c] in entry for entry in self.per_model)]
        for c in shown:
            table.add_column("degenerate" if c == DEGENERATE else "tok/char", justify="right")
        for entry in self.per_model:
            cells = [escape(_entry_name(entry)), str(entry["talks"])]
            for m in _MODEL_TABLE:
                spec = SPECS[m]
                fmt = _FORMAT.get(spec.unit, ".4g")
                if spec.aggregate == "max":
                    cells.append(_f(entry.get(f"{m}_max"), fmt))
                elif spec.deterministic:
                    cells.append(_ci(entry, m, fmt))
                else:
                    cells.append(_f(entry.get(f"{m}_mean"), fmt))
            if DEGENERATE in shown:
                cells.append(
                    f"{entry[DEGENERATE]}/{entry[f'{DEGENERATE}_of']}" if DEGENERATE in entry else "-"
                )
            if TOKENS_PER_CHAR in shown:
                cells.append(_f(entry.get(f"{TOKENS_PER_CHAR}_mean"), ".2f"))
            table.add_row(*cells)
        return table


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _f(v: Any, spec: str) -> str:
    return "-" if _missing(v) else format(v, spec)


def _ms(r: dict[str, Any], metric: str, spec: str) -> str:
    mean, sd = r.get(f"{metric}_mean"), r.get(f"{metric}_stdev")
    if _missing(mean):
        return "-"
    return format(mean, spec) + ("" if _missing(sd) else f" ± {format(sd, spec)}")


def _ci(entry: dict[str, Any], metric: str, spec: str) -> str:
    mean, lo, hi = (entry.get(f"{metric}_{k}") for k in ("mean", "ci_lo", "ci_hi"))
    if _missing(mean):
        return "-"
    if _missing(lo) or _missing(hi):
        return format(mean, spec)
    return f"{format(mean, spec)} ± {format((hi - lo) / 2, spec)}"  # a t interval is symmetric


def degenerate_notes(per_model: list[dict[str, Any]]) -> list[str]:
    """One caveat per model whose outputs are mostly degenerate: its ROUGE does not measure summaries.

    A sweep has one entry per model x config; the caveat is about the model, so its flagged configs share
    one line ("in 4 of 4 configs") instead of one near-identical line each."""
    flagged: dict[str, list[dict[str, Any]]] = {}
    configs: dict[str, int] = {}
    for entry in per_model:
        model = str(entry["model"])
        configs[model] = configs.get(model, 0) + 1
        n, of = entry.get(DEGENERATE), entry.get(f"{DEGENERATE}_of")
        if n is not None and of and n > MOSTLY_DEGENERATE * of:
            flagged.setdefault(model, []).append(entry)
    notes = []
    for model, entries in flagged.items():
        n = sum(int(e[DEGENERATE]) for e in entries)
        of = sum(int(e[f"{DEGENERATE}_of"]) for e in entries)
        if configs[model] > 1:
            name = f"{model} (in {len(entries)} of {configs[model]} configs)"
        else:
            name = _entry_name(entries[0])
        notes.append(
            f"{name}: {n}/{of} outputs degenerate (looping into the token cap, or in the wrong "
            "language); its ROUGE measures copied text, not summaries"
        )
    return notes


def _entry_name(entry: dict[str, Any]) -> str:
    return f"{entry['model']} [{entry['sweep']}]" if entry.get("sweep") else str(entry["model"])


def per_model_entries(df: pd.DataFrame) -> list[dict[str, Any]]:
    """summary_models.csv rows: one per model (x config in a sweep), in first-seen order."""
    by = aggregate.model_keys(df)
    optional = [c for c in OPTIONAL if c in df.columns and aggregate.has_values(aggregate.ok_rows(df), c)]
    stats = aggregate.group_metrics(df, [*METRICS, *optional], by=by)
    talks = aggregate.talk_means(df, [], by=by)
    n_talks: dict[tuple[str, ...], int] = {}
    for key in zip(*(talks[k].astype(str) for k in by), strict=True):
        n_talks[key] = n_talks.get(key, 0) + 1
    entries = []
    for key in dict.fromkeys(zip(*(df[k].astype(str) for k in by), strict=True)):
        entry: dict[str, Any] = dict(zip(by, key, strict=True))
        entry["talks"] = n_talks.get(key, 0)
        group = stats.get(key, {})
        for m in METRICS:
            g = group.get(m)
            entry[f"{m}_mean"] = g.mean if g else None
            entry[f"{m}_ci_lo"] = _nan_none(g.ci.lo) if g else None
            entry[f"{m}_ci_hi"] = _nan_none(g.ci.hi) if g else None
            if SPECS[m].aggregate == "max":
                entry[f"{m}_max"] = g.max if g else None
        if DEGENERATE in optional and DEGENERATE in group:
            entry[DEGENERATE] = int(group[DEGENERATE].total)
            entry[f"{DEGENERATE}_of"] = group[DEGENERATE].samples
        if TOKENS_PER_CHAR in optional and TOKENS_PER_CHAR in group:
            entry[f"{TOKENS_PER_CHAR}_mean"] = group[TOKENS_PER_CHAR].mean
        entries.append(entry)
    return entries


def _nan_none(x: float) -> float | None:
    return None if math.isnan(x) else x


def summarise_frame(df: pd.DataFrame) -> RunSummary:
    return RunSummary(
        per_talk=aggregate.per_talk_stats(df, METRICS, by=aggregate.model_keys(df)),
        per_model=per_model_entries(df),
        error_rows=len(df) - len(aggregate.ok_rows(df)),
    )


def summarise_run(run_dir: Path) -> RunSummary | None:
    """Write summary.csv and summary_models.csv beside results.csv and return the summary; None when there
    are no rows."""
    files = RunFiles(run_dir)
    if not files.results_csv.is_file():
        return None
    text = committed_csv_text(files.results_csv, warn=stderr_warning)
    df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    if df.empty:
        return None
    summary = summarise_frame(df)
    # Written whole through a fresh temporary and a rename (harness.safefs): a summary.csv planted as a link
    # to another file is refused, never written through.
    safefs.write_atomic(files.summary_csv, summary.per_talk.to_csv(index=False, float_format="%.6g"))
    safefs.write_atomic(
        files.summary_models_csv, pd.DataFrame(summary.per_model).to_csv(index=False, float_format="%.6g")
    )
    return summary
