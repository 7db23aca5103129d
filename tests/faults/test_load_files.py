"""Writes outside where they belong, load levels (issue 21): `load_requests.csv` and `load_summary.csv` of a run
directory replaced by a symbolic link to an outside file (or by a FIFO), then `run --resume`. The load levels
append to both files after the model's samples; each is opened through harness.safefs, so the resume ends in one
line naming the file, exit 2, and the outside file byte for byte as it was.

The served model is an `openai` entry against a loopback fake llama-server (tests/fakeserver.py) that stays up
for the whole module: one complete run with `--concurrency 1`, then one interrupted copy per case.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fakeserver import Reply, fake_server, json_reply, recorded
from faultcli import Result, assert_one_line_error, faults_env, run_cli, run_many

OUTSIDE = "".join(f"line {i} of a file that is not the harness's\n" for i in range(50)).encode()
ROUTES = {
    ("GET", "/v1/models"): json_reply({"object": "list", "data": [{"id": "m", "owned_by": "llamacpp"}]}),
    ("POST", "/v1/chat/completions"): Reply(lines=recorded("llama_server_chat.sse")),
}
ENTRY = """\
models:
  - id: served
    backend: openai
    quant: Q4_K_M
    n_ctx: 2048
    prompt_style: chat
    source: {{kind: remote}}
    flags: {{endpoint: '{url}', served_model: m, server: llama-server}}
"""
# case -> (file planted in the run directory, what is planted)
PLANTED: dict[str, tuple[str, str]] = {
    "summary-link": ("load_summary.csv", "link"),
    "requests-link": ("load_requests.csv", "link"),
    "summary-fifo": ("load_summary.csv", "fifo"),
}
WHY = {"link": "is a symbolic link", "fifo": "is a FIFO"}


@dataclass
class Planted:
    results: dict[str, Result]
    outside: dict[str, Path]


def _interrupted_copy(complete: Path, dest: Path) -> Path:
    """The complete run cut back to its first row, as an interrupted run leaves it (its load files kept)."""
    run_dir = dest / complete.name
    shutil.copytree(complete, run_dir)
    for name in ("summary.csv", "summary_models.csv", ".lock", ".lock.pid"):
        (run_dir / name).unlink(missing_ok=True)
    lines = (run_dir / "results.csv").read_bytes().splitlines(keepends=True)
    (run_dir / "results.csv").write_bytes(b"".join(lines[:2]))
    jsonl = (run_dir / "summaries.jsonl").read_bytes().splitlines(keepends=True)
    (run_dir / "summaries.jsonl").write_bytes(b"".join(jsonl[:1]))
    record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    record.update(status="interrupted", written_rows=1, interrupted_by="SIGTERM")
    for key in ("finished_at", "summary"):
        record.pop(key, None)
    (run_dir / "run.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    return run_dir


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Planted]:
    root = tmp_path_factory.mktemp("load-files")
    with fake_server(ROUTES) as server:
        models = root / "models.yaml"
        models.write_text(ENTRY.format(url=server.url), encoding="utf-8")
        complete = run_cli(
            "run", "--models-file", models, "--models", "served", "--talks", "alibaba-qwen", "--repeats", "2",
            "--warmup", "0", "--max-new-tokens", "8", "--no-bandwidth", "--concurrency", "1", "--out", root / "runs",
        )  # fmt: skip
        assert complete.returncode == 0, complete.explain()
        assert (complete.run_dir / "load_summary.csv").is_file(), complete.explain()
        cases: dict[str, list[str | Path]] = {}
        outside: dict[str, Path] = {}
        for case, (name, kind) in PLANTED.items():
            run_dir = _interrupted_copy(complete.run_dir, root / case)
            (run_dir / name).unlink()
            if kind == "link":
                outside[case] = root / case / "outside.txt"
                outside[case].write_bytes(OUTSIDE)
                os.symlink(outside[case], run_dir / name)
            else:
                os.mkfifo(run_dir / name)
            cases[case] = ["run", "--resume", run_dir]
        yield Planted(run_many(cases, faults_env()), outside)


@pytest.mark.parametrize("case", sorted(PLANTED))
def test_a_planted_load_file_is_refused_on_resume(planted: Planted, case: str) -> None:
    name, kind = PLANTED[case]
    result = planted.results[case]
    assert result.wall_s < 60, result.explain()  # a FIFO never blocks the open
    assert_one_line_error(result, name, WHY[kind])
    if case in planted.outside:
        assert planted.outside[case].read_bytes() == OUTSIDE
