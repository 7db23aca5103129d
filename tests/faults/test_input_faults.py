"""Hostile or broken input through the real CLI: corpus files, models.yaml, option values, score paths.

Every case must end in one line that names the problem (and the file:line where there is one), exit 2,
no traceback, and nothing half-written."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from faultcli import assert_one_line_error, run_args, run_cli

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
}


@pytest.mark.parametrize("case", sorted(CORPUS_CASES))
def test_broken_corpus_is_one_line_naming_the_line(
    case: str, tmp_path: Path, dummy_models: Callable[..., Path]
) -> None:
    data, needles = CORPUS_CASES[case]
    corpus = tmp_path / "c.jsonl"
    corpus.write_bytes(data)
    out = tmp_path / "runs"
    models = dummy_models(m={})
    result = run_cli("run", "--models-file", models, "--models", "m", "--corpus", corpus, "--out", out)
    assert_one_line_error(result, *needles)
    assert not out.exists()


def test_missing_corpus_names_the_file(tmp_path: Path, dummy_models: Callable[..., Path]) -> None:
    result = run_cli("run", "--models-file", dummy_models(m={}), "--corpus", tmp_path / "nope.jsonl")
    assert_one_line_error(result, "nope.jsonl", "--corpus")


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


@pytest.mark.parametrize("case", sorted(MODELS_CASES))
def test_broken_models_file_is_one_line(case: str, tmp_path: Path) -> None:
    text, needles = MODELS_CASES[case]
    models = tmp_path / "models.yaml"
    models.write_text(text, encoding="utf-8")
    result = run_cli("run", "--models-file", models, "--out", tmp_path / "runs")
    assert_one_line_error(result, *needles)
    assert not (Path.cwd() / "PWNED").exists() and not (tmp_path / "PWNED").exists()  # safe_load: no tags


def test_model_typo_suggests(tmp_path: Path, dummy_models: Callable[..., Path]) -> None:
    result = run_cli("run", "--models-file", dummy_models(alpha={}), "--models", "alpah", "--out", tmp_path)
    assert_one_line_error(result, '"alpah"', '"alpha"')


# Option values (strict validation in one place): 0, negatives, duplicates, providers on llama.cpp.
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
}


@pytest.mark.parametrize("case", sorted(OPTION_CASES))
def test_bad_option_value_is_a_usage_error(case: str, tmp_path: Path, dummy_models: Callable[..., Path]) -> None:
    extra, needles = OPTION_CASES[case]
    out = tmp_path / "runs"
    argv = ["run", "--models-file", dummy_models(m={}), "--models", "m", "--out", out, "--no-bandwidth", *extra]
    result = run_cli(*argv)
    assert_one_line_error(result, *needles)
    assert not out.exists()


def test_provider_on_a_backend_without_providers_names_the_backend(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    result = run_cli("run", "--models", "tiny-qwen2", "--provider", "qnn", "--out", out, "--no-bandwidth")
    assert_one_line_error(result, "--provider", "llama_cpp")
    assert not out.exists()


def test_too_many_threads_is_a_recorded_warning(tmp_path: Path, dummy_models: Callable[..., Path]) -> None:
    models = dummy_models(m={})
    result = run_cli(*run_args(models, tmp_path, "m", "--talks", "alibaba-qwen", "--threads", "999"))
    assert result.returncode == 0, result.explain()
    record = json.loads((result.run_dir / "run.json").read_text(encoding="utf-8"))
    assert any("999" in w and "thread" in w for w in record["warnings"]), record["warnings"]
    assert record["config"]["threads"] == 999


def test_score_out_below_a_file_is_one_line(tmp_path: Path) -> None:
    scores = tmp_path / "in.jsonl"
    scores.write_text('{"prediction": "摘要", "references": ["摘要"]}\n', encoding="utf-8")
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    result = run_cli("score", scores, "--out", tmp_path / "afile" / "x.jsonl")
    assert_one_line_error(result, "afile", "is a file")
    result = run_cli("score", scores, "--out", tmp_path)
    assert_one_line_error(result, "is a directory")


def test_score_input_not_utf8_names_the_line(tmp_path: Path) -> None:
    scores = tmp_path / "in.jsonl"
    scores.write_bytes(b'{"prediction": "a", "references": ["a"]}\n{"prediction": "\xff", "references": ["a"]}\n')
    assert_one_line_error(run_cli("score", scores), "in.jsonl:2", "UTF-8")
