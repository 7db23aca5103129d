"""The report's figures, as PNG bytes.

Figures are built on `matplotlib.figure.Figure` directly, not pyplot: no global figure state and no
interactive backend, so a report renders on a headless machine (saving to PNG uses Agg). Every function
takes ok samples with a `series` column plus the series order and colours, and returns None when the
runs hold no data for that figure.

Across several runs a model keeps one colour (`palette` over models, `series_styles`) and each run has
its own marker, so the same model in two runs reads as one colour with two shapes.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import font_manager
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.text import Annotation, Text
from matplotlib.ticker import FuncFormatter
from matplotlib.transforms import Bbox

from harness.report.sweeps import SweepLine

DPI = 110
# Fonts with CJK glyphs, tried after DejaVu Sans (matplotlib falls back per glyph), so a Chinese model
# or talk name renders where such a font is installed instead of as empty boxes.
_CJK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Microsoft YaHei",
    "PingFang SC",
    "Hiragino Sans GB",
    "SimHei",
    "Arial Unicode MS",
)
_MPL_VERSION = tuple(int(p) for p in matplotlib.__version__.split(".")[:2])


@contextmanager
def _style() -> Iterator[None]:
    installed = {f.name for f in font_manager.fontManager.ttflist}
    fonts = ["DejaVu Sans", *(f for f in _CJK_FONTS if f in installed)]
    rc = {
        "font.family": "sans-serif",
        "font.sans-serif": fonts,
        "font.size": 10,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "figure.facecolor": "white",
        "savefig.facecolor": "white",
        # Labels are data (run ids, model and talk names): a "$...$" in one must print as typed, not be
        # parsed as mathtext (which crashes on bad TeX). No figure here uses mathtext on purpose.
        "text.parse_math": False,
    }
    with matplotlib.rc_context(rc):
        yield


def _finite(frame: pd.DataFrame, columns: Sequence[str]) -> tuple[pd.DataFrame, int]:
    """`frame` with +-inf in `columns` turned into missing values (which every figure leaves out), and how
    many were: a non-finite value cannot be placed on an axis (matplotlib: "Axis limits cannot be NaN or
    Inf") and says the measurement failed, so it is dropped and the figure says so (`_note_dropped`)."""
    present = [c for c in columns if c in frame]
    if not present:
        return frame, 0
    values = frame[present].apply(pd.to_numeric, errors="coerce")
    bad = np.isinf(values.to_numpy(dtype=float))
    if not bad.any():
        return frame, 0
    out = frame.copy()
    out[present] = values.mask(np.isinf(values))
    return out, int(bad.sum())


def _note_dropped(fig: Figure, dropped: int) -> None:
    if dropped:
        fig.text(0.01, 0.995, f"{dropped} non-finite value(s) left out", fontsize=7, color="grey", va="top")


def palette(labels: Sequence[str]) -> dict[str, tuple[float, float, float, float]]:
    """A stable colour per label (model), shared by all figures."""
    cmap = matplotlib.colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {label: cmap(i % cmap.N) for i, label in enumerate(labels)}


RUN_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def series_styles(
    series_model: Mapping[str, str], series_run: Mapping[str, str]
) -> tuple[dict[str, tuple[float, ...]], dict[str, str]]:
    """(colour, marker) per series: the colour follows the model, the marker the run, in first-seen order."""
    model_colors = palette(list(dict.fromkeys(series_model.values())))
    runs = list(dict.fromkeys(series_run.values()))
    run_marker = {run: RUN_MARKERS[i % len(RUN_MARKERS)] for i, run in enumerate(runs)}
    colors = {s: model_colors[m] for s, m in series_model.items()}
    markers = {s: run_marker[series_run[s]] for s in series_model}
    return colors, markers


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def _hbox(ax: Axes, data: list[np.ndarray], positions: Sequence[float], **kw: object) -> None:
    """Horizontal box plot across matplotlib versions (`vert` gave way to `orientation` in 3.10)."""
    if _MPL_VERSION >= (3, 10):
        ax.boxplot(data, positions=positions, orientation="horizontal", **kw)  # type: ignore[arg-type]
    else:
        ax.boxplot(data, positions=positions, vert=False, **kw)  # type: ignore[arg-type]


def _category_axis(ax: Axes, labels: Sequence[str]) -> None:
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(len(labels) - 0.5, -0.5)  # first series on top, in the order of the summary table
    ax.grid(axis="y", visible=False)


def _category_figure(labels: Sequence[str], extra_height: float = 0.0) -> Figure:
    """A figure for one row per series: taller with more series, wider with longer names, so the plot
    area keeps about 7 x 0.55n inches whatever the labels."""
    longest = max((len(s) for s in labels), default=10)
    return Figure(
        figsize=(7 + 0.075 * longest, 1.4 + 0.55 * len(labels) + extra_height), layout="constrained"
    )


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated when both coordinates are better higher."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(
            (ox >= x and oy >= y) and (ox > x or oy > y) for j, (ox, oy) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return front


def fronts_by_run(pts: pd.DataFrame, x: str, y: str) -> list[list[int]]:
    """Row positions of each run's Pareto front (both coordinates better higher), runs in first-seen
    order. Within a run only: the same model measured in two runs is never compared with itself."""
    runs = pts["run"].astype(str) if "run" in pts else pd.Series("", index=pts.index)
    out = []
    for _, group in pts.groupby(runs, sort=False):
        local = pareto_front(list(zip(group[x], group[y], strict=True)))
        out.append([int(group.index[i]) for i in local])
    return out


def quality_vs_speed(
    means: pd.DataFrame,
    colors: Mapping[str, tuple[float, ...]],
    *,
    markers: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    x: str = "decode_tok_s",
    y: str = "rougeL_f",
) -> bytes | None:
    """Mean ROUGE-L vs mean decode speed per series as PNG; see `quality_figure`."""
    made = quality_figure(means, colors, markers=markers, labels=labels, x=x, y=y)
    if made is None:
        return None
    with _style():
        return _png(made[0])


def quality_figure(
    means: pd.DataFrame,
    colors: Mapping[str, tuple[float, ...]],
    *,
    markers: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    x: str = "decode_tok_s",
    y: str = "rougeL_f",
) -> tuple[Figure, list[Bbox]] | None:
    """Mean ROUGE-L vs mean decode speed per series; each run's Pareto front (faster and better) is marked.

    `means` has one row per series: columns series, x, y, optional run, f"{x}_sd", f"{y}_sd". The front is
    computed within each run (`fronts_by_run`). `markers`: marker per series (one per run); `labels`: the
    short label written beside each point (default: the series name). The quality axis starts at zero,
    so the height of a point is its score. Returns the figure and its label boxes (display pixels).
    """
    if x not in means or y not in means:
        return None
    means, dropped = _finite(means, [x, y, f"{x}_sd", f"{y}_sd"])
    pts = means.dropna(subset=[x, y]).reset_index(drop=True)
    if pts.empty:
        return None
    runs = pts["run"].astype(str) if "run" in pts else pd.Series("", index=pts.index)
    fronts = [pts.loc[members].sort_values(x) for members in fronts_by_run(pts, x, y)]
    front = {int(i) for fp in fronts for i in fp.index}
    several_runs = runs.nunique() > 1
    # Many points (a sweep: models x configs) cannot all carry a name without covering each other, the
    # axes and their titles: past MAX_POINT_LABELS only the Pareto front is named and a legend names the
    # models by colour.
    named = set(range(len(pts))) if len(pts) <= MAX_POINT_LABELS else front
    bars: list[tuple[float, float, float, float]] = []  # (x, y, xerr, yerr): obstacles for the labels
    with _style():
        fig = Figure(figsize=(8, 5.5), layout="constrained")
        ax = fig.add_subplot()
        for _, row in pts.iterrows():
            color = colors[row["series"]]
            xerr, yerr = row.get(f"{x}_sd"), row.get(f"{y}_sd")
            bars.append((
                float(row[x]), float(row[y]),
                0.0 if xerr is None or pd.isna(xerr) else float(xerr),
                0.0 if yerr is None or pd.isna(yerr) else float(yerr),
            ))  # fmt: skip
            ax.errorbar(
                row[x],
                row[y],
                xerr=None if xerr is None or pd.isna(xerr) else xerr,
                yerr=None if yerr is None or pd.isna(yerr) else yerr,
                fmt=(markers or {}).get(row["series"], "o"),
                color=color,
                ecolor=color,
                alpha=0.9,
                markersize=8,
                capsize=3,
                zorder=3,
            )
        for i, fp in enumerate(fronts):
            ax.plot(
                fp[x],
                fp[y],
                "--o",
                color="black",
                linewidth=1,
                markersize=16,
                markerfacecolor="none",
                markeredgewidth=1.5,
                zorder=2,
                label=(
                    f"Pareto front{' of each run' if several_runs else ''} (bold names): "
                    "no other model of the run is both faster and better"
                )
                if i == 0
                else None,
            )
        handles, names = ax.get_legend_handles_labels()
        # Past MAX_POINT_LABELS the front's points carry a number, short enough to sit beside its point,
        # and the legend says what each number is (numbered left to right).
        numbered = len(named) < len(pts)
        text_of = {i: (labels or {}).get(pts.loc[i, "series"], pts.loc[i, "series"]) for i in range(len(pts))}
        if numbered:
            by_x = sorted(named, key=lambda i: (float(pts.loc[i, x]), i))
            number = {i: str(k) for k, i in enumerate(by_x, start=1)}
            for i in by_x:
                handles.append(Line2D([], [], linestyle="none", marker="none"))
                names.append(f"{number[i]} = {text_of[i]}")
            text_of = number
            models = pts["model"].astype(str) if "model" in pts else pts["series"].astype(str)
            for model, series in dict(zip(models, pts["series"], strict=True)).items():
                handles.append(Line2D([], [], marker="o", linestyle="none", color=colors[series], label=model))
                names.append(model)
        if several_runs and markers:
            for run, series in dict(zip(runs, pts["series"], strict=True)).items():
                handles.append(
                    Line2D([], [], marker=markers.get(series, "o"), linestyle="none", color="grey", label=run)
                )
                names.append(f"run {run}")
        ncol = 1 if len(names) < 4 else 2
        fig.legend(handles, names, loc="outside lower center", fontsize=8, frameon=False, ncol=ncol)
        ax.set_xlabel("decode speed, tokens/s (mean; higher is better →)")
        ax.set_ylabel("ROUGE-L F (mean; higher is better ↑)")
        ax.set_title("Summary quality vs decode speed (bars: ±1 sd over samples)")
        _note_dropped(fig, dropped)
        ax.margins(x=0.2, y=0.2)
        # Speeds and ROUGE are never negative; the quality axis starts at zero so heights compare.
        lo, hi = ax.get_xlim()
        if lo < 0:
            ax.set_xlim(0, hi)
        ax.set_ylim(0, max(ax.get_ylim()[1], float(pts[y].max()) * 1.25))
        order = sorted(named)
        notes = [
            ax.annotate(
                text_of[i],
                (row[x], row[y]),
                xytext=(0, 0),
                textcoords="offset points",
                fontsize=9,
                fontweight="bold" if i in front else "normal",
                color=colors[row["series"]],
                zorder=5,
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.85},
                arrowprops={"arrowstyle": "-", "color": "grey", "lw": 0.6, "shrinkA": 0, "shrinkB": 5},
            )
            for i, row in ((i, pts.iloc[i]) for i in order)
        ]
        for note in notes:
            # Placed by _place_labels inside the axes; the layout must not shrink the axes to make room
            # for a label's trial position (that collapsed a sweep's plot and cut its axis title).
            note.set_in_layout(False)
        return fig, _place_labels(fig, ax, notes, bars)


