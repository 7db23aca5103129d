"""`harness fleet worker`: make this device part of a fleet (see harness.fleet and docs/fleet.md)."""

from __future__ import annotations

import argparse
import math


def _tags(value: str) -> list[str]:
    return [t.strip() for t in value.split(",") if t.strip()]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "fleet",
        help="run the benchmark across devices: `fleet worker` joins this device to a Dask scheduler",
        description="A fleet is a Dask scheduler (`dask scheduler`), one `harness fleet worker` per device, and "
        "`harness run --fleet tcp://HOST:8786` on any machine to plan, run and merge.",
    )
    fleet_sub = p.add_subparsers(dest="fleet_command", metavar="SUBCOMMAND", required=True)
    w = fleet_sub.add_parser(
        "worker",
        help="join this device to the fleet's scheduler and run the jobs planned for it, one at a time",
        description="Start a Dask worker with one thread and the resources device-NAME (+ tag-T per tag), and "
        "publish this device's fingerprint (CPU, cores, RAM, OS, accelerators, ONNX Runtime providers, "
        "llama.cpp features, harness version) to the scheduler. Runs until Ctrl-C.",
    )
    w.add_argument("--scheduler", required=True, metavar="tcp://HOST:PORT", help="address `dask scheduler` printed")
    w.add_argument("--device", required=True, metavar="NAME", help="this device's name in the fleet (unique)")
    w.add_argument(
        "--tags",
        type=_tags,
        default=[],
        metavar="T[,T…]",
        help="labels to select devices by: --devices tag:T (default: none)",
    )
    w.add_argument(
        "--memory-limit",
        metavar="SIZE",
        help="refuse models whose weights exceed SIZE (e.g. 6GB, 512MiB; default: this machine's RAM)",
    )
    w.add_argument(
        "--death-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="give up when the scheduler cannot be reached for SECONDS (default 60)",
    )
    w.set_defaults(func=_worker)


def _worker(args: argparse.Namespace) -> int:
    from harness.errors import HarnessError
    from harness.fleet import probe_scheduler, require_dask

    if not math.isfinite(args.death_timeout) or args.death_timeout <= 0:
        # nan/inf/-1 would make the worker wait for ever (or crash inside Dask): refuse before it starts.
        raise HarnessError(f"--death-timeout {args.death_timeout:g}: give a number of seconds above 0, e.g. 60")
    require_dask()
    from harness.fleet.fingerprint import check_name
    from harness.fleet.worker import check_scheduler_address, serve

    limit = None
    if args.memory_limit:
        from dask.utils import parse_bytes

        try:
            limit = int(parse_bytes(args.memory_limit))
        except ValueError:
            raise HarnessError(
                f'--memory-limit "{args.memory_limit}" is not a size; write e.g. 6GB or 512MiB'
            ) from None
        if limit <= 0:
            raise HarnessError("--memory-limit must be more than 0")
    # Before Dask's worker starts: a port that refuses, stays silent or speaks another protocol is one line
    # within --death-timeout here, where inside the worker's start-up it is a traceback or a MemoryError.
    check_scheduler_address(args.scheduler)
    check_name("device", args.device)  # usage errors first: a bad name is not a network problem
    for tag in args.tags:
        check_name("tag", tag)
    probe_scheduler(args.scheduler, args.death_timeout)
    serve(args.scheduler, args.device, args.tags, limit, args.death_timeout, echo=lambda line: print(line, flush=True))
    return 0
