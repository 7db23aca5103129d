"""report.html (one self-contained file: CSS inline, PNGs as base64 data URIs) and report.md.

All text that comes from a run -- model ids, errors, summaries, references, talk text -- is escaped: a
model's output is untrusted and may contain markup.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from harness.report.compare_output import fmt_value
from harness.report.data import SUMMARY_METRICS, TalkBlock, TalkSummary
from harness.report.fonts import FONT_STACK, embedded_cjk_font
from harness.scoring.signals import DEGENERATE_REPETITION


@dataclass
class ReportFigure:
    slug: str  # file name stem for report.md's PNGs
    title: str
    caption: str
    png: bytes | None
    missing: str  # shown instead when png is None


# Marks the ROUGE cells of a series whose outputs are mostly degenerate; explained under the table.
DEGENERATE_MARK = "†"
DEGENERATE_NOTE = (
    f"{DEGENERATE_MARK} Mostly degenerate output: more than half of this model's samples hit the "
    f"max_new_tokens cap while repeating themselves (repetition_rate > {DEGENERATE_REPETITION:g}) or came out "
    "in the wrong language. Their ROUGE counts characters copied from the talk into a loop, not the "
    "quality of a summary; do not rank models on it."
)


def _summary_meta(s: TalkSummary) -> list[str]:
    """repeat, ROUGE-L, language, stop reason, repetition and a non-ok status of one shown summary."""
    meta = [f"repeat {s.repeat}"]
    if s.rouge_l is not None:
        meta.append(f"ROUGE-L {s.rouge_l:.3f}")
    if s.summary_lang:
        meta.append(s.summary_lang)
    if s.stop_reason:
        meta.append(f"stop: {s.stop_reason}" + (" (hit max_new_tokens)" if s.stop_reason == "length" else ""))
    if s.repetition_rate is not None:
        meta.append(f"repetition {s.repetition_rate:.2f}")
    if s.status != "ok":
        meta.append(f"status {s.status}")
    return meta

def degenerate_reason(s: TalkSummary) -> str:
    """Why a shown summary is flagged, in words; '' when it is not."""
    if not s.degenerate:
        return ""
    if s.stop_reason == "length" and (s.repetition_rate or 0.0) > DEGENERATE_REPETITION:
        return "degenerate: a loop, cut off at max_new_tokens"
    return "degenerate: not in the requested language"


def e(text: object) -> str:
    return html.escape(str(text), quote=True)


_CSS = """
body{font-family:FONT_STACK;margin:2rem auto;max-width:80rem;padding:0 1rem;color:#222;line-height:1.45}
h1{margin-bottom:.2rem} .sub{color:#666;margin-top:0}
table{border-collapse:collapse;margin:.5rem 0 1.5rem;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.25rem .5rem;vertical-align:top;text-align:left}
th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.diff td{background:#fff6d6}
figure{margin:1rem 0 2rem} figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#555;font-size:.9rem;max-width:60rem}
.note{color:#666;font-size:.9rem}
.talk{border-top:2px solid #ccc;padding-top:.5rem;margin-top:1.5rem}
.cols{display:grid;grid-auto-flow:column;grid-auto-columns:minmax(18rem,1fr);gap:1rem;overflow-x:auto}
.col{border:1px solid #e3e3e3;border-radius:4px;padding:.5rem .75rem;background:#fafafa}
.col.ref{background:#f0f6ff} .col h4{margin:.1rem 0 .3rem} .meta{color:#666;font-size:.8rem}
.text{white-space:pre-wrap;overflow-wrap:anywhere}
.err{color:#a00}
.col.degenerate{border-color:#d9a0a0;background:#fff5f5} .badge{color:#a00;font-weight:600}
details .text{max-height:30rem;overflow:auto;background:#fcfcfc;padding:.5rem;border:1px solid #eee}
""".replace("FONT_STACK", FONT_STACK)


def _summary_cells(row: pd.Series) -> list[str]:
    judged = int(row.get("n_judged") or 0)
    mark = f" {DEGENERATE_MARK}" if row.get("mostly_degenerate") else ""
    cells = [
        str(row["series"]),
        str(row["backend"] or ""),
        str(row["quant"] or ""),
        str(row["talks"]),
        f"{row['n_ok']} / {row['n_error']}" + (f" ({int(row['n_noisy'])} noisy)" if row.get("n_noisy") else ""),
        f"{int(row.get('n_degenerate') or 0)}/{judged}" if judged else "",
    ]
    for col, _ in SUMMARY_METRICS:
        v = row.get(col)
        text = fmt_value(None if v is None or pd.isna(v) else float(v))
        cells.append(text + mark if col.startswith("rouge") and text else text)
    return cells


_SUMMARY_HEAD = [
    "model",
    "backend",
    "quant",
    "talks",
    "ok / error",
    "degenerate",
    *(h for _, h in SUMMARY_METRICS),
]
_DEGENERATE_HELP = (
    f"degenerate: ok samples that hit max_new_tokens while looping (repetition_rate > {DEGENERATE_REPETITION:g}) "
    "or are in the wrong language, of those scored."
)


NOISY_NOTE = (
    "(N noisy): samples that ran while other processes used more than a quarter of a core on the worker's "
    "CPUs (column noisy, docs/noise.md); their speed figures are not representative."
)


def _any_noisy(summary: pd.DataFrame) -> bool:
    return "n_noisy" in summary and bool(summary["n_noisy"].fillna(0).astype(int).gt(0).any())


def _any_mostly_degenerate(summary: pd.DataFrame) -> bool:
    return "mostly_degenerate" in summary and bool(summary["mostly_degenerate"].fillna(False).astype(bool).any())


def _lang_attr(lang: str) -> str:
    return f' lang="{e(lang)}"' if re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]+)*", lang or "") else ""


def render_html(
    *,
    run_ids: Sequence[str],
    generated: str,
    env: Sequence[tuple[str, list[str]]],
    summary: pd.DataFrame,
    figures: Sequence[ReportFigure],
    talks: Sequence[TalkBlock],
    errors: pd.DataFrame,
    notes: Sequence[str],
) -> str:
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>harness report: {e(', '.join(run_ids))}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>harness report</h1>",
        f'<p class="sub">runs: {", ".join(f"<code>{e(r)}</code>" for r in run_ids)} &middot; '
        f"generated {e(generated)}</p>",
    ]
    out += [f'<p class="note">{e(n)}</p>' for n in notes]

    out.append("<h2>Summary</h2>")
    out.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in _SUMMARY_HEAD) + "</tr>")
    for _, row in summary.iterrows():
        cells = _summary_cells(row)
        out.append(
            "<tr>"
            + "".join(f"<td{' class=num' if i >= 3 else ''}>{e(c)}</td>" for i, c in enumerate(cells))
            + "</tr>"
        )
    out.append("</table>")
    out.append(
        '<p class="note">Means over the repeats of each talk, then over talks; only status=ok samples count. '
        f"ROUGE F scores are 0-1, best over the references. {e(_DEGENERATE_HELP)}</p>"
    )
    if _any_mostly_degenerate(summary):
        out.append(f'<p class="note"><span class="badge">{e(DEGENERATE_NOTE)}</span></p>')
    if _any_noisy(summary):
        out.append(f'<p class="note"><span class="badge">{e(NOISY_NOTE)}</span></p>')

    out.append("<h2>Plots</h2>")
    for fig in figures:
        out.append(f"<h3>{e(fig.title)}</h3>")
        if fig.png is None:
            out.append(f'<p class="note">{e(fig.missing)}</p>')
            continue
        uri = "data:image/png;base64," + base64.b64encode(fig.png).decode("ascii")
        out.append(
            f'<figure><img src="{uri}" alt="{e(fig.title)}">'
            f"<figcaption>{e(fig.caption)}</figcaption></figure>"
        )

    # The answer first (per-model summary, then the quality x speed plot), the machine it ran on after.
    out.append("<h2>Environment</h2>")
    out.append("<table><tr><th></th>" + "".join(f"<th>{e(r)}</th>" for r in run_ids) + "</tr>")
    for name, values in env:
        differs = len(run_ids) > 1 and len({v for v in values}) > 1
        out.append(
            f"<tr{' class=diff' if differs else ''}><th>{e(name)}</th>"
            + "".join(f"<td>{e(v)}</td>" for v in values)
            + "</tr>"
        )
    out.append("</table>")
    if len(run_ids) > 1:
        out.append('<p class="note">Highlighted rows differ between runs.</p>')

    out.append("<h2>Summaries by talk</h2>")
    if not talks:
        out.append('<p class="note">No summaries.jsonl beside the results: nothing to show.</p>')
    else:
        out.append(
            '<p class="note">Each model\'s first successful repeat, beside the reference summaries.</p>'
        )
    for block in talks:
        out.append(f'<section class="talk"><h3>{e(block.talk_id)}</h3>')
        if block.source:
            out.append(
                f"<details><summary>talk text ({len(block.source):,} characters)</summary>"
                f'<div class="text">{e(block.source)}</div></details>'
            )
        out.append(
            '<div class="cols"><div class="col ref"><h4>reference'
            + ("s" if len(block.references) > 1 else "")
            + "</h4>"
        )
        for ref in block.references or ["(none)"]:
            out.append(f'<p class="text">{e(ref)}</p>')
        out.append("</div>")
        for s in block.summaries:
            meta = _summary_meta(s)
            reason = degenerate_reason(s)
            badge = f'<div class="badge">{e(reason)}</div>' if reason else ""
            out.append(
                f'<div class="col{" degenerate" if s.degenerate else ""}"><h4>{e(s.series)}</h4>'
                f'<div class="meta">{e(" · ".join(meta))}</div>{badge}'
                f'<p class="text"{_lang_attr(s.summary_lang)}>'
                f"{e(s.prediction) or '<em>(empty)</em>'}</p></div>"
            )
        out.append("</div></section>")

    if len(errors):
        out.append(f"<h2>Errors ({len(errors)} rows, not counted above)</h2>")
        out.append("<table><tr><th>run</th><th>model</th><th>talk</th><th>repeat</th><th>error</th></tr>")
        for _, r in errors.iterrows():
            out.append(
                f"<tr><td>{e(r['run'])}</td><td>{e(r['model'])}</td><td>{e(r['talk_id'])}</td>"
                f'<td>{e(_int(r["repeat"]))}</td><td class="err">{e(r.get("error", ""))}</td></tr>'
            )
        out.append("</table>")
    # Chinese text must render where the viewer has no CJK font: embed the glyphs this page uses.
    font = embedded_cjk_font("".join(out))
    out.append(f'<p class="note">Fonts: {e(font.note)}.</p>')
    out.append("</body></html>")
    if font.css:
        out.insert(out.index(f"<style>{_CSS}</style></head><body>"), f"<style>{font.css}</style>")
    return "\n".join(out) + "\n"


def _int(v: object) -> str:
    try:
        return str(int(v))  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return str(v)


# --- Markdown ------------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_\[\]{}#|~])")
_MD_LINE_START = re.compile(r"^(\s*)([-+=]|\d+[.)])", re.MULTILINE)


def md(text: object) -> str:
    """Inline-safe Markdown: markdown syntax backslash-escaped, HTML entity-escaped, one line."""
    s = _MD_SPECIAL.sub(r"\\\1", str(text))
    s = html.escape(s, quote=False)
    return " ".join(s.split("\n"))


def md_block(text: str, prefix: str = "> ") -> str:
    """A multi-line text as a quoted block with hard line breaks, escaped like `md`."""
    s = _MD_SPECIAL.sub(r"\\\1", text)
    s = _MD_LINE_START.sub(lambda m: m.group(1) + "\\" + m.group(2), s)  # no accidental lists/headings
    s = html.escape(s, quote=False)
    lines = s.splitlines() or [""]
    return "\n".join(prefix + line + "  " for line in lines).rstrip()


def _md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(md(h) for h in head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(md(c) for c in row) + " |" for row in rows]
    return out


def render_md(
    *,
    run_ids: Sequence[str],
    generated: str,
    env: Sequence[tuple[str, list[str]]],
    summary: pd.DataFrame,
    figures: Sequence[ReportFigure],
    image_names: dict[str, str],
    talks: Sequence[TalkBlock],
    errors: pd.DataFrame,
    notes: Sequence[str],
) -> str:
    out = [
        "# harness report",
        "",
        f"runs: {', '.join(md(r) for r in run_ids)} · generated {md(generated)}",
        "",
    ]
    out += [f"- {md(n)}" for n in notes]
    if notes:
        out.append("")
    out += ["## Summary", ""]
    out += _md_table(_SUMMARY_HEAD, [_summary_cells(row) for _, row in summary.iterrows()])
    out += ["", "Means over the repeats of each talk, then over talks; only status=ok samples count. "
            + md(_DEGENERATE_HELP), ""]
    if _any_mostly_degenerate(summary):
        out += [md(DEGENERATE_NOTE), ""]
    if _any_noisy(summary):
        out += [md(NOISY_NOTE), ""]
    out += ["## Plots", ""]
    for fig in figures:
        out += [f"### {md(fig.title)}", ""]
        if fig.png is None:
            out += [md(fig.missing), ""]
        else:
            out += [f"![{md(fig.title)}]({image_names[fig.slug]})", "", md(fig.caption), ""]
    out += ["## Environment", ""]
    out += _md_table(["", *run_ids], [[name, *values] for name, values in env])
    out.append("")
    out += ["## Summaries by talk", ""]
    if not talks:
        out += ["No summaries.jsonl beside the results: nothing to show.", ""]
    for block in talks:
        out += [
            f"### {md(block.talk_id)}",
            "",
            "**reference" + ("s" if len(block.references) > 1 else "") + "**",
            "",
        ]
        for ref in block.references or ["(none)"]:
            out += [md_block(ref), ""]
        for s in block.summaries:
            meta = _summary_meta(s)
            reason = degenerate_reason(s)
            out += [
                f"**{md(s.series)}** ({md(' · '.join(meta))})" + (f" **{md(reason)}**" if reason else ""),
                "",
                md_block(s.prediction or "(empty)"),
                "",
            ]
    if len(errors):
        out += [f"## Errors ({len(errors)} rows, not counted above)", ""]
        out += _md_table(
            ["run", "model", "talk", "repeat", "error"],
            [
                [r["run"], r["model"], r["talk_id"], _int(r["repeat"]), r.get("error", "")]
                for _, r in errors.iterrows()
            ],
        )
        out.append("")
    return "\n".join(out) + "\n"