# Offsets (points) and alignments tried for a point's label, nearest first; the far ones get a leader
# line back to the point (the annotation's arrow, drawn only when the label sits away from it).
_LABEL_SPOTS = tuple(
    (sx * dx, sy * dy, "left" if sx > 0 else "right", "bottom" if sy > 0 else "top")
    for dx, dy in ((9, 5), (9, 16), (14, 30), (24, 48), (40, 70), (60, 95))
    for sy in (1, -1)
    for sx in (1, -1)
) + tuple((0, sy * d, "center", "bottom" if sy > 0 else "top") for d in (12, 40, 75) for sy in (1, -1))


def _place_labels(
    fig: Figure,
    ax: Axes,
    notes: Sequence[Annotation],
    bars: Sequence[tuple[float, float, float, float]] = (),
) -> list[Bbox]:
    """Greedy label placement: each label takes the nearest spot that overlaps no point, no error bar
    (`bars`: x, y, xerr, yerr in data units), no earlier label and stays inside the axes; failing that,
    the spot with the least overlap, a far spot counting a little against it so that a label stays near
    its point. Returns the label boxes in display pixels (for tests)."""
    FigureCanvasAgg(fig)  # a renderer to measure text with
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    frame = ax.get_window_extent(renderer)
    pad = 7  # half a marker, in pixels
    taken = []
    for note in notes:
        px, py = ax.transData.transform(note.xy)
        taken.append(Bbox.from_extents(px - pad, py - pad, px + pad, py + pad))
    for bx, by, xerr, yerr in bars:
        # Each error bar as a thin box (its caps are 3 points wide), so no label is written across one.
        for (x0, y0), (x1, y1) in (((bx - xerr, by), (bx + xerr, by)), ((bx, by - yerr), (bx, by + yerr))):
            (p0x, p0y), (p1x, p1y) = ax.transData.transform([(x0, y0), (x1, y1)])
            if abs(p1x - p0x) + abs(p1y - p0y) > 2 * pad:
                lo_x, lo_y, hi_x, hi_y = min(p0x, p1x), min(p0y, p1y), max(p0x, p1x), max(p0y, p1y)
                taken.append(Bbox.from_extents(lo_x - 3, lo_y - 3, hi_x + 3, hi_y + 3))

    def area(b: Bbox | None) -> float:
        return 0.0 if b is None else b.width * b.height

    for note in notes:
        best: tuple[float, tuple[float, float, str, str]] | None = None
        for spot in _LABEL_SPOTS:
            note.xyann = spot[:2]
            note.set_horizontalalignment(spot[2])
            note.set_verticalalignment(spot[3])
            box = _text_box(note, renderer)
            overlap = sum(area(Bbox.intersection(box, t)) for t in taken)
            outside = area(box) - area(Bbox.intersection(box, frame))
            # Where every spot collides somewhere, a small pull towards the point keeps a label from
            # settling far from it for a marginally smaller overlap.
            distance = abs(spot[0]) + abs(spot[1])
            cost = overlap + outside + (0.1 * distance if overlap + outside else 0)
            if best is None or cost < best[0]:
                best = (cost, spot)
            if cost == 0:
                break
        assert best is not None
        note.xyann = best[1][:2]
        note.set_horizontalalignment(best[1][2])
        note.set_verticalalignment(best[1][3])
        if abs(best[1][0]) + abs(best[1][1]) < 30 and note.arrow_patch is not None:
            note.arrow_patch.set_visible(False)  # next to its point: no leader line needed
        taken.append(_text_box(note, renderer))
    return taken[-len(notes) :] if notes else []


