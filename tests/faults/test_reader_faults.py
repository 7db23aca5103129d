"""JSON that Python's parser refuses in ways other than a syntax error, and run.json fields of the wrong
type, through the real CLI (issue 21).

- An integer of 5000 digits (`ValueError`: Python reads at most 4300 digits) and 100 000 nested arrays
  (`RecursionError`) in a corpus line, a score input, a run's summaries.jsonl or its run.json: one line
  naming the file (and the line for JSONL), exit 2 (harness.jsonl.loads_document).
- run.json is read through the typed record with validation (harness.results.record): `"environment": []`,
  `"config": 5`, `"command": 123` give one line naming the field in report, compare, db ingest and
  --resume; a tampered recorded command line is one line, not argparse's usage block.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from faultcli import DUMMY_ENTRY, Result, assert_one_line_error, faults_env, run_many
from runfactory import make_run

GOOD = '{"id": "a", "text": "这是一段演讲的正文。", "references": ["摘要"]}\n'
BIG_INT = "9" * 5000
DEEP = "[" * 100_000 + "]" * 100_000

# name -> (the bad value as JSON text, what the one line says)
HOSTILE: dict[str, tuple[str, str]] = {
    "big-int": (BIG_INT, "4300 digits"),
    "deep-nesting": (DEEP, "nested too deeply"),
}

# run.json field -> the bad value (as JSON text), checked by every reader of run.json
BAD_FIELDS: dict[str, tuple[str, str]] = {
    "environment-list": ("environment", "[]"),
    "config-number": ("config", "5"),
    "command-number": ("command", "123"),
    "command-string": ("command", '"run --models m --talks t1"'),
}
# Further fields, through report only (the same validation serves every reader).
MORE_FIELDS: dict[str, tuple[str, str]] = {
    "models-list": ("models", '["m"]'),
    "status-unknown": ("status", '"exploded"'),
    "planned-samples-string": ("planned_samples", '"4"'),
}
READERS = ("report", "compare", "db-ingest", "resume")


@dataclass
class Readers:
    root: Path
    results: dict[str, Result]


def _reader_argv(reader: str, run_dir: Path, root: Path) -> list[str | Path]:
    if reader == "report":
        return ["report", run_dir, "--out", root / f"report-{run_dir.parent.name}"]
    if reader == "compare":
        return ["compare", run_dir, run_dir]
    if reader == "db-ingest":
        return ["db", "ingest", run_dir, "--db", root / f"{run_dir.parent.name}.duckdb"]
    return ["run", "--resume", run_dir]


def _set_field(run_dir: Path, key: str, raw_value: str) -> None:
    """Replace one top-level field of run.json with raw JSON text (a big integer cannot round-trip)."""
    record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    record["status"] = "interrupted"  # so that --resume reads the whole record
    record[key] = "@@VALUE@@"
    text = json.dumps(record, indent=2).replace('"@@VALUE@@"', raw_value)
    (run_dir / "run.json").write_text(text, encoding="utf-8")


@pytest.fixture(scope="module")
def readers(tmp_path_factory: pytest.TempPathFactory) -> Readers:
    root = tmp_path_factory.mktemp("readers")
    weights = root / "dummy.bin"
    weights.write_bytes(b"\0" * 1024)
    models = root / "models.yaml"
    body = DUMMY_ENTRY.format(id="m", path=weights, opts="{}")
    models.write_text("models:\n" + "".join("  " + line + "\n" for line in body.splitlines()), encoding="utf-8")
    cases: dict[str, list[str | Path]] = {}
    for name, (value, _) in HOSTILE.items():
        corpus = root / f"corpus-{name}" / "c.jsonl"
        corpus.parent.mkdir()
        corpus.write_text(GOOD + '{"id": "b", "text": "t", "references": ["r"], "n": ' + value + "}\n")
        cases[f"corpus:{name}"] = ["run", "--models-file", models, "--models", "m", "--corpus", corpus,
                                   "--out", root / f"out-{name}"]  # fmt: skip
        scores = root / f"score-{name}" / "in.jsonl"
        scores.parent.mkdir()
        scores.write_text('{"prediction": "摘要", "references": ["摘要"], "x": ' + value + "}\n")
        cases[f"score:{name}"] = ["score", scores]
        run_dir = make_run(root / f"summaries-{name}", "r", models=("m",), talks=("t1",), repeats=1)
        with (run_dir / "summaries.jsonl").open("a", encoding="utf-8") as fh:
            fh.write('{"model": "m", "x": ' + value + "}\n")
        cases[f"summaries:{name}"] = ["score", run_dir]
        for reader in ("report", "compare"):
            run_dir = make_run(root / f"runjson-{reader}-{name}", "r", models=("m",), talks=("t1",), repeats=1)
            _set_field(run_dir, "extra_field", value)
            cases[f"run.json:{reader}:{name}"] = _reader_argv(reader, run_dir, root)
    for name, (key, value) in BAD_FIELDS.items():
        for reader in READERS:
            run_dir = make_run(root / f"field-{reader}-{name}", "r", models=("m",), talks=("t1",), repeats=1)
            _set_field(run_dir, key, value)
            cases[f"field:{reader}:{name}"] = _reader_argv(reader, run_dir, root)
    for name, (key, value) in MORE_FIELDS.items():
        run_dir = make_run(root / f"more-{name}", "r", models=("m",), talks=("t1",), repeats=1)
        _set_field(run_dir, key, value)
        cases[f"more:{name}"] = _reader_argv("report", run_dir, root)
    for name, command in {
        "unknown-option": ["-m", "harness", "run", "--no-such-option", "1"],
        "missing-value": ["-m", "harness", "run", "--repeats"],
    }.items():
        run_dir = make_run(root / f"command-{name}", "r", models=("m",), talks=("t1",), repeats=1,
                           overrides={"sample_seq": 0})  # fmt: skip
        _set_field(run_dir, "command", json.dumps(command))
        cases[f"command:{name}"] = ["run", "--resume", run_dir]
    return Readers(root, run_many(cases, faults_env()))


@pytest.mark.parametrize("value", sorted(HOSTILE))
@pytest.mark.parametrize("where", ["corpus", "score", "summaries"])
def test_json_python_cannot_parse_is_one_line_naming_file_and_line(readers: Readers, where: str, value: str) -> None:
    needle = {"corpus": "c.jsonl:2", "score": "in.jsonl:1", "summaries": "summaries.jsonl:2"}[where]
    assert_one_line_error(readers.results[f"{where}:{value}"], needle, HOSTILE[value][1])
    if where == "corpus":
        assert not (readers.root / f"out-{value}").exists()


@pytest.mark.parametrize("value", sorted(HOSTILE))
@pytest.mark.parametrize("reader", ["report", "compare"])
def test_run_json_python_cannot_parse_is_one_line(readers: Readers, reader: str, value: str) -> None:
    assert_one_line_error(readers.results[f"run.json:{reader}:{value}"], "run.json", HOSTILE[value][1])


@pytest.mark.parametrize("case", sorted(BAD_FIELDS))
@pytest.mark.parametrize("reader", READERS)
def test_a_run_json_field_of_the_wrong_type_is_one_line_naming_it(readers: Readers, reader: str, case: str) -> None:
    key = BAD_FIELDS[case][0]
    assert_one_line_error(readers.results[f"field:{reader}:{case}"], "run.json", f'"{key}"')


@pytest.mark.parametrize("case", sorted(MORE_FIELDS))
def test_more_run_json_fields_of_the_wrong_type(readers: Readers, case: str) -> None:
    assert_one_line_error(readers.results[f"more:{case}"], "run.json", f'"{MORE_FIELDS[case][0]}"')


@pytest.mark.parametrize("case", ["unknown-option", "missing-value"])
def test_a_tampered_recorded_command_is_one_line_on_resume(readers: Readers, case: str) -> None:
    line = assert_one_line_error(readers.results[f"command:{case}"], "--resume", '"command"', "no longer parses")
    assert "usage:" not in line
