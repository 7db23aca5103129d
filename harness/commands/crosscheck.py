"""`harness crosscheck`: the harness's prefill and decode figures against llama.cpp's llama-bench, built from the
same vendored llama.cpp, in interleaved rounds (harness.crosscheck.measure); `harness tools build` builds it."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from harness.crosscheck.measure import DEFAULT_POLL, DEFAULT_PRIO, DEFAULT_TOLERANCE_PCT

    p = subparsers.add_parser(
        "crosscheck",
        help="check the harness's prefill/decode figures against llama-bench (same llama.cpp), with CIs",
        description=(
            "N interleaved rounds of {one harness sample, llama-bench pp<prompt tokens> and tg<tokens> @ "
            "d<prompt tokens>} with the same threads, flash-attn, repack, batch sizes and threadpool settings. "
            "Prints the ratios harness / llama-bench with 95 % t-intervals, ITL next to llama-bench's time per "
            "token, the settings, and a verdict against the tolerance; writes crosscheck.json into a run "
            "directory (printed last). Needs llama-bench: `harness tools build` builds it once per machine."
        ),
    )
    p.add_argument("--models", required=True, metavar="ID[,ID…]", help="one llama_cpp model id (one per crosscheck)")
    p.add_argument("--talks", metavar="ID[,ID…]", help="one talk id; its prompt length is the depth (default: longest)")
    p.add_argument("--rounds", type=int, default=6, metavar="N", help="interleaved rounds (2 or more for a CI)")
    p.add_argument("--max-new-tokens", dest="tokens", type=int, default=256, metavar="N",
                   help="generated tokens per sample (fixed length: the harness ignores EOS until then)")  # fmt: skip
    p.add_argument("--threads", type=int, metavar="N", help="threads for both (default: usable physical cores)")
    p.add_argument("--flash-attn", choices=("0", "1"), default="0", help="flash attention for both")
    p.add_argument("--repack", choices=("0", "1"), help="weight repacking for both (default: the harness's auto)")
    p.add_argument("--poll", type=int, default=DEFAULT_POLL, metavar="0-100",
                   help="llama-bench --poll (the harness's threadpool polls at 50)")  # fmt: skip
    p.add_argument("--prio", type=int, default=DEFAULT_PRIO, metavar="0-3",
                   help="llama-bench --prio (the harness's threadpool uses 0, normal)")  # fmt: skip
    p.add_argument("--control", action="store_true",
                   help="A/A control: llama-bench twice per round (the machine's own spread)")  # fmt: skip
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE_PCT, metavar="PCT",
                   help="a ratio agrees when its 95 %% interval lies inside 1 +- PCT/100")  # fmt: skip
    p.add_argument("--llama-bench", type=Path, metavar="PATH", help="llama-bench binary (default: the tools build)")
    p.add_argument("--models-file", type=Path, metavar="FILE.yaml", help="models.yaml to read (default: shipped)")
    p.add_argument("--out", type=Path, default=Path("results"), metavar="DIR", help="parent of the run directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.corpus import load_corpus
    from harness.crosscheck.build import build_hint, find_tool
    from harness.crosscheck.measure import Settings, crosscheck
    from harness.errors import HarnessError, unknown
    from harness.models.registry import load_models
    from harness.models.sources import resolve
    from harness.results.writer import new_run_id
    from harness.threads import default_threads

    if args.rounds < 1 or args.tokens < 1:
        raise HarnessError("--rounds and --max-new-tokens must be 1 or more")
    if "," in args.models or (args.talks and "," in args.talks):
        raise HarnessError("crosscheck takes one model and one talk; run it once per model x talk")
    entries = load_models(args.models_file)
    if args.models not in entries:
        raise unknown("model", args.models, entries)
    entry = entries[args.models]
    from harness.backends.llama_cpp import LlamaCppBackend

    if entry.backend != LlamaCppBackend.name:
        raise HarnessError(f"{entry.id} is a {entry.backend} entry; llama-bench checks llama_cpp (GGUF) entries")
    talks = {t.id: t for t in load_corpus()}
    if args.talks is None:
        talk = max(talks.values(), key=lambda t: len(t.text)).id
    elif args.talks in talks:
        talk = args.talks
    else:
        raise unknown("talk", args.talks, talks)
    binary = args.llama_bench or find_tool("llama-bench")
    if binary is None or not Path(binary).is_file():
        raise HarnessError(f"no llama-bench found; {build_hint()} (or pass --llama-bench PATH)")
    gguf = resolve(entry, progress=True)
    settings = Settings(
        model=entry.id,
        talk=talk,
        threads=args.threads or default_threads()[0],
        tokens=args.tokens,
        rounds=args.rounds,
        flash_attn=args.flash_attn == "1",
        repack=None if args.repack is None else args.repack == "1",
        poll=args.poll,
        prio=args.prio,
        models_file=args.models_file,
        control=args.control,
    )
    run_dir = args.out / f"{new_run_id()}-crosscheck"
    print(f"crosscheck {entry.id} on {talk}: {args.rounds} rounds, llama-bench {binary}")
    crosscheck(settings, gguf, Path(binary), run_dir, args.tolerance)
    print(run_dir)
    return 0
