"""`harness compare BASELINE RUN [RUN...]`: per-model metric changes against a baseline run.

Exit status: 0 = compared (and, with --fail-on-regression, no regression); 1 = a regression beyond the
gate's threshold; 2 = a usage error; 3 = --fail-on-regression found nothing it could judge (no shared model,
only error rows on a side, runs not like-for-like, or no testable metric), so the gate cannot vouch for
the run. The method is in harness.report.compare.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from harness.errors import HarnessError

DEFAULT_THRESHOLD_PCT = 5.0
EXIT_REGRESSION = 1
EXIT_NOTHING_COMPARABLE = 3


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from harness.report.compare_output import FORMATS
    from harness.results.schema import view

    default_metrics = view("compare")

    p = subparsers.add_parser(
        "compare",
        help="compare runs against a baseline (change paired by talk + paired t-test per model)",
        description=(
            "Compare one or more runs against a baseline (the first RUN). Samples are matched on "
            "model x talk (x provider); each metric gets baseline and new means, the mean per-talk relative "
            "change with a Student-t confidence interval, and a paired t-test over the shared talks (Welch's test "
            "within the talk when only one is shared), Holm-corrected over all tests. Runs whose machine or "
            'settings differ are flagged at the top and their verdicts shown as "not comparable". '
            f"Exit status: 0 ok, {EXIT_REGRESSION} regression, 2 usage error, {EXIT_NOTHING_COMPARABLE} "
            "--fail-on-regression found nothing comparable."
        ),
    )
    p.add_argument(
        "runs", nargs="+", metavar="RUN", help="run directory or results.csv; the first is the baseline"
    )
    p.add_argument(
        "--metrics",
        nargs="+",
        action="extend",
        metavar="METRIC",
        help=f"metrics to compare (space or comma separated); default: {','.join(default_metrics)}",
    )
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    p.add_argument(
        "--fail-on-regression",
        type=float,
        metavar="PCT",
        help=f"exit {EXIT_REGRESSION} when any metric of any model is worse by more than PCT %% and "
        f"significant (Holm-adjusted p < alpha); exit {EXIT_NOTHING_COMPARABLE} when nothing could be judged "
        "(default: off, exit 0 whatever changed)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        metavar="PCT",
        help=f"change (%%) beyond which a significant worsening is marked REGRESSION in the table "
        f"(default: the --fail-on-regression value, else {DEFAULT_THRESHOLD_PCT:g})",
    )
    p.add_argument(
        "--alpha", type=float, default=0.05, metavar="ALPHA", help="significance level for the t-test (default 0.05)"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="judge REGRESSION/improved even when the runs are not like-for-like (default: off, such "
        'verdicts are shown as "not comparable")',
    )
    p.add_argument(
        "--db",
        type=Path,
        metavar="PATH",
        help="results store: a RUN may also be a stored run id (harness db; default: none, RUNs are directories)",
    )
    p.add_argument(
        "--by",
        choices=("run", "device"),
        default="run",
        help="device: split each fleet run by device and compare the devices (the first is the baseline); "
        "the like-for-like warning names their hardware differences",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from harness.fleet import bydevice
    from harness.report import compare_output as out
    from harness.report.compare import DEFAULT_METRICS, resolve_metrics
    from harness.report.load import load_runs
    from harness.store import resolve_run_args

    if len(args.runs) < 2 and args.by != "device":
        raise HarnessError("compare needs at least two runs: BASELINE RUN [RUN...]")
    if not 0 < args.alpha < 1:
        raise HarnessError(f"--alpha {args.alpha:g} is out of range; use a level between 0 and 1, e.g. 0.05")
    for flag, value in (("--fail-on-regression", args.fail_on_regression), ("--threshold", args.threshold)):
        if value is not None and not math.isfinite(value):
            # nan compares false with everything: the gate would pass any regression.
            raise HarnessError(f"{flag} {value:g} is not a finite number; give a percentage such as 10")
        if value is not None and value < 0:
            raise HarnessError(f"{flag} {value:g} is negative; give a percentage such as 10")
    threshold = args.threshold
    if threshold is None:
        threshold = args.fail_on_regression if args.fail_on_regression is not None else DEFAULT_THRESHOLD_PCT

    runs = load_runs(resolve_run_args(args.runs, args.db))
    if args.by == "device":
        runs = bydevice.split_by_device(runs)
    metrics = resolve_metrics(args.metrics, runs)
    result = out.build(
        runs,
        metrics,
        alpha=args.alpha,
        threshold_pct=threshold,
        force=args.force,
        extra_mismatches=bydevice.hardware_differences if args.by == "device" else None,
    )
    if not args.metrics:
        result.notes += [
            f"{m}: no values in these runs, not compared" for m in DEFAULT_METRICS if m not in metrics
        ]

    if args.format == "table":
        console = Console()
        if not console.is_terminal:
            console = Console(width=140)  # pipes and CI logs: don't squeeze the tables to 80 columns
        out.render_table(result, console)
    else:
        text = {"md": out.render_md, "csv": out.render_csv, "json": out.render_json}[args.format](result)
        sys.stdout.write(text)
        if args.format in ("csv", "json"):
            sys.stderr.write(out.side_text(result))

    if args.fail_on_regression is None:
        return 0
    # The gate uses its own threshold even when --threshold marks the table differently.
    lines = out.regression_lines(result, threshold_pct=args.fail_on_regression)
    for line in lines:
        print(f"harness compare: {line}", file=sys.stderr)
    if lines:
        print(
            f"harness compare: failing: {len(lines)} metric(s) worse by more than "
            f"{args.fail_on_regression:g} % with Holm-adjusted p < {args.alpha:g}",
            file=sys.stderr,
        )
        return EXIT_REGRESSION
    why = out.nothing_comparable_line(result)
    if why:
        print(f"harness compare: failing: {why}", file=sys.stderr)
        return EXIT_NOTHING_COMPARABLE
    return 0
