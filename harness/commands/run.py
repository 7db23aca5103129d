"""`harness run`: summarise each document with each model x config and write a run directory.

The options come from the table in `harness.params` (flags, defaults, help, validation, sweeps); this
module only turns the validated values into a `RunConfig` and starts the runner.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from harness import params
from harness.errors import HarnessError
from harness.interrupts import RunInterrupted
from harness.resume import resume_hint
from harness.run import RunConfig, Runner


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="benchmark models on the corpus (latency, memory, ROUGE); sweeps settings like llama-bench",
        description="Summarise each document with each model (x each combination of swept settings); write "
        "results.csv, summaries.jsonl, summary.csv and run.json into a new directory under --out. The last "
        f"line printed is that directory. Sweepable options take {params.SWEEP_GRAMMAR}.",
    )
    params.add_arguments(p)
    p.set_defaults(func=_run)


def build_config(args: argparse.Namespace) -> tuple[RunConfig, dict[str, object]]:
    """(RunConfig, the command's own options) from parsed arguments; a bad value raises HarnessError."""
    parsed = params.split_values(params.collect(args))
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    kwargs = {k: v for k, v in parsed.run.items() if k in fields}
    missing = sorted(set(parsed.run) - fields)
    if missing:  # a table entry without a RunConfig field is a programming error, not a user one
        raise LookupError(f"RunConfig has no field for option(s) {', '.join(missing)}")
    if parsed.sweep:
        kwargs["sweep"] = parsed.sweep
    kwargs["measure_bandwidth"] = not parsed.command["no_bandwidth"]
    return RunConfig(**kwargs), parsed.command


def _run(args: argparse.Namespace) -> int:
    config, command = build_config(args)
    for name, flag in (("devices", "--devices"), ("retry_window", "--retry-window")):
        if getattr(args, name, None) is not None and not command.get("fleet"):
            raise HarnessError(f"{flag} goes with --fleet tcp://HOST:PORT; add --fleet or leave {flag} out")
    if command.get("fleet"):
        return _run_fleet(config, command)
    if command.get("resume"):
        return _resume(args, Path(str(command["resume"])))
    runner = Runner(config)
    if command.get("dry_run"):
        print(runner.dry_run(command.get("estimate_from")))
        return 0
    return _finish(runner, command.get("db"))


EXIT_ALL_FAILED = 4  # every sample of the run is an error row


def _finish(runner: Runner, db: object = None) -> int:
    """Run; the run directory is the last line printed. Exit 0 all rows ok, 1 some rows are errors, 4 every
    row is an error (run.json status `failed`), 128 + signal number (130 SIGINT, 143 SIGTERM) when
    interrupted; a full disk raises (exit 2).
    `db`: a results store to ingest the finished run into (--db)."""
    try:
        run_dir, errors = runner.run()
    except RunInterrupted as exc:  # while starting: a new run directory was removed, a resumed one kept
        print(f"harness run: interrupted by {exc.signal_name} while starting; no sample was run", file=sys.stderr)
        return exc.exit_code
    if db and runner.interrupted is None:
        _ingest(Path(str(db)), run_dir)
    # Failed samples: one line before the run directory, which stays the last line printed.
    if runner.interrupted is None and runner.status == "failed":
        print(f"harness run: {runner.failure}", file=sys.stderr, flush=True)
    elif runner.interrupted is None and errors:
        print(f"harness run: {errors} of {runner.rows_written} samples failed (first: {runner.first_error})",
              file=sys.stderr, flush=True)
    print(run_dir, flush=True)
    if runner.interrupted is not None:
        print(
            f"harness run: interrupted by {runner.interrupted.signal_name}: {runner.rows_written} of "
            f"{runner.planned_samples} samples written and kept; resume with: {resume_hint(run_dir)}",
            file=sys.stderr,
        )
        return runner.interrupted.exit_code
    return EXIT_ALL_FAILED if runner.status == "failed" else 1 if errors else 0


def _resume(args: argparse.Namespace, run_dir: Path) -> int:
    """`--resume RUN_DIR`: the run's recorded command line, parsed again where it was started (harness.resume)."""
    from harness.resume import load_state, parse_recorded

    given = [p.flag for p in params.PARAMS if p.name != "resume" and _given(args, p)]
    if given:
        raise HarnessError(
            f"--resume takes the configuration recorded in {run_dir}/run.json; drop {', '.join(given)}"
        )
    state = load_state(run_dir.resolve())
    recorded = parse_recorded(state)  # a tampered "command" is one line, not argparse's usage block
    back = Path.cwd()
    try:
        if state.cwd is not None and state.cwd.is_dir():
            os.chdir(state.cwd)  # relative --corpus / --models-file paths mean what they meant then
        config, _command = build_config(recorded)
        return _finish(Runner(config, resume=state))
    finally:
        os.chdir(back)


def _given(args: argparse.Namespace, p: params.Param) -> bool:
    value = getattr(args, p.name, None)
    return value not in (None, False, [], p.default)


def _ingest(db: Path, run_dir: Path) -> None:
    from harness.store import ingest

    for line in ingest(db, [run_dir]):
        print(line)


def _run_fleet(config: RunConfig, command: dict[str, object]) -> int:
    """`--fleet`: the run on the devices of a Dask scheduler, merged into one run directory (harness.fleet)."""
    for name, flag, why in (
        ("dry_run", "--dry-run", "plans a single-machine run"),
        ("resume", "--resume", "continues a single-machine run"),
    ):
        if command.get(name):
            raise HarnessError(f"{flag} {why}; leave out --fleet")
    if config.server_pid:
        raise HarnessError("--server-pid names a process on this machine; it cannot go with --fleet")
    from harness.fleet.driver import run_fleet

    try:
        run_dir, errors = run_fleet(
            config, str(command["fleet"]), str(command["devices"]), float(command["retry_window"] or 0.0)
        )
    except RunInterrupted as exc:
        print(f"harness run: interrupted by {exc.signal_name}; rows already written are kept", file=sys.stderr)
        return exc.exit_code
    if command.get("db"):
        _ingest(Path(str(command["db"])), run_dir)
    print(run_dir)
    return 1 if errors else 0
