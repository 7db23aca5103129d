"""Chinese text in report.html on any viewer: a CJK font stack plus an embedded subset of a CJK font.

The summaries, references and talks are Chinese. A viewer without a CJK font (a fresh Linux desktop or
container, a CI artifact browser) would show them as empty boxes ("tofu"), and a report is typically
read offline, so a web font from a CDN is no answer. Two layers:

1. `FONT_STACK` names the CJK system fonts of the common platforms (Noto/Source Han on Linux, PingFang
   and Hiragino on macOS, Microsoft YaHei on Windows, WenQuanYi on older Linux); browsers fall back per
   glyph, so Latin text keeps the UI font.
2. When the machine writing the report has a CJK font (Debian: `fonts-noto-cjk`), the CJK characters
   the page actually uses -- typically 500-700 distinct ones, ~150 KB as WOFF2 -- are subset from it
   with fontTools and embedded as a data-URI `@font-face` (family `EMBEDDED_FAMILY`), *first* in the
   stack. It holds nothing but those CJK glyphs, so Latin text falls through to the UI font, and
   Chinese looks the same on every viewer. First, not after the system fonts: with `system-ui` ahead
   of it, Chromium on Linux was seen drawing the Chinese as tofu from a Latin font (its system-ui
   fallback answered before the later families were tried). Noto Sans CJK / Source Han Sans are under
   the SIL Open Font License, which permits embedding subsets in documents.

Where no CJK font is found, nothing is embedded and `EmbeddedFont.note` says so (the report shows it).
"""

from __future__ import annotations

import base64
import io
import os
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

EMBEDDED_FAMILY = "harness-cjk"

# System fonts with Simplified Chinese glyphs, preferred first.
CJK_SYSTEM_FONTS: tuple[str, ...] = (
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "PingFang SC",
    "Hiragino Sans GB",
    "Microsoft YaHei",
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
)
FONT_STACK = ", ".join(
    [
        f'"{EMBEDDED_FAMILY}"',
        "system-ui",
        "-apple-system",
        '"Segoe UI"',
        '"Noto Sans"',
        *(f'"{name}"' for name in CJK_SYSTEM_FONTS),
        "sans-serif",
    ]
)

# Font files that carry CJK glyphs, by the names their packages install them under.
_FONT_FILE_PATTERNS = (
    "NotoSansCJK*-Regular.tt[cf]",
    "NotoSansCJKsc-Regular.otf",
    "NotoSansSC-Regular.[ot]tf",
    "NotoSansSC*.[ot]tf",
    "SourceHanSans*-Regular.tt[cf]",
    "SourceHanSansSC-Regular.otf",
    "wqy-microhei.ttc",
    "wqy-zenhei.ttc",
    "msyh.tt[cf]",
    "PingFang.ttc",
    "Hiragino Sans GB.ttc",
)


def _font_dirs() -> list[Path]:
    home = Path.home()
    dirs = [Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), home / ".fonts", home / ".local/share/fonts"]
    if sys.platform == "darwin":
        dirs += [Path("/System/Library/Fonts"), Path("/Library/Fonts"), home / "Library/Fonts"]
    if sys.platform == "win32":
        dirs.append(Path(os.environ.get("WINDIR", r"C:\Windows")) / "Fonts")
    return [d for d in dirs if d.is_dir()]


def _candidates() -> list[Path]:
    """CJK font files on this machine, preferred first ($HARNESS_CJK_FONT first when set)."""
    found: list[Path] = []
    override = os.environ.get("HARNESS_CJK_FONT")
    if override:
        found.append(Path(override))
    for pattern in _FONT_FILE_PATTERNS:
        for directory in _font_dirs():
            found.extend(sorted(directory.rglob(pattern)))
    return list(dict.fromkeys(found))


def _open_cjk(path: Path) -> object | None:
    """The font in `path` with Simplified Chinese glyphs (the SC member of a collection), or None."""
    from fontTools.ttLib import TTCollection, TTFont, TTLibError

    try:
        if path.suffix.lower() == ".ttc":
            fonts = TTCollection(str(path), lazy=True).fonts
            fonts.sort(key=lambda f: 0 if " SC" in (f["name"].getBestFamilyName() or "") else 1)
        else:
            fonts = [TTFont(str(path), lazy=True)]
    except (OSError, TTLibError, AssertionError):
        return None
    for font in fonts:
        name = font["name"].getBestFamilyName() or ""
        if "Mono" in name:
            continue
        cmap = font.getBestCmap() or {}
        if ord("中") in cmap and ord("摘") in cmap:
            return font
    return None


@dataclass(frozen=True)
class EmbeddedFont:
    css: str  # an @font-face rule, or "" when nothing is embedded
    note: str  # what was embedded from where, or why nothing was
    size_bytes: int = 0


def _is_cjk(ch: str) -> bool:
    # CJK radicals, punctuation, kana, Han (basic and extension A), compatibility forms, full-width forms.
    return "\u2e80" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" or "\ufe30" <= ch <= "\uffef"


@lru_cache(maxsize=8)
def embedded_cjk_font(text: str) -> EmbeddedFont:
    """An @font-face rule embedding the glyphs `text` needs from a local CJK font (WOFF2 when brotli is
    installed, else WOFF), or an empty rule and the reason."""
    chars = "".join(sorted({ch for ch in text if _is_cjk(ch)}))
    if not chars:
        return EmbeddedFont("", "no CJK text: no font embedded")
    for path in _candidates():
        font = _open_cjk(path)
        if font is None:
            continue
        from fontTools import subset

        try:
            import brotli  # noqa: F401  (fontTools needs it for WOFF2)

            flavor = "woff2"
        except ImportError:
            flavor = "woff"
        options = subset.Options()
        options.flavor = flavor
        options.hinting = False  # screen rendering of CJK does not use TrueType hints; saves bytes
        options.name_IDs = [0, 1, 2, 3, 4, 5, 6, 13, 14]  # keep copyright, names and the licence
        subsetter = subset.Subsetter(options)
        subsetter.populate(text=chars)
        subsetter.subset(font)
        buf = io.BytesIO()
        font.flavor = flavor  # type: ignore[attr-defined]
        font.save(buf)  # type: ignore[attr-defined]
        data = buf.getvalue()
        family = font["name"].getBestFamilyName()  # type: ignore[index]
        css = (
            f'@font-face{{font-family:"{EMBEDDED_FAMILY}";font-display:swap;'
            f'src:url(data:font/{flavor};base64,{base64.b64encode(data).decode("ascii")}) format("{flavor}")}}'
        )
        note = f"{len(chars)} CJK characters embedded from {family} ({path.name}, {flavor}, {len(data) // 1024} KiB)"
        return EmbeddedFont(css, note, len(data))
    return EmbeddedFont(
        "",
        "no CJK font on the machine that wrote this report, none embedded: Chinese text needs a CJK font "
        "on the viewer (e.g. Debian fonts-noto-cjk)",
    )
