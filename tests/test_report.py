"""`harness report`: self-contained HTML with real PNG plots, Markdown with PNG files, escaped summaries."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
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
