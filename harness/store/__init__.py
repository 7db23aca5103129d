"""The results store: every run in one embedded DuckDB file, queryable with SQL.

Why: a run directory answers "how did this run go"; the questions a team asks after a few dozen runs on
a few devices ("which model is best on the NPU laptop", "did decode speed on the Pi change since
March") span runs. DuckDB is an embedded analytical database (one file, no server, SQL, Parquet export).

Tables (one file, default `results/harness.duckdb`):

    runs       one row per run: id, status, times, harness version + commit, command, the whole run.json
    rows       results.csv of every run (all schema columns; `device` filled for single-machine runs
               with the CPU model from run.json), plus `row_index` (the row's position in its CSV)
    devices    one row per run x device: CPU, cores, RAM, OS, accelerators, providers, and the fingerprint
    summaries  summaries.jsonl of every run, one JSON record per row (text, references, source)

Ingesting is idempotent by run id: the run's old rows are replaced in one transaction, so ingesting a
run twice (or again after it grew) never duplicates a row. `materialise` writes a stored run back out as
a run directory, so `compare` and `report` take run ids with `--db` as well as directories.
"""

from __future__ import annotations

from harness.store.duck import (
    DEFAULT_DB,
    export_parquet,
    ingest,
    materialise,
    query,
    require_duckdb,
    resolve_run_args,
)

__all__ = [
    "DEFAULT_DB",
    "export_parquet",
    "ingest",
    "materialise",
    "query",
    "require_duckdb",
    "resolve_run_args",
]
