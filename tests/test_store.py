"""The DuckDB results store: ingest (idempotent), query, leaderboard (best config, Pareto), export,
and run ids given to compare/report through `materialise`. Runs are synthetic (tests/runfactory.py)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

pytest.importorskip("duckdb")

from harness.cli import main
from harness.store import export_parquet, ingest, materialise, query
from harness.store.leaderboard import build, pareto_mask
from tests.runfactory import make_run


def _fleet_run(root: Path, run_id: str, device_of_model: dict[str, str], **kwargs) -> Path:
    """A run whose rows carry a device column, as a fleet run writes them (one device per model here)."""
    run_dir = make_run(root, run_id, models=tuple(device_of_model), **kwargs)
    path = run_dir / "results.csv"
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row["device"] = device_of_model[row["model"]]
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    record["devices"] = {
        name: {"fingerprint": {"device": name, "cpu": f"CPU of {name}", "ram_gb": 8.0, "accelerators": []}}
        for name in set(device_of_model.values())
    }
    (run_dir / "run.json").write_text(json.dumps(record), encoding="utf-8")
    return run_dir


def test_ingest_twice_keeps_one_copy_of_each_row(tmp_path: Path) -> None:
    db = tmp_path / "store.duckdb"
    run = _fleet_run(tmp_path, "run-a", {"m-small": "a", "m-large": "b"})
    first = ingest(db, [run])
    second = ingest(db, [run])
    assert first[0].startswith("added run run-a") and second[0].startswith("replaced run run-a")
    n_csv = sum(1 for _ in csv.DictReader((run / "results.csv").open(encoding="utf-8")))
    _, rows = query(db, "select count(*), count(distinct row_index) from rows")
    assert rows == [(n_csv, n_csv)]
    _, runs = query(db, "select count(*) from runs")
    _, devices = query(db, "select device, cpu from devices order by 1")
    assert runs == [(1,)]
    assert devices == [("a", "CPU of a"), ("b", "CPU of b")]


def test_single_machine_rows_are_stored_under_their_cpu(tmp_path: Path) -> None:
    db = tmp_path / "store.duckdb"
    ingest(db, [make_run(tmp_path, "local-run", cpu_brand="Some CPU 3000")])
    _, rows = query(db, "select distinct device from rows")
    assert rows == [("Some CPU 3000",)]


def test_query_command_prints_table_csv_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "store.duckdb"
    assert main(["db", "ingest", str(_fleet_run(tmp_path, "run-a", {"m-small": "a", "m-large": "b"})),
                 "--db", str(db)]) == 0
    sql = "select device, count(*) as n from rows group by 1 order by 1"
    capsys.readouterr()
    assert main(["db", "query", sql, "--db", str(db)]) == 0
    table = capsys.readouterr().out
    assert " a " in table and " b " in table and "2 row(s)" in table
    assert main(["db", "query", sql, "--db", str(db), "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["device,n", "a,6", "b,6"]
    assert main(["db", "query", sql, "--db", str(db), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"device": "a", "n": 6}, {"device": "b", "n": 6}]


def test_query_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "store.duckdb"
    assert main(["db", "query", "select 1", "--db", str(db)]) == 2
    assert "no results store at" in capsys.readouterr().err
    ingest(db, [make_run(tmp_path, "run-a")])
    assert main(["db", "query", "selec nonsense", "--db", str(db)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("harness db: error: query failed:") and "\n" not in err
    assert main(["db", "query", "delete from rows", "--db", str(db)]) == 2  # the store is read-only here
    _, rows = query(db, "select count(*) from rows")
    assert rows[0][0] > 0


def test_leaderboard_best_config_per_device_and_pareto(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "store.duckdb"
    # Device a: two configs of m-small (4 and 8 threads, the latter twice as fast; same ROUGE, as greedy
    # decoding gives) and m-large (better ROUGE, slower, more memory: both Pareto-optimal).
    slow = _fleet_run(tmp_path, "run-1", {"m-small": "a", "m-large": "a"}, noise=0.0, threads=4)
    fast = _fleet_run(tmp_path, "run-2", {"m-small": "a"}, noise=0.0, threads=8, scale={"decode_tok_s": 2.0})
    # m-bad on device a is worse on every metric: dominated. Device b has one model.
    bad = _fleet_run(tmp_path, "run-3", {"m-bad": "a"}, noise=0.0,
                     overrides={"rougeL_f": 0.01, "decode_tok_s": 1.0, "peak_rss_mb": 9000.0})
    other = _fleet_run(tmp_path, "run-4", {"m-small": "b"}, noise=0.0)
    ingest(db, [slow, fast, bad, other])

    board = build(db)
    rows = {(r.device, r.model): r for r in board.table.itertuples()}
    assert set(rows) == {("a", "m-small"), ("a", "m-large"), ("a", "m-bad"), ("b", "m-small")}
    assert rows[("a", "m-small")].threads == "8"  # the faster config of the two
    assert rows[("a", "m-small")].pareto and rows[("a", "m-large")].pareto
    assert not rows[("a", "m-bad")].pareto
    assert rows[("b", "m-small")].pareto  # alone on its device

    assert main(["leaderboard", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "m-bad" in out and " b " in out and "threads=8" in out and "Pareto-optimal" in out
    assert main(["leaderboard", "--db", str(db), "--device", "b", "--format", "json"]) == 0
    only_b = json.loads(capsys.readouterr().out)
    assert [(r["device"], r["model"], r["pareto"]) for r in only_b] == [("b", "m-small", "*")]


def test_leaderboard_rejects_unknown_or_directionless_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "store.duckdb"
    ingest(db, [make_run(tmp_path, "run-a")])
    assert main(["leaderboard", "--db", str(db), "--metric", "decode_tok"]) == 2
    assert 'Did you mean "decode_tok_s"' in capsys.readouterr().err
    assert main(["leaderboard", "--db", str(db), "--metric", "prompt_tokens"]) == 2
    assert "no better direction" in capsys.readouterr().err


def test_pareto_mask_treats_missing_values_as_worst() -> None:
    import pandas as pd

    df = pd.DataFrame({"rougeL_f": [0.3, 0.3, None], "decode_tok_s": [10.0, 10.0, 50.0]})
    # Two identical rows do not dominate each other; the row without ROUGE is not dominated (fastest).
    assert pareto_mask(df, ["rougeL_f", "decode_tok_s"]) == [True, True, True]
    df.loc[2, "decode_tok_s"] = 5.0
    assert pareto_mask(df, ["rougeL_f", "decode_tok_s"]) == [True, True, False]


def test_materialised_run_matches_the_original(tmp_path: Path) -> None:
    db = tmp_path / "store.duckdb"
    run = _fleet_run(tmp_path, "run-a", {"m-small": "a", "m-large": "b"}, errors=1)
    ingest(db, [run])
    out = materialise(db, "run-a", tmp_path / "back")
    original = list(csv.DictReader((run / "results.csv").open(encoding="utf-8")))
    restored = list(csv.DictReader((out / "results.csv").open(encoding="utf-8")))
    assert len(restored) == len(original)
    for a, b in zip(original, restored, strict=True):
        assert {k: v for k, v in a.items() if v} == {k: v for k, v in b.items() if v}
    assert (out / "summaries.jsonl").read_text(encoding="utf-8").count("\n") == len(
        (run / "summaries.jsonl").read_text(encoding="utf-8").splitlines()
    )
    assert json.loads((out / "run.json").read_text(encoding="utf-8")) == json.loads(
        (run / "run.json").read_text(encoding="utf-8")
    )


def test_compare_and_report_take_run_ids_with_db(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "store.duckdb"
    ingest(db, [make_run(tmp_path, "base"), make_run(tmp_path, "slower", scale={"decode_tok_s": 0.5}, seed=1)])
    assert main(["compare", "base", "slower", "--db", str(db), "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    decode = [r for r in records if r["metric"] == "decode_tok_s"]
    assert decode and all(r["change_pct"] < -40 for r in decode)
    assert main(["compare", "base", "nope", "--db", str(db)]) == 2
    assert 'unknown run id in the store "nope"' in capsys.readouterr().err


def test_export_parquet_writes_every_table(tmp_path: Path) -> None:
    import duckdb

    db = tmp_path / "store.duckdb"
    ingest(db, [make_run(tmp_path, "run-a")])
    paths = export_parquet(db, tmp_path / "pq")
    assert sorted(p.name for p in paths) == ["devices.parquet", "rows.parquet", "runs.parquet", "summaries.parquet"]
    con = duckdb.connect()
    n = con.execute(f"select count(*) from read_parquet('{tmp_path / 'pq' / 'rows.parquet'}')").fetchone()[0]
    assert n == query(db, "select count(*) from rows")[1][0][0]


def test_compare_by_device_puts_devices_side_by_side_and_names_the_hardware(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # One fleet run: the same model on devices a and b, b decoding at half the speed, with less RAM.
    a_dir = make_run(tmp_path / "a", "fleet-run", models=("m-small",), seed=1)
    b_dir = make_run(tmp_path / "b", "fleet-run", models=("m-small",), seed=2, scale={"decode_tok_s": 0.5})
    run = tmp_path / "fleet-run"
    run.mkdir()
    rows = []
    for device, src in (("a", a_dir), ("b", b_dir)):
        for row in csv.DictReader((src / "results.csv").open(encoding="utf-8")):
            rows.append({**row, "device": device})
    with (run / "results.csv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    record = json.loads((a_dir / "run.json").read_text(encoding="utf-8"))
    env_b = {**record["environment"], "cpu": {**record["environment"]["cpu"], "brand": "Other CPU"}}
    fp_a = {"ram_gb": 16.0, "os": "Linux", "accelerators": []}
    fp_b = {"ram_gb": 8.0, "os": "Linux", "accelerators": ["npu:accel0 (qaic)"]}
    record["devices"] = {
        "a": {"fingerprint": fp_a, "environment": record["environment"]},
        "b": {"fingerprint": fp_b, "environment": env_b},
    }
    (run / "run.json").write_text(json.dumps(record), encoding="utf-8")

    assert main(["compare", str(run), "--by", "device", "--metrics", "decode_tok_s", "--format", "json"]) == 0
    out, err = capsys.readouterr()
    decode = [r for r in json.loads(out) if r["metric"] == "decode_tok_s"]
    assert [(r["baseline_run"], r["run"]) for r in decode] == [("a", "b")]
    assert decode[0]["change_pct"] < -40
    assert "Test CPU" in err and "Other CPU" in err  # compare's own CPU check, from each device's environment
    assert "RAM GB: a=16.0 vs b=8.0" in err and "accelerators: a=none vs b=npu:accel0 (qaic)" in err
    assert main(["compare", str(a_dir), "--by", "device"]) == 2
    assert "needs rows from at least two devices" in capsys.readouterr().err


def test_run_with_db_ingests_the_finished_run(
    tmp_path: Path, write_models, dummy_model_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = write_models(
        f"- id: d\n  backend: dummy\n  quant: none\n  n_ctx: 4096\n  prompt_style: chat\n"
        f"  source: {{kind: path, path: {dummy_model_file}}}\n"
    )
    db = tmp_path / "store.duckdb"
    rc = main(["run", "--models-file", str(models), "--models", "d", "--talks", "alibaba-qwen", "--max-new-tokens",
               "4", "--warmup", "0", "--no-bandwidth", "--out", str(tmp_path / "runs"), "--db", str(db)])
    out = capsys.readouterr().out
    assert rc == 0, out[-2000:]
    run_dir = Path(out.strip().splitlines()[-1])
    _, rows = query(db, "select run_id, model, status, device from rows")
    assert [(r[0], r[1], r[2]) for r in rows] == [(run_dir.name, "d", "ok")]
    assert rows[0][3]  # a single-machine run is stored under its CPU model


def test_report_takes_a_stored_run_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "store.duckdb"
    ingest(db, [make_run(tmp_path, "stored", models=("m-small",), talks=("t1",), repeats=2)])
    assert main(["report", "stored", "--db", str(db), "--out", str(tmp_path / "report")]) == 0
    html = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert html.is_file() and "m-small" in html.read_text(encoding="utf-8")
