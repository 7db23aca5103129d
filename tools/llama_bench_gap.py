"""Measure the harness's decode speed against llama.cpp driven directly, at the same depth, interleaved.

For the harness against llama-bench itself use `harness crosscheck` (harness/crosscheck/), which replaces this
script's llama-bench arm: prefill and decode, the same threads/flash-attn/repack/batch/threadpool settings, and
llama-bench built from the vendored sources by `harness tools build`. This script stays for its `reference`
arm (llama.cpp's low-level API in a fresh process, no harness code), which crosscheck does not have.

Why: decode_tok_s in a harness run should be what the engine delivers on the machine, not what the harness
leaves of it (its memory sampler waking on a core the engine needs, thread-pool settings, Python per
token). This script runs, in alternating order each round so that drift over time hits every arm alike:

  harness      `python -m harness run` on one model x one talk, fixed length (--min-new-tokens =
               --max-new-tokens = --tokens); per sample decode_tok_s and itl_p99_ms from results.csv
  reference    llama.cpp through llama-cpp-python's low-level API in a fresh process, as llama-bench's
               `tg` test does it: a context with the same settings, `depth` random tokens prefilled, then
               `--tokens` single-token llama_decode calls with random tokens -- no sampling, no harness
               code, a ggml threadpool with llama-bench's defaults attached (poll 50, normal priority)
  llama-bench  only with --llama-bench PATH: `llama-bench -p 0 -n TOKENS -d DEPTH -fa 0` (build it from
               the llama.cpp commit vendored by the installed llama-cpp-python)
  VARIANT      with --variant NAME="ARGS": the harness arm again with extra `harness run` arguments

The depth is the prompt length of the talk, taken from the first harness sample. Per arm and round the
figure is the mean over that round's samples; across rounds the script prints mean +- a 95 % Student-t
interval for decode tok/s and ITL p99, and the per-round paired ratio harness / reference (the gap).

Run on a quiet machine (nothing else running; same power settings) from the repository root:

    .venv/bin/python tools/llama_bench_gap.py --model smollm2-135m-instruct-q4_1 --talk qualcomm-npu \\
        --threads 2 --rounds 10 --tokens 256

Time: each round loads the model in each arm, prefills the talk and decodes --tokens tokens per sample;
for SmolLM2-135M on 2 cores that is ~20-30 s per round (10 rounds: 4-5 min). The first round prints an
estimate for the whole run. Results go to stdout and, as JSON, to --out.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@dataclass
class RoundFigure:
    decode_tok_s: float
    itl_p99_ms: float | None
    samples: int
    extra: dict[str, Any] = field(default_factory=dict)


# --- the reference: llama.cpp driven like llama-bench's tg test -------------------------------------


def reference_child(args: argparse.Namespace) -> None:
    """Runs in its own process; prints one JSON line per repetition: {"tok_s":..., "itl_ms": [...]}."""
    import random

    import llama_cpp

    from harness.backends.llama_cpp_native import attach_threadpool

    llm = llama_cpp.Llama(
        model_path=args.gguf,
        n_ctx=args.n_ctx,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        flash_attn=False,
        swa_full=False,
        verbose=False,
        no_perf=False,
    )
    ctx = llm._ctx.ctx
    pool = None
    if args.threadpool == "attached":
        pool, _ = attach_threadpool(ctx, args.threads)
    n_vocab = llm.n_vocab()
    rng = random.Random(args.seed)
    memory = llama_cpp.llama_get_memory(ctx)

    def decode(tokens: list[int]) -> None:
        for i in range(0, len(tokens), llm.n_batch):
            chunk = tokens[i : i + llm.n_batch]
            array = (llama_cpp.llama_token * len(chunk))(*chunk)
            if llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(array, len(chunk))) != 0:
                raise RuntimeError("llama_decode failed")
        llama_cpp.llama_synchronize(ctx)

    one = (llama_cpp.llama_token * 1)()
    batch = llama_cpp.llama_batch_get_one(one, 1)
    decode([rng.randrange(n_vocab)])  # warm-up, as llama-bench does
    for _ in range(args.reps):
        llama_cpp.llama_memory_clear(memory, False)
        decode([rng.randrange(n_vocab) for _ in range(args.depth)])
        times = []
        start = time.perf_counter_ns()
        for _ in range(args.tokens):
            one[0] = rng.randrange(n_vocab)
            if llama_cpp.llama_decode(ctx, batch) != 0:
                raise RuntimeError("llama_decode failed")
            llama_cpp.llama_synchronize(ctx)
            times.append(time.perf_counter_ns())
        total_s = (times[-1] - start) / 1e9
        itl = [(b - a) / 1e6 for a, b in zip([start, *times[:-1]], times, strict=True)]
        print(json.dumps({"tok_s": args.tokens / total_s, "itl_ms": itl}), flush=True)
    if pool is not None:
        pool.release()
    llm.close()


def run_reference(gguf: Path, depth: int, opts: argparse.Namespace) -> RoundFigure:
    import numpy as np

    cmd = [
        sys.executable, __file__, "_reference", "--gguf", str(gguf), "--depth", str(depth),
        "--tokens", str(opts.tokens), "--threads", str(opts.threads), "--reps", str(opts.repeats),
        "--n-ctx", str(opts.n_ctx), "--threadpool", opts.reference_threadpool,
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT).stdout
    reps = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    itl = np.concatenate([np.asarray(r["itl_ms"][1:]) for r in reps])  # gaps between tokens, as the harness
    return RoundFigure(
        decode_tok_s=float(np.mean([r["tok_s"] for r in reps])),
        itl_p99_ms=float(np.percentile(itl, 99)) if itl.size else None,
        samples=len(reps),
    )


# --- llama-bench itself ------------------------------------------------------------------------------


def run_llama_bench(binary: Path, gguf: Path, depth: int, opts: argparse.Namespace) -> RoundFigure:
    cmd = [
        str(binary), "-m", str(gguf), "-t", str(opts.threads), "-p", "0", "-n", str(opts.tokens),
        "-d", str(depth), "-fa", "0", "-r", str(opts.repeats), "-o", "json",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    tests = [t for t in json.loads(out) if t.get("n_gen")]
    rates = [float(x) for t in tests for x in t.get("samples_ts", [t["avg_ts"]])]
    return RoundFigure(decode_tok_s=sum(rates) / len(rates), itl_p99_ms=None, samples=len(rates))


# --- the harness ----------------------------------------------------------------------------------------


def run_harness(opts: argparse.Namespace, extra: list[str], workdir: Path) -> tuple[RoundFigure, int, Path]:
    """One `harness run`; returns the round's figure, the prompt length (depth), and the model file."""
    cmd = [
        sys.executable, "-m", "harness", "run", "--models", opts.model, "--talks", opts.talk,
        "--repeats", str(opts.repeats), "--warmup", "1", "--threads", str(opts.threads),
        "--min-new-tokens", str(opts.tokens), "--max-new-tokens", str(opts.tokens), "--no-bandwidth",
        "--out", str(workdir), *extra,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"harness run failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    run_dir = Path(proc.stdout.strip().splitlines()[-1].strip())
    with (run_dir / "results.csv").open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r.get("status") == "ok"]
    if not rows:
        raise SystemExit(f"harness run in {run_dir} produced no ok rows")

    def col(name: str) -> list[float]:
        return [float(r[name]) for r in rows if r.get(name) not in (None, "")]

    decode, p99, engine = col("decode_tok_s"), col("itl_p99_ms"), col("engine_decode_tok_s")
    figure = RoundFigure(
        decode_tok_s=sum(decode) / len(decode),
        itl_p99_ms=sum(p99) / len(p99) if p99 else None,
        samples=len(decode),
        extra={"engine_decode_tok_s": sum(engine) / len(engine) if engine else None},
    )
    return figure, int(float(rows[0]["prompt_tokens"])), run_dir


