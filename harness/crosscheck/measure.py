"""`harness crosscheck`: the harness's figures against llama.cpp's own instrument, llama-bench, built from the
same vendored llama.cpp (harness.crosscheck.build), on the same machine, interleaved.

Why: a benchmark is citable when its figures agree with an independent instrument of the same engine. Per
round (the order of the two arms alternates, so that drift over time hits both alike):

  harness      `harness run` on one model x one talk, fixed length (--min-new-tokens = --max-new-tokens =
               --tokens), one timed sample after one warm-up: prefill_tok_s (prompt_tokens / TTFT),
               decode_tok_s, ITL p50/p99, and llama.cpp's own counters of that sample (engine_*)
  llama-bench  `pp<prompt tokens>` (prefill of the talk's length from an empty cache) and
               `tg<tokens> @ d<prompt tokens>` (decode after a prompt of the talk's length), one repetition
               each, with the harness's threads, flash-attn, repack, batch sizes and threadpool settings
               (--poll / --prio: the harness attaches a ggml threadpool with llama-bench's defaults, poll 50,
               normal priority; other values are recorded per round)

Ratios harness / llama-bench per round, then mean with a 95 % Student-t interval over rounds (scipy.stats).
Verdict per ratio against the tolerance (3 % by default): `agrees` (the interval lies inside 1 +- tol),
`differs` (it lies wholly outside), `inconclusive` (it straddles a bound, or fewer than 2 rounds). llama-bench
reports a rate per test, not per token, so its ITL is the mean time per token (1000 / tg tok/s), shown
beside the harness's ITL p50/p99. A round whose harness figure is more than OUTLIER_PCT % from that arm's
median is listed as an outlier (it still counts: dropping it is the reader's call, with the data).

--control adds an A/A arm: llama-bench's same two tests run a second time in every round, next to the first
(order harness, llama-bench, control / control, llama-bench, harness), and the ratio control / llama-bench
gets the same interval. It measures what two runs of one instrument, seconds apart, disagree by on this
machine: when that interval is wider than the tolerance, no instrument can be shown to agree within it at
this round count, whatever the harness does. Every ratio also states the rounds its spread would need for
a +-tolerance interval (Student-t, n from its per-round standard deviation).

Writes <out>/<run id>/crosscheck.json (and keeps each harness run under harness-runs/ there).
"""

from __future__ import annotations

import csv
import json
import math
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.results.layout import RESULTS_CSV, RUN_JSON

DEFAULT_TOLERANCE_PCT = 3.0
OUTLIER_PCT = 25.0
CROSSCHECK_JSON = "crosscheck.json"
# The harness's defaults where a run.json does not say (llama-cpp-python's n_batch / n_ubatch; the threadpool
# settings of harness.backends.llama_cpp_native.attach_threadpool).
DEFAULT_N_BATCH = 512
DEFAULT_N_UBATCH = 512
DEFAULT_POLL = 50
DEFAULT_PRIO = 0

Printer = Callable[[str], None]


@dataclass(frozen=True)
class Settings:
    model: str
    talk: str
    threads: int
    tokens: int
    rounds: int
    flash_attn: bool = False
    repack: bool | None = None  # None: the harness's auto (its engine self-check); llama-bench then gets its verdict
    poll: int = DEFAULT_POLL
    prio: int = DEFAULT_PRIO
    models_file: Path | None = None
    extra_run_args: tuple[str, ...] = ()
    control: bool = False  # the A/A arm: llama-bench a second time per round


@dataclass
class HarnessSample:
    prompt_tokens: int
    output_tokens: int
    ttft_s: float
    prefill_tok_s: float
    decode_tok_s: float
    itl_p50_ms: float | None
    itl_p99_ms: float | None
    engine_prefill_tok_s: float | None
    engine_decode_tok_s: float | None
    repack: bool | None
    n_batch: int
    n_ubatch: int
    threadpool: dict[str, Any] = field(default_factory=dict)
    run_dir: str = ""
    noisy: bool | None = None  # the harness's own noise flag for the sample (other processes on its cores)


@dataclass
class BenchSample:
    pp_tok_s: float
    tg_tok_s: float
    pp_samples: list[float]
    tg_samples: list[float]
    build_commit: str | None
    command: list[list[str]]


