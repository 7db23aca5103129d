"""Minimal wheels for tests of the `pypi` model source: valid dist-info, chosen (possibly hostile) members."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path


def make_wheel(folder: Path, name: str, members: dict[str, bytes], *, symlink: str | None = None) -> Path:
    """A minimal valid wheel `name`-1.0.0 holding `members` (name -> bytes), plus dist-info."""
    folder.mkdir(parents=True, exist_ok=True)
    module = name.replace("-", "_")
    path = folder / f"{module}-1.0.0-py3-none-any.whl"
    info = f"{module}-1.0.0.dist-info"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{module}/__init__.py", b"")
        for member, data in members.items():
            zf.writestr(member, data)
        if symlink:
            link = zipfile.ZipInfo(symlink)
            link.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(link, b"/etc/passwd")
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0.0\n")
        zf.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        zf.writestr(f"{info}/RECORD", "")
    return path
