"""Hostile or broken input through the real CLI: corpus files, models.yaml, option values, score paths.

Every case must end in one line that names the problem (and the file:line where there is one), exit 2,
no traceback, and nothing half-written. The invocations are independent, so the module runs them all at
once, three at a time (`inputs` fixture), and each test checks its own result."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from faultcli import DUMMY_ENTRY, Result, assert_one_line_error, faults_env, run_args, run_many

GOOD = '{"id": "a", "text": "这是一段演讲的正文。", "references": ["摘要"]}\n'

CORPUS_CASES: dict[str, tuple[bytes, tuple[str, ...]]] = {
    "bad-json": ((GOOD + '{"id": "b", "text": "x"\n').encode(), ("c.jsonl:2", "not valid JSON")),
    "not-utf8": (GOOD.encode() + b'{"id": "b", "text": "\xff\xfe", "references": ["r"]}\n', ("c.jsonl:2", "UTF-8")),
    "no-text": (b'{"id": "a", "references": ["r"]}\n', ("c.jsonl:1", '"text"')),
    "refs-not-list": (b'{"id": "a", "text": "t", "references": "r"}\n', ("c.jsonl:1", '"references"')),
    "refs-by-lang-string": (
        b'{"id": "a", "text": "t", "references": ["r"], "references_by_lang": {"zh": "abc"}}\n',
        ("c.jsonl:1", "references_by_lang", '"zh"'),
    ),
    "refs-by-lang-bad-key": (
        b'{"id": "a", "text": "t", "references": ["r"], "references_by_lang": {"fr": ["x"]}}\n',
        ("c.jsonl:1", "references_by_lang", '"fr"'),
    ),
    "duplicate-id": ((GOOD + GOOD).encode(), ("c.jsonl:2", "duplicate")),
    "bad-lang": (b'{"id": "a", "text": "t", "references": ["r"], "lang": "fr"}\n', ("c.jsonl:1", '"lang"')),
    "array-line": (b'["id", "a"]\n', ("c.jsonl:1", "expected")),
    "empty": (b"\n\n", ("no talks",)),
    # Ids name CSV rows: a formula prefix would run in a spreadsheet, an invisible/bidi character would make an
    # id that looks like another one (its "did you mean" identical to what was typed).
    "formula-id": (b'{"id": "=HYPERLINK(\\"x\\")", "text": "t", "references": ["r"]}\n', ("c.jsonl:1", "plain name")),
    "at-sum-id": (b'{"id": "@SUM(A1)", "text": "t", "references": ["r"]}\n', ("c.jsonl:1", "plain name")),
    "bidi-id": ('{"id": "talk\u202ea", "text": "t", "references": ["r"]}\n'.encode(), ("c.jsonl:1", "\\u202e")),
    "zero-width-id": ('{"id": "ta\u200blk", "text": "t", "references": ["r"]}\n'.encode(), ("c.jsonl:1", "\\u200b")),
}

MODELS_CASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "not-yaml": ("models: [\n  - id: x\n", ("models.yaml",)),
    "unknown-backend": (
        "models:\n  - {id: m, backend: vllm, quant: q, n_ctx: 10, prompt_style: chat, "
        "source: {kind: path, path: x.gguf}}\n",
        ('model "m"', "backend"),
    ),
    "no-source": ("models:\n  - {id: m, backend: dummy, quant: q, n_ctx: 10, prompt_style: chat}\n", ("source",)),
    "unknown-key": (
        "models:\n  - {id: m, backend: dummy, quant: q, n_ctx: 10, prompt_style: chat, colour: red, "
        "source: {kind: path, path: x.gguf}}\n",
        ("colour",),
    ),
    "python-tag": ("models: !!python/object/apply:os.system ['touch PWNED']\n", ("models.yaml",)),
}

# Option values (strict validation in one place): 0, negatives, duplicates.
OPTION_CASES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "threads-0": (("--threads", "0"), ("--threads",)),
    "threads-negative": (("--threads", "-2"), ("--threads",)),
    "n-ctx-0": (("--n-ctx", "0"), ("--n-ctx",)),
    "n-ctx-negative": (("--n-ctx", "-5"), ("--n-ctx",)),
    "repeats-0": (("--repeats", "0"), ("--repeats",)),
    "max-new-tokens-0": (("--max-new-tokens", "0"), ("--max-new-tokens",)),
    "min-above-max": (("--min-new-tokens", "50", "--max-new-tokens", "10"), ("--min-new-tokens",)),
    "duplicate-models": (("--models", "m,m"), ("--models", "m")),
    "duplicate-talks": (("--talks", "alibaba-qwen,alibaba-qwen"), ("--talks", "alibaba-qwen")),
    "sample-timeout-0": (("--sample-timeout", "0"), ("--sample-timeout",)),
    "resume-missing-dir": (("--resume", "no-such-run"), ("--resume", "no-such-run")),
}


@dataclass
class Inputs:
    root: Path
    results: dict[str, Result]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    root = tmp_path_factory.mktemp("inputs")
    weights = root / "dummy.bin"
    weights.write_bytes(b"\0" * 1024)
    dummy = root / "dummy-models.yaml"
    dummy.write_text("models:\n" + "".join("  " + line + "\n" for line in DUMMY_ENTRY.format(
        id="m", path=weights, opts={}).splitlines()), encoding="utf-8")  # fmt: skip
    cases: dict[str, list[str | Path]] = {}
    for name, (data, _) in CORPUS_CASES.items():
        corpus = root / f"corpus-{name}" / "c.jsonl"
        corpus.parent.mkdir()
        corpus.write_bytes(data)
        cases[f"corpus:{name}"] = ["run", "--models-file", dummy, "--models", "m", "--corpus", corpus,
                                   "--out", root / f"out-corpus-{name}"]  # fmt: skip
    cases["corpus:missing"] = ["run", "--models-file", dummy, "--corpus", root / "nope.jsonl", "--out", root / "o"]
    for name, (text, _) in MODELS_CASES.items():
        models = root / f"models-{name}" / "models.yaml"
        models.parent.mkdir()
        models.write_text(text, encoding="utf-8")
        cases[f"models:{name}"] = ["run", "--models-file", models, "--out", root / f"out-models-{name}"]
    cases["models:typo"] = ["run", "--models-file", dummy, "--models", "mm", "--out", root / "out-typo"]
    for name, (extra, _) in OPTION_CASES.items():
        cases[f"option:{name}"] = ["run", "--models-file", dummy, "--models", "m", "--no-bandwidth",
                                   "--out", root / f"out-option-{name}", *extra]  # fmt: skip
    cases["provider-on-llama-cpp"] = ["run", "--models", "tiny-qwen2", "--provider", "qnn", "--no-bandwidth",
                                      "--out", root / "out-provider"]  # fmt: skip
    cases["threads-999"] = [*run_args(dummy, root / "out-threads", "m", "--talks", "alibaba-qwen", "--threads", "999")]
    scores = root / "in.jsonl"
    scores.write_text('{"prediction": "摘要", "references": ["摘要"]}\n', encoding="utf-8")
    (root / "afile").write_text("x", encoding="utf-8")
    cases["score:out-below-a-file"] = ["score", scores, "--out", root / "afile" / "x.jsonl"]
    cases["score:out-is-a-directory"] = ["score", scores, "--out", root]
    bad_scores = root / "bad.jsonl"
    bad_scores.write_bytes(b'{"prediction": "a", "references": ["a"]}\n{"prediction": "\xff", "references": ["a"]}\n')
    cases["score:not-utf8"] = ["score", bad_scores]
    env = faults_env()
    env["HARNESS_CACHE"] = str(tmp_path_factory.getbasetemp() / "model-cache")
    return Inputs(root, run_many(cases, env))


@pytest.mark.parametrize("case", sorted(CORPUS_CASES))
def test_broken_corpus_is_one_line_naming_the_line(inputs: Inputs, case: str) -> None:
    assert_one_line_error(inputs.results[f"corpus:{case}"], *CORPUS_CASES[case][1])
    assert not (inputs.root / f"out-corpus-{case}").exists()


def test_missing_corpus_names_the_file(inputs: Inputs) -> None:
    assert_one_line_error(inputs.results["corpus:missing"], "nope.jsonl", "--corpus")


@pytest.mark.parametrize("case", sorted(MODELS_CASES))
def test_broken_models_file_is_one_line(inputs: Inputs, case: str) -> None:
    assert_one_line_error(inputs.results[f"models:{case}"], *MODELS_CASES[case][1])
    assert not list(inputs.root.rglob("PWNED")) and not Path("PWNED").exists()  # safe_load: no tags run


def test_model_typo_suggests(inputs: Inputs) -> None:
    assert_one_line_error(inputs.results["models:typo"], '"mm"', '"m"')


@pytest.mark.parametrize("case", sorted(OPTION_CASES))
def test_bad_option_value_is_a_usage_error(inputs: Inputs, case: str) -> None:
    assert_one_line_error(inputs.results[f"option:{case}"], *OPTION_CASES[case][1])
    assert not (inputs.root / f"out-option-{case}").exists()


def test_provider_on_a_backend_without_providers_names_the_backend(inputs: Inputs) -> None:
    assert_one_line_error(inputs.results["provider-on-llama-cpp"], "--provider", "llama_cpp")
    assert not (inputs.root / "out-provider").exists()


def test_too_many_threads_is_a_recorded_warning(inputs: Inputs) -> None:
    result = inputs.results["threads-999"]
    assert result.returncode == 0, result.explain()
    record = json.loads((result.run_dir / "run.json").read_text(encoding="utf-8"))
    assert any("999" in w and "thread" in w for w in record["warnings"]), record["warnings"]
    assert record["config"]["threads"] == 999


def test_score_out_below_a_file_is_one_line(inputs: Inputs) -> None:
    assert_one_line_error(inputs.results["score:out-below-a-file"], "afile", "is a file")
    assert_one_line_error(inputs.results["score:out-is-a-directory"], "is a directory")


def test_score_input_not_utf8_names_the_line(inputs: Inputs) -> None:
    assert_one_line_error(inputs.results["score:not-utf8"], "bad.jsonl:2", "UTF-8")
