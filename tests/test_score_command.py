"""`harness score` end to end through harness.cli.main, on a JSONL file and on a fake run directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness import scoring
from harness.cli import main
from harness.commands import score as score_command
from harness.scoring import SCORE_KEYS, score_summary

REF_ZH = "端侧大模型的推理速度很快"
REF_EN = "Small models run fast on phones."


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
        encoding="utf-8",
    )
    return path


def run_score(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[dict[str, Any]], str]:
    rc = main(["score", *argv])
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines() if line.strip()]
    return rc, lines, captured.err


def test_choices_match_the_scoring_package() -> None:
    assert score_command.TOKENIZER_CHOICES == scoring.TOKENIZERS
    assert score_command.LANG_CHOICES == scoring.LANGS


def test_jsonl_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_jsonl(
        tmp_path / "preds.jsonl",
        [
            {
                "id": "a",
                "prediction": "端侧模型推理很快",
                "references": [REF_ZH],
                "lang": "zh",
                "source": REF_ZH,
            },
            "",  # blank lines are allowed
            {"prediction": "Models run fast.", "references": [REF_EN], "lang": "en"},
        ],
    )
    rc, lines, _ = run_score(capsys, str(src))
    assert rc == 0
    first, second, final = lines
    assert first["id"] == "a" and first["line"] == 1
    assert "id" not in second and second["line"] == 3
    assert set(SCORE_KEYS) <= set(first)
    expected = score_summary("端侧模型推理很快", [REF_ZH], "zh", source=REF_ZH)
    for key, value in expected.items():
        assert first[key] == (pytest.approx(value) if isinstance(value, float) else value)
    assert first["rouge_tokenizer"] == "char" and second["rouge_tokenizer"] == "porter"
    assert second["compression_ratio"] is None  # no source on that line
    assert final["n"] == 2
    assert final["mean"]["rouge1_f"] == pytest.approx((first["rouge1_f"] + second["rouge1_f"]) / 2)
    assert final["mean"]["lang_match"] == pytest.approx(1.0)
    # Only one line has a source: the mean of a source-based signal is over that line.
    assert final["mean"]["compression_ratio"] == pytest.approx(first["compression_ratio"])
    assert "by_model" not in final


def test_out_file_and_tokenizer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_jsonl(tmp_path / "p.jsonl", [{"prediction": "端侧模型推理很快", "references": [REF_ZH]}])
    out = tmp_path / "sub" / "scores.jsonl"
    rc, lines, _ = run_score(capsys, str(src), "--tokenizer", "jieba", "--out", str(out))
    assert rc == 0 and lines == []
    written = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert written[0]["rouge_tokenizer"] == "jieba"
    assert "mean" in written[-1]


def test_language_from_flag_or_references(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_jsonl(
        tmp_path / "p.jsonl",
        [
            {"prediction": "模型很快", "references": [REF_ZH]},  # guessed zh from the reference
            {"prediction": "fast", "references": [REF_EN]},  # guessed en
            {"prediction": "fast", "references": [REF_EN], "lang": "en"},  # own lang beats --lang
        ],
    )
    _, lines, _ = run_score(capsys, str(src))
    assert [row["rouge_tokenizer"] for row in lines[:3]] == ["char", "porter", "porter"]
    _, lines, _ = run_score(capsys, str(src), "--lang", "zh")
    assert [row["rouge_tokenizer"] for row in lines[:3]] == ["char", "char", "porter"]


def make_run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "out" / "20250101T000000Z-abc123"
    run.mkdir(parents=True)
    preds = {
        ("m1", "t1"): ["端侧模型推理很快", "端侧模型很快"],
        ("m1", "t2"): ["内存占用很低", "内存很低"],
        ("m2", "t1"): ["今天天气不错", "天气很好"],
        ("m2", "t2"): ["内存占用", "的的的的的的"],
    }
    refs = {"t1": [REF_ZH], "t2": ["内存占用很低，适合手机"]}
    rows: list[Any] = []
    for (model, talk), texts in preds.items():
        for repeat, text in enumerate(texts):
            rows.append(
                {
                    "run_id": run.name,
                    "model": model,
                    "talk_id": talk,
                    "repeat": repeat,
                    "status": "ok",
                    "summary_lang": "zh",
                    "prompt_name": "summary_zh.txt",
                    "prediction": text,
                    "references": refs[talk],
                    "source": refs[talk][0] + "。今天我们讨论端侧模型。",
                }
            )
    rows.insert(3, {"run_id": run.name, "model": "m2", "talk_id": "t9", "repeat": 0, "status": "error"})
    write_jsonl(run / "summaries.jsonl", rows)
    return run


def test_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run_dir(tmp_path)
    rc, lines, err = run_score(capsys, str(run))
    assert rc == 0
    rows, final = lines[:-1], lines[-1]
    assert len(rows) == 8
    assert {(r["model"], r["talk_id"], r["repeat"]) for r in rows} >= {("m1", "t1", 0), ("m2", "t2", 1)}
    assert all(r["talk_id"] != "t9" for r in rows)
    assert final["skipped"] == 1 and "skipped 1 rows" in err and "1 error" in err
    assert final["n"] == 8
    by_model = final["by_model"]
    assert set(by_model) == {"m1", "m2"}
    m1 = by_model["m1"]
    assert m1["n_talks"] == 2 and m1["n_samples"] == 4
    # The model mean is the mean over talks of the mean over repeats.
    per_talk = [
        sum(r["rougeL_f"] for r in rows if r["model"] == "m1" and r["talk_id"] == t) / 2 for t in ("t1", "t2")
    ]
    assert m1["rougeL_f"]["mean"] == pytest.approx(sum(per_talk) / 2)
    assert m1["rougeL_f"]["n"] == 2
    ci = m1["rougeL_f"]
    assert ci["lo"] <= ci["mean"] <= ci["hi"]
    # m1 summarises the talks, m2 mostly does not.
    assert by_model["m1"]["rouge1_f"]["mean"] > by_model["m2"]["rouge1_f"]["mean"]
    assert by_model["m2"]["repetition_rate"]["mean"] > 0
    # Reproducible: the CIs are seeded.
    _, again, _ = run_score(capsys, str(run))
    assert again[-1] == final


def test_run_directory_without_ok_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    write_jsonl(run / "summaries.jsonl", [{"model": "m", "talk_id": "t", "status": "error"}])
    rc, _, err = run_score(capsys, str(run))
    assert rc == 2 and "nothing to score" in err and "status ok" in err


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", "not valid JSON"),
        ('["a list"]', "expected a JSON object"),
        ('{"prediction": "x"}', '"references" must be a list of strings'),
        ('{"prediction": 3, "references": ["x"]}', '"prediction" must be a string'),
        ('{"prediction": "x", "references": ["x"], "lang": "fr"}', '"lang" must be "zh" or "en"'),
        ('{"prediction": "x", "references": ["x"], "source": 5}', '"source" must be a string'),
    ],
)
def test_bad_line_names_its_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad_line: str, message: str
) -> None:
    good = json.dumps({"prediction": "模型", "references": [REF_ZH]}, ensure_ascii=False)
    src = write_jsonl(tmp_path / "p.jsonl", [good, good, bad_line])
    rc, _, err = run_score(capsys, str(src))
    assert rc == 2
    assert f"{src}:3:" in err and message in err
    assert len(err.strip().splitlines()) == 1


def test_no_language_and_no_references(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_jsonl(tmp_path / "p.jsonl", [{"prediction": "模型", "references": []}])
    rc, _, err = run_score(capsys, str(src))
    assert rc == 2 and ":1:" in err and "--lang" in err
    rc, lines, _ = run_score(capsys, str(src), "--lang", "zh")
    assert rc == 0 and lines[0]["rouge1_f"] is None and lines[-1]["mean"]["rouge1_f"] is None


def test_missing_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run_score(capsys, str(tmp_path / "nope.jsonl"))
    assert rc == 2 and "input not found" in err and len(err.strip().splitlines()) == 1
    rc, _, err = run_score(capsys, str(tmp_path))
    assert rc == 2 and "no summaries.jsonl" in err


def test_empty_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "empty.jsonl"
    src.write_text("\n", encoding="utf-8")
    rc, _, err = run_score(capsys, str(src))
    assert rc == 2 and "nothing to score" in err
