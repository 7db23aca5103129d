"""`harness models`: list the models a run can name; `harness models pull ID…`: fetch them now.

python -m harness models [--models-file F]
python -m harness models pull ID [ID …] [--offline] [--models-file F]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import HarnessError
from harness.models.registry import (
    HfSource,
    ModelEntry,
    ModelscopeSource,
    RemoteSource,
    load_models,
    select_models,
)
from harness.models.sources import (
    cache_dir,
    describe_source,
    download_size,
    hf_endpoint,
    hub,
    is_ready,
    local_size,
    modelscope_endpoint,
    resolve,
)

if TYPE_CHECKING:
    from rich.table import Table


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list models (id, backend, quant, source, size, ready); `models pull ID` fetches weights",
        description="List the models in models.yaml and this machine's registered.yaml, "
        "with whether their weights are in the cache.",
    )
    parser.add_argument(
        "--models-file",
        type=Path,
        default=None,
        metavar="FILE.yaml",
        help="models.yaml to read (default: the shipped one)",
    )
    parser.set_defaults(func=_list)
    sub = parser.add_subparsers(dest="models_command", metavar="{pull}")
    pull = sub.add_parser(
        "pull",
        help="download / generate the weights of the named models into the cache",
        description="Fetch each model into the cache (verifying sha256) and print its local path.",
    )
    pull.add_argument("ids", nargs="+", metavar="ID", help="model ids, as in `harness models`")
    pull.add_argument(
        "--offline", action="store_true", help="never touch the network; fail for models not cached"
    )
    # SUPPRESS: without it the subparser's default would overwrite `models --models-file F pull …`.
    pull.add_argument(
        "--models-file",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="FILE.yaml",
        help="models.yaml to read (default: the shipped one)",
    )
    pull.set_defaults(func=_pull)


def _list(args: argparse.Namespace) -> int:
    from rich.table import Table

    from harness.console import plain_console

    entries = load_models(args.models_file)
    table = Table(title="Models", title_justify="left")
    # Fold rather than truncate: a cut-off id could not be pasted into --models.
    for name in ("id", "backend", "quant", "hub", "source"):
        table.add_column(name, overflow="fold")
    table.add_column("size MiB", justify="right", overflow="fold")
    table.add_column("ready", overflow="fold")
    table.add_column("default", overflow="fold")
    for entry in entries.values():
        size = local_size(entry)
        table.add_row(
            entry.id,
            entry.backend,
            entry.quant,
            hub(entry),
            describe_source(entry),
            f"{size / 2**20:.1f}" if size is not None else "",
            "remote" if isinstance(entry.source, RemoteSource) else "yes" if is_ready(entry) else "no",
            "yes" if entry.default else "",
        )
    # Piped to a file or grep: one line per model beats rich's 80-column default.
    console = plain_console(pipe_width=200)
    console.print(table)
    provenance = _provenance_table(list(entries.values()))
    if provenance is not None:
        console.print(provenance)
    console.print(f"cache: {cache_dir()}  (set HARNESS_CACHE to move it)")
    sources = {type(e.source) for e in entries.values()}
    if HfSource in sources:
        console.print(f"hf downloads from {hf_endpoint()}  (set HF_ENDPOINT for a mirror, e.g. https://hf-mirror.com)")
    if ModelscopeSource in sources:
        console.print(f"modelscope downloads from {modelscope_endpoint()}  (set MODELSCOPE_ENDPOINT for another site)")
    return 0


def _provenance_table(entries: list[ModelEntry]) -> Table | None:
    """Where each model's weights come from and what they must hash to: upstream repo, licence, the pinned
    download size and sha256 (in full: it is what a user compares with upstream's published hash)."""
    from rich.table import Table

    rows = [e for e in entries if e.upstream or e.license or getattr(e.source, "sha256", None)]
    if not rows:
        return None
    table = Table(title="Provenance", title_justify="left")
    for name in ("id", "upstream", "license"):
        table.add_column(name, overflow="fold")
    table.add_column("download MiB", justify="right", overflow="fold")
    table.add_column("sha256 (pinned)", overflow="fold", no_wrap=True)
    for entry in rows:
        size = download_size(entry)
        table.add_row(
            entry.id,
            entry.upstream,
            entry.license,
            f"{size / 2**20:.1f}" if size is not None else "",
            getattr(entry.source, "sha256", None) or "",
        )
    return table


def _pull(args: argparse.Namespace) -> int:
    entries = load_models(args.models_file)
    chosen = select_models(entries, args.ids)  # every id is checked before anything is downloaded
    failed = 0
    for entry in chosen:
        try:
            path = resolve(entry, offline=args.offline, progress=sys.stdout.isatty())
        except HarnessError as exc:
            # Keep going: one unreachable model should not stop the others from being fetched.
            print(f"harness models pull: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"{entry.id}: {path}" if path is not None else f"{entry.id}: nothing to pull ({hub(entry)})")
    return 2 if failed else 0
