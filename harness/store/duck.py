"""DuckDB access for the results store: ingest, query, export, materialise (see harness.store)."""

from __future__ import annotations

import atexit
import csv
import importlib.util
import json
import math
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import HarnessError, unknown
from harness.results.layout import RESULTS_CSV, RUN_JSON, SUMMARIES_JSONL
from harness.results.schema import COLUMNS, NUMERIC_COLUMNS

DEFAULT_DB = Path("results") / "harness.duckdb"
RUN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
TABLES = ("runs", "rows", "devices", "summaries")

_DDL = (
    """CREATE TABLE IF NOT EXISTS runs (
        run_id VARCHAR PRIMARY KEY, status VARCHAR, started_at VARCHAR, finished_at VARCHAR,
        harness_version VARCHAR, git_commit VARCHAR, command VARCHAR, corpus VARCHAR, fleet_scheduler VARCHAR,
        n_rows INTEGER, n_errors INTEGER, source VARCHAR, ingested_at TIMESTAMP, record JSON)""",
    """CREATE TABLE IF NOT EXISTS devices (
        run_id VARCHAR, device VARCHAR, cpu VARCHAR, cores_physical INTEGER, cores_logical INTEGER,
        ram_gb DOUBLE, os VARCHAR, accelerators VARCHAR, onnxruntime_providers VARCHAR,
        llama_cpp_features VARCHAR, harness_version VARCHAR, git_commit VARCHAR, fingerprint JSON,
        PRIMARY KEY (run_id, device))""",
    """CREATE TABLE IF NOT EXISTS summaries (
        run_id VARCHAR, row_index INTEGER, device VARCHAR, model VARCHAR, talk_id VARCHAR, repeat INTEGER,
        status VARCHAR, record JSON)""",
)


def require_duckdb() -> None:
    """One line instead of an ImportError when the `store` extra is not installed."""
    if importlib.util.find_spec("duckdb") is None:
        raise HarnessError("the results store needs DuckDB: pip install -e '.[store]'")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@contextmanager
def connect(db: Path, *, read_only: bool = False, sandboxed: bool = False) -> Iterator[Any]:
    """A DuckDB connection; a missing database (read-only) or a locked one is a one-line HarnessError.
    `sandboxed`: no file or network access beyond the database itself (`enable_external_access=false`:
    COPY ... TO, ATTACH, INSTALL/LOAD, read_csv of other files all fail) -- for user-written SQL."""
    require_duckdb()
    import duckdb

    db = Path(db)
    if read_only and not db.is_file():
        raise HarnessError(f"no results store at {db}; create it with `harness db ingest RUN_DIR` (or pass --db)")
    try:
        if not read_only:
            db.parent.mkdir(parents=True, exist_ok=True)
        config = {"enable_external_access": False} if sandboxed else {}
        con = duckdb.connect(str(db), read_only=read_only, config=config)
    except OSError as exc:
        raise HarnessError(f"cannot create the results store {db}: {exc.strerror or exc}; pass another --db") from None
    except duckdb.Error as exc:
        fix = "; free space or pass another --db" if isinstance(exc, duckdb.IOException) else ""
        raise HarnessError(f"cannot open the results store {db}: {_first_line(exc)}{fix}") from None
    try:
        yield con
    finally:
        con.close()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def table_columns(con: Any, table: str) -> dict[str, str]:
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
        [table],
    ).fetchall()
    return {name: dtype for name, dtype in rows}


def _ensure_schema(con: Any) -> None:
    for ddl in _DDL:
        con.execute(ddl)
    if not table_columns(con, "rows"):
        cols = ", ".join(
            f"{quote_ident(c)} {'DOUBLE' if c in NUMERIC_COLUMNS else 'VARCHAR'}" for c in COLUMNS if c != "run_id"
        )
        con.execute(f"CREATE TABLE rows (run_id VARCHAR, row_index INTEGER, {cols})")


def _add_missing_columns(con: Any, df: pd.DataFrame) -> None:
    """Columns a newer harness wrote (or a test added) join the table; older rows hold NULL there."""
    have = table_columns(con, "rows")
    for col in df.columns:
        if col not in have:
            kind = "DOUBLE" if pd.api.types.is_numeric_dtype(df[col]) else "VARCHAR"
            con.execute(f"ALTER TABLE rows ADD COLUMN {quote_ident(col)} {kind}")


