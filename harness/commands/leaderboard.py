"""`harness leaderboard`: per device, each model's best config from the results store (harness.store.leaderboard)."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from harness.commands.db import add_db_option, render


def _list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "leaderboard",
        help="per device: each model's best config, quality/speed/memory side by side, Pareto-optimal marked",
        description="From every run in the results store: per device, each model's best config (sorted by the "
        "metrics in the order given, each in its better direction), with the metrics side by side; * marks "
        "the models no other model on that device beats on every metric (Pareto-optimal); random-weight models "
        "(generated, e.g. tiny-qwen2) and configs whose outputs are mostly degenerate take no part in that mark. "
        "The table rounds by unit; csv and json keep the stored values.",
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


# Terminal digits per unit, as in the run's summary tables; csv and json keep the stored values.
_FORMAT = {"s": ".3f", "tok/s": ".1f", "MiB": ".0f", "0-1": ".3f", "J": ".1f", "W": ".1f"}


def fmt_metric(metric: str, value: Any) -> Any:
    """A metric's value rounded for the terminal table by its unit (4 significant digits where no unit
    says); '-' where missing."""
    from harness.results.schema import SPECS

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    spec = SPECS.get(metric)
    return format(float(value), _FORMAT.get(spec.unit if spec else "", ".4g"))


def _pareto_cell(row: Any) -> str:
    if row["excluded"]:
        return f"- ({row['excluded']})"
    return "*" if row["pareto"] else ""


def _leaderboard(args: argparse.Namespace) -> int:
    from harness.store.leaderboard import build, display_name

    board = build(args.db, args.metric, args.device)
    table = board.table
    terminal = args.format == "table"
    columns = [
        "device", "model", "config", *(display_name(m) for m in board.metrics),
        "talks", "samples", "runs", "degenerate", "pareto",
    ]
    rows = [
        (
            r["device"],
            r["model"],
            board.config_text(r),
            *[fmt_metric(m, r[m]) if terminal else r[m] for m in board.metrics],
            int(r["talks"]),
            int(r["samples"]),
            int(r["runs"]),
            f"{int(r['degenerate'])}/{int(r['judged'])}" if r["judged"] else "-",
            _pareto_cell(r),
        )
        for _, r in table.iterrows()
    ]
    sys.stdout.write(render(columns, rows, args.format))
    if terminal:
        order = ", then ".join(board.metrics)
        print(f"best config per model by {order}; * = Pareto-optimal on its device (no model better on all)")
        peaks = [display_name(m) for m in board.metrics if display_name(m) != m]
        if peaks:
            print(f"{', '.join(peaks)}: the largest sample of the config")
        print(
            "degenerate: samples looping into the token cap or in the wrong language, of those judged; "
            "not in the Pareto mark: random-weight models and mostly degenerate configs"
        )
        for device, rows_of in table.groupby("device", sort=False):
            if rows_of["excluded"].astype(bool).all():
                print(f"{device}: every model is random-weight or mostly degenerate, so none is marked Pareto-optimal")
        if board.shared_text():
            print(f"every row: {board.shared_text()}")
    return 0
