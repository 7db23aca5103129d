"""report.html in a real browser (headless Chromium): every image decodes, nothing logs an error, and
Chinese renders from the embedded font on a system without any CJK font.

Needs Debian's `chromium` and a CJK font to embed (`fonts-noto-cjk`); .ci/run installs both. The
browser runs with a fontconfig that sees only DejaVu, so the Chinese it draws can only come from the
font embedded in the page. The full-page screenshot is kept (path printed at the end of the test run):
$HARNESS_ARTIFACTS/report-screenshot.png, else the test's tmp directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from chromium import Chromium, find_chromium
from runfactory import make_run

from harness.cli import main
from harness.report.fonts import EMBEDDED_FAMILY, embedded_cjk_font

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH: apt-get install -y chromium fonts-noto-cjk (.ci/run does)"
)
CHINESE_ONLY = "参考摘要一：开源模型。"
LATIN_FONTS = Path("/usr/share/fonts/truetype/dejavu")


def _fontconfig_without_cjk(tmp: Path) -> Path:
    conf = tmp / "fonts.conf"
    conf.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n<fontconfig>\n'
        f"  <dir>{LATIN_FONTS}</dir>\n  <cachedir>{tmp / 'fc-cache'}</cachedir>\n</fontconfig>\n",
        encoding="utf-8",
    )
    return conf


def _artifact_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("HARNESS_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_report_renders_in_chromium(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], artifacts: list[str]
) -> None:
    if not embedded_cjk_font(CHINESE_ONLY).css:
        pytest.skip("no CJK font on this machine to embed: apt-get install -y fonts-noto-cjk (.ci/run does)")
    if not LATIN_FONTS.is_dir():
        pytest.skip(f"{LATIN_FONTS} missing: cannot build a font set without CJK (Debian: fonts-dejavu-core)")
    a = make_run(
        tmp_path / "runs",
        "run-a",
        models=("m-small", "m-large"),
        references={"t1": [CHINESE_ONLY, "第二份参考摘要：端侧推理。"]},
        predictions={("m-large", "t1"): "模型在端侧运行，延迟很低。"},
    )
    # A second run whose outputs are loops cut off by the cap: flagged in the table and the cards.
    b = make_run(
        tmp_path / "runs",
        "run-b",
        seed=3,
        models=("m-small", "m-large"),
        scale={"decode_tok_s": 1.2},
        overrides={"stop_reason": "length", "repetition_rate": 0.8, "lang_match": "true"},
    )
    out = tmp_path / "report"
    assert main(["report", str(a), str(b), "--out", str(out)]) == 0
    capsys.readouterr()
    html = out / "report.html"

    env = dict(os.environ, FONTCONFIG_FILE=str(_fontconfig_without_cjk(tmp_path)))
    assert CHROMIUM is not None
    browser = Chromium(CHROMIUM, tmp_path / "profile", env=env)
    try:
        page = browser.page()
        browser.navigate(page, html.as_uri())
        images = browser.evaluate(
            page,
            "Promise.all([...document.images].map(i => i.decode().then("
            "() => [i.naturalWidth, i.naturalHeight], () => [0, 0])))",
        )
        assert len(images) == 4 and all(w > 100 and h > 100 for w, h in images), images

        fonts = browser.evaluate(
            page,
            "document.fonts.ready.then(() => [...document.fonts].map(f => [f.family.replaceAll('\"', ''), f.status]))",
        )
        assert [EMBEDDED_FAMILY, "loaded"] in fonts, fonts

        # Which fonts drew a Chinese-only paragraph: the embedded one and nothing else (no tofu fallback).
        browser.send("DOM.enable", session=page)
        browser.send("CSS.enable", session=page)
        root = browser.send("DOM.getDocument", session=page)["root"]["nodeId"]
        nodes = browser.send(
            "DOM.querySelectorAll", {"nodeId": root, "selector": ".col.ref p.text"}, session=page
        )["nodeIds"]
        used = browser.send("CSS.getPlatformFontsForNode", {"nodeId": nodes[0]}, session=page)["fonts"]
        assert [f["isCustomFont"] for f in used] == [True], used  # the @font-face, under its own name

        shot = _artifact_dir(tmp_path) / "report-screenshot.png"
        shot.write_bytes(browser.screenshot(page))
        artifacts.append(f"report.html screenshot (headless Chromium, no system CJK font): {shot}")
        assert browser.errors() == []
    finally:
        browser.close()