# --- ingest ----------------------------------------------------------------------------------------------


def _run_dict(path: Path) -> dict[str, Any]:
    """run.json as a dict ({} for a bare results.csv); a damaged one -- not JSON, or a field of the wrong type
    such as `"environment": []` -- is one line naming the file and the field (harness.results.record)."""
    from harness.results.record import RunRecord, read_run_json

    if not (path / RUN_JSON).is_file():
        return {}
    data = read_run_json(path / RUN_JSON)
    RunRecord.validated(data, path / RUN_JSON)
    return data


def _local_device(record: dict[str, Any]) -> str:
    """The device name of a single-machine run's rows: its CPU model from run.json (else 'local')."""
    cpu = ((record.get("environment") or {}).get("cpu") or {}).get("brand")
    return str(cpu).strip() if cpu else "local"


def _device_rows(run_id: str, record: dict[str, Any], df: pd.DataFrame) -> list[list[Any]]:
    """(run x device) rows for the devices table, from the fleet section of run.json or its environment."""
    fleet_devices = record.get("devices") if isinstance(record.get("devices"), dict) else {}
    out: list[list[Any]] = []
    for name in sorted({str(d) for d in df["device"].dropna()}):
        entry = fleet_devices.get(name) or {}
        fp = entry.get("fingerprint") or {}
        # A fleet device's environment is in its section; a single-machine run's is the run's own.
        own = {} if fleet_devices else record.get("environment")
        env = entry.get("environment") or fp.get("environment") or own or {}
        llama = fp.get("llama_cpp") or {}
        features = sorted(k for k, v in (llama.get("features") or {}).items() if str(v) == "1")
        onnx = env.get("onnxruntime") or {}
        providers = fp.get("onnxruntime_providers") or onnx.get("providers") or []
        out.append(
            [
                run_id,
                name,
                fp.get("cpu") or (env.get("cpu") or {}).get("brand"),
                fp.get("cores_physical") or env.get("cores_physical"),
                fp.get("cores_logical") or env.get("cores_logical"),
                fp.get("ram_gb") or env.get("ram_gb"),
                fp.get("os") or env.get("os"),
                ", ".join(fp.get("accelerators") or []),
                ", ".join(providers),
                ", ".join(features) or env.get("llama_cpp_system_info"),
                fp.get("harness_version") or env.get("harness_version"),
                fp.get("git_commit") or env.get("git_commit"),
                json.dumps(fp or {"environment": env}, ensure_ascii=False, default=str),
            ]
        )
    return out


def _rows_frame(run_id: str, record: dict[str, Any], results: pd.DataFrame) -> pd.DataFrame:
    df = results.copy()
    df["run_id"] = run_id
    if "device" not in df.columns:
        df["device"] = ""
    df["device"] = df["device"].fillna("").astype(str).str.strip()
    df.loc[df["device"] == "", "device"] = _local_device(record)
    if "row_index" in df.columns:  # the store's own key: a results.csv column of that name is kept renamed
        df = df.rename(columns={"row_index": "row_index_csv"})
    df.insert(1, "row_index", range(len(df)))
    for col in df.columns:
        if not pd.api.types.is_numeric_dtype(df[col]):
            df[col] = df[col].astype(object).where(df[col].astype(str).str.strip() != "", None)
    return df


def ingest(db: Path, run_dirs: Sequence[Path]) -> list[str]:
    """Ingest run directories; each replaces any earlier copy of the same run id. One line per run."""
    from harness.report.load import load_run

    runs = []
    for path in run_dirs:
        path = Path(path)
        if not path.is_dir():
            raise HarnessError(f"{path}: not a run directory; pass directories written by `harness run`")
        runs.append((path, load_run(path)))
    import duckdb

    try:
        return _ingest(db, runs)
    except (duckdb.IOException, duckdb.TransactionException, duckdb.OutOfMemoryException, OSError) as exc:
        # A full disk (or a read-only one) mid-transaction: the transaction is rolled back, nothing half-written.
        raise HarnessError(
            f"cannot write the results store {db}: {_first_line(exc)}; free space or pass another --db "
            "(the store is unchanged)"
        ) from None


