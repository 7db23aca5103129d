"""User mistakes give one line naming the problem and the fix, exit 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_model_typo_suggests_the_closest_id(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = _error(capsys, ["run", "--models", "smollm2-135m-instruct-q4-1", "--out", str(tmp_path)])
    assert 'Did you mean "smollm2-135m-instruct-q4_1"?' in err


def test_talk_typo_suggests_the_closest_id(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = _error(capsys, ["run", "--models", "tiny-qwen2", "--talks", "alibaba-qwn", "--out", str(tmp_path)])
    assert 'Did you mean "alibaba-qwen"?' in err


def test_missing_corpus_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = _error(capsys, ["run", "--corpus", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path)])
    assert "nope.jsonl" in err and "--corpus" in err


def test_malformed_corpus_line_names_its_number(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(
        '{"id": "a", "text": "正文", "references": ["摘要"]}\n{"id": "b", "text": "x"\n', encoding="utf-8"
    )
    err = _error(capsys, ["run", "--corpus", str(corpus), "--out", str(tmp_path)])
    assert "c.jsonl:2" in err


def test_bad_numbers(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert "--repeats" in _error(
        capsys, ["run", "--models", "tiny-qwen2", "--repeats", "0", "--out", str(tmp_path)]
    )
    err = _error(
        capsys,
        [
            "run",
            "--models",
            "tiny-qwen2",
            "--min-new-tokens",
            "50",
            "--max-new-tokens",
            "10",
            "--out",
            str(tmp_path),
        ],
    )
    assert "--min-new-tokens" in err


def test_unknown_backend_in_models_file(
    capsys: pytest.CaptureFixture[str], write_models, tmp_path: Path
) -> None:
    models = write_models("""\
        - id: m
          backend: vllm
          quant: q
          n_ctx: 10
          prompt_style: chat
          source: {kind: path, path: x.gguf}
    """)
    err = _error(capsys, ["run", "--models-file", str(models), "--out", str(tmp_path)])
    assert 'model "m"' in err and "backend" in err


def test_unavailable_execution_provider_fails_before_any_work(
    capsys: pytest.CaptureFixture[str], write_models, tmp_path: Path
) -> None:
    pytest.importorskip("onnxruntime_genai")
    models = write_models("""\
        - id: some-onnx
          backend: onnx
          quant: int8
          n_ctx: 512
          prompt_style: chat
          source: {kind: onnx_dir, path: not-built-yet}
    """)
    out = tmp_path / "runs"
    argv = ["run", "--models-file", str(models), "--models", "some-onnx", "--provider", "qnn", "--out", str(out)]
    err = _error(capsys, argv)
    assert '"qnn"' in err and "available: " in err and "CPUExecutionProvider" in err
    assert not out.exists()  # nothing started, nothing half-written
