"""`write_report`: runs -> report.html (self-contained) + report.md with its PNGs beside it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from harness.report import plots
from harness.report.compare import run_notes
from harness.report.data import collect_samples, environment_rows, summary_table, talk_blocks
from harness.report.load import Run
from harness.report.render import ReportFigure, render_html, render_md

HTML_NAME = "report.html"
MD_NAME = "report.md"
MAX_ERROR_ROWS = 200


def build_figures(samples: pd.DataFrame, order: Sequence[str], summary: pd.DataFrame) -> list[ReportFigure]:
    ok = samples[samples["status"] == "ok"]
    colors = plots.palette(order)
    return [
        ReportFigure(
            "report-quality-vs-speed",
            "Quality vs decode speed",
            "Each point is a model: mean ROUGE-L F against mean decode speed, bars one standard deviation "
            "over samples. Ringed points form the Pareto front: no other model is both faster and better.",
            plots.quality_vs_speed(summary, colors),
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
            plots.ttft_distribution(ok, order, colors),
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
    ]


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
            (out_dir / name).write_bytes(fig.png)
            image_names[fig.slug] = name
    html_path = out_dir / HTML_NAME
    md_path = out_dir / MD_NAME
    html_path.write_text(
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
    md_path.write_text(
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
