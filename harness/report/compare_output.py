"""Render a set of comparisons as a terminal table (rich), Markdown, CSV or JSON.

Table and Markdown carry the like-for-like warning at the top, the code differences, notes, the per-model
tables and a footer naming the tests and the correction. CSV and JSON are the same rows as flat records on
stdout (each naming its test); their warnings and notes go to stderr so the data stays machine-readable.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from harness.report.compare import (
    CORRECTION,
    IMPROVED,
    NO_CHANGE,
    NOT_COMPARABLE,
    REGRESSION,
    TEST_NAMES,
    TEST_PAIRED,
    TEST_WELCH,
    Comparison,
    MetricRow,
    compare_runs,
    environment_mismatches,
    judge,
    nothing_comparable,
    run_notes,
    verdict,
    version_differences,
)
from harness.report.load import Run
from harness.results.schema import SPECS
from harness.scoring.stats import CI_METHOD
from harness.trackers.noise import canary_warning, leave_out_noisy, speed_metrics

WARNING_TITLE = "WARNING: runs are not like-for-like"
VERSIONS_TITLE = "code differs (what a comparison usually tests; not a reason to distrust it):"
FORMATS = ("table", "md", "csv", "json")
_SHORT_TEST = {TEST_PAIRED: "paired t", TEST_WELCH: "Welch", "": "-"}
NS_AFTER = "n.s. after Holm"  # the verdict's footnote word: explained in CompareResult.footer


@dataclass
class CompareResult:
    comparisons: list[Comparison]
    alpha: float
    threshold_pct: float
    force: bool = False
    mismatches: list[tuple[str, list[str]]] = field(default_factory=list)  # (heading, lines)
    versions: list[tuple[str, list[str]]] = field(default_factory=list)  # (heading, lines)
    notes: list[str] = field(default_factory=list)

    @property
    def rows(self) -> list[MetricRow]:
        return [r for c in self.comparisons for r in c.rows]

    @property
    def regressions(self) -> list[MetricRow]:
        return [r for c in self.comparisons for r in c.regressions]

    @property
    def n_tests(self) -> int:
        return sum(len(c.tested) for c in self.comparisons)

    def warning_lines(self) -> list[str]:
        if not self.mismatches:
            return []
        if self.force:
            return [f"{WARNING_TITLE} (--force: verdicts judged anyway)"]
        return [f'{WARNING_TITLE}: verdicts shown as "{NOT_COMPARABLE}" (--force judges them anyway)']

    def ok_reason(self, r: MetricRow) -> str:
        """Why a row is "ok" although it moved: not significant after the correction (the uncorrected p or
        the interval alone would have flagged it), or significant but within the threshold. '' otherwise."""
        if r.verdict != NO_CHANGE or r.p_holm is None or r.change_pct is None:
            return ""
        if r.p_holm >= self.alpha:
            excludes_zero = r.change_ci_lo is not None and r.change_ci_hi is not None and (
                r.change_ci_lo > 0 or r.change_ci_hi < 0
            )
            if (r.p_value is not None and r.p_value < self.alpha) or excludes_zero:
                return NS_AFTER
            return ""
        if abs(r.change_pct) <= self.threshold_pct:
            return f"within {self.threshold_pct:g} %"
        return ""

    def footer(self) -> str:
        thr = f"{self.threshold_pct:g} %"
        text = (
            "Values: mean over repeats per model x talk, then over the talks both runs have. "
            f"change: mean over those talks of (new / baseline - 1), with a 95 % {CI_METHOD} interval "
            "(uncorrected). "
            f"Tests: paired t = {TEST_NAMES[TEST_PAIRED]}; Welch = {TEST_NAMES[TEST_WELCH]}. "
            "Deterministic metrics (ROUGE, token counts) are one value per talk. "
        )
        if self.n_tests:
            text += (
                f"p Holm: {CORRECTION} over the {self.n_tests} test(s) the gate considers; significant when "
                f"p Holm < {self.alpha:g}. {REGRESSION} = worse by more than {thr} and significant; "
                f"{IMPROVED} = better by more than {thr} and significant; "
                f"ok ({NS_AFTER}) = the uncorrected p or the interval alone would flag the change, the "
                f"{CORRECTION}-adjusted p does not; ok (within {thr}) = significant but no larger than the "
                "threshold; n/a = no test (see note)."
            )
        else:
            text += "No test ran, so no correction applied and no verdict was judged (see the notes)."
        return text


def build(
    runs: Sequence[Run],
    metrics: Sequence[str],
    *,
    alpha: float,
    threshold_pct: float,
    force: bool = False,
    extra_mismatches: Callable[[Run, Run], list[str]] | None = None,
) -> CompareResult:
    """`extra_mismatches(baseline, other)`: more like-for-like lines beside `environment_mismatches`
    (compare --by device: the hardware differences, harness.fleet.bydevice)."""
    left = leave_out_noisy(runs, metrics)  # noisy samples out of the speed verdicts (harness.trackers.noise)
    runs = left.runs
    baseline, others = runs[0], runs[1:]
    result = CompareResult(comparisons=[], alpha=alpha, threshold_pct=threshold_pct, force=force)
    result.notes.extend(run_notes(runs))
    result.notes.extend(left.notes)
    for other in others:
        comp = compare_runs(baseline, other, metrics)
        for row in comp.rows:
            if row.metric in speed_metrics():
                row.noisy_left_out_baseline = left.counts.get((baseline.label, row.model), 0)
                row.noisy_left_out_new = left.counts.get((other.label, row.model), 0)
                row.note = left.note_for(baseline.label, other.label, row.model) or row.note
        if canary := canary_warning(baseline, other):
            result.notes.append(canary)
        heading = f"{other.label} vs baseline {baseline.label}"
        comp.mismatches = environment_mismatches(baseline, other)
        if extra_mismatches is not None:
            comp.mismatches += [m for m in extra_mismatches(baseline, other) if m not in comp.mismatches]
        comp.versions = version_differences(baseline, other)
        comp.comparable = force or not comp.mismatches
        result.comparisons.append(comp)
        if comp.mismatches:
            result.mismatches.append((heading, comp.mismatches))
        if comp.versions:
            result.versions.append((heading, comp.versions))
        if comp.only_baseline:
            result.notes.append(f"only in {baseline.label} (not compared): {', '.join(comp.only_baseline)}")
        if comp.only_other:
            result.notes.append(f"only in {other.label} (not compared): {', '.join(comp.only_other)}")
        result.notes.extend(comp.notes)
    judge(result.comparisons, alpha, threshold_pct)
    return result


# --- the gate ------------------------------------------------------------------------------------


def regression_lines(result: CompareResult, threshold_pct: float | None = None) -> list[str]:
    """One line per regression; `threshold_pct` re-judges the rows against another threshold."""
    thr = result.threshold_pct if threshold_pct is None else threshold_pct
    return [
        f"regression: {r.model_label} {r.metric} {fmt_change(r.change_pct)} "
        f"(p Holm{_p_eq(r.p_holm)}, {r.test}, {r.better} is better) in {r.run} vs {r.baseline_run}"
        for c in result.comparisons
        if c.comparable
        for r in c.rows
        if verdict(r.better, r.change_pct, r.p_holm, result.alpha, thr) == REGRESSION
    ]


def nothing_comparable_line(result: CompareResult) -> str | None:
    """One line naming why the gate could judge nothing, for every run where it could not; None else."""
    reasons = [why for comp in result.comparisons if (why := nothing_comparable(comp))]
    return "nothing comparable: " + "; ".join(reasons) if reasons else None


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


def fmt_ci(lo: float | None, hi: float | None) -> str:
    return "-" if lo is None or hi is None else f"[{lo:+.1f}, {hi:+.1f}]"


def fmt_p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _p_eq(p: float | None) -> str:
    text = fmt_p(p)
    return text if text.startswith("<") else f"={text}"


HEADERS = ("metric", "better", "baseline", "new", "change", "95% CI", "test", "p", "p Holm", "talks", "verdict")
_NUMERIC = range(2, 10)  # right-aligned columns


def _verdict_cell(r: MetricRow, reason: str) -> str:
    notes = [n for n in (reason, r.note if r.verdict in ("n/a", NOT_COMPARABLE, "ok") else "") if n]
    return r.verdict + (f" ({'; '.join(notes)})" if notes else "")


def metric_cell(metric: str) -> str:
    """A peak metric compares the mean of the sample peaks: said in its name, since the run's summary and
    the leaderboard show the largest sample (`peak_rss_mb_max`) instead."""
    spec = SPECS.get(metric)
    return f"{metric} (mean)" if spec is not None and spec.aggregate == "max" else metric


def _cells(r: MetricRow, reason: str = "") -> list[str]:
    return [
        metric_cell(r.metric),
        r.better or "?",
        fmt_value(r.baseline),
        fmt_value(r.new),
        fmt_change(r.change_pct),
        fmt_ci(r.change_ci_lo, r.change_ci_hi),
        _SHORT_TEST.get(r.test, r.test),
        fmt_p(r.p_value),
        fmt_p(r.p_holm),
        str(r.talks),
        _verdict_cell(r, reason),
    ]


def _groups(result: CompareResult) -> list[tuple[str, list[MetricRow]]]:
    out: list[tuple[str, list[MetricRow]]] = []
    for comp in result.comparisons:
        by_model: dict[str, list[MetricRow]] = {}
        for r in comp.rows:
            by_model.setdefault(r.model_label, []).append(r)
        for model, rows in by_model.items():
            out.append((f"{model}: {comp.other.label} vs baseline {comp.baseline.label}", rows))
    return out


# --- renderers -----------------------------------------------------------------------------------


def render_table(result: CompareResult, console: Console) -> None:
    def say(text: str, style: str | None = None) -> None:
        console.print(text, style=style, markup=False, highlight=False)

    if result.mismatches:
        for line in result.warning_lines():
            say(line, "bold yellow")
        for heading, lines in result.mismatches:
            say(f"  {heading}:", "yellow")
            for line in lines:
                say(f"    - {line}", "yellow")
        console.print()
    if result.versions:
        say(VERSIONS_TITLE)
        for heading, lines in result.versions:
            say(f"  {heading}: " + "; ".join(lines))
        console.print()
    for note in result.notes:
        say(f"note: {note}")
    if result.notes:
        console.print()
    if not result.rows:
        say("No model is present in both runs: nothing to compare.")
    for title, rows in _groups(result):
        # Text(), not str: model ids and providers may contain [brackets] that rich would eat as markup.
        table = Table(title=Text(title, style="bold"), title_justify="left", highlight=False)
        for i, h in enumerate(HEADERS):
            table.add_column(h, justify="right" if i in _NUMERIC else "left", no_wrap=i == 0)
        for r in rows:
            style = "bold red" if r.verdict == REGRESSION else ("green" if r.verdict == IMPROVED else None)
            table.add_row(*(Text(c) for c in _cells(r, result.ok_reason(r))), style=style)
        console.print(table)
    say(result.footer(), "dim")


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def render_md(result: CompareResult) -> str:
    out: list[str] = ["# harness compare", ""]
    if result.mismatches:
        out += [f"> **{_md_escape(line)}**" for line in result.warning_lines()] + [">"]
        for heading, lines in result.mismatches:
            out.append(f"> {_md_escape(heading)}:")
            out += [f"> - {_md_escape(line)}" for line in lines]
        out.append("")
    if result.versions:
        out += [VERSIONS_TITLE, ""]
        out += [f"- {_md_escape(h)}: {_md_escape('; '.join(ls))}" for h, ls in result.versions]
        out.append("")
    if result.notes:
        out += [f"- {_md_escape(n)}" for n in result.notes]
        out.append("")
    for title, rows in _groups(result):
        out += [f"## {_md_escape(title)}", ""]
        out.append("| " + " | ".join(HEADERS) + " |")
        out.append("|" + "|".join("---:" if i in _NUMERIC else "---" for i in range(len(HEADERS))) + "|")
        for r in rows:
            cells = [_md_escape(c) for c in _cells(r, result.ok_reason(r))]
            if r.verdict == REGRESSION:
                cells[-1] = f"**{cells[-1]}**"
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    out.append(f"_{result.footer()}_")
    return "\n".join(out) + "\n"


def records(result: CompareResult) -> list[dict[str, Any]]:
    recs = []
    for comp in result.comparisons:
        for r in comp.rows:
            rec = r.record()
            rec["significant"] = None if r.p_holm is None else r.p_holm < result.alpha
            rec["comparable"] = comp.comparable
            for k, v in rec.items():
                if isinstance(v, float) and not math.isfinite(v):
                    rec[k] = None  # JSON has no NaN/inf
            recs.append(rec)
    return recs


def render_json(result: CompareResult) -> str:
    return json.dumps(records(result), indent=2, ensure_ascii=False) + "\n"


def render_csv(result: CompareResult) -> str:
    buf = io.StringIO()
    columns = [*MetricRow.__dataclass_fields__, "significant", "comparable"]
    pd.DataFrame(records(result), columns=columns).to_csv(buf, index=False)
    return buf.getvalue()


def side_text(result: CompareResult) -> str:
    """Warnings, code differences, notes and footer as plain text (stderr for csv/json)."""
    lines: list[str] = list(result.warning_lines())
    for heading, ls in result.mismatches:
        lines.append(f"  {heading}:")
        lines += [f"    - {line}" for line in ls]
    if result.versions:
        lines.append(VERSIONS_TITLE)
        lines += [f"  {h}: " + "; ".join(ls) for h, ls in result.versions]
    lines += [f"note: {n}" for n in result.notes]
    lines.append(result.footer())
    return "\n".join(lines) + "\n"
