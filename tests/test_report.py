"""`harness report`: self-contained HTML with real PNG plots, Markdown with PNG files, escaped summaries."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib import image as mpimg
from runfactory import make_run

from harness.cli import main
from harness.report.plots import pareto_front

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HOSTILE = "<script>alert('x')</script> & 摘要：通义千问 **not bold**\n# not a heading"


def report(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str]:
    rc = main(["report", *map(str, argv)])
    out, _ = capsys.readouterr()
    return rc, out


def assert_real_png(data: bytes) -> None:
    assert data.startswith(PNG_MAGIC)
    pixels = mpimg.imread(io.BytesIO(data), format="png")
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert float(np.var(pixels[..., :3])) > 1e-3  # not a blank canvas


def embedded_pngs(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'<img src="data:image/png;base64,([^"]+)"', html)]


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_run(
        tmp_path,
        "20250101T000000Z-abc123",
        models=("m-small", "m-mid", "m-large"),
        errors=2,
        predictions={("m-mid", "t1"): HOSTILE},
        references={"t1": ["参考摘要一：开源模型。", "Second reference <b>in English</b>."]},
    )


def test_report_writes_self_contained_html_and_markdown(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out = report(capsys, run_dir)
    assert rc == 0
    html_path = run_dir / "report.html"
    assert out.strip().splitlines()[-1] == str(html_path)
    html = html_path.read_text(encoding="utf-8")
    pngs = embedded_pngs(html)
    assert len(pngs) == 4  # quality/speed, memory, TTFT, per-token latency
    for data in pngs:
        assert_real_png(data)
    assert not re.search(r'src="(?!data:)', html)  # nothing to fetch: no external images or scripts

    md = (run_dir / "report.md").read_text(encoding="utf-8")
    names = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", md)
    assert len(names) == 4
    for name in names:
        assert_real_png((run_dir / name).read_bytes())

    # Header: run id, environment from run.json; error rows counted, not averaged.
    assert "20250101T000000Z-abc123" in html and "Test CPU @ 3.0GHz" in html
    assert "skipped 2 error row(s)" in html
    assert "6 / 2" in html  # m-small: 6 ok samples, 2 error rows


def test_summaries_are_escaped_and_shown_beside_references(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert report(capsys, run_dir)[0] == 0
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; 摘要：通义千问" in html
    assert "Second reference &lt;b&gt;in English&lt;/b&gt;." in html and "参考摘要一：开源模型。" in html
    talk = html[html.index("<h3>t1</h3>") : html.index("<h3>t2</h3>")]
    for model in ("m-small", "m-mid", "m-large"):
        assert f"<h4>{model}</h4>" in talk

    md = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "<script>" not in md and "<b>" not in md
    assert "&lt;script&gt;" in md and "摘要：通义千问" in md
    assert "\n# not a heading" not in md and "\\# not a heading" in md
    assert "\\*\\*not bold\\*\\*" in md


def test_two_runs_into_out_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = make_run(tmp_path / "runs", "run-a", seed=1, models=("m1",))
    b = make_run(tmp_path / "runs", "run-b", seed=2, models=("m1",), threads=8, scale={"decode_tok_s": 0.5})
    out_dir = tmp_path / "out"
    rc, out = report(capsys, a, b, "--out", out_dir)
    assert rc == 0
    assert out.strip().splitlines()[-1] == str(out_dir / "report.html")
    assert not (a / "report.html").exists() and not (b / "report.html").exists()
    html = (out_dir / "report.html").read_text(encoding="utf-8")
    assert "<code>run-a</code>" in html and "<code>run-b</code>" in html
    assert "m1 @ run-a" in html and "m1 @ run-b" in html  # one series per run
    assert "<tr class=diff><th>threads</th><td>4</td><td>8</td></tr>" in html
    assert len(embedded_pngs(html)) == 4


def test_bare_csv_without_metadata_or_rouge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # An unscored run: the ROUGE columns are there (required) but empty.
    blank = {c: "" for c in ("rouge1_f", "rouge2_f", "rougeL_f")}
    run = make_run(tmp_path, "run-a", overrides=blank, run_json=False, summaries=False)
    rc, _ = report(capsys, run / "results.csv")
    assert rc == 0
    html = (run / "report.html").read_text(encoding="utf-8")
    assert len(embedded_pngs(html)) == 3  # no quality plot without ROUGE
    assert "no quality/speed plot" in html
    assert "No summaries.jsonl" in html


def test_report_of_missing_run_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["report", str(tmp_path / "nope")])
    assert rc == 2
    assert "no such run directory" in capsys.readouterr().err


def test_pareto_front() -> None:
    points = [(1.0, 5.0), (2.0, 4.0), (3.0, 3.0), (2.0, 2.0), (3.0, 3.5), (1.0, 5.0)]
    # (3, 3) loses to (3, 3.5); (2, 2) to (2, 4); the duplicate (1, 5) points dominate nothing of each other.
    assert pareto_front(points) == [0, 1, 4, 5]


# --- degenerate output, styles across runs, environment ------------------------------------------------

LOOPING = {"stop_reason": "length", "repetition_rate": 0.8, "lang_match": "true"}


def test_degenerate_output_is_counted_flagged_and_caveated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fine = make_run(
        tmp_path / "runs", "run-fine", models=("m1",), overrides={"repetition_rate": 0.02, "lang_match": "true"}
    )
    loops = make_run(tmp_path / "runs", "run-loops", models=("m1",), overrides=LOOPING)
    assert report(capsys, fine)[0] == 0
    html = (fine / "report.html").read_text(encoding="utf-8")
    assert "<td class=num>0/6</td>" in html  # 6 ok samples, none degenerate
    assert " †</td>" not in html and "Mostly degenerate output" not in html
    assert "stop: eos" in html and "degenerate: a loop" not in html

    assert report(capsys, loops)[0] == 0
    html = (loops / "report.html").read_text(encoding="utf-8")
    assert "<td class=num>6/6</td>" in html
    assert re.search(r"<td class=num>0\.\d+ †</td>", html)  # ROUGE cells marked
    assert "Mostly degenerate output" in html and "do not rank models on it" in html
    card = html[html.index('<div class="col degenerate">') :]
    assert "stop: length (hit max_new_tokens)" in card and "repetition 0.80" in card
    assert "degenerate: a loop, cut off at max_new_tokens" in card
    md_text = (loops / "report.md").read_text(encoding="utf-8")
    assert "Mostly degenerate output" in md_text and "degenerate: a loop, cut off at max\\_new\\_tokens" in md_text


def test_written_degenerate_column_wins_and_wrong_language_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_run(tmp_path, "run-a", models=("m1",), overrides={"lang_match": "false", "repetition_rate": 0.0})
    assert report(capsys, run)[0] == 0
    html = (run / "report.html").read_text(encoding="utf-8")
    assert "<td class=num>6/6</td>" in html and "degenerate: not in the requested language" in html
    # A run from before the column existed: the same rule applied to its other columns.
    from harness.results.schema import COLUMNS

    old_csv = [c for c in COLUMNS if c != "degenerate"]
    run = make_run(tmp_path, "run-old", models=("m1",), overrides=LOOPING, columns=old_csv)
    assert report(capsys, run)[0] == 0
    assert "<td class=num>6/6</td>" in (run / "report.html").read_text(encoding="utf-8")
    # A run that wrote the column: its verdict is used as written.
    run = make_run(tmp_path, "run-b", models=("m1",), overrides={**LOOPING, "degenerate": "false"})
    assert report(capsys, run)[0] == 0
    assert "<td class=num>0/6</td>" in (run / "report.html").read_text(encoding="utf-8")


def _two_run_summary(tmp_path: Path) -> pd.DataFrame:
    from harness.report.data import collect_samples, summary_table
    from harness.report.load import load_runs

    a = make_run(tmp_path / "runs", "run-a", seed=1, models=("m-small", "m-large"))
    # run-b: m-small much better and faster, so across runs it would dominate run-a's m-small.
    b = make_run(
        tmp_path / "runs", "run-b", seed=2, models=("m-small", "m-large"), scale={"decode_tok_s": 2, "rougeL_f": 2}
    )
    samples, order = collect_samples(load_runs([a, b]))
    return summary_table(samples, order)


def test_pareto_front_is_per_run(tmp_path: Path) -> None:
    from harness.report.plots import fronts_by_run

    summary = _two_run_summary(tmp_path)
    fronts = fronts_by_run(summary, "decode_tok_s", "rougeL_f")
    series = [sorted(summary.loc[f, "series"]) for f in fronts]
    # m-small is fastest and m-large best within each run: both on each run's front, although
    # run-b's m-small beats run-a's on both axes.
    assert series == [["m-large @ run-a", "m-small @ run-a"], ["m-large @ run-b", "m-small @ run-b"]]


def test_colour_per_model_marker_per_run_and_axis_from_zero(tmp_path: Path) -> None:
    from matplotlib.transforms import Bbox

    from harness.report.build import short_labels
    from harness.report.plots import quality_figure, series_styles

    summary = _two_run_summary(tmp_path)
    colors, markers = series_styles(
        dict(zip(summary["series"], summary["model"], strict=True)),
        dict(zip(summary["series"], summary["run"], strict=True)),
    )
    assert colors["m-small @ run-a"] == colors["m-small @ run-b"] != colors["m-large @ run-a"]
    assert markers["m-small @ run-a"] == markers["m-large @ run-a"] != markers["m-small @ run-b"]
    labels = short_labels(summary)
    assert labels["m-small @ run-b"] == "m-small"  # the marker says which run

    made = quality_figure(summary, colors, markers=markers, labels=labels)
    assert made is not None
    fig, boxes = made
    assert fig.axes[0].get_ylim()[0] == 0
    assert len(boxes) == 4
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            overlap = Bbox.intersection(a, b)
            assert overlap is None or overlap.width * overlap.height == 0


def test_labels_do_not_overlap_when_points_crowd() -> None:
    from matplotlib.transforms import Bbox

    from harness.report.plots import palette, quality_figure

    names = [f"model-{i}-instruct-q4_k_m" for i in range(6)]
    means = pd.DataFrame(
        {
            "series": names,
            "decode_tok_s": [50, 50.5, 51, 50.2, 50.8, 51.2],
            "rougeL_f": [0.2, 0.201, 0.2, 0.199, 0.202, 0.2],
        }
    )
    made = quality_figure(means, palette(names))
    assert made is not None
    boxes = made[1]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            overlap = Bbox.intersection(a, b)
            assert overlap is None or overlap.width * overlap.height == 0, (i, a, b)


def test_environment_shows_full_cpu_typed_command_and_only_installed_packages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_run(tmp_path, "run-a")
    meta = json.loads((run / "run.json").read_text(encoding="utf-8"))
    meta["command"] = ["/repo/harness/__main__.py", "run", "--models", "a b"]  # as older runs recorded it
    meta["environment"]["cpu"].update(vendor="AuthenticAMD", family=25, model=17, stepping=1, microcode="0x1000065")
    meta["environment"]["packages"] = {"numpy": "2.1.0", "onnxruntime": None}
    (run / "run.json").write_text(json.dumps(meta), encoding="utf-8")
    assert report(capsys, run)[0] == 0
    html = (run / "report.html").read_text(encoding="utf-8")
    assert "Test CPU @ 3.0GHz (AuthenticAMD family 25 model 17 stepping 1, microcode 0x1000065)" in html
    assert "python -m harness run --models &#x27;a b&#x27;" in html
    assert "<td>numpy 2.1.0</td>" in html and "None" not in html


def test_a_fleet_run_reports_one_series_per_device(tmp_path: Path) -> None:
    """Rows of one model from two devices are two series (never pooled into one mean)."""
    import csv

    from harness.report.data import collect_samples
    from harness.report.load import load_runs

    run = make_run(tmp_path, "fleet", models=("m-small",), repeats=2)
    path = run / "results.csv"
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for i, row in enumerate(rows):
        row["device"] = "a" if i % 2 else "b"
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    samples, order = collect_samples(load_runs([run]))
    assert sorted(order) == ["m-small on a", "m-small on b"]
    assert samples.groupby("series")["device"].nunique().eq(1).all()