def _ingest(db: Path, runs: list[tuple[Path, Any]]) -> list[str]:
    lines: list[str] = []
    with connect(db) as con:
        _ensure_schema(con)
        for path, run in runs:
            record = _run_dict(path)
            run_id = str(record.get("run_id") or run.label)
            if not RUN_ID_RE.fullmatch(run_id):
                raise HarnessError(f'{path}: run id "{run_id}" is not a plain name; fix run_id in run.json')
            df = _rows_frame(run_id, record, run.results)
            con.execute("BEGIN TRANSACTION")
            try:
                existed = con.execute("SELECT count(*) FROM runs WHERE run_id = ?", [run_id]).fetchone()[0]
                for table in TABLES:
                    con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
                _add_missing_columns(con, df)
                con.register("incoming_rows", df)
                con.execute("INSERT INTO rows BY NAME SELECT * FROM incoming_rows")
                con.unregister("incoming_rows")
                devices = _device_rows(run_id, record, df)
                if devices:
                    con.executemany(f"INSERT INTO devices VALUES ({', '.join('?' * 13)})", devices)
                row_devices = list(df["device"])
                summaries = [
                    [
                        run_id,
                        i,
                        s.get("device") or (row_devices[i] if i < len(row_devices) else None),
                        s.get("model"),
                        s.get("talk_id"),
                        _int(s.get("repeat")),
                        s.get("status"),
                        json.dumps(s, ensure_ascii=False, default=str),
                    ]
                    for i, s in enumerate(run.summaries)
                ]
                if summaries:
                    con.executemany("INSERT INTO summaries VALUES (?, ?, ?, ?, ?, ?, ?, ?)", summaries)
                n_errors = int((df["status"] != "ok").sum())
                fleet = record.get("fleet") if isinstance(record.get("fleet"), dict) else {}
                con.execute(
                    "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        run_id,
                        record.get("status") or (run.record.status if run.record else None),
                        record.get("started_at"),
                        record.get("finished_at"),
                        record.get("harness_version"),
                        record.get("git_commit"),
                        " ".join(str(a) for a in record.get("command") or []),
                        (record.get("config") or {}).get("corpus"),
                        fleet.get("scheduler"),
                        len(df),
                        n_errors,
                        str(path.resolve()),
                        datetime.now(timezone.utc).replace(tzinfo=None),
                        json.dumps(record, ensure_ascii=False, default=str),
                    ],
                )
                con.execute("COMMIT")
            except Exception:
                with suppress(Exception):  # a failed disk can fail the rollback too; the first error is the news
                    con.execute("ROLLBACK")
                raise
            devices_text = ", ".join(d[1] for d in devices) or "-"
            lines.append(
                f"{'replaced' if existed else 'added'} run {run_id}: {len(df)} row(s) ({n_errors} error), "
                f"device(s) {devices_text} -> {db}"
            )
    return lines


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# --- query and export ------------------------------------------------------------------------------------


