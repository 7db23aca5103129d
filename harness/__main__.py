"""`python -m harness`: the CLI, or one line naming the interpreter to use when a dependency is missing.

A bare `python -m harness` outside the venv finds the package (the working directory is on sys.path) but
not its dependencies; a `ModuleNotFoundError: psutil` traceback does not say that the fix is the venv's
interpreter, so that case is answered here, before and while the CLI imports its modules.
"""

from __future__ import annotations

import sys
from pathlib import Path


def missing_dependency_line(name: str, prefix: str | None = None, base_prefix: str | None = None) -> str:
    """The one line for a missing third-party module `name`: which interpreter lacks it and the fix."""
    prefix = sys.prefix if prefix is None else prefix
    base_prefix = sys.base_prefix if base_prefix is None else base_prefix
    root = Path(__file__).resolve().parent.parent
    venv_python = root / ".venv" / "bin" / "python"
    where = f"{sys.executable} has no module {name!r}"
    if prefix == base_prefix:  # not inside a virtual environment: the usual cause is the missing venv
        if venv_python.exists():
            return f"harness: error: {where}; use the venv's interpreter: .venv/bin/python -m harness"
        return (
            f"harness: error: {where}; set up the venv first: python3 -m venv .venv && .venv/bin/pip install -e . "
            "then run .venv/bin/python -m harness"
        )
    return f"harness: error: {where}; install the harness into this environment: {sys.executable} -m pip install -e ."


def _run() -> int:
    try:
        from harness.cli import main

        return main()
    except ModuleNotFoundError as exc:
        # Only a third-party dependency is a setup problem; a missing harness module is a bug and keeps
        # its traceback.
        if not exc.name or exc.name.split(".")[0] == "harness":
            raise
        print(missing_dependency_line(exc.name.split(".")[0]), file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(_run())
