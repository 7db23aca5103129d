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
            "report-coverage-density",
            "Copying: extractive coverage vs density",
            "Each small point is one summary, each large ringed point a model's mean. Coverage is the share of "
            "summary tokens inside fragments copied from the talk, density the mean squared length of those "
            "fragments (Grusky et al. 2018), on ROUGE's tokens (one per Chinese character). Bottom left: "
            "abstractive; top right: sentences pasted from the talk, which ROUGE rewards. Neither end is better "
            "in itself.",
            plots.coverage_density(ok, order, colors, markers=markers),
            "No extractive_coverage/extractive_density values (a run from before these columns; `harness score` "
            "recomputes them): no copying plot.",
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


def error_notes(samples: pd.DataFrame) -> list[str]:
    """The report's first lines when samples failed: how many, and the causes, most frequent first -- a run
    whose every sample crashed must not open with empty plots."""
    if samples.empty or "status" not in samples:
        return []
    failed = samples[samples["status"] != "ok"]
    if failed.empty:
        return []
    causes = failed["error"].fillna("").astype(str).value_counts() if "error" in failed else pd.Series(dtype=int)
    listed = "; ".join(f"{n}x {cause or 'no message'}" for cause, n in causes.head(3).items())
    more = f" (and {len(causes) - 3} more causes)" if len(causes) > 3 else ""
    head = "Every sample failed" if len(failed) == len(samples) else f"{len(failed)} of {len(samples)} samples failed"
    return [f"{head}: {listed}{more}. The error rows are listed under Errors; the figures count ok rows only."]


def load_level_notes(runs: Sequence[Run]) -> list[str]:
    """One line per load level (load_summary.csv) that could not be held at its N requests in flight
    (harness.load): its figures describe a queue or a drain, not N requests being served."""
    from harness.load import LOAD_SUMMARY_FILE

    notes: list[str] = []
    for run in runs:
        path = run.directory / LOAD_SUMMARY_FILE
        if not path.is_file():
            continue
        try:
            levels = pd.read_csv(path, dtype={"held": str, "held_note": str})
        except (OSError, ValueError, pd.errors.ParserError):
            continue
        if "held" not in levels:
            continue  # written before levels were checked
        for _, level in levels[levels["held"].astype(str).str.lower() == "false"].iterrows():
            why = level.get("held_note") if isinstance(level.get("held_note"), str) else "see load_summary.csv"
            notes.append(
                f"{run.label}: load level c={level.get('concurrency')} of {level.get('model')} was NOT HELD ({why}); "
                "its throughput and latency describe that, not the level"
            )
    return notes


def write_report(runs: Sequence[Run], out_dir: Path) -> tuple[Path, Path]:
    """Write report.html, report.md and the md's PNGs into out_dir; return (html, md) paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in (HTML_NAME, MD_NAME):  # a planted link or special file: refused before anything is written
        safefs.check_target(out_dir / name)
    samples, order = collect_samples(runs)
    summary = summary_table(samples, order)
    figures = build_figures(samples, order, summary)
    blocks = talk_blocks(runs, samples, order)
    errors = samples[samples["status"] != "ok"].head(MAX_ERROR_ROWS)
    notes = [*error_notes(samples), *run_notes(runs), *load_level_notes(runs)]
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