def _text_box(note: Annotation, renderer: object) -> Bbox:
    """A label's text and its white box, in display pixels, without the leader line: the annotation's own
    extent includes the line, which always reaches the point and the error bars crossing it, so every
    spot would seem to collide and the label would be pushed far away."""
    whole = note.get_window_extent(renderer)  # also positions the text at its current offset
    boxes = [Text.get_window_extent(note, renderer)]
    patch = note.get_bbox_patch()
    if patch is not None:
        note.update_bbox_position_size(renderer)  # the patch follows the text only when drawn otherwise
        boxes.append(patch.get_window_extent(renderer))
    return Bbox.union(boxes) if whole.width or whole.height else whole


MAX_POINT_LABELS = 10  # more points than this: only the Pareto front is named (quality_figure)


def peak_memory(
    samples: pd.DataFrame,
    order: Sequence[str],
    colors: Mapping[str, tuple[float, ...]],
    column: str = "peak_rss_mb",
) -> bytes | None:
    """Bar of mean peak RSS per series, with the largest sample marked."""
    if column not in samples:
        return None
    samples, dropped = _finite(samples, [column])
    stats = samples.dropna(subset=[column]).groupby("series")[column].agg(["mean", "max"])
    labels = [s for s in order if s in stats.index]
    if not labels:
        return None
    with _style():
        fig = _category_figure(labels)
        ax = fig.add_subplot()
        means = stats.loc[labels, "mean"].to_numpy()
        maxes = stats.loc[labels, "max"].to_numpy()
        ax.barh(range(len(labels)), means, color=[colors[s] for s in labels], height=0.6)
        ax.scatter(maxes, range(len(labels)), marker="|", s=300, color="black", zorder=3)
        for i, (m, mx) in enumerate(zip(means, maxes, strict=True)):
            ax.annotate(
                f"{m:,.0f}", (mx, i), xytext=(8, 0), textcoords="offset points", va="center", fontsize=9
            )
        _category_axis(ax, labels)
        ax.set_xlim(0, float(maxes.max()) * 1.18)
        ax.set_xlabel("peak resident memory of the worker, MiB (lower is better)")
        ax.set_title("Peak memory per model")
        _note_dropped(fig, dropped)
        # Neutral legend swatches: the bar colours identify models, not what a bar means.
        handles = [
            Patch(color="lightgrey", label="bar: mean over samples (value printed)"),
            Line2D(
                [], [], marker="|", markersize=14, linestyle="none", color="black", label="largest sample"
            ),
        ]
        fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=8, frameon=False)
        return _png(fig)