# --- llama-bench ----------------------------------------------------------------------------------------
def bench_command(binary: Path, gguf: Path, s: Settings, n_prompt: int, n_gen: int, depth: int,
                  n_batch: int, n_ubatch: int, repack: bool) -> list[str]:  # fmt: skip
    return [
        str(binary), "-m", str(gguf), "-t", str(s.threads), "-b", str(n_batch), "-ub", str(n_ubatch),
        "-fa", "1" if s.flash_attn else "0", "--repack", "1" if repack else "0",
        "--poll", str(s.poll), "--prio", str(s.prio),
        "-p", str(n_prompt), "-n", str(n_gen), "-d", str(depth), "-r", "1", "-o", "json",
    ]  # fmt: skip


def parse_bench_json(text: str) -> list[dict[str, Any]]:
    """llama-bench's `-o json` output: a list of tests, each with n_prompt, n_gen, n_depth, avg_ts, samples_ts."""
    start = text.find("[")
    try:
        data = json.loads(text[start:]) if start >= 0 else None
    except ValueError:
        data = None
    if not isinstance(data, list) or not all(isinstance(t, dict) and "avg_ts" in t for t in data):
        raise HarnessError(f"llama-bench printed no JSON test list (got: {text.strip()[:200]!r})")
    return data


def _rate(tests: list[dict[str, Any]], key: str) -> tuple[float, list[float], str | None]:
    picked = [t for t in tests if int(t.get(key, 0) or 0) > 0]
    if not picked:
        raise HarnessError(f"llama-bench gave no test with {key} > 0")
    samples = [float(x) for t in picked for x in (t.get("samples_ts") or [t["avg_ts"]])]
    return sum(samples) / len(samples), samples, picked[0].get("build_commit")


def run_bench(binary: Path, gguf: Path, s: Settings, depth: int, h: HarnessSample) -> BenchSample:
    repack = bool(h.repack) if h.repack is not None else bool(s.repack)
    pp_cmd = bench_command(binary, gguf, s, depth, 0, 0, h.n_batch, h.n_ubatch, repack)
    tg_cmd = bench_command(binary, gguf, s, 0, s.tokens, depth, h.n_batch, h.n_ubatch, repack)
    outputs = []
    for command in (pp_cmd, tg_cmd):
        proc = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise HarnessError(
                f"llama-bench exited with code {proc.returncode} ({tail}); command: {shlex.join(command)}"
            )
        outputs.append(parse_bench_json(proc.stdout))
    pp, pp_samples, commit = _rate(outputs[0], "n_prompt")
    tg, tg_samples, _ = _rate(outputs[1], "n_gen")
    return BenchSample(pp, tg, pp_samples, tg_samples, commit, [pp_cmd, tg_cmd])


# --- the harness ------------------------------------------------------------------------------------------
def harness_command(s: Settings, out: Path) -> list[str]:
    command = [
        sys.executable, "-m", "harness", "run", "--models", s.model, "--talks", s.talk, "--repeats", "1",
        "--warmup", "1", "--threads", str(s.threads), "--min-new-tokens", str(s.tokens),
        "--max-new-tokens", str(s.tokens), "--no-bandwidth", "--out", str(out),
        "--flash-attn" if s.flash_attn else "--no-flash-attn",
    ]  # fmt: skip
    if s.repack is not None:
        command += ["--repack", "1" if s.repack else "0"]
    if s.models_file is not None:
        command += ["--models-file", str(s.models_file)]
    return [*command, *s.extra_run_args]


def _num(row: dict[str, str], key: str) -> float | None:
    raw = row.get(key)
    try:
        value = float(raw) if raw not in (None, "") else None
    except ValueError:
        return None
    return None if value is None or math.isnan(value) else value


