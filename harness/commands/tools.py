"""`harness tools build`: llama.cpp's llama-bench and llama-server from the installed llama-cpp-python's vendored
sources, cached per llama-cpp-python version and CPU (harness.crosscheck.build); `harness tools where`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "tools",
        help="build llama.cpp's llama-bench and llama-server from the in-process engine's sources (cached)",
        description="llama.cpp's own tools, built from the installed llama-cpp-python's vendored llama.cpp.",
    )
    sub = p.add_subparsers(dest="tools_command", metavar="{build,where}")
    build = sub.add_parser(
        "build",
        help="build (or find cached) llama-bench and llama-server; prints their directory last",
        description=(
            "Download llama-cpp-python's sdist (pip; its cache is used), configure its vendor/llama.cpp with the "
            "wheel's options (GGML_NATIVE, OpenMP, no BLAS, $CMAKE_ARGS) and build llama-bench and llama-server "
            "into $HARNESS_TOOLS (default ~/.cache/harness/tools), keyed by the llama-cpp-python version and "
            "the CPU's ISA flags. 10-20 min on 2 cores the first time; instant once cached."
        ),
    )
    build.add_argument("--jobs", type=int, metavar="N", help="parallel compile jobs (default: all CPUs)")
    build.add_argument(
        "--sdist", type=Path, metavar="FILE.tar.gz", help="this sdist (default: pip download of the installed version)"
    )
    build.add_argument("--force", action="store_true", help="rebuild even when a cached build exists")
    build.set_defaults(func=_build)
    where = sub.add_parser(
        "where",
        help="the cached build's directory and manifest (exit 1 if none)",
        description="Print this machine's cached build: its manifest (options, commit, build time) and directory.",
    )
    where.set_defaults(func=_where)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def _build(args: argparse.Namespace) -> int:
    from harness.crosscheck.build import ensure_built

    result = ensure_built(jobs=args.jobs, sdist=args.sdist, force=args.force)
    if result.cached:
        m = result.manifest
        print(f"cached: built {m.get('built_at')} in {m.get('build_s')} s (llama.cpp {m.get('vendor_commit')})")
    print(result.directory)
    return 0


def _where(args: argparse.Namespace) -> int:
    from harness.crosscheck.build import build_dir, manifest

    data = manifest()
    if data is None:
        print(f"no build at {build_dir()}")
        return 1
    print(json.dumps(data, indent=2))
    print(build_dir())
    return 0