def _jitter(n: int, seed: int) -> np.ndarray:
    # Fixed seed: the same run always renders the same picture.
    return np.random.default_rng(seed).uniform(-0.18, 0.18, n)


def ttft_distribution(
    samples: pd.DataFrame,
    order: Sequence[str],
    colors: Mapping[str, tuple[float, ...]],
    column: str = "ttft_s",
    markers: Mapping[str, str] | None = None,
) -> bytes | None:
    """Box plot plus every sample of time to first token, per series."""
    if column not in samples:
        return None
    samples, dropped = _finite(samples, [column])
    data = {s: g[column].dropna().to_numpy() for s, g in samples.groupby("series")}
    labels = [s for s in order if len(data.get(s, [])) > 0]
    if not labels:
        return None
    with _style():
        fig = _category_figure(labels)
        ax = fig.add_subplot()
        _hbox(
            ax,
            [data[s] for s in labels],
            range(len(labels)),
            widths=0.55,
            showfliers=False,
            medianprops={"color": "black"},
        )
        for i, s in enumerate(labels):
            ax.scatter(
                data[s],
                i + _jitter(len(data[s]), i),
                s=14,
                marker=(markers or {}).get(s, "o"),
                color=colors[s],
                alpha=0.75,
                zorder=3,
            )
        _category_axis(ax, labels)
        ax.set_xlabel("time to first token, s (lower is better)")
        ax.set_title("TTFT per model (box: quartiles; dots: samples)")
        _note_dropped(fig, dropped)
        ax.set_xlim(left=0)
        return _png(fig)


