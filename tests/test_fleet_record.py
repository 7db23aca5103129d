"""run.json of a fleet run, built through the record builder from two jobs' own run.json (no Dask needed):
the weights each device ran, each device's jobs, the one-device environment rule, and a record the typed
reader accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.corpus import load_corpus
from harness.errors import HarnessError
from harness.models.registry import load_models, select_models
from harness.results.record import RunRecord
from harness.results.writer import RunWriter
from harness.run.config import RunConfig
from harness.run.record import FleetRecordBuilder, fleet_config_record

MODEL = "tiny-qwen2"


def _job_run_json(cpu: str, sha: str, warning: str) -> dict[str, Any]:
    """What a job's local run writes, reduced to what the driver merges."""
    return {
        "status": "complete",
        "models": {MODEL: {"backend": "llama_cpp", "quant": "f16", "sha256": sha, "provider": "cpu", "load_s": 0.25}},
        "environment": {"cpu": {"brand": cpu}, "cores_logical": 4, "packages": {"dask": "1"}},
        "prompts": {"summarize_zh.txt": "0123abcd"},
        "warnings": [warning],
        "overhead": {"wall_s": 2.0, "engine_s": 1.5},
    }


def _fingerprint(name: str, cpu: str) -> dict[str, Any]:
    return {"device": name, "cpu": cpu, "harness_version": "x", "environment": {"cpu": {"brand": f"{cpu} (probe)"}}}


def _builder(devices: list[str]) -> FleetRecordBuilder:
    config = RunConfig(models=[MODEL], talks=["alibaba-qwen"], repeats=2, command=["harness", "run", "--fleet"])
    entries = select_models(load_models(config.models_file), config.models)
    talks = [t for t in load_corpus(config.corpus) if t.id in config.talks]
    builder = FleetRecordBuilder.start_fleet(
        run_id="r1", command=config.command, config=fleet_config_record(config, entries, talks),
        planned_samples=len(devices) * 2, git_commit="abc",
    )  # fmt: skip
    builder.fleet("tcp://127.0.0.1:8786", ",".join(devices), devices, 0.0)
    for name in devices:
        builder.device(name, f"tcp://127.0.0.1:{len(name)}", ["npu"] if name == "b" else [], _fingerprint(name, name))
        builder.job(name, MODEL, "pending", 0)
    return builder


def test_two_devices_merge_into_one_record_that_the_reader_accepts(tmp_path: Path) -> None:
    builder = _builder(["a", "b"])
    for name, sha in (("a", "1" * 64), ("b", "2" * 64)):
        builder.job(name, MODEL, "running", 1)
        builder.merge_job(name, MODEL, _job_run_json(f"CPU {name}", sha, f"warning of {name}"))
        builder.job(name, MODEL, "done", 1)
    builder.finish_fleet(written=4, errors=1)
    data = builder.to_dict()

    assert data["models"][MODEL]["sha256_by_device"] == {"a": "1" * 64, "b": "2" * 64}
    assert data["models"][MODEL]["backend"] == "llama_cpp"  # the first device's model facts
    for name in ("a", "b"):
        job = data["devices"][name]["jobs"][MODEL]
        assert job["outcome"] == "done" and job["attempts"] == 1 and job["load_s"] == 0.25
        assert job["sha256"] == data["models"][MODEL]["sha256_by_device"][name]
        assert job["overhead"]["wall_s"] == 2.0
        assert data["devices"][name]["environment"]["cpu"]["brand"] == f"CPU {name}"
        assert data["devices"][name]["fingerprint"]["device"] == name
    assert data["devices"]["b"]["tags"] == ["npu"]
    # Two machines: no one environment for the run (each is under devices), so compare cannot mistake one.
    assert data["environment"]["cpu"]["brand"] is None
    assert data["warnings"][:2] == ["a: warning of a", "b: warning of b"]
    assert "the devices ran different weights" in data["warnings"][-1] and "a=111111111111" in data["warnings"][-1]
    assert data["prompts"] == {"summarize_zh.txt": "0123abcd"}
    assert (data["status"], data["written_rows"], data["ok_rows"], data["error_rows"]) == ("complete", 4, 3, 1)
    assert data["fleet"]["devices"] == ["a", "b"] and data["git_commit"] == "abc"
    config = data["config"]
    assert config["models"] == [MODEL] and config["talks"] == ["alibaba-qwen"] and config["repeats"] == 2
    assert config["corpus"] == "builtin:talks" and len(config["corpus_sha256"]) == 64
    assert "out" not in config and "models_file" not in config

    record = RunRecord.validated(data, "run.json")
    assert record.models[MODEL].sha256_by_device["b"] == "2" * 64 and set(record.devices) == {"a", "b"}
    # ... and through the writer, as the driver writes it, back by the reader report and compare use.
    writer = RunWriter(tmp_path)
    writer.write_run_json(builder.record)
    writer.close()
    assert RunRecord.load(writer.dir).to_dict()["devices"] == data["devices"]


def test_one_device_gives_the_run_its_environment() -> None:
    builder = _builder(["a"])
    # Before a job reported: the environment the device's worker probed when it joined.
    assert builder.record.environment.cpu.brand == "a (probe)"
    builder.merge_job("a", MODEL, _job_run_json("CPU a", "1" * 64, "w"))
    builder.merge_job("a", "other-model", _job_run_json("CPU a, later", "3" * 64, "w"))
    assert builder.record.environment.cpu.brand == "CPU a"  # the device's first job's
    builder.finish_fleet(written=2, errors=0)
    assert not any("different weights" in w for w in builder.record.warnings)  # one device, one sha per model
    RunRecord.validated(builder.to_dict(), "run.json")


def test_a_device_that_rejoins_keeps_its_jobs_and_an_interrupt_is_recorded() -> None:
    builder = _builder(["a", "b"])
    builder.merge_job("b", MODEL, _job_run_json("CPU b", "2" * 64, "w"))
    builder.device("b", "tcp://127.0.0.1:9999", ["npu"], _fingerprint("b", "b"))  # rejoined elsewhere
    assert builder.record.devices["b"]["worker"] == "tcp://127.0.0.1:9999"
    assert builder.record.devices["b"]["jobs"][MODEL]["sha256"] == "2" * 64
    assert builder.record.devices["b"]["environment"]["cpu"]["brand"] == "CPU b"
    builder.interrupted("SIGINT")
    builder.finish_fleet(written=1, errors=0)
    data = builder.to_dict()
    assert (data["status"], data["interrupted_by"]) == ("interrupted", "SIGINT") and data["finished_at"]
    assert "signal" not in data


@pytest.mark.parametrize("bad", [{"devices": []}, {"fleet": "tcp://x"}])
def test_a_damaged_fleet_section_is_one_line(bad: dict[str, Any]) -> None:
    data = {**_builder(["a"]).to_dict(), **bad}
    with pytest.raises(HarnessError, match=f'"{next(iter(bad))}" must be'):
        RunRecord.validated(data, "run.json")
