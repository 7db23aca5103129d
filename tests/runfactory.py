"""Synthetic run directories for tests: results.csv (schema COLUMNS), run.json and summaries.jsonl.

Values are drawn around per-model base figures with multiplicative Gaussian noise from a seeded RNG, so
a test states the effect it wants (`scale={"decode_tok_s": 0.5}`) and the noise level, never a figure.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.results.schema import COLUMNS

# Base values for the first model; later models are scaled so models differ visibly in plots.
BASE: dict[str, float] = {
    "load_s": 0.5,
    "ttft_s": 0.8,
    "prefill_tok_s": 900.0,
    "decode_tok_s": 40.0,
    "e2e_s": 5.0,
    "peak_rss_mb": 600.0,
    "rouge1_f": 0.40,
    "rouge2_f": 0.15,
    "rougeL_f": 0.30,
    "itl_p50_ms": 25.0,
    "itl_p90_ms": 31.0,
    "itl_p99_ms": 48.0,
}
# Per-model multipliers (bigger model: slower, more memory, better ROUGE).
_MODEL_STEP: dict[str, float] = {
    "load_s": 1.6,
    "ttft_s": 1.7,
    "prefill_tok_s": 0.6,
    "decode_tok_s": 0.55,
    "e2e_s": 1.8,
    "peak_rss_mb": 1.9,
    "rouge1_f": 1.15,
    "rouge2_f": 1.2,
    "rougeL_f": 1.15,
    "itl_p50_ms": 1.8,
    "itl_p90_ms": 1.8,
    "itl_p99_ms": 1.9,
}


def make_run(
    root: Path,
    run_id: str = "run-a",
    *,
    models: Sequence[str] = ("m-small", "m-large"),
    talks: Sequence[str] = ("t1", "t2"),
    repeats: int = 3,
    seed: int = 0,
    noise: float = 0.02,
    scale: Mapping[str, float] | None = None,
    threads: int = 4,
    cpu_brand: str = "Test CPU @ 3.0GHz",
    cores: int = 4,
    harness_version: str = "0.1.0",
    provider: str = "cpu",
    summary_lang: str = "zh",
    errors: int = 0,
    predictions: Mapping[tuple[str, str], str] | None = None,
    references: Mapping[str, Sequence[str]] | None = None,
    columns: Sequence[str] = COLUMNS,
    overrides: Mapping[str, Any] | None = None,
    run_json: bool = True,
    summaries: bool = True,
) -> Path:
    """Write <root>/<run_id>/{results.csv,run.json,summaries.jsonl}; return the run directory.

    `scale` multiplies a metric's true value (the effect under test); `noise` is the relative standard
    deviation of every sample; `errors` adds that many status=error rows (first model, first talks);
    `overrides` sets columns to a constant; `columns` writes only those columns (old/partial CSVs).
    """
    rng = np.random.default_rng(seed)
    scale = dict(scale or {})
    run_dir = root / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    for mi, model in enumerate(models):
        for ti, talk in enumerate(talks):
            for rep in range(repeats):
                row = _row(run_id, model, talk, rep, threads, provider, summary_lang)
                for metric, base in BASE.items():
                    true = base * _MODEL_STEP[metric] ** mi * (1 + 0.05 * ti) * scale.get(metric, 1.0)
                    row[metric] = round(float(true * (1 + noise * rng.standard_normal())), 6)
                row["output_tokens"] = 120
                row["prompt_tokens"] = 700 + 50 * ti
                row.update(overrides or {})
                rows.append(row)
                text = (predictions or {}).get((model, talk), f"{model} 对 {talk} 的摘要 (summary {rep}).")
                records.append(
                    {
                        "run_id": run_id,
                        "model": model,
                        "talk_id": talk,
                        "repeat": rep,
                        "status": "ok",
                        "summary_lang": summary_lang,
                        "prompt_name": "summarise_zh.txt",
                        "prediction": text,
                        "references": list((references or {}).get(talk, [f"{talk} 的参考摘要。"])),
                        "source": f"{talk} 演讲全文。Talk text of {talk}.",
                    }
                )
    for i in range(errors):
        talk = talks[i % len(talks)]
        row = _row(run_id, models[0], talk, repeats + i, threads, provider, summary_lang)
        row.update(status="error", error="RuntimeError: worker died", stop_reason="error")
        rows.append(row)
    with (run_dir / "results.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
    if summaries:
        with (run_dir / "summaries.jsonl").open("w", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    if run_json:
        meta = {
            "run_id": run_id,
            "harness_version": harness_version,
            "git_commit": "0123456789ab",
            "command": ["harness", "run"],
            "started_at": "2025-01-01T00:00:00Z",
            "finished_at": "2025-01-01T00:10:00Z",
            "config": {
                "models": list(models),
                "talks": list(talks),
                "repeats": repeats,
                "warmup": 1,
                "max_new_tokens": 256,
                "min_new_tokens": 0,
                "threads": threads,
                "summary_lang": summary_lang,
                "cooldown_s": 0,
                "corpus": "summit",
                "corpus_sha256": "f" * 64,
                "no_mmap": False,
            },
            "environment": {
                "cpu": {"brand": cpu_brand, "arch": "x86_64", "flags": ["avx2"], "hz_advertised": "3.0 GHz"},
                "cores_physical": cores,
                "cores_logical": cores * 2,
                "ram_gb": 16.0,
                "os": "Linux",
                "kernel": "6.1.0",
                "python": "3.11.9",
                "packages": {"llama_cpp_python": "0.3.36"},
                "llama_cpp_system_info": "AVX2 = 1",
                "onnxruntime": None,
                "memory_bandwidth_gbs": 20.0,
            },
            "models": {
                m: {
                    "backend": "llama_cpp",
                    "quant": "Q4_1",
                    "sha256": "0" * 64,
                    "size_bytes": 1 << 27,
                    "files": [f"{m}.gguf"],
                    "load_s": 0.5,
                    "provider": provider,
                    "n_ctx": 8192,
                }
                for m in models
            },
            "prompts": {"summarise_zh.txt": "abcdef012345"},
            "overhead": {},
        }
        (run_dir / "run.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
    return run_dir


def _row(
    run_id: str, model: str, talk: str, rep: int, threads: int, provider: str, summary_lang: str
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "model": model,
        "backend": "llama_cpp",
        "provider": provider,
        "quant": "Q4_1",
        "threads": threads,
        "talk_id": talk,
        "repeat": rep,
        "status": "ok",
        "error": "",
        "stop_reason": "eos",
        "max_new_tokens": 256,
        "min_new_tokens": 0,
        "n_ctx": 8192,
        "flash_attn": "false",
        "prompt_name": "summarise_zh.txt",
        "prompt_sha": "abcdef012345",
        "summary_lang": summary_lang,
        "mmap": "true",
        "truncated": "false",
    }