def read_harness_run(run_dir: Path, model: str) -> HarnessSample:
    with (run_dir / RESULTS_CSV).open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("status") == "ok"]
    if not rows:
        raise HarnessError(f"the harness run {run_dir} has no ok row; see its results.csv")
    row = rows[0]
    engine: dict[str, Any] = {}
    try:
        record = json.loads((run_dir / RUN_JSON).read_text(encoding="utf-8"))
        engine = dict((record.get("models") or {}).get(model, {}).get("engine") or {})
    except (OSError, ValueError, AttributeError):
        engine = {}
    repack_text = (row.get("repack") or "").strip().lower()
    repack = {"true": True, "1": True, "false": False, "0": False}.get(repack_text)
    needed = {k: _num(row, k) for k in ("prompt_tokens", "output_tokens", "ttft_s", "prefill_tok_s", "decode_tok_s")}
    missing = [k for k, v in needed.items() if v is None]
    if missing:
        raise HarnessError(f"the harness run {run_dir} has no {', '.join(missing)} in its ok row")
    return HarnessSample(
        prompt_tokens=int(needed["prompt_tokens"] or 0),
        output_tokens=int(needed["output_tokens"] or 0),
        ttft_s=float(needed["ttft_s"] or 0),
        prefill_tok_s=float(needed["prefill_tok_s"] or 0),
        decode_tok_s=float(needed["decode_tok_s"] or 0),
        itl_p50_ms=_num(row, "itl_p50_ms"),
        itl_p99_ms=_num(row, "itl_p99_ms"),
        engine_prefill_tok_s=_num(row, "engine_prefill_tok_s"),
        engine_decode_tok_s=_num(row, "engine_decode_tok_s"),
        repack=repack if repack is not None else engine.get("repack"),
        n_batch=int(engine.get("n_batch") or DEFAULT_N_BATCH),
        n_ubatch=int(engine.get("n_ubatch") or DEFAULT_N_UBATCH),
        threadpool={k: v for k, v in engine.items() if k.startswith("threadpool") or k == "openmp"},
        run_dir=str(run_dir),
        noisy={"true": True, "1": True, "false": False, "0": False}.get((row.get("noisy") or "").strip().lower()),
    )


def run_harness(s: Settings, out: Path) -> HarnessSample:
    out.mkdir(parents=True, exist_ok=True)
    command = harness_command(s, out)
    proc = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    lines = proc.stdout.strip().splitlines()
    run_dir = Path(lines[-1].strip()) if lines else None
    if run_dir is None or not (run_dir / RESULTS_CSV).is_file():
        tail = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["(no output)"])[-1]
        raise HarnessError(f"harness run exited with code {proc.returncode} ({tail}); command: {shlex.join(command)}")
    return read_harness_run(run_dir, s.model)


# --- the comparison ---------------------------------------------------------------------------------------
MAX_ROUNDS_NEEDED = 10_000


def rounds_needed(values: Sequence[float], tolerance_pct: float, confidence: float = 0.95) -> int | None:
    """Fewest rounds whose Student-t interval half-width, at the spread of `values`, is within the tolerance.

    Why: an `inconclusive` verdict is only useful with the price of a conclusive one. The half-width of a mean
    of n ratios is t(n-1) * sd / sqrt(n); the smallest n with half-width <= tolerance is the round count that
    could resolve +-tolerance around a mean of 1 (a mean off 1 needs more). None: fewer than 2 values, or
    more than MAX_ROUNDS_NEEDED.
    """
    finite_values = [v for v in values if v is not None and math.isfinite(v)]
    if len(finite_values) < 2:
        return None
    from scipy import stats  # deferred: scipy.stats takes about a second to import

    mean = sum(finite_values) / len(finite_values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in finite_values) / (len(finite_values) - 1))
    tol = tolerance_pct / 100.0
    if sd == 0:
        return 2
    for n in range(2, MAX_ROUNDS_NEEDED + 1):
        if float(stats.t.ppf((1 + confidence) / 2, n - 1)) * sd / math.sqrt(n) <= tol:
            return n
    return None


def verdict(ci: dict[str, Any], tolerance_pct: float) -> str:
    lo, hi, tol = ci.get("lo"), ci.get("hi"), tolerance_pct / 100.0
    if lo is None or hi is None:
        return "inconclusive"
    if 1 - tol <= lo and hi <= 1 + tol:
        return "agrees"
    if hi < 1 - tol or lo > 1 + tol:
        return "differs"
    return "inconclusive"


def outliers(values: Sequence[float], pct: float = OUTLIER_PCT) -> list[int]:
    """Indices of values more than `pct` % from the median."""
    if len(values) < 3:
        return []
    ordered = sorted(values)
    mid = len(ordered) // 2
    median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return [i for i, v in enumerate(values) if median > 0 and abs(v / median - 1) * 100 > pct]