def model_path(model_id: str) -> Path:
    from harness.models.registry import load_models
    from harness.models.sources import resolve

    return resolve(load_models()[model_id], offline=True, progress=False)


# --- the interleaved measurement ------------------------------------------------------------------------


def summarize(rounds: dict[str, list[RoundFigure]]) -> dict[str, Any]:
    from harness.scoring.stats import t_interval

    report: dict[str, Any] = {"arms": {}, "gap_vs_reference": {}}
    for arm, figures in rounds.items():
        report["arms"][arm] = {
            "decode_tok_s": t_interval([f.decode_tok_s for f in figures]).as_dict(),
            "itl_p99_ms": t_interval([f.itl_p99_ms for f in figures]).as_dict(),
        }
    reference = rounds.get("reference", [])
    for arm, figures in rounds.items():
        if arm == "reference" or len(figures) != len(reference):
            continue
        ratios = [a.decode_tok_s / b.decode_tok_s for a, b in zip(figures, reference, strict=True)]
        ci = t_interval(ratios)
        report["gap_vs_reference"][arm] = {
            "ratio": ci.as_dict(),
            "gap_pct": {k: (None if v is None else 100 * (v - 1)) for k, v in ci.as_dict().items() if k != "n"},
        }
    return report


def print_report(report: dict[str, Any]) -> None:
    def ci(d: dict[str, Any], spec: str) -> str:
        if d["mean"] is None:
            return "-"
        if d["lo"] is None:
            return f"{d['mean']:{spec}}"
        return f"{d['mean']:{spec}} [{d['lo']:{spec}}, {d['hi']:{spec}}]"

    print(f"\n{'arm':<16} {'decode tok/s (95% t-CI)':<32} {'ITL p99 ms':<28} rounds")
    for arm, figs in report["arms"].items():
        print(f"{arm:<16} {ci(figs['decode_tok_s'], '.2f'):<32} {ci(figs['itl_p99_ms'], '.2f'):<28} "
              f"{figs['decode_tok_s']['n']}")
    for arm, gap in report["gap_vs_reference"].items():
        print(f"{arm} / reference: {ci(gap['ratio'], '.4f')}  (gap {ci(gap['gap_pct'], '+.2f')} %)")


