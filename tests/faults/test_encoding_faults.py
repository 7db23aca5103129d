"""Text that is not text, and YAML that expands or hides a second value, through the real CLI (issue 21).

- Lone surrogates (`"\\ud800"`, which UTF-8 cannot hold) in corpus text, ids or references, or in a score
  input: refused when the file is read, one line naming file:line (harness.jsonl), never a crash at
  write time with a half-made run directory. In models.yaml: one line naming the file.
- models.yaml or registered.yaml that is not UTF-8: one line naming the file (the second is read by every
  command that loads models).
- PYTHONIOENCODING=ascii: the Chinese progress lines print with replacement characters; the run completes
  with its rows (harness.cli.tolerant_stdio).
- YAML aliases (a "billion laughs") and duplicate keys are refused with one line (harness.yamlload).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from faultcli import DUMMY_ENTRY, Result, assert_no_traceback, assert_one_line_error, faults_env, run_args, run_many

GOOD = '{"id": "a", "text": "这是一段演讲的正文。", "references": ["摘要"]}\n'

SURROGATE_CORPUS: dict[str, str] = {
    "in-text": '{"id": "b", "text": "正文\\ud800", "references": ["r"]}\n',
    "in-id": '{"id": "b\\udfff", "text": "正文", "references": ["r"]}\n',
    "in-references": '{"id": "b", "text": "正文", "references": ["r\\ud834"]}\n',
    "in-title": '{"id": "b", "text": "正文", "references": ["r"], "title": "\\udc80"}\n',
}

LAUGHS = "".join(f"{chr(97 + i)}: &{chr(97 + i)} [{', '.join([f'*{chr(96 + i)}'] * 10)}]\n" for i in range(1, 10))

# models.yaml (or registered.yaml) bodies -> what the one line names
BAD_YAML: dict[str, tuple[bytes, tuple[str, ...]]] = {
    "models-not-utf8": (b"models:\n  - id: caf\xe9\n", ("models.yaml", "UTF-8")),
    "models-billion-laughs": (
        ("lol: &a [x]\n" + LAUGHS + "models: []\n").encode(),
        ("models.yaml", "alias"),
    ),
    "models-alias-in-entry": (b"", ("models.yaml", "alias")),  # body filled in by the fixture
    "models-duplicate-key": (b"", ("models.yaml", "duplicate key", "n_ctx")),
    "models-surrogate": (b"", ("models.yaml", "surrogate")),
}


@dataclass
class Encodings:
    root: Path
    results: dict[str, Result]


def _entry(weights: Path, model_id: str = "m", extra: str = "") -> str:
    body = DUMMY_ENTRY.format(id=model_id, path=weights, opts="{}") + extra
    return "".join("  " + line + "\n" for line in body.splitlines())


@pytest.fixture(scope="module")
def encodings(tmp_path_factory: pytest.TempPathFactory) -> Encodings:
    root = tmp_path_factory.mktemp("encodings")
    weights = root / "dummy.bin"
    weights.write_bytes(b"\0" * 1024)
    models = root / "models.yaml"
    models.write_text("models:\n" + _entry(weights), encoding="utf-8")
    env = faults_env()
    cases: dict[str, list[str | Path]] = {}
    for name, line in SURROGATE_CORPUS.items():
        corpus = root / f"corpus-{name}" / "c.jsonl"
        corpus.parent.mkdir()
        corpus.write_text(GOOD + line, encoding="utf-8")
        cases[f"corpus:{name}"] = ["run", "--models-file", models, "--models", "m", "--corpus", corpus,
                                   "--out", root / f"out-{name}"]  # fmt: skip
    scores = root / "scores.jsonl"
    scores.write_text('{"prediction": "摘要\\ud800", "references": ["摘要"]}\n', encoding="utf-8")
    cases["score:surrogate"] = ["score", scores]
    bodies = dict(BAD_YAML)
    bodies["models-alias-in-entry"] = (
        ("defaults: &d {prompt_style: chat}\nmodels:\n" + _entry(weights) + "    notes: *d\n").encode(),
        BAD_YAML["models-alias-in-entry"][1],
    )
    bodies["models-duplicate-key"] = (
        ("models:\n" + _entry(weights) + "    n_ctx: 8192\n").encode(),
        BAD_YAML["models-duplicate-key"][1],
    )
    bodies["models-surrogate"] = (
        ("models:\n" + _entry(weights, model_id='"m\\ud800"')).encode(),
        BAD_YAML["models-surrogate"][1],
    )
    for name, (data, _) in bodies.items():
        path = root / name / "models.yaml"
        path.parent.mkdir()
        path.write_bytes(data)
        cases[f"yaml:{name}"] = ["run", "--models-file", path, "--out", root / f"out-{name}"]
    registered_env: dict[str, dict[str, str]] = {}
    for name, data in {
        "registered-not-utf8": b"models:\n  - id: \xff\xfe\n",
        "registered-duplicate-key": ("models:\n" + _entry(weights, "r") + "    quant: q8\n").encode(),
    }.items():
        cache = root / f"cache-{name}"
        cache.mkdir()
        (cache / "registered.yaml").write_bytes(data)
        registered_env[name] = {**env, "HARNESS_CACHE": str(cache)}
    results = run_many(cases, env)
    for name, case_env in registered_env.items():
        results.update(run_many({f"registered:{name}": ["models", "--models-file", models]}, case_env))
    ascii_env = {**env, "PYTHONIOENCODING": "ascii"}
    results.update(
        run_many(
            {
                "ascii:run": run_args(models, root / "out-ascii", "m"),
                "ascii:corpus-list": ["corpus", "list"],
            },
            ascii_env,
        )
    )
    return Encodings(root, results)


@pytest.mark.parametrize("case", sorted(SURROGATE_CORPUS))
def test_a_lone_surrogate_in_the_corpus_is_refused_at_load(encodings: Encodings, case: str) -> None:
    assert_one_line_error(encodings.results[f"corpus:{case}"], "c.jsonl:2", "surrogate")
    assert not (encodings.root / f"out-{case}").exists()  # no run directory, no run.json.tmp, no reserve


def test_a_lone_surrogate_in_a_score_input_is_one_line(encodings: Encodings) -> None:
    assert_one_line_error(encodings.results["score:surrogate"], "scores.jsonl:1", "surrogate")


@pytest.mark.parametrize("case", sorted(BAD_YAML))
def test_a_hostile_models_file_is_one_line(encodings: Encodings, case: str) -> None:
    result = encodings.results[f"yaml:{case}"]
    assert result.wall_s < 60, result.explain()  # the billion laughs never expands
    assert_one_line_error(result, *BAD_YAML[case][1])
    assert not (encodings.root / f"out-{case}").exists()


@pytest.mark.parametrize(
    ("case", "needles"),
    [("registered-not-utf8", ("registered.yaml", "UTF-8")), ("registered-duplicate-key", ("registered.yaml", "quant"))],
)
def test_a_broken_registered_yaml_is_one_line_naming_it(encodings: Encodings, case: str, needles: tuple[str]) -> None:
    assert_one_line_error(encodings.results[f"registered:{case}"], *needles)


def test_an_ascii_console_does_not_stop_the_run(encodings: Encodings) -> None:
    result = encodings.results["ascii:run"]
    assert result.returncode == 0, result.explain()
    assert_no_traceback(result)
    assert "UnicodeEncodeError" not in result.stderr
    record = json.loads((result.run_dir / "run.json").read_text(encoding="utf-8"))
    assert record["status"] == "complete" and record["written_rows"] == 2


def test_an_ascii_console_lists_the_chinese_corpus(encodings: Encodings) -> None:
    result = encodings.results["ascii:corpus-list"]
    assert result.returncode == 0, result.explain()
    assert_no_traceback(result)
    assert "alibaba-qwen" in result.stdout
