"""`harness run`: summarise each talk with each model and write a run directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.runner import RunConfig, Runner


def _csv_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _positive_float(value: str) -> float:
    f = float(value)
    if f < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return f


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="benchmark models on the corpus (latency, memory, ROUGE)",
        description="Summarise each talk with each model; write results.csv, summaries.jsonl, summary.csv and "
        "run.json into a new directory under --out. The last line printed is that directory.",
    )
    p.add_argument(
        "--models",
        type=_csv_list,
        default=[],
        metavar="ID[,ID…]",
        help="model ids from models.yaml (default: the entries marked default: true)",
    )
    p.add_argument("--talks", type=_csv_list, default=[], metavar="ID[,ID…]", help="talk ids (default: all)")
    p.add_argument(
        "--corpus",
        type=Path,
        metavar="FILE.jsonl",
        help="your own corpus: JSONL with id, text, references (list), optional lang",
    )
    p.add_argument(
        "--models-file", type=Path, metavar="YAML", help="models file (default: the packaged models.yaml)"
    )
    p.add_argument("--repeats", type=int, default=1, help="timed samples per model x talk (default 1)")
    p.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="untimed warm-up generations per model before its samples (default 1; 0 = off)",
    )
    p.add_argument("--max-new-tokens", type=int, default=256, help="generation cap (default 256)")
    p.add_argument(
        "--min-new-tokens",
        type=int,
        default=0,
        help="ignore end-of-sequence until this many tokens (fixed-length throughput; default 0)",
    )
    p.add_argument("--threads", type=int, help="decode and prefill threads (default: physical cores)")
    p.add_argument(
        "--summary-lang",
        choices=["zh", "en"],
        help="language to summarise in (default: each talk's own language)",
    )
    p.add_argument(
        "--cooldown", type=_positive_float, default=0.0, metavar="S", help="sleep S seconds between samples"
    )
    p.add_argument("--n-ctx", type=int, help="override every model's context size")
    p.add_argument(
        "--n-gpu-layers", type=int, help="llama.cpp layers to offload, when the build supports a GPU"
    )
    p.add_argument(
        "--flash-attn",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="llama.cpp flash attention (default: models.yaml flag, else off)",
    )
    p.add_argument(
        "--no-mmap",
        action="store_true",
        help="load weights into anonymous memory instead of mmap (file pages then don't count as shared)",
    )
    p.add_argument(
        "--provider", help="ONNX execution provider: auto, cpu, cuda, dml, qnn, openvino, coreml, webgpu"
    )
    p.add_argument("--out", type=Path, default=Path("results"), help="parent directory of the run directory")
    p.add_argument("--offline", action="store_true", help="never download; use only the model cache")
    p.add_argument(
        "--no-bandwidth", action="store_true", help="skip the memory-bandwidth probe (roofline column)"
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    config = RunConfig(
        models=args.models,
        talks=args.talks,
        corpus=args.corpus,
        models_file=args.models_file,
        out=args.out,
        repeats=args.repeats,
        warmup=args.warmup,
        max_new_tokens=args.max_new_tokens,
        min_new_tokens=args.min_new_tokens,
        threads=args.threads,
        summary_lang=args.summary_lang,
        cooldown_s=args.cooldown,
        offline=args.offline,
        no_mmap=args.no_mmap,
        flash_attn=args.flash_attn,
        n_gpu_layers=args.n_gpu_layers,
        provider=args.provider,
        n_ctx=args.n_ctx,
        measure_bandwidth=not args.no_bandwidth,
    )
    run_dir, errors = Runner(config).run()
    print(run_dir)
    return 1 if errors else 0
