"""harness.results.record: run.json as a typed RunRecord, tolerant of older and newer files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.errors import HarnessError
from harness.results.record import SCHEMA_VERSION, CpuInfo, ModelRecord, RunRecord

# The committed baseline of 2026-11 (SmolLM2 + Gemma, schema 1, 3 repeats): a fixed run.json and rows, so these
# tests do not change each time results/baseline is re-recorded.
BASELINE = Path(__file__).resolve().parent / "data" / "baseline-2026-11"


def contains(outer: Any, inner: Any, path: str = "") -> None:
    """Every key and value of `inner` is in `outer`, recursively."""
    if isinstance(inner, dict):
        for key, value in inner.items():
            assert key in outer, f"{path}/{key} lost"
            contains(outer[key], value, f"{path}/{key}")
    else:
        assert outer == inner, path


def test_older_run_json_loads_with_inferred_new_keys() -> None:
    record = RunRecord.load(BASELINE)  # a run directory, or the file itself
    assert record == RunRecord.load(BASELINE / "run.json")
    raw = json.loads((BASELINE / "run.json").read_text(encoding="utf-8"))
    assert "schema_version" not in raw and "status" not in raw
    assert record.schema_version == 1
    assert record.status == "complete"  # it has finished_at
    assert record.planned_samples == len(raw["config"]["models"]) * len(raw["config"]["talks"]) * 3
    assert record.written_rows is None
    # Typed access, no string paths.
    assert record.environment.cpu.brand == raw["environment"]["cpu"]["brand"]
    assert isinstance(record.models[next(iter(raw["models"]))], ModelRecord)
    assert record.config.mmap is (not raw["config"]["no_mmap"])
    assert record.environment.onnxruntime is not None and record.environment.onnxruntime.version
    # Packages recorded as None (not installed) are left out of installed_packages().
    assert None in raw["environment"]["packages"].values()
    assert None not in record.environment.installed_packages().values()


def test_round_trip_keeps_every_key_and_adds_the_new_ones() -> None:
    raw = json.loads((BASELINE / "run.json").read_text(encoding="utf-8"))
    out = RunRecord.load(BASELINE).to_dict()
    contains(out, raw)
    added = set(out) - set(raw)
    # Only typed fields are added: ones derived from the old record, the rest at their empty defaults.
    assert added <= set(RunRecord.__dataclass_fields__)
    derived = {"schema_version", "status", "planned_samples", "written_rows"}
    assert all(out[k] in (None, {}, [], "") for k in added - derived), {k: out[k] for k in added - derived}
    assert RunRecord.from_dict(json.loads(RunRecord.load(BASELINE).to_json())) == RunRecord.load(BASELINE)


def test_unknown_keys_survive_at_every_level() -> None:
    raw = {
        "run_id": "r",
        "schema_version": SCHEMA_VERSION + 1,
        "from_the_future": [1, 2],
        "environment": {"cpu": {"brand": "X", "part": "0xd0c"}, "gpu": {"name": "Y"}},
        "models": {"m": {"n_ctx": 4096, "energy": {"source": "rapl"}}},
    }
    record = RunRecord.from_dict(raw)
    assert record.environment.cpu.extra == {"part": "0xd0c"}
    assert record.environment.extra == {"gpu": {"name": "Y"}}
    assert record.models["m"].n_ctx == 4096 and record.models["m"].extra == {"energy": {"source": "rapl"}}
    assert record.status == "interrupted"  # no finished_at
    contains(record.to_dict(), raw)


def test_a_new_record_has_todays_keys_and_the_new_ones() -> None:
    record = RunRecord(run_id="r1", status="running", planned_samples=10, written_rows=0)
    record.models["m"] = ModelRecord(backend="llama_cpp", n_ctx=2048)
    record.warnings.append("w")
    out = json.loads(record.to_json())
    assert list(out)[:2] == ["schema_version", "run_id"] and out["schema_version"] == SCHEMA_VERSION
    for key in (
        "harness_version", "git_commit", "command", "started_at", "finished_at", "config", "environment",
        "models", "prompts", "warnings", "overhead", "summary", "status", "planned_samples", "written_rows",
    ):  # fmt: skip
        assert key in out
    assert out["models"]["m"]["n_ctx"] == 2048 and "extra" not in out["models"]["m"]
    assert RunRecord.from_dict(out) == record


def test_cpu_identity_tells_generations_apart_where_the_brand_cannot() -> None:
    zen3 = CpuInfo(brand="AMD EPYC", vendor="AuthenticAMD", family=25, model=1, stepping=1)
    zen4 = CpuInfo(brand="AMD EPYC", vendor="AuthenticAMD", family=25, model=17, stepping=1)
    assert zen3.identity() != zen4.identity()
    assert CpuInfo(brand="Test CPU").identity() == "Test CPU"  # older records: the brand
    assert "family 25 model 17" in zen4.description()


@pytest.mark.parametrize(("text", "message"), [("{broken", "not valid JSON"), ("[1]", "expected a JSON object")])
def test_malformed_run_json_is_a_one_line_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "run.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(HarnessError, match=message) as info:
        RunRecord.load(path)
    assert "\n" not in str(info.value)