def itl_distribution(
    samples: pd.DataFrame, order: Sequence[str], colors: Mapping[str, tuple[float, ...]]
) -> bytes | None:
    """Box of the per-sample median inter-token latency, with each sample's p90 and p99 as markers."""
    if "itl_p50_ms" not in samples:
        return None
    samples, dropped = _finite(samples, ["itl_p50_ms", "itl_p90_ms", "itl_p99_ms"])
    groups = {s: g for s, g in samples.groupby("series")}
    labels = [s for s in order if s in groups and groups[s]["itl_p50_ms"].notna().any()]
    if not labels:
        return None
    with _style():
        fig = _category_figure(labels, extra_height=0.4)
        ax = fig.add_subplot()
        _hbox(
            ax,
            [groups[s]["itl_p50_ms"].dropna().to_numpy() for s in labels],
            range(len(labels)),
            widths=0.55,
            showfliers=False,
            medianprops={"color": "black"},
        )
        marks = (
            ("itl_p50_ms", "o", "p50 of a sample", 14),
            ("itl_p90_ms", "^", "p90 of a sample", 22),
            ("itl_p99_ms", "x", "p99 of a sample", 26),
        )
        for i, s in enumerate(labels):
            for col, marker, name, size in marks:
                if col not in groups[s]:
                    continue
                v = groups[s][col].dropna().to_numpy()
                ax.scatter(
                    v,
                    i + _jitter(len(v), 31 * i + size),
                    marker=marker,
                    s=size,
                    color=colors[s],
                    alpha=0.7,
                    zorder=3,
                    label=name if i == 0 else None,
                )
        _category_axis(ax, labels)
        values = pd.concat([samples[c] for c in ("itl_p50_ms", "itl_p90_ms", "itl_p99_ms") if c in samples])
        values = values[values > 0]
        if len(values) and values.max() / values.min() > 30:
            ax.set_xscale("log")  # a few slow tails would otherwise squash every box against zero
        ax.set_xlabel("inter-token latency, ms (lower is better)")
        ax.set_title("Per-token latency per model (box: per-sample p50)")
        _note_dropped(fig, dropped)
        leg = fig.legend(loc="outside lower center", ncol=3, fontsize=8, frameon=False)
        for handle in leg.legend_handles:
            handle.set_color("grey")  # markers mean percentiles, not models: show them neutral
        return _png(fig)


