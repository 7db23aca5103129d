"""`harness leaderboard`: per device, each model's best config from the results store (harness.store.leaderboard)."""

from __future__ import annotations

import argparse
import sys

from harness.commands.db import add_db_option, render


def _list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "leaderboard",
        help="per device: each model's best config, quality/speed/memory side by side, Pareto-optimal marked",
        description="From every run in the results store: per device, each model's best config (sorted by the "
        "metrics in the order given, each in its better direction), with the metrics side by side; * marks "
        "the models no other model on that device beats on every metric (Pareto-optimal).",
    )
    p.add_argument(
        "--metric",
        type=_list,
        default=None,
        metavar="M[,M…]",
        help="metrics to rank and show, most important first (default: rougeL_f,decode_tok_s,peak_rss_mb)",
    )
    p.add_argument(
        "--device", type=_list, default=None, metavar="NAME[,NAME…]", help="only these devices (default: all)"
    )
    p.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format")
    add_db_option(p)
    p.set_defaults(func=_leaderboard)


def _leaderboard(args: argparse.Namespace) -> int:
    from harness.store.leaderboard import build

    board = build(args.db, args.metric, args.device)
    table = board.table
    columns = ["device", "model", "config", *board.metrics, "talks", "samples", "runs", "pareto"]
    rows = [
        (
            r["device"],
            r["model"],
            board.config_text(r),
            *[r[m] for m in board.metrics],
            int(r["talks"]),
            int(r["samples"]),
            int(r["runs"]),
            "*" if r["pareto"] else "",
        )
        for _, r in table.iterrows()
    ]
    sys.stdout.write(render(columns, rows, args.format))
    if args.format == "table":
        order = ", then ".join(board.metrics)
        print(f"best config per model by {order}; * = Pareto-optimal on its device (no model better on all)")
        if board.shared_text():
            print(f"every row: {board.shared_text()}")
    return 0
