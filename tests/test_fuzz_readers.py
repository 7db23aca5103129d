"""Fuzzing the readers of user-supplied files (issue 21): a corpus JSONL, models.yaml and run.json.

Property: whatever the bytes, a reader either returns or raises `HarnessError` (one line for the CLI) --
never another exception, which the CLI would print as a traceback. Each property is bounded by a number
of examples (a few seconds each on a 2-core VM) and has no per-example deadline, so a loaded CI machine
does not turn slowness into failures.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.corpus import load_corpus
from harness.errors import HarnessError
from harness.models.registry import load_models
from harness.results.record import RunRecord

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)

# Text that includes lone surrogates (category Cs), which hypothesis leaves out by default.
ANY_TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=20)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT
JSON_VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4), max_leaves=12
)


def _keyed(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects whose keys are mostly the ones a reader looks for, with values of any JSON type."""
    return st.dictionaries(st.sampled_from(keys) | ANY_TEXT, JSON_VALUES, max_size=len(keys) + 1)


def _write(data: bytes, name: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="harness-fuzz-"))
    path = folder / name
    path.write_bytes(data)
    return path


def _json_line(obj: Any) -> bytes:
    return (json.dumps(obj) + "\n").encode()  # ensure_ascii: a lone surrogate becomes a \ud800 escape


CORPUS_KEYS = ["id", "text", "references", "lang", "references_by_lang", "speaker", "organisation", "title"]
GOOD_TALK = {"id": "a", "text": "这是一段演讲的正文。", "references": ["摘要"]}
CORPUS_LINES = (
    _keyed(CORPUS_KEYS).map(lambda d: {**GOOD_TALK, **d}).map(_json_line)
    | _keyed(CORPUS_KEYS).map(_json_line)
    | st.binary(max_size=60).map(lambda b: b + b"\n")
    | st.sampled_from([b'{"id": "b", "n": ' + b"9" * 5000 + b"}\n", b"[" * 5000 + b"]" * 5000 + b"\n"])
)


@FUZZ
@given(st.lists(CORPUS_LINES, max_size=4))
def test_corpus_reader_raises_only_harness_errors(lines: list[bytes]) -> None:
    path = _write(b"".join(lines), "corpus.jsonl")
    try:
        talks = load_corpus(path)
    except HarnessError as exc:
        assert "\n" not in str(exc)
        return
    for talk in talks:  # what loaded is text that can be written out
        talk.text.encode("utf-8")
        talk.id.encode("utf-8")


ENTRY_KEYS = ["id", "backend", "quant", "n_ctx", "prompt_style", "source", "flags", "default", "notes"]
GOOD_ENTRY = {
    "id": "m",
    "backend": "dummy",
    "quant": "none",
    "n_ctx": 512,
    "prompt_style": "chat",
    "source": {"kind": "path", "path": "x.bin"},
}
YAML_SCALARS = st.none() | st.booleans() | st.integers() | st.text(max_size=12)
YAML_VALUES = st.recursive(
    YAML_SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)  # fmt: skip
ENTRIES = st.dictionaries(st.sampled_from(ENTRY_KEYS) | st.text(max_size=8), YAML_VALUES, max_size=6).map(
    lambda d: {**GOOD_ENTRY, **d}
)
MODELS_DOCS = (
    st.lists(ENTRIES, max_size=3).map(lambda models: yaml.safe_dump({"models": models}).encode())
    | st.binary(max_size=80)
    | st.text(max_size=80).map(lambda t: t.encode("utf-8"))
    | st.sampled_from(
        [
            b"a: &a [x]\nb: &b [*a, *a]\nmodels: *b\n",
            b"models:\n  - id: m\n    id: n\n",
            b"models: !!python/object/apply:os.system ['true']\n",
            b"models: [" * 3000 + b"]" * 3000,
        ]
    )
)


@FUZZ
@given(MODELS_DOCS)
def test_models_reader_raises_only_harness_errors(data: bytes) -> None:
    path = _write(data, "models.yaml")
    try:
        load_models(path, include_registered=False)
    except HarnessError as exc:
        assert "\n" not in str(exc)


RECORD_KEYS = [
    "schema_version", "run_id", "command", "status", "planned_samples", "written_rows", "config", "environment",
    "models", "prompts", "warnings", "overhead", "summary", "finished_at",
]  # fmt: skip
NESTED = {
    "config": ["models", "talks", "repeats", "threads", "order", "n_ctx", "no_mmap"],
    "environment": ["cpu", "packages", "onnxruntime", "trackers", "cores_logical"],
    "models": ["m"],
}


def _run_json(top: dict[str, Any], nested: dict[str, dict[str, Any]]) -> bytes:
    record = dict(top)
    for key, value in nested.items():
        record[key] = value
    return json.dumps(record).encode()


RUN_JSONS = (
    st.builds(
        _run_json,
        _keyed(RECORD_KEYS),
        st.fixed_dictionaries({k: _keyed(v) for k, v in NESTED.items()}),
    )
    | _keyed(RECORD_KEYS).map(lambda d: json.dumps(d).encode())
    | st.binary(max_size=80)
    | st.sampled_from([b'{"run_id": ' + b"1" * 5000 + b"}", b"[" * 100_000 + b"]" * 100_000])
)


@FUZZ
@given(RUN_JSONS)
def test_run_json_reader_raises_only_harness_errors(data: bytes) -> None:
    path = _write(data, "run.json")
    try:
        record = RunRecord.load(path)
    except HarnessError as exc:
        assert "\n" not in str(exc)
        return
    # What readers do next with a record that loaded: none of it may raise.
    record.to_json()
    record.environment.cpu.description()
    record.environment.installed_packages()
    record.prompt_shas()
    _ = record.config.mmap, [m.n_ctx for m in record.models.values()]
