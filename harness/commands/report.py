"""`harness report RUN [RUN...]`: report.html (self-contained) and report.md with plots and summaries."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.errors import HarnessError


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "report",
        help="write report.html and report.md (plots, environment, summaries) for one or more runs",
        description=(
            "Write report.html (one self-contained file, plots embedded) and report.md (PNG plots beside "
            "it) for one or more runs: environment, per-model means, quality vs speed with the Pareto "
            "front, peak memory, TTFT and per-token latency, and each talk's summaries beside the "
            "references. Prints the HTML path last."
        ),
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directory or results.csv")
    p.add_argument(
        "--db",
        type=Path,
        metavar="PATH",
        help="results store: a RUN may also be a stored run id (harness db; default: none, RUNs are directories)",
    )
    p.add_argument(
        "--out", type=Path, metavar="DIR", help="output directory (default: the first RUN's directory)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: matplotlib costs a second at start-up that other commands should not pay.
    from harness.report.build import write_report
    from harness.report.load import load_runs
    from harness.store import resolve_run_args
    from harness.store.duck import is_materialised

    runs = load_runs(resolve_run_args(args.runs, args.db))
    out_dir = args.out if args.out is not None else runs[0].directory
    if args.out is None and is_materialised(out_dir):
        # A stored run is read from a temporary folder removed at exit: the report goes to the current one.
        out_dir = Path.cwd() / f"report-{runs[0].label}"
    try:
        html_path, md_path = write_report(runs, out_dir)
    except OSError as exc:  # ENOSPC, EROFS, EACCES: one line, not a traceback
        why = exc.strerror or str(exc)
        raise HarnessError(f"cannot write the report to {out_dir}: {why}; free space or pass another --out") from None
    print(f"wrote {md_path} (PNG plots beside it)")
    print(html_path)
    return 0