def summarize(
    harness: Sequence[HarnessSample],
    bench: Sequence[BenchSample],
    tolerance_pct: float,
    control: Sequence[BenchSample] = (),
) -> dict[str, Any]:
    from harness.scoring.stats import t_interval

    def ci(values: Sequence[float | None]) -> dict[str, Any]:
        return t_interval(list(values)).as_dict()

    pairs = list(zip(harness, bench, strict=True))
    ratios = {
        "prefill": [h.prefill_tok_s / b.pp_tok_s for h, b in pairs],
        "decode": [h.decode_tok_s / b.tg_tok_s for h, b in pairs],
        "engine_prefill": [h.engine_prefill_tok_s / b.pp_tok_s for h, b in pairs if h.engine_prefill_tok_s],
        "engine_decode": [h.engine_decode_tok_s / b.tg_tok_s for h, b in pairs if h.engine_decode_tok_s],
    }
    if control:
        ratios["control_prefill"] = [c.pp_tok_s / b.pp_tok_s for c, b in zip(control, bench, strict=True)]
        ratios["control_decode"] = [c.tg_tok_s / b.tg_tok_s for c, b in zip(control, bench, strict=True)]
    out: dict[str, Any] = {"tolerance_pct": tolerance_pct, "ratios": {}}
    for name, values in ratios.items():
        interval = ci(values)
        out["ratios"][name] = {
            **interval,
            "per_round": values,
            "verdict": verdict(interval, tolerance_pct),
            "rounds_needed": rounds_needed(values, tolerance_pct),
        }
    out["harness"] = {
        "prefill_tok_s": ci([h.prefill_tok_s for h in harness]),
        "ttft_s": ci([h.ttft_s for h in harness]),
        "decode_tok_s": ci([h.decode_tok_s for h in harness]),
        "itl_p50_ms": ci([h.itl_p50_ms for h in harness]),
        "itl_p99_ms": ci([h.itl_p99_ms for h in harness]),
        "engine_prefill_tok_s": ci([h.engine_prefill_tok_s for h in harness]),
        "engine_decode_tok_s": ci([h.engine_decode_tok_s for h in harness]),
    }
    out["llama_bench"] = {
        "pp_tok_s": ci([b.pp_tok_s for b in bench]),
        "tg_tok_s": ci([b.tg_tok_s for b in bench]),
        "ms_per_token": ci([1000.0 / b.tg_tok_s for b in bench]),  # its only per-token figure: a mean
    }
    if control:
        out["control"] = {
            "pp_tok_s": ci([c.pp_tok_s for c in control]),
            "tg_tok_s": ci([c.tg_tok_s for c in control]),
        }
    out["noisy_rounds"] = [i for i, h in enumerate(harness) if h.noisy]
    out["outlier_rounds"] = {
        "harness_prefill": outliers([h.prefill_tok_s for h in harness]),
        "harness_decode": outliers([h.decode_tok_s for h in harness]),
        "llama_bench_pp": outliers([b.pp_tok_s for b in bench]),
        "llama_bench_tg": outliers([b.tg_tok_s for b in bench]),
    }
    return out


def round_order(r: int, control: bool) -> tuple[str, ...]:
    """The arms of round r: round 0 starts with the harness (it gives the depth), later rounds alternate; the
    control arm sits next to llama-bench's first run, so that the A/A pair is as far apart in time as the
    harness / llama-bench pair."""
    arms = ("harness", "bench", "control") if control else ("harness", "bench")
    return arms if r % 2 == 0 else arms[::-1]


def crosscheck(
    s: Settings,
    gguf: Path,
    bench_binary: Path,
    run_dir: Path,
    tolerance_pct: float = DEFAULT_TOLERANCE_PCT,
    echo: Printer = print,
) -> dict[str, Any]:
    """The interleaved rounds; writes run_dir/crosscheck.json and returns its content."""
    if s.rounds < 1:
        raise HarnessError("--rounds must be 1 or more (2 or more for a confidence interval)")
    harness: list[HarnessSample] = []
    bench: list[BenchSample] = []
    control: list[BenchSample] = []
    depth: int | None = None
    t0 = time.perf_counter()
    for r in range(s.rounds):
        h: HarnessSample | None = None
        for arm in round_order(r, s.control):
            if arm == "harness":
                h = run_harness(s, run_dir / "harness-runs")
                if depth is None:
                    depth = h.prompt_tokens
                elif h.prompt_tokens != depth:
                    raise HarnessError(f"the talk's prompt changed length between rounds: {depth} -> {h.prompt_tokens}")
                harness.append(h)
            else:
                reference = h or harness[-1]
                assert depth is not None
                (bench if arm == "bench" else control).append(run_bench(bench_binary, gguf, s, depth, reference))
        hb, bb = harness[-1], bench[-1]
        echo(
            f"round {r + 1}/{s.rounds}: harness prefill {hb.prefill_tok_s:.1f} decode {hb.decode_tok_s:.2f} tok/s "
            f"(engine {_f(hb.engine_decode_tok_s, '.2f')}) | llama-bench pp{depth} {bb.pp_tok_s:.1f} "
            f"tg{s.tokens}@d{depth} {bb.tg_tok_s:.2f} tok/s"
            + (f" | control pp {control[-1].pp_tok_s:.1f} tg {control[-1].tg_tok_s:.2f}" if s.control else "")
        )
        if r == 0 and s.rounds > 1:
            per_round = time.perf_counter() - t0
            echo(f"   ~{per_round:.0f} s per round, ~{per_round * (s.rounds - 1) / 60:.1f} min to go")
    report = summarize(harness, bench, tolerance_pct, control)
    first = harness[0]
    report["settings"] = {
        **{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(s).items()},
        "gguf": str(gguf),
        "depth": depth,
        "repack_used": first.repack,
        "n_batch": first.n_batch,
        "n_ubatch": first.n_ubatch,
        "harness_threadpool": first.threadpool,
        "llama_bench": str(bench_binary),
        "llama_bench_build_commit": bench[0].build_commit,
        "llama_bench_commands": bench[0].command,
        "harness_command": harness_command(s, run_dir / "harness-runs"),
    }
    report["rounds"] = [
        {"harness": asdict(h), "llama_bench": asdict(b), **({"control": asdict(control[i])} if control else {})}
        for i, (h, b) in enumerate(zip(harness, bench, strict=True))
    ]
    report["elapsed_s"] = round(time.perf_counter() - t0, 1)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CROSSCHECK_JSON).write_text(json.dumps(report, indent=2), encoding="utf-8")
    for line in format_report(report):
        echo(line)
    return report


