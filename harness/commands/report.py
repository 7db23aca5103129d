"""`harness report RUN [RUN...]`: report.html (self-contained) and report.md with plots and summaries."""

from __future__ import annotations

import argparse
from pathlib import Path


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

    runs = load_runs(resolve_run_args(args.runs, args.db))
    out_dir = args.out if args.out is not None else runs[0].directory
    html_path, md_path = write_report(runs, out_dir)
    print(f"wrote {md_path} (PNG plots beside it)")
    print(html_path)
    return 0