def metric_vs_setting(
    lines: Sequence[SweepLine], setting_label: str, metric_label: str, better: str = ""
) -> bytes | None:
    """A metric against one swept setting: one line per model (x other swept settings), points at the
    setting's values with their interval over talks as error bars; the colour follows the model, the line
    style the other settings. Integer settings get integer ticks at the swept values."""
    lines = [line for line in lines if any(np.isfinite(line.mean))]
    if not lines:
        return None
    colors = palette(list(dict.fromkeys(line.model for line in lines)))
    # Each combination of the other settings gets a dash pattern *and* a marker shape: dotted and dash-dot
    # lines are hard to tell apart at legend size, a square from a triangle is not.
    styles = (("-", "o"), ((0, (6, 3)), "s"), ((0, (1.5, 2)), "^"), ((0, (8, 2, 2, 2)), "D"), ((0, (3, 5)), "v"))
    n_styles = len({line.label[len(line.model) :].strip() for line in lines})
    with _style():
        fig = Figure(figsize=(7.5, 4.6), layout="constrained")
        ax = fig.add_subplot()
        style_of: dict[str, tuple[object, str]] = {}
        for line in lines:
            rest = line.label[len(line.model) :].strip()
            style_of.setdefault(rest, styles[len(style_of) % len(styles)])
            x, mean = np.asarray(line.x), np.asarray(line.mean, dtype=float)
            lo, hi = np.asarray(line.lo, dtype=float), np.asarray(line.hi, dtype=float)
            mean = np.where(np.isfinite(mean), mean, np.nan)  # an inf point cannot be drawn: left out
            err = np.vstack([np.where(np.isfinite(lo), mean - lo, 0), np.where(np.isfinite(hi), hi - mean, 0)])
            # Lines of one model at one value would stack their error bars on each other: each line is
            # nudged sideways by a fraction of the gap between swept values (log axes: a factor).
            nudge = (list(style_of).index(rest) - (n_styles - 1) / 2) * 0.025
            xs_plot = x * (2 ** nudge) if _log_sweep(line.x) else x + nudge * _min_gap(line.x)
            linestyle, marker = style_of[rest]
            ax.errorbar(
                xs_plot, mean, yerr=err, marker=marker, markersize=6, capsize=3, linewidth=1.6,
                linestyle=linestyle, color=colors[line.model], label=line.label,
            )
        xs = sorted({v for line in lines for v in line.x})
        if all(float(v).is_integer() for v in xs):
            ax.set_xticks(xs, [f"{v:g}" for v in xs])
        if _log_sweep(xs):
            ax.set_xscale("log", base=2)  # doubling sweeps (1-16*2) spread evenly
            ax.set_xticks(xs, [f"{v:g}" for v in xs])
            ax.minorticks_off()  # log minor ticks would put unlabelled marks between the swept values
        ax.set_xlabel(setting_label)
        ax.set_ylabel(metric_label + (f" ({better} is better)" if better else ""))
        ax.set_ylim(bottom=0)
        ax.set_title(f"{metric_label} vs {setting_label}")
        fig.legend(loc="outside lower center", ncol=2, fontsize=8, frameon=False, handlelength=4)
        return _png(fig)


