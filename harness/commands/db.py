"""`harness db ingest|query|export`: the DuckDB results store (see harness.store, docs/store.md)."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import math
import sys
from pathlib import Path
from typing import Any

DB_HELP = "the DuckDB file (default: results/harness.duckdb)"


def add_db_option(p: argparse.ArgumentParser, help_text: str = DB_HELP) -> None:
    from harness.store import DEFAULT_DB

    p.add_argument("--db", type=Path, default=DEFAULT_DB, metavar="PATH", help=help_text)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "db",
        help="the results store: ingest run directories into DuckDB, query them with SQL, export Parquet",
        description="Every run in one embedded DuckDB file: tables runs, rows, devices, summaries.",
    )
    db_sub = p.add_subparsers(dest="db_command", metavar="SUBCOMMAND", required=True)
    ingest = db_sub.add_parser(
        "ingest",
        help="add run directories to the store (again = replaced, never duplicated)",
        description="Add run directories (results.csv, run.json, summaries.jsonl) to the store. A run id "
        "already stored is replaced in one transaction, so ingesting twice never duplicates a row.",
    )
    ingest.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="run directories")
    add_db_option(ingest)
    ingest.set_defaults(func=_ingest)

    q = db_sub.add_parser(
        "query",
        help="run one read-only SQL statement and print the result",
        description="Run one SQL statement on the store (read-only) and print the result. Tables: runs, rows "
        "(results.csv columns + device, row_index), devices, summaries.",
    )
    q.add_argument("sql", metavar="SQL", help='e.g. "select device, count(*) from rows group by 1"')
    q.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format")
    add_db_option(q)
    q.set_defaults(func=_query)

    e = db_sub.add_parser(
        "export",
        help="write every table as Parquet",
        description="Write runs, rows, devices and summaries as <table>.parquet files into DIR.",
    )
    e.add_argument("--parquet", type=Path, required=True, metavar="DIR", help="directory for the Parquet files")
    add_db_option(e)
    e.set_defaults(func=_export)


def _ingest(args: argparse.Namespace) -> int:
    from harness.store import ingest

    for line in ingest(args.db, args.runs):
        print(line)
    return 0


def _plain(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    return value


def _cell(value: Any) -> str:
    from harness.results.writer import format_cell

    value = _plain(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return format_cell(value)


def render(columns: list[str], rows: list[tuple[Any, ...]], fmt: str) -> str:
    """A query result as a terminal table, CSV or a JSON array of objects."""
    if fmt == "json":
        records = [{c: _plain(v) for c, v in zip(columns, r, strict=True)} for r in rows]
        return json.dumps(records, ensure_ascii=False, indent=2, default=str) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_cell(v) for v in r] for r in rows)
        return buf.getvalue()
    from rich.table import Table

    from harness.console import plain_console

    table = Table(show_lines=False)
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*[_cell(v) for v in r])
    console = plain_console(pipe_width=200, file=io.StringIO())
    console.print(table)
    console.print(f"{len(rows)} row(s)")
    return console.file.getvalue()  # type: ignore[attr-defined]


def _query(args: argparse.Namespace) -> int:
    from harness.store import query

    columns, rows = query(args.db, args.sql)
    if not columns:
        print("ok (no result set)")
        return 0
    sys.stdout.write(render(columns, rows, args.format))
    return 0


def _export(args: argparse.Namespace) -> int:
    from harness.store import export_parquet

    for path in export_parquet(args.db, args.parquet):
        print(path)
    return 0
