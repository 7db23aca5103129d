"""The rich console every command prints through: markup and highlighting off.

rich reads `[...]` in a printed string as markup and silently drops what it does not recognise, so
`pip install -e '.[onnx]'` printed as `pip install -e '.'`. Everything the commands print is data --
model ids, paths, hints, talk titles, engine strings -- never markup, so markup is off for the whole
console (table cells and titles included) rather than escaped string by string; styles still work
through `style=` arguments.
"""

from __future__ import annotations

import os
from typing import Any

from rich.console import Console


def plain_console(*, pipe_width: int | None = None, **kwargs: Any) -> Console:
    """A Console that prints strings as written. `pipe_width`: the width to use when output is not a
    terminal and COLUMNS is unset (rich would otherwise squeeze tables into 80 columns)."""
    console = Console(markup=False, highlight=False, **kwargs)
    if pipe_width and not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = pipe_width
    return console