def _log_sweep(xs: Sequence[float]) -> bool:
    """A sweep spanning a factor of 8 or more from a positive start (1-16*2): drawn on a log2 axis."""
    xs = sorted(xs)
    return len(xs) > 2 and xs[0] > 0 and xs[-1] / xs[0] >= 8


def _min_gap(xs: Sequence[float]) -> float:
    gaps = np.diff(sorted(set(xs)))
    return float(gaps.min()) if len(gaps) else 1.0


def coverage_density(
    samples: pd.DataFrame,
    order: Sequence[str],
    colors: Mapping[str, tuple[float, ...]],
    *,
    markers: Mapping[str, str] | None = None,
    x: str = "extractive_coverage",
    y: str = "extractive_density",
) -> bytes | None:
    """Extractive coverage against density (Grusky et al. 2018), one point per summary, one colour per series.

    Bottom left: abstractive summaries (few copied words, short fragments); right: words reused; top right:
    whole sentences pasted. Density is drawn on a log axis (it grows with the square of fragment length), so
    summaries with a density of 0 (nothing copied) sit on the axis floor. Each series' mean is a larger ringed
    marker. None when no sample has both columns.
    """
    if x not in samples or y not in samples:
        return None
    samples, _dropped = _finite(samples, [x, y])  # an inf cannot go on an axis
    pts = samples.dropna(subset=[x, y])
    labels = [s for s in order if s in set(pts["series"])]
    if not labels:
        return None
    positive = pts.loc[pts[y] > 0, y]
    # A log axis has no 0: summaries that copy nothing are drawn at half the smallest positive density.
    floor = float(positive.min()) / 2 if len(positive) else 0.1
    with _style():
        fig = Figure(figsize=(8, 5.5), layout="constrained")
        ax = fig.add_subplot()
        for series in labels:
            mine = pts[pts["series"] == series]
            marker = (markers or {}).get(series, "o")
            ax.scatter(mine[x], mine[y].clip(lower=floor), color=colors[series], marker=marker, alpha=0.55, s=28,
                       label=series)  # fmt: skip
            ax.scatter([mine[x].mean()], [max(float(mine[y].mean()), floor)], color=colors[series], marker=marker,
                       s=160, edgecolors="black", linewidths=1.2, zorder=4)  # fmt: skip
        ax.set_yscale("log")
        # Plain numbers on the log axis: the default 10^n labels need mathtext, which this style does not render.
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else ""))
        ax.set_xlim(0, 1.02)
        ax.set_xlabel("extractive coverage: share of summary tokens copied from the talk")
        ax.set_ylabel("extractive density: mean squared copied-fragment length (log)")
        ax.set_title("How summaries copy their talk (small: each summary; large: the model's mean)")
        fig.legend(loc="outside lower center", fontsize=8, frameon=False, ncol=min(3, len(labels)))
        return _png(fig)
