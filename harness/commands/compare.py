"""`harness compare BASELINE RUN [RUN...]`: per-model metric changes against a baseline run."""

from __future__ import annotations

import argparse
import sys

from harness.errors import HarnessError

DEFAULT_THRESHOLD_PCT = 5.0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from harness.report.compare import DEFAULT_METRICS
    from harness.report.compare_output import FORMATS

    p = subparsers.add_parser(
        "compare",
        help="compare runs against a baseline (relative change + Welch's t-test per model)",
        description=(
            "Compare one or more runs against a baseline (the first RUN). Samples are matched on "
            "model x talk (x provider); each metric gets baseline and new means, the relative change and "
            "a Welch's t-test p-value. Runs whose machine or settings differ are flagged at the top."
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
        help=f"metrics to compare (space or comma separated); default: {','.join(DEFAULT_METRICS)}",
    )
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    p.add_argument(
        "--fail-on-regression",
        type=float,
        metavar="PCT",
        help="exit 1 when any metric of any model is worse by more than PCT %% and significant (p < alpha)",
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
        "--alpha", type=float, default=0.05, help="significance level for the t-test (default 0.05)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from harness.report import compare_output as out
    from harness.report.compare import DEFAULT_METRICS, resolve_metrics
    from harness.report.load import load_runs

    if len(args.runs) < 2:
        raise HarnessError("compare needs at least two runs: BASELINE RUN [RUN...]")
    if not 0 < args.alpha < 1:
        raise HarnessError(f"--alpha {args.alpha:g} is out of range; use a level between 0 and 1, e.g. 0.05")
    for flag, value in (("--fail-on-regression", args.fail_on_regression), ("--threshold", args.threshold)):
        if value is not None and value < 0:
            raise HarnessError(f"{flag} {value:g} is negative; give a percentage such as 10")
    threshold = args.threshold
    if threshold is None:
        threshold = args.fail_on_regression if args.fail_on_regression is not None else DEFAULT_THRESHOLD_PCT

    runs = load_runs(args.runs)
    metrics = resolve_metrics(args.metrics, runs)
    result = out.build(runs, metrics, alpha=args.alpha, threshold_pct=threshold)
    if not args.metrics:
        result.notes += [
            f"{m}: no values in these runs, not compared" for m in DEFAULT_METRICS if m not in metrics
        ]

    if args.format == "table":
        console = Console()
        if not console.is_terminal:
            console = Console(width=120)  # pipes and CI logs: don't squeeze the tables to 80 columns
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
            f"{args.fail_on_regression:g} % with p < {args.alpha:g}",
            file=sys.stderr,
        )
        return 1
    return 0