def query(db: Path, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """(column names, rows) of one read-only SQL statement: a read-only connection with no external access,
    so the statement can neither change the store nor read or write any other file (COPY, ATTACH, INSTALL)."""
    import duckdb

    with connect(db, read_only=True, sandboxed=True) as con:
        try:
            statements = con.extract_statements(sql)
        except duckdb.Error as exc:
            raise HarnessError(f"query failed: {_first_line(exc)}") from None
        if len(statements) != 1:
            raise HarnessError(f"db query runs one SQL statement; got {len(statements)}: run them one at a time")
        try:
            cursor = con.execute(sql)
        except duckdb.Error as exc:
            raise HarnessError(f"query failed: {_first_line(exc)}") from None
        if cursor.description is None:
            return [], []
        return [d[0] for d in cursor.description], cursor.fetchall()


def export_parquet(db: Path, out_dir: Path) -> list[Path]:
    """One Parquet file per table in `out_dir` (created)."""
    import duckdb

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise HarnessError(f"{out_dir} is a file; pass a directory for the Parquet files")
    written = []
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with connect(db, read_only=True) as con:
            for table in TABLES:
                target = out_dir / f"{table}.parquet"
                con.execute(f"COPY (SELECT * FROM {table}) TO {_literal(str(target))} (FORMAT parquet)")
                written.append(target)
    except (OSError, duckdb.IOException, duckdb.PermissionException) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else _first_line(exc)
        raise HarnessError(
            f"cannot write Parquet files to {out_dir}: {why}; free space or pass another --parquet"
        ) from None
    return written


# --- back to a run directory -----------------------------------------------------------------------------


def run_ids(db: Path) -> list[str]:
    with connect(db, read_only=True) as con:
        return [r[0] for r in con.execute("SELECT run_id FROM runs ORDER BY run_id").fetchall()]


def _cell(value: Any) -> str:
    """A stored cell as CSV text: the digits ingested (shortest round-trip repr), whole numbers without a
    decimal point (numeric columns come back as DOUBLE), NULL as an empty cell."""
    if value is None or (isinstance(value, float) and (math.isnan(value) or math.isinf(value))):
        return ""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    return str(value)


def materialise(db: Path, run_id: str, parent: Path | None = None) -> Path:
    """Write a stored run back out as a run directory (results.csv, summaries.jsonl, run.json) under
    `parent` (default: a new temporary directory) and return it, for commands that read run directories."""
    with connect(db, read_only=True) as con:
        found = con.execute("SELECT record FROM runs WHERE run_id = ?", [run_id]).fetchone()
        if found is None:
            known = [r[0] for r in con.execute("SELECT run_id FROM runs").fetchall()]
            raise unknown("run id in the store", run_id, known)
        record = json.loads(found[0]) if found[0] else {}
        cursor = con.execute("SELECT * FROM rows WHERE run_id = ? ORDER BY row_index", [run_id])
        names = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
        stored = con.execute("SELECT record FROM summaries WHERE run_id = ? ORDER BY row_index", [run_id])
        summaries = [r[0] for r in stored.fetchall()]
    if not RUN_ID_RE.fullmatch(run_id):  # stored ids were checked on ingest; this keeps the path confined
        raise HarnessError(f'run id "{run_id}" is not a plain name')
    base = Path(parent) if parent is not None else _temporary_dir()
    run_dir = base / run_id
    run_dir.mkdir(parents=True, exist_ok=False)
    filled = {n for i, n in enumerate(names) if any(r[i] is not None for r in rows)}
    header = [c for c in COLUMNS if c in names] + sorted(n for n in filled if n not in COLUMNS and n != "row_index")
    index = {n: i for i, n in enumerate(names)}
    with (run_dir / RESULTS_CSV).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        for r in rows:
            writer.writerow([_cell(r[index[c]]) for c in header])
    with (run_dir / SUMMARIES_JSONL).open("w", encoding="utf-8") as fh:
        for text in summaries:
            fh.write(json.dumps(json.loads(text), ensure_ascii=False) + "\n")
    (run_dir / RUN_JSON).write_text(json.dumps(record, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return run_dir


TEMPORARY_DIRS: list[Path] = []  # materialised runs of this process, removed when it exits


def _temporary_dir() -> Path:
    """A harness-db-* folder for a materialised run; removed at exit (compare/report read it, then it is
    litter), or at once when this process is killed before that -- nothing to do then."""
    base = Path(tempfile.mkdtemp(prefix="harness-db-"))
    if not TEMPORARY_DIRS:
        atexit.register(_remove_temporary_dirs)
    TEMPORARY_DIRS.append(base)
    return base


def _remove_temporary_dirs() -> None:
    while TEMPORARY_DIRS:
        shutil.rmtree(TEMPORARY_DIRS.pop(), ignore_errors=True)


def is_materialised(path: Path) -> bool:
    """Whether `path` lies in a temporary folder of a materialised run (gone when this process exits)."""
    resolved = Path(path).resolve()
    return any(resolved.is_relative_to(base.resolve()) for base in TEMPORARY_DIRS)


def resolve_run_args(items: Sequence[str], db: Path | None) -> list[str]:
    """RUN arguments of compare/report: a path stays a path; with --db, anything else is a stored run id
    (materialised into a temporary run directory)."""
    if db is None:
        return list(items)
    out = []
    for item in items:
        out.append(item if Path(item).exists() else str(materialise(db, item)))
    return out
