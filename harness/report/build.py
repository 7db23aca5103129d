"""`write_report`: runs -> report.html (self-contained) + report.md with its PNGs beside it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from harness import safefs
from harness.report import plots, sweeps
from harness.report.compare import run_notes
from harness.report.data import collect_samples, environment_rows, summary_table, talk_blocks
from harness.report.load import Run
from harness.report.render import DEGENERATE_MARK, ReportFigure, render_html, render_md
from harness.results.schema import SPECS

HTML_NAME = "report.html"
MD_NAME = "report.md"
MAX_ERROR_ROWS = 200


def short_labels(summary: pd.DataFrame) -> dict[str, str]:
    """Series -> label for a point in a plot: the series without its ` @ run` suffix (the marker shows
    the run), so labels stay short enough not to collide; ` †` where its output is mostly degenerate."""
    out = {}
    flags = summary["mostly_degenerate"] if "mostly_degenerate" in summary else [False] * len(summary)
    for series, run, flagged in zip(summary["series"], summary["run"], flags, strict=True):
        suffix = f" @ {run}"
        label = series[: -len(suffix)] if series.endswith(suffix) else series
        out[series] = label + (f" {DEGENERATE_MARK}" if flagged else "")
    return out


def build_figures(samples: pd.DataFrame, order: Sequence[str], summary: pd.DataFrame) -> list[ReportFigure]:
    ok = samples[samples["status"] == "ok"]
    colors, markers = plots.series_styles(
        dict(zip(summary["series"], summary["model"], strict=True)),
        dict(zip(summary["series"], summary["run"].astype(str), strict=True)),
    )
    several_runs = summary["run"].nunique() > 1
    return [
        ReportFigure(
            "report-quality-vs-speed",
            "Quality vs decode speed",
            "Each point is a model: mean ROUGE-L F against mean decode speed, bars one standard deviation "
            "over samples. Ringed points form the Pareto front: no other model is both faster and better"
            + (
                " (computed within each run). Colour = model, marker shape = run."
                if several_runs
                else "."
            )
            + " The quality axis starts at zero. A model marked † in the summary table mostly produced "
            "degenerate output: its ROUGE is not a summary score.",
            plots.quality_vs_speed(summary, colors, markers=markers, labels=short_labels(summary)),
            "No sample has both rougeL_f and decode_tok_s (unscored run?): no quality/speed plot.",
        ),
        ReportFigure(
            "report-peak-memory",
            "Peak memory",
            "Mean of the worker's peak resident set size per sample; the tick marks the largest sample. "
            "With memory-mapped weights (mmap) file pages count in RSS.",
            plots.peak_memory(ok, order, colors),
            "No peak_rss_mb values: no memory plot.",
        ),
        ReportFigure(
            "report-ttft",
            "Time to first token",
            "Distribution of TTFT (prompt submitted to first generated token) over all talks and repeats.",
            plots.ttft_distribution(ok, order, colors, markers=markers),
            "No ttft_s values: no TTFT plot.",
        ),
        ReportFigure(
            "report-itl",
            "Per-token latency",
            "Box: each sample's median inter-token latency; markers: each sample's p50, p90 and p99 over its "
            "decode steps, which show the tail that a mean decode rate hides.",
            plots.itl_distribution(ok, order, colors),
            "No itl_p50_ms values: no per-token latency plot.",
        ),
        *sweep_figures(samples),
    ]


def sweep_figures(samples: pd.DataFrame) -> list[ReportFigure]:
    """Decode speed against each swept numeric setting (harness.report.sweeps), one line per model."""
    swept = sweeps.swept_settings(samples)
    metric, better = sweeps.SWEEP_METRIC, SPECS[sweeps.SWEEP_METRIC].better
    figures = []
    for setting in swept:
        setting_label, metric_label = sweeps.axis_label(setting), sweeps.axis_label(metric)
        figures.append(
            ReportFigure(
                f"report-sweep-{setting.replace('_', '-')}",
                f"{metric_label} vs {setting}",
                f"Mean {metric} at each swept value of {setting}: mean over talks of the per-talk means, bars "
                "a 95% Student-t interval over talks. One line per model"
                + (" and combination of the other swept settings (line style)" if len(swept) > 1 else "")
                + ".",
                plots.metric_vs_setting(sweeps.sweep_lines(samples, setting, metric, swept), setting_label,
                                        metric_label, better),
                f"No {metric} values at several {setting} values: no sweep plot.",
            )
        )
    return figures


def write_report(runs: Sequence[Run], out_dir: Path) -> tuple[Path, Path]:
    """Write report.html, report.md and the md's PNGs into out_dir; return (html, md) paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    samples, order = collect_samples(runs)
    summary = summary_table(samples, order)
    figures = build_figures(samples, order, summary)
    blocks = talk_blocks(runs, samples, order)
    errors = samples[samples["status"] != "ok"].head(MAX_ERROR_ROWS)
    notes = run_notes(runs)
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    run_ids = [r.label for r in runs]
    env = environment_rows(runs)

    image_names: dict[str, str] = {}
    for fig in figures:
        if fig.png is not None:
            name = f"{fig.slug}.png"
            safefs.write_atomic(out_dir / name, fig.png)  # never through a planted link (harness.safefs)
            image_names[fig.slug] = name
    html_path = out_dir / HTML_NAME
    md_path = out_dir / MD_NAME
    safefs.write_atomic(
        html_path,
        render_html(
            run_ids=run_ids,
            generated=generated,
            env=env,
            summary=summary,
            figures=figures,
            talks=blocks,
            errors=errors,
            notes=notes,
        ),
        encoding="utf-8",
    )
    safefs.write_atomic(
        md_path,
        render_md(
            run_ids=run_ids,
            generated=generated,
            env=env,
            summary=summary,
            figures=figures,
            image_names=image_names,
            talks=blocks,
            errors=errors,
            notes=notes,
        ),
        encoding="utf-8",
    )
    return html_path, md_path
