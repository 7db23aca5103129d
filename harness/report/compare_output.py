"""Render a set of comparisons as a terminal table (rich), Markdown, CSV or JSON.

Table and Markdown carry the like-for-like warning at the top, notes, the per-model tables and a footer
naming the test. CSV and JSON are the same rows as flat records on stdout; their warnings and notes go to
stderr so the data stays machine-readable.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from harness.report.compare import (
    IMPROVED,
    REGRESSION,
    TEST_NAME,
    Comparison,
    MetricRow,
    compare_runs,
    environment_mismatches,
    run_notes,
    verdict,
)
from harness.report.load import Run

WARNING_TITLE = "WARNING: runs are not like-for-like"
FORMATS = ("table", "md", "csv", "json")


@dataclass
class CompareResult:
    comparisons: list[Comparison]
    alpha: float
    threshold_pct: float
    mismatches: list[tuple[str, list[str]]] = field(default_factory=list)  # (heading, lines)
    notes: list[str] = field(default_factory=list)

    @property
    def rows(self) -> list[MetricRow]:
        return [r for c in self.comparisons for r in c.rows]

    @property
    def regressions(self) -> list[MetricRow]:
        return [r for c in self.comparisons for r in c.regressions]

    def footer(self) -> str:
        return (
            f"Values: mean over repeats per model x talk, then over the talks both runs have. "
            f"change = (new - baseline) / |baseline|. p: {TEST_NAME} on the per-sample values of those "
            f"matched talks; significant when p < {self.alpha:g}; n/a when a side has fewer than 2 samples. "
            f"{REGRESSION} = worse by more than {self.threshold_pct:g} % and significant; "
            f"{IMPROVED} = better by more than {self.threshold_pct:g} % and significant."
        )


def build(
    runs: Sequence[Run], metrics: Sequence[str], *, alpha: float, threshold_pct: float
) -> CompareResult:
    baseline, others = runs[0], runs[1:]
    result = CompareResult(comparisons=[], alpha=alpha, threshold_pct=threshold_pct)
    result.notes.extend(run_notes(runs))
    for other in others:
        comp = compare_runs(baseline, other, metrics, alpha=alpha, threshold_pct=threshold_pct)
        result.comparisons.append(comp)
        lines = environment_mismatches(baseline, other)
        if lines:
            result.mismatches.append((f"{other.label} vs baseline {baseline.label}", lines))
        if comp.only_baseline:
            result.notes.append(f"only in {baseline.label} (not compared): {', '.join(comp.only_baseline)}")
        if comp.only_other:
            result.notes.append(f"only in {other.label} (not compared): {', '.join(comp.only_other)}")
        result.notes.extend(comp.notes)
    return result


# --- number formatting ---------------------------------------------------------------------------


def fmt_value(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.4f}"


def fmt_change(c: float | None) -> str:
    return "n/a" if c is None else f"{c:+.1f}%"


def fmt_p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _p_eq(p: float | None) -> str:
    text = fmt_p(p)
    return text if text.startswith("<") else f"={text}"


def _cells(r: MetricRow) -> list[str]:
    return [
        r.metric,
        r.better or "?",
        fmt_value(r.baseline),
        fmt_value(r.new),
        fmt_change(r.change_pct),
        fmt_p(r.p_value),
        f"{r.n_baseline}/{r.n_new}",
        r.verdict,
    ]


HEADERS = ("metric", "better", "baseline", "new", "change", "p", "n base/new", "verdict")


def _groups(result: CompareResult) -> list[tuple[str, list[MetricRow]]]:
    out: list[tuple[str, list[MetricRow]]] = []
    for comp in result.comparisons:
        by_model: dict[str, list[MetricRow]] = {}
        for r in comp.rows:
            by_model.setdefault(r.model_label, []).append(r)
        for model, rows in by_model.items():
            out.append((f"{model}: {comp.other.label} vs baseline {comp.baseline.label}", rows))
    return out


def regression_lines(result: CompareResult, threshold_pct: float | None = None) -> list[str]:
    """One line per regression; `threshold_pct` re-judges the rows against another threshold."""
    thr = result.threshold_pct if threshold_pct is None else threshold_pct
    return [
        f"regression: {r.model_label} {r.metric} {fmt_change(r.change_pct)} "
        f"(p{_p_eq(r.p_value)}, {r.better} is better) in {r.run} vs {r.baseline_run}"
        for r in result.rows
        if verdict(r.better, r.change_pct, r.p_value, result.alpha, thr) == REGRESSION
    ]


# --- renderers -----------------------------------------------------------------------------------


def render_table(result: CompareResult, console: Console) -> None:
    if result.mismatches:
        console.print(WARNING_TITLE, style="bold yellow", markup=False, highlight=False)
        for heading, lines in result.mismatches:
            console.print(f"  {heading}:", style="yellow", markup=False, highlight=False)
            for line in lines:
                console.print(f"    - {line}", style="yellow", markup=False, highlight=False)
        console.print()
    for note in result.notes:
        console.print(f"note: {note}", markup=False, highlight=False)
    if result.notes:
        console.print()
    if not result.rows:
        console.print("No model is present in both runs: nothing to compare.", markup=False)
    for title, rows in _groups(result):
        # Text(), not str: model ids and providers may contain [brackets] that rich would eat as markup.
        table = Table(title=Text(title, style="bold"), title_justify="left", highlight=False)
        for i, h in enumerate(HEADERS):
            table.add_column(h, justify="right" if 2 <= i <= 6 else "left", no_wrap=i == 0)
        for r in rows:
            style = "bold red" if r.verdict == REGRESSION else ("green" if r.verdict == IMPROVED else None)
            table.add_row(*(Text(c) for c in _cells(r)), style=style)
        console.print(table)
    console.print(result.footer(), markup=False, highlight=False, style="dim")


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def render_md(result: CompareResult) -> str:
    out: list[str] = ["# harness compare", ""]
    if result.mismatches:
        out += [f"> **{WARNING_TITLE}**", ">"]
        for heading, lines in result.mismatches:
            out.append(f"> {_md_escape(heading)}:")
            out += [f"> - {_md_escape(line)}" for line in lines]
        out.append("")
    if result.notes:
        out += [f"- {_md_escape(n)}" for n in result.notes]
        out.append("")
    for title, rows in _groups(result):
        out += [f"## {_md_escape(title)}", ""]
        out.append("| " + " | ".join(HEADERS) + " |")
        out.append("|" + "|".join("---:" if 2 <= i <= 6 else "---" for i in range(len(HEADERS))) + "|")
        for r in rows:
            cells = [_md_escape(c) for c in _cells(r)]
            if r.verdict == REGRESSION:
                cells[-1] = f"**{cells[-1]}**"
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    out.append(f"_{result.footer()}_")
    return "\n".join(out) + "\n"


def records(result: CompareResult) -> list[dict[str, Any]]:
    recs = []
    for r in result.rows:
        rec = r.record()
        rec["significant"] = None if r.p_value is None else r.p_value < result.alpha
        for k, v in rec.items():
            if isinstance(v, float) and not math.isfinite(v):
                rec[k] = None  # JSON has no NaN/inf
        recs.append(rec)
    return recs


def render_json(result: CompareResult) -> str:
    return json.dumps(records(result), indent=2, ensure_ascii=False) + "\n"


def render_csv(result: CompareResult) -> str:
    buf = io.StringIO()
    columns = [*MetricRow.__dataclass_fields__, "significant"]
    pd.DataFrame(records(result), columns=columns).to_csv(buf, index=False)
    return buf.getvalue()


def side_text(result: CompareResult) -> str:
    """Warnings, notes and footer as plain text (stderr for csv/json)."""
    lines: list[str] = []
    if result.mismatches:
        lines.append(WARNING_TITLE)
        for heading, ls in result.mismatches:
            lines.append(f"  {heading}:")
            lines += [f"    - {line}" for line in ls]
    lines += [f"note: {n}" for n in result.notes]
    lines.append(result.footer())
    return "\n".join(lines) + "\n"