def _f(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _ci(d: dict[str, Any], spec: str) -> str:
    if d.get("mean") is None:
        return "-"
    if d.get("lo") is None:
        return f"{d['mean']:{spec}} (n={d['n']}, no interval)"
    return f"{d['mean']:{spec}} [{d['lo']:{spec}}, {d['hi']:{spec}}]"


def _needed(ratio: dict[str, Any], tol: float) -> str:
    if ratio.get("verdict") == "agrees" or ratio.get("n", 0) < 2:
        return ""
    n = ratio.get("rounds_needed")
    return f"; +-{tol:g} % needs {'> ' + str(MAX_ROUNDS_NEEDED) if n is None else '~' + str(n)} rounds at this spread"


def format_report(report: dict[str, Any]) -> list[str]:
    s, h, b, tol = report["settings"], report["harness"], report["llama_bench"], report["tolerance_pct"]
    lines = [
        f"settings: {s['model']} | talk {s['talk']} (depth {s['depth']} tokens) | {s['tokens']} new tokens | "
        f"threads {s['threads']} | flash-attn {int(s['flash_attn'])} | repack {s['repack_used']} | "
        f"batch {s['n_batch']}/{s['n_ubatch']} | llama-bench poll {s['poll']} prio {s['prio']} | "
        f"{s['rounds']} rounds",
        f"harness     prefill {_ci(h['prefill_tok_s'], '.1f')} tok/s | decode {_ci(h['decode_tok_s'], '.2f')} tok/s | "
        f"ITL p50 {_ci(h['itl_p50_ms'], '.2f')} p99 {_ci(h['itl_p99_ms'], '.2f')} ms",
        f"llama-bench pp {_ci(b['pp_tok_s'], '.1f')} tok/s | tg {_ci(b['tg_tok_s'], '.2f')} tok/s | "
        f"{_ci(b['ms_per_token'], '.2f')} ms per token (mean; llama-bench times no single token)",
    ]
    for name, label in (("prefill", "prefill"), ("decode", "decode"), ("engine_decode", "engine decode counter")):
        r = report["ratios"][name]
        lines.append(
            f"ratio {label:<22} harness / llama-bench {_ci(r, '.3f')} -> {r['verdict']} (tolerance {tol:g} %)"
            + _needed(r, tol)
        )
    for name, label in (("control_prefill", "prefill"), ("control_decode", "decode")):
        r = report["ratios"].get(name)
        if r is not None:
            lines.append(
                f"A/A   {label:<22} llama-bench / llama-bench {_ci(r, '.3f')} -> {r['verdict']} "
                f"(the machine's own run-to-run spread)" + _needed(r, tol)
            )
    if report.get("noisy_rounds"):
        rounds = ", ".join(str(i + 1) for i in report["noisy_rounds"])
        lines.append(f"noisy: the harness flagged round(s) {rounds} (other processes on its cores): not representative")
    flagged = {k: v for k, v in report["outlier_rounds"].items() if v}
    if flagged:
        listed = "; ".join(f"{k} round(s) {', '.join(str(i + 1) for i in v)}" for k, v in flagged.items())
        lines.append(f"outliers (> {OUTLIER_PCT:g} % from the median): {listed}")
    return lines
