"""The fleet on Dask distributed, on loopback: a real `dask scheduler`, two `harness fleet worker` processes
(`a`, and `b` tagged npu, each with its own model cache), and `harness run --fleet` through the CLI.

Every process is started in its own session and killed (whole group) in a `finally`, so a failing test
leaves nothing running. The unit tests at the end need no processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("distributed")

from harness.cli import main
from harness.errors import HarnessError
from harness.fleet.connect import Device, select_devices, version_mismatch
from harness.fleet.job import FleetJob, read_run_files, run_job

HOST = "127.0.0.1"
START_TIMEOUT_S = 90


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):  # already gone between poll() and killpg
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


@dataclass
class Fleet:
    address: str
    env: dict[str, str]
    root: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start_worker(self, name: str, *extra: str) -> None:
        env = {**self.env, "HARNESS_CACHE": str(self.root / f"cache-{name}")}  # each device its own cache
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "harness", "fleet", "worker", "--scheduler", self.address, "--device", name,
             *extra],
            env=env,
            stdout=(self.root / f"worker-{name}.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill_worker(self, name: str) -> None:
        _kill(self.procs.pop(name))

    def wait_for(self, names: set[str]) -> None:
        from distributed import Client

        deadline = time.monotonic() + START_TIMEOUT_S
        with Client(self.address, timeout=30, set_as_default=False) as client:
            while time.monotonic() < deadline:
                workers = client.scheduler_info(n_workers=-1)["workers"].values()
                if names <= {w["name"] for w in workers if w.get("harness_fingerprint")}:
                    return
                for name, proc in self.procs.items():
                    if proc.poll() is not None:
                        log = (self.root / f"worker-{name}.log").read_text(errors="replace")
                        raise AssertionError(f"worker {name} exited: {log[-2000:]}")
                time.sleep(0.2)
        raise AssertionError(f"devices {names} did not join within {START_TIMEOUT_S} s")

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """The driver as a user starts it: a process of its own."""
        return subprocess.run(
            [sys.executable, "-m", "harness", "run", "--fleet", self.address, "--no-bandwidth", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def run_here(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
        """The driver in this process (saves an interpreter start): (exit code, stdout, stderr)."""
        capsys.readouterr()
        rc = main(["run", "--fleet", self.address, "--no-bandwidth", *args])
        out, err = capsys.readouterr()
        return rc, out, err


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HARNESS_CACHE": str(root / "cache-driver")}
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "dask", "scheduler", "--host", HOST, "--port", str(port), "--no-dashboard"],
        env=env,
        stdout=(root / "scheduler.log").open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    fl = Fleet(f"tcp://{HOST}:{port}", env, root)
    try:
        fl.start_worker("a")
        fl.start_worker("b", "--tags", "npu")
        fl.wait_for({"a", "b"})
        yield fl
    finally:
        for name in list(fl.procs):
            fl.kill_worker(name)
        _kill(scheduler)


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four short talks: tiny-qwen2's prefill over a full summit talk would dominate the test's time."""
    path = tmp_path_factory.mktemp("corpus") / "talks.jsonl"
    lines = [
        {"id": f"t{i}", "lang": "en", "text": f"Talk {i}. The speaker explains on-device models. " * 4,
         "references": [f"Talk {i} is about on-device models."]}
        for i in range(4)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def _run_dir(proc: subprocess.CompletedProcess[str]) -> Path:
    return Path(proc.stdout.strip().splitlines()[-1])


def _rows(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "results.csv", keep_default_na=False, dtype=str)


# --- through the CLI, on a real scheduler ---------------------------------------------------------------


def test_fleet_run_merges_both_devices_into_one_run_and_the_store(
    fleet: Fleet, small_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "store.duckdb")
    proc = fleet.run("--models", "tiny-qwen2", "--corpus", str(small_corpus), "--talks", "t0,t1",
                     "--max-new-tokens", "4", "--warmup", "0", "--out", str(tmp_path), "--db", db)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dir = _run_dir(proc)
    rows = _rows(run_dir)
    assert sorted(zip(rows["device"], rows["talk_id"], strict=True)) == [("a", "t0"), ("a", "t1"), ("b", "t0"),
                                                                          ("b", "t1")]
    assert set(rows["status"]) == {"ok"} and set(rows["run_id"]) == {run_dir.name}
    record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert record["status"] == "complete" and record["written_rows"] == 4
    for name in ("a", "b"):
        fp = record["devices"][name]["fingerprint"]
        assert fp["device"] == name and fp["cpu"] and fp["cores_logical"] and fp["harness_version"]
        assert record["devices"][name]["jobs"]["tiny-qwen2"]["outcome"] == "done"
    assert record["devices"]["b"]["tags"] == ["npu"]
    shas = record["models"]["tiny-qwen2"]["sha256_by_device"]
    assert set(shas) == {"a", "b"} and shas["a"] == shas["b"] and len(shas["a"]) == 64
    assert "[a]" in proc.stdout and "[b]" in proc.stdout  # progress per device

    # The store: ingested by --db, then once more (no duplicates); the leaderboard shows both devices.
    assert f"added run {run_dir.name}: 4 row(s)" in proc.stdout
    capsys.readouterr()
    assert main(["db", "ingest", str(run_dir), "--db", db]) == 0
    assert capsys.readouterr().out.startswith(f"replaced run {run_dir.name}: 4 row(s)")
    assert main(["db", "query", "select device, count(*) as n from rows group by 1 order by 1", "--db", db,
                 "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["device,n", "a,2", "b,2"]
    assert main(["leaderboard", "--db", db, "--format", "json"]) == 0
    board = json.loads(capsys.readouterr().out)
    assert {(r["device"], r["model"]) for r in board} == {("a", "tiny-qwen2"), ("b", "tiny-qwen2")}


def test_devices_tag_selects_only_tagged_devices(
    fleet: Fleet, small_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = fleet.run_here(capsys, "--devices", "tag:npu", "--models", "tiny-qwen2", "--corpus",
                                  str(small_corpus), "--talks", "t0", "--max-new-tokens", "4", "--warmup", "0",
                                  "--out", str(tmp_path))
    assert rc == 0, out[-3000:] + err[-3000:]
    assert set(_rows(Path(out.strip().splitlines()[-1]))["device"]) == {"b"}


def test_unknown_device_and_unreachable_scheduler_are_one_line(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, err = fleet.run_here(capsys, "--devices", "c", "--models", "tiny-qwen2", "--out", str(tmp_path))
    assert rc == 2 and 'unknown device "c". Known: a, b' in err and len(err.strip().splitlines()) == 1
    assert main(["run", "--fleet", f"tcp://{HOST}:{_free_port()}", "--models", "tiny-qwen2"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach the scheduler" in err and len(err.strip().splitlines()) == 1
    assert main(["run", "--devices", "a", "--models", "tiny-qwen2"]) == 2
    assert "--devices goes with --fleet" in capsys.readouterr().err
    twin = subprocess.run(  # a second device named "a"
        [sys.executable, "-m", "harness", "fleet", "worker", "--scheduler", fleet.address, "--device", "a"],
        env=fleet.env, capture_output=True, text=True, timeout=90,
    )
    assert twin.returncode == 2 and 'device name "a" is already in the fleet' in twin.stderr


def test_a_device_that_refuses_a_job_gives_one_error_row_per_sample(
    fleet: Fleet, small_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = tmp_path / "models.yaml"
    models.write_text(
        "models:\n  - id: npu-model\n    backend: onnx\n    quant: int4\n    n_ctx: 2048\n    prompt_style: chat\n"
        "    provider: qnn\n    source: {kind: onnx_dir, path: /nonexistent/npu-model}\n",
        encoding="utf-8",
    )
    rc, out, err = fleet.run_here(capsys, "--devices", "a", "--models-file", str(models), "--models", "npu-model",
                                  "--corpus", str(small_corpus), "--talks", "t0,t1", "--out", str(tmp_path))
    assert rc == 1, out[-3000:] + err[-3000:]
    rows = _rows(Path(out.strip().splitlines()[-1]))
    assert len(rows) == 2 and set(rows["status"]) == {"error"} and set(rows["device"]) == {"a"}
    assert all("device a refused the job" in e and "qnn" in e for e in rows["error"])


def _slow_fleet_run(
    fleet: Fleet, small_corpus: Path, write_models, dummy_model_file: Path, tmp_path: Path
) -> subprocess.Popen[str]:
    """A fleet run of a dummy model slow enough (20 tok/s, 20 tokens a sample) to act on while it runs."""
    models = write_models(
        f"- id: slow\n  backend: dummy\n  quant: none\n  n_ctx: 4096\n  prompt_style: chat\n"
        f"  source: {{kind: path, path: {dummy_model_file}}}\n  flags: {{tok_per_s: 20}}\n"
    )
    return subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--fleet", fleet.address, "--no-bandwidth", "--models-file",
         str(models), "--models", "slow", "--corpus", str(small_corpus), "--max-new-tokens", "20", "--warmup", "0",
         "--out", str(tmp_path)],
        env=fleet.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def test_interrupt_cancels_every_job_and_finalises_the_run(
    fleet: Fleet, small_corpus: Path, write_models, dummy_model_file: Path, tmp_path: Path
) -> None:
    driver = _slow_fleet_run(fleet, small_corpus, write_models, dummy_model_file, tmp_path)
    try:
        assert driver.stdout is not None
        for line in driver.stdout:
            if "[a]" in line and " r0:" in line:  # a sample finished on a: the jobs are running
                break
        driver.send_signal(signal.SIGINT)
        out, _ = driver.communicate(timeout=60)
    finally:
        _kill(driver)
    assert driver.returncode == 130, out[-3000:]
    run_dir = next(p for p in tmp_path.iterdir() if (p / "run.json").is_file())
    record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert record["status"] == "interrupted"
    assert 0 < record["written_rows"] < record["planned_samples"]
    # Each device stopped its job at its next sample (rather than finishing 4 talks) before the driver left.
    assert {d: j["jobs"]["slow"]["outcome"] for d, j in record["devices"].items()} == {"a": "cancelled",
                                                                                     "b": "cancelled"}
    # ... and nothing is left processing on the scheduler.
    from distributed import Client

    with Client(fleet.address, timeout=30, set_as_default=False) as client:
        deadline = time.monotonic() + 20
        while any(client.processing().values()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(client.processing().values())


def test_losing_a_device_mid_job_turns_its_missing_samples_into_error_rows(
    fleet: Fleet, small_corpus: Path, write_models, dummy_model_file: Path, tmp_path: Path
) -> None:
    # Runs last among the fleet tests: it kills worker b.
    driver = _slow_fleet_run(fleet, small_corpus, write_models, dummy_model_file, tmp_path)
    lines: list[str] = []
    try:
        assert driver.stdout is not None
        for line in driver.stdout:
            lines.append(line)
            if "[b]" in line and " r0:" in line:  # b finished its first sample: kill it mid-job
                fleet.kill_worker("b")
                break
        out, _ = driver.communicate(timeout=90)
    finally:
        _kill(driver)
    out = "".join(lines) + out
    assert driver.returncode == 1, out[-3000:]
    rows = _rows(next(p for p in tmp_path.iterdir() if (p / "results.csv").is_file()))
    a, b = rows[rows["device"] == "a"], rows[rows["device"] == "b"]
    assert len(a) == 4 and set(a["status"]) == {"ok"}
    assert len(b) == 4 and (b["status"] == "ok").sum() >= 1  # what b finished before it died is kept
    lost = b[b["status"] == "error"]
    assert len(lost) >= 1 and all("device b lost mid-job" in e for e in lost["error"])
    assert "device lost" in out


def test_a_device_that_rejoins_within_the_retry_window_reruns_its_job_once(
    fleet: Fleet, small_corpus: Path, write_models, dummy_model_file: Path, tmp_path: Path
) -> None:
    if "b" not in fleet.procs:  # the test before killed it
        fleet.start_worker("b", "--tags", "npu")
        fleet.wait_for({"a", "b"})
    models = write_models(
        f"- id: slow\n  backend: dummy\n  quant: none\n  n_ctx: 4096\n  prompt_style: chat\n"
        f"  source: {{kind: path, path: {dummy_model_file}}}\n  flags: {{tok_per_s: 20}}\n"
    )
    driver = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--fleet", fleet.address, "--no-bandwidth", "--devices", "b",
         "--retry-window", "60", "--models-file", str(models), "--models", "slow", "--corpus", str(small_corpus),
         "--max-new-tokens", "20", "--warmup", "0", "--out", str(tmp_path)],
        env=fleet.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    lines: list[str] = []
    try:
        assert driver.stdout is not None
        for line in driver.stdout:
            lines.append(line)
            if "[b]" in line and " r0:" in line:
                fleet.kill_worker("b")
                fleet.start_worker("b", "--tags", "npu")  # the device comes back under the same name
                break
        out, _ = driver.communicate(timeout=120)
    finally:
        _kill(driver)
    out = "".join(lines) + out
    assert driver.returncode == 0, out[-3000:]
    run_dir = next(p for p in tmp_path.iterdir() if (p / "results.csv").is_file())
    rows = _rows(run_dir)
    assert sorted(rows["talk_id"]) == ["t0", "t1", "t2", "t3"] and set(rows["status"]) == {"ok"}
    job = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["devices"]["b"]["jobs"]["slow"]
    assert job["attempts"] == 2 and job["outcome"] == "done"
    assert "rejoined" in out


# --- units: no processes --------------------------------------------------------------------------------


def _device(name: str, *tags: str) -> Device:
    return Device(name, f"tcp://{HOST}:1", list(tags), {"device": name})


def test_select_devices() -> None:
    fleet = {"a": _device("a"), "b": _device("b", "npu"), "c": _device("c", "npu", "laptop")}
    assert [d.name for d in select_devices(fleet, "all", "x")] == ["a", "b", "c"]
    assert [d.name for d in select_devices(fleet, "tag:npu", "x")] == ["b", "c"]
    assert [d.name for d in select_devices(fleet, "a,tag:laptop", "x")] == ["a", "c"]
    with pytest.raises(HarnessError, match='unknown device "d"'):
        select_devices(fleet, "d", "x")
    with pytest.raises(HarnessError, match='no device has tag "gpu"; tags in the fleet: laptop, npu'):
        select_devices(fleet, "tag:gpu", "x")
    with pytest.raises(HarnessError, match="no harness device has joined"):
        select_devices({}, "all", "tcp://h:1")


def test_worker_command_rejects_bad_addresses_and_names(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    assert main(["fleet", "worker", "--scheduler", "localhost:8786", "--device", "a"]) == 2
    assert "is not tcp://HOST:PORT" in capsys.readouterr().err
    assert main(["fleet", "worker", "--scheduler", "tcp://h:8786", "--device", "a/b"]) == 2
    assert 'device name "a/b" is not allowed' in capsys.readouterr().err
    assert main(["fleet", "worker", "--scheduler", "tcp://h:8786", "--device", "a", "--memory-limit", "lots"]) == 2
    assert "is not a size" in capsys.readouterr().err


def test_scheduler_with_other_dask_versions_is_one_line() -> None:
    from harness.fleet.connect import check_scheduler_versions

    class FakeClient:
        def get_versions(self, check: bool = False) -> dict:
            return {
                "client": {"packages": {"distributed": "2026.8.0"}, "host": {"python": "3.11.7.final.0"}},
                "scheduler": {"packages": {"distributed": "2025.1.0"}, "host": {"python": "3.11.7.final.0"}},
                "workers": {},
            }

    with pytest.raises(HarnessError) as info:
        check_scheduler_versions(FakeClient(), "tcp://h:1")
    assert "\n" not in str(info.value) and "distributed 2026.8.0 here vs 2025.1.0 on the scheduler" in str(info.value)


def test_version_mismatch_names_each_package_in_one_line() -> None:
    mine = {"packages": {"distributed": "2026.8.0", "dask": "2026.8.0"}, "host": {"python": "3.11.7.final.0"}}
    same = {"packages": {"distributed": "2026.8.0", "dask": "2026.8.0"}, "host": {"python": "3.11.2.final.0"}}
    older = {"packages": {"distributed": "2025.1.0", "dask": "2026.8.0"}, "host": {"python": "3.12.1.final.0"}}
    assert version_mismatch(mine, same, "the scheduler") is None
    line = version_mismatch(mine, older, "the scheduler")
    assert line == "distributed 2026.8.0 here vs 2025.1.0 on the scheduler; Python 3.11 here vs 3.12 on the scheduler"


def _job(tmp_path: Path, models_file: Path, **kw) -> FleetJob:
    defaults = dict(
        run_id="r", job_id="a/slow", device="a", model="slow", attempt=1,
        config={"max_new_tokens": 4, "warmup": 0, "measure_bandwidth": False}, talks=["alibaba-qwen"],
        topic="t", cancel_event="e", models_text=models_file.read_text(encoding="utf-8"),
    )
    return FleetJob(**{**defaults, **kw})


def test_job_streams_rows_as_they_finish_and_returns_them(write_models, dummy_model_file: Path,
                                                         tmp_path: Path) -> None:
    models = write_models(
        f"- id: slow\n  backend: dummy\n  quant: none\n  n_ctx: 4096\n  prompt_style: chat\n"
        f"  source: {{kind: path, path: {dummy_model_file}}}\n"
    )
    events: list[dict] = []
    result = run_job(_job(tmp_path, models, talks=["alibaba-qwen", "qualcomm-npu"]).wire(), sink=events.append)
    assert result["status"] == "done"
    streamed = [e for e in events if e["kind"] == "row"]
    assert [r["row"]["talk_id"] for r in streamed] == ["alibaba-qwen", "qualcomm-npu"]
    assert [r["talk_id"] for r in result["rows"]] == ["alibaba-qwen", "qualcomm-npu"]
    assert {r["device"] for r in result["rows"]} == {"a"} and {s["device"] for s in result["summaries"]} == {"a"}
    assert any(e["kind"] == "line" for e in events)


def test_job_refuses_weights_larger_than_the_device_memory_limit(write_models, dummy_model_file: Path,
                                                                tmp_path: Path) -> None:
    models = write_models(
        f"- id: slow\n  backend: dummy\n  quant: none\n  n_ctx: 4096\n  prompt_style: chat\n"
        f"  source: {{kind: path, path: {dummy_model_file}}}\n"
    )
    result = run_job(_job(tmp_path, models, memory_limit_bytes=100).wire())
    assert result["status"] == "refused"
    assert "does not fit on device a" in result["reason"] and "memory limit" in result["reason"]


def test_job_from_another_harness_version_is_refused(tmp_path: Path, write_models, dummy_model_file: Path) -> None:
    models = write_models(f"- id: slow\n  backend: dummy\n  quant: none\n  n_ctx: 4096\n  prompt_style: chat\n"
                          f"  source: {{kind: path, path: {dummy_model_file}}}\n")
    result = run_job(_job(tmp_path, models, harness_version="0.0.1").wire())
    assert result["status"] == "refused" and "the driver 0.0.1" in result["reason"]
    assert run_job({"unknown_field": 1})["status"] == "refused"


def test_read_run_files_skips_a_row_still_being_written(tmp_path: Path) -> None:
    (tmp_path / "results.csv").write_text('model,error\nm,"ok"\nm,"multi\nline', encoding="utf-8")
    (tmp_path / "summaries.jsonl").write_text('{"a": 1}\n{"a": 2}\n', encoding="utf-8")
    rows, summaries = read_run_files(tmp_path)
    assert rows == [{"model": "m", "error": "ok"}] and summaries == [{"a": 1}]


def test_linux_accelerators_from_a_fake_sysfs(tmp_path: Path) -> None:
    from harness.fleet.fingerprint import linux_accelerators

    sys_root, dev_root = tmp_path / "sys", tmp_path / "dev"
    drivers = sys_root / "bus" / "pci" / "drivers"
    for name in ("qaic", "i915"):
        (drivers / name).mkdir(parents=True)
    accel = sys_root / "class" / "accel" / "accel0" / "device"
    render = sys_root / "class" / "drm" / "renderD128" / "device"
    for node, driver in ((accel, "qaic"), (render, "i915")):
        node.mkdir(parents=True)
        (node / "driver").symlink_to(drivers / driver)
    (render / "vendor").write_text("0x8086\n", encoding="utf-8")
    dev_root.mkdir()
    (dev_root / "kfd").touch()
    assert linux_accelerators(sys_root, dev_root) == [
        "npu:accel0 (qaic)",
        "gpu:renderD128 (i915, vendor 0x8086)",
        "gpu:kfd (AMD ROCm)",
    ]
    assert linux_accelerators(tmp_path / "none", tmp_path / "none") == []