def main(argv: list[str] | None = None) -> None:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["_reference"]:
        child = argparse.ArgumentParser()
        for name in ("--gguf", "--threadpool"):
            child.add_argument(name, required=True)
        for name in ("--depth", "--tokens", "--threads", "--reps", "--n-ctx"):
            child.add_argument(name, type=int, required=True)
        child.add_argument("--seed", type=int, default=1234)
        reference_child(child.parse_args(argv[1:]))
        return

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model id from models.yaml (a GGUF, cached)")
    parser.add_argument("--talk", required=True, help="talk id: its prompt length is the decode depth")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1, help="samples per arm per round")
    parser.add_argument("--tokens", type=int, default=256, help="generated tokens per sample")
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--llama-bench", type=Path, help="llama-bench binary: adds a llama-bench arm")
    parser.add_argument("--reference-threadpool", choices=("attached", "default"), default="attached")
    parser.add_argument("--variant", action="append", default=[], metavar='NAME="ARGS"',
                        help="another harness arm with extra `harness run` arguments")  # fmt: skip
    stamp = time.strftime("%Y%m%d-%H%M%S")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / f"llama_bench_gap-{stamp}.json")
    opts = parser.parse_args(argv)

    variants = {"harness": []}
    for spec in opts.variant:
        name, _, extra = spec.partition("=")
        variants[name.strip()] = shlex.split(extra)
    gguf = model_path(opts.model)
    arms = [*variants, "reference"] + (["llama-bench"] if opts.llama_bench else [])
    rounds: dict[str, list[RoundFigure]] = {arm: [] for arm in arms}
    depth: int | None = None
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-gap-") as tmp:
        for r in range(opts.rounds):
            order = arms[r % len(arms) :] + arms[: r % len(arms)] if depth is not None else arms
            for arm in order:
                if arm in variants:
                    figure, prompt_tokens, _ = run_harness(opts, variants[arm], Path(tmp))
                    depth = depth or prompt_tokens
                elif arm == "reference":
                    assert depth is not None
                    figure = run_reference(gguf, depth, opts)
                else:
                    assert depth is not None
                    figure = run_llama_bench(opts.llama_bench, gguf, depth, opts)
                rounds[arm].append(figure)
                print(f"round {r + 1}/{opts.rounds} {arm:<12} decode {figure.decode_tok_s:7.2f} tok/s "
                      f"ITL p99 {figure.itl_p99_ms or float('nan'):6.2f} ms", flush=True)  # fmt: skip
            if r == 0:
                per_round = time.perf_counter() - t_start
                print(f"depth {depth} tokens; ~{per_round:.0f} s per round, ~{per_round * opts.rounds / 60:.1f} min "
                      "in all", flush=True)  # fmt: skip
    report = summarize(rounds)
    report["settings"] = {
        "model": opts.model, "gguf": str(gguf), "talk": opts.talk, "depth": depth, "threads": opts.threads,
        "tokens": opts.tokens, "rounds": opts.rounds, "repeats": opts.repeats, "variants": variants,
        "reference_threadpool": opts.reference_threadpool,
    }  # fmt: skip
    report["rounds"] = {arm: [asdict(f) for f in figs] for arm, figs in rounds.items()}
    print_report(report)
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(opts.out)


if __name__ == "__main__":
    main()
