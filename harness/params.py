"""Every option of `harness run` in one table: flag, parser, default, help, whether it sweeps, its bounds.

Why one table: the parser (`harness run --help` shows every default), the validation (0, negatives,
duplicates are usage errors with one line, never silently replaced) and the options table of docs/running.md are
all generated from `PARAMS`, so they cannot drift apart. Adding an option is one `Param(...)` entry; its
`name` is the `RunConfig` field it fills (`config=False` for options only the command itself reads).

Sweeps follow llama-bench: a sweepable option takes a comma list and integer ranges -- `1,2,4`,
`first-last` (step 1), `first-last+step`, `first-last*mult` -- and may be repeated (`--threads 1
--threads 2` = `--threads 1,2`). The run is the cartesian product of the swept values: each combination
is a `Config` with a short stable `config_id` (a hash of its settings, not of its position), so the same
settings get the same id in every run and `compare` can pair them.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.errors import HarnessError

Kind = Literal["value", "list", "sweep", "flag"]

SWEEP_GRAMMAR = "a,b,c or first-last[+step|*mult]"
# One item of an integer sweep: a number, or a range with an optional step (+) or multiplier (*).
_RANGE = re.compile(r"^(-?\d+)(?:-(-?\d+)(?:([+*])(\d+))?)?$")
_MAX_SWEEP_VALUES = 1000  # a typo like 1-100000 should not plan a century of samples
# Bounds on the size of a run (issue 21), checked before anything is planned or allocated: a typo must be one
# line, not a MemoryError or a plan of 10^6 configs.
MAX_CONFIGS = 1000  # combinations of swept settings
MAX_REPEATS = 10_000
MAX_PLANNED_SAMPLES = 100_000  # configs x models x documents x repeats
# llama.cpp takes n_ctx as a uint32 and silently wraps larger values (4294967808 -> 512); no model ships a
# context near this, and a KV cache of 2^24 tokens is already far beyond any device's memory.
N_CTX_ENGINE_MAX = 2**24


# --- value parsers: str -> value, ValueError with a short reason on bad input ------------------------


def parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f'"{text}" is not a whole number') from None


def parse_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f'"{text}" is not a number') from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f'"{text}" is not a finite number')
    return value


_TRUE = {"1", "on", "true", "yes"}
_FALSE = {"0", "off", "false", "no"}


def parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f'"{text}" is not 0 or 1 (on/off)')


def parse_name(text: str) -> str:
    if not text or any(ch.isspace() for ch in text):
        raise ValueError(f'"{text}" is not a name')
    return text


def int_range(item: str) -> list[int]:
    """One llama-bench sweep item: `8`, `1-4` (= 1,2,3,4), `1-8+2` (= 1,3,5,7), `1-16*2` (= 1,2,4,8,16)."""
    m = _RANGE.match(item.strip())
    if not m:
        raise ValueError(f'"{item}" is not a number or a range ({SWEEP_GRAMMAR})')
    first = int(m.group(1))
    if m.group(2) is None:
        return [first]
    last = int(m.group(2))
    op, by = m.group(3) or "+", int(m.group(4) or 1)
    if last < first:
        raise ValueError(f'range "{item}" runs backwards; write first-last with first <= last')
    if op == "+" and by < 1:
        raise ValueError(f'range "{item}" needs a step of 1 or more')
    if op == "*" and (by < 2 or first < 1):
        raise ValueError(f'range "{item}" needs a multiplier of 2 or more and a first value of 1 or more')
    out: list[int] = []
    value = first
    while value <= last:
        out.append(value)
        if len(out) > _MAX_SWEEP_VALUES:
            raise ValueError(f'range "{item}" has more than {_MAX_SWEEP_VALUES} values')
        value = value + by if op == "+" else value * by
    return out


def split_list(text: str) -> list[str]:
    """`a,b, c` -> ["a", "b", "c"]; an empty item (`a,,b`, trailing comma) is an error, not skipped."""
    items = [part.strip() for part in text.split(",")]
    if any(not item for item in items):
        raise ValueError(f'"{text}" has an empty item; separate values with single commas')
    return items


def parse_sweep(text: str, item: Callable[[str], Any]) -> list[Any]:
    """A comma list of values; with `item=parse_int`, each element may also be a range."""
    values: list[Any] = []
    for part in split_list(text):
        values.extend(int_range(part) if item is parse_int else [item(part)])
    return values


# --- the table -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """One option of `harness run`.

    kind: "value" (one value), "list" (comma list of ids, no duplicates), "sweep" (comma list and ranges:
    one run per value, see `expand`), "flag" (on when given). `minimum`/`maximum`/`choices` bound every
    value; `default_text` is how a default computed at run time is shown in --help and docs/running.md.
    """

    name: str
    flag: str
    help: str
    default: Any = None
    parse: Callable[[str], Any] = parse_name
    kind: Kind = "value"
    metavar: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    # The allowed values, or a function returning them: registries (servers, scenarios) own their names, so the
    # table asks them when a value is checked instead of repeating the list.
    choices: tuple[str, ...] | Callable[[], Sequence[str]] = ()
    default_text: str | None = None
    negative: str | None = None  # e.g. --no-flash-attn: the same as `flag 0`
    const: str | None = None  # value of a bare `flag` (e.g. --flash-attn alone = 1)
    config: bool = True  # fills RunConfig.<name>; False: read by the command itself
    group: str = "run"

    @property
    def sweeps(self) -> bool:
        return self.kind == "sweep"

    def allowed(self) -> tuple[str, ...]:
        """The values `choices` allows (empty: any)."""
        return tuple(self.choices() if callable(self.choices) else self.choices)

    def shown_default(self) -> str:
        if self.default_text is not None:
            return self.default_text
        if self.kind == "flag":
            return "off"
        if isinstance(self.default, bool):
            return "1" if self.default else "0"
        return "-" if self.default is None else str(self.default)


def _server_names() -> list[str]:
    from harness.servers import server_names  # lazy: the table is read by --help before any server is needed

    return server_names()


def _scenario_names() -> list[str]:
    from harness.scenarios import scenario_names  # lazy: the scenario registry imports its modules on first use

    return scenario_names()


def _long_strategy_names() -> list[str]:
    from harness.scenarios import long_strategy_names

    return long_strategy_names()


def _p(*args: Any, **kwargs: Any) -> Param:
    return Param(*args, **kwargs)


PARAMS: tuple[Param, ...] = (
    # --- what to run ---------------------------------------------------------------------------------
    _p(
        "models", "--models", "model ids from models.yaml; a typo answers \"did you mean\"",
        default=[], kind="list", metavar="ID[,ID…]", default_text="entries with default: true", group="select",
    ),
    _p(
        "talks", "--talks", "talk (document) ids of the corpus (`harness corpus list`)",
        default=[], kind="list", metavar="ID[,ID…]", default_text="all", group="select",
    ),
    _p(
        "corpus", "--corpus",
        "built-in corpus by name (talks: five summit talks; summit-reports: the two whole reports) or your own "
        "JSONL with id, text, references (list), optional lang",
        parse=str, metavar="NAME|FILE.jsonl", default_text="talks", group="select",
    ),
    _p(
        "models_file", "--models-file", "models file", parse=Path, metavar="FILE.yaml",
        default_text="the packaged models.yaml", group="select",
    ),
    _p("repeats", "--repeats", "timed samples per model x config x talk", default=1, parse=parse_int,
       minimum=1, maximum=MAX_REPEATS, metavar="N", group="select"),
    _p("warmup", "--warmup", "untimed warm-up generations per worker before its samples (0 = off)",
       default=1, parse=parse_int, minimum=0, metavar="N", group="select"),
    _p(
        "interleave", "--interleave",
        "load every model x config at once and alternate samples between all of them (A/B runs on noisy "
        "machines); default: models in turn, a model's configs alternating, repeats round-robin over talks",
        kind="flag", default=False, group="select",
    ),
    # --- generation and engine settings: these sweep ---------------------------------------------------
    _p("max_new_tokens", "--max-new-tokens", "generation cap", default=256, parse=parse_int, kind="sweep",
       minimum=1, metavar="N", group="settings"),
    _p(
        "min_new_tokens", "--min-new-tokens",
        "ignore end-of-sequence until N tokens: fixed-length throughput, as llama-bench and MLPerf do",
        default=0, parse=parse_int, kind="sweep", minimum=0, metavar="N", group="settings",
    ),
    _p(
        "threads", "--threads", "llama.cpp n_threads and n_threads_batch (prefill uses the latter)",
        parse=parse_int, kind="sweep", minimum=1, metavar="N", default_text="usable physical cores", group="settings",
    ),
    _p(
        "n_ctx", "--n-ctx",
        "context size; a longer document is truncated (or chunked, see --long-strategy) to fit "
        "n_ctx - max_new_tokens",
        parse=parse_int, kind="sweep", minimum=1, maximum=N_CTX_ENGINE_MAX, metavar="N",
        default_text="from models.yaml", group="settings",
    ),
    _p(
        "flash_attn", "--flash-attn", "llama.cpp flash attention: 0, 1 or 0,1 (bare --flash-attn = 1)",
        parse=parse_bool, kind="sweep", metavar="0|1", negative="--no-flash-attn", const="1",
        default_text="models.yaml flag, else 0", group="settings",
    ),
    _p(
        "repack", "--repack",
        "llama.cpp weight repacking into the CPU's extra buffer types (CPU_REPACK, AMX), as llama-bench "
        "--repack: 0, 1 or 0,1; default auto = on unless the engine self-check saw it crash on this CPU",
        parse=parse_bool, kind="sweep", metavar="0|1", negative="--no-repack", const="1",
        default_text="models.yaml flag, else auto", group="settings",
    ),
    _p(
        "n_gpu_layers",
        "--n-gpu-layers",
        "llama.cpp layers to offload (-1 = all); refused up front on a build without GPU offload",
        parse=parse_int, kind="sweep", minimum=-1, metavar="N", default_text="models.yaml flag, else 0",
        group="settings",
    ),
    _p(
        "provider", "--provider",
        "ONNX execution provider: auto, cpu, cuda, dml, qnn, openvino, coreml, webgpu (onnx models only)",
        kind="sweep", metavar="PROVIDER", default_text="the entry's provider (auto)", group="settings",
    ),
    # --- the task --------------------------------------------------------------------------------------
    _p(
        "summary_lang", "--summary-lang", "language to summarise in, scored against references in it",
        choices=("zh", "en"), metavar="zh|en", default_text="the document's language", group="task",
    ),
    _p(
        "scenario", "--scenario",
        "what one sample is: summarize (default) or a registered scenario; docs/architecture.md#a-new-scenario",
        default="summarize", choices=_scenario_names, metavar="NAME", group="task",
    ),
    _p(
        "long_strategy", "--long-strategy",
        "documents longer than n_ctx - max_new_tokens: truncate (keep the start), map-reduce (summarise "
        "chunks, then the summaries) or refine (rolling summary over chunks)",
        default="truncate", choices=_long_strategy_names, metavar="STRATEGY", group="task",
    ),
    # --- how ---------------------------------------------------------------------------------------------
    _p("cooldown_s", "--cooldown", "sleep SECONDS between samples (thermals)", default=0.0,
       parse=parse_float, minimum=0, metavar="SECONDS", group="how"),
    _p("wait_quiet_s", "--wait-quiet",
       "before each sample wait, at most SECONDS, until other processes leave the worker's CPUs quiet for 0.3 s "
       "(the noise analogue of --cooldown; the wait is the quiet_wait_s column; docs/noise.md); bare = 30",
       parse=parse_float, minimum=0, metavar="SECONDS", const="30", default_text="off", group="how"),
    _p("no_mmap", "--no-mmap", "load weights into anonymous memory instead of mmap", kind="flag",
       default=False, group="how"),
    _p("out", "--out", "parent directory of the run directory", default=Path("results"), parse=Path,
       metavar="DIR", group="how"),
    _p("offline", "--offline", "never download; use only the model cache", kind="flag", default=False,
       group="how"),
    _p("no_bandwidth", "--no-bandwidth", "skip the memory-bandwidth probe (no roofline column)", kind="flag",
       default=False, config=False, group="how"),
    _p("dry_run", "--dry-run",
       "print the plan (configs x models x talks x repeats, order, estimated time) and run nothing",
       kind="flag", default=False, config=False, group="how"),
    _p("estimate_from", "--estimate-from", "with --dry-run: estimate the time from this earlier run's rows",
       parse=Path, metavar="RUN_DIR", default_text="no estimate", config=False, group="how"),
    # --- failures and interruptions (harness.launchers.watchdog, harness.resume) -------------------------
    _p("sample_timeout_s", "--sample-timeout",
       "watchdog: a sample still running after SECONDS is killed with its worker and written as an error "
       "row `timeout after S s`; the model goes on in a fresh worker",
       parse=parse_float, minimum=1, metavar="SECONDS",
       default_text="60 + (n_ctx - max_new_tokens)/20 + max_new_tokens/2", group="how"),
    _p("resume", "--resume",
       "complete an interrupted or failed run in its own directory, with its recorded configuration "
       "(skips samples that have a row; other options are refused)",
       parse=Path, metavar="RUN_DIR", default_text="a new run", config=False, group="how"),
    # --- serving over HTTP (harness.serving, harness.load; docs/servers.md) -----------------
    _p("via", "--via",
       "benchmark llama_cpp entries through a local server the harness starts and stops: llama-cpp-server "
       "(llama-cpp-python's, pip install 'harness[server]'), llama-server (binary on PATH) or ollama (daemon)",
       choices=_server_names, metavar="SERVER", default_text="in-process",
       group="serving"),
    _p("server_pid", "--server-pid",
       "openai entries: the server process whose memory to watch (default: the process listening on the "
       "endpoint's port on this machine, else no memory columns)",
       parse=parse_int, minimum=1, metavar="PID", group="serving"),
    _p("concurrency", "--concurrency",
       "after each served model's samples, run them again with N requests in flight per level (load_summary.csv)",
       parse=str, metavar="N[,N…]", default_text="off", group="serving"),
    _p("slo", "--slo", "goodput bounds for --concurrency: ttft, itl (time per output token), e2e, with s or ms",
       parse=str, metavar="ttft=2s,itl=100ms", default_text="ttft=2s,itl=100ms", group="serving"),
    _p("level_requests", "--level-requests",
       "with --concurrency: each level goes on until at least COUNT requests were sent, repeating the run's "
       "talks as needed (load_summary.csv min_requests)",
       parse=parse_int, minimum=1, maximum=100_000, metavar="COUNT",
       default_text="the run's requests, at least 2 per slot", group="serving"),
    _p("level_seconds", "--level-seconds",
       "with --concurrency: each level goes on for at least SECONDS, repeating the run's talks as needed "
       "(load_summary.csv min_seconds)",
       parse=parse_float, minimum=0, maximum=86_400, metavar="SECONDS", default_text="0 (no minimum)",
       group="serving"),
    # --- fleet and results store (harness.fleet, harness.store) ------------------------------------------
    _p("fleet", "--fleet", "run on the devices of this Dask scheduler, merged into one run (docs/fleet.md)",
       metavar="tcp://HOST:PORT", default_text="this machine", config=False, group="fleet"),
    _p("devices", "--devices", "with --fleet: which devices: all, names, tag:T, or a mix (a,tag:npu)",
       default="all", metavar="all|NAME,…|tag:T", config=False, group="fleet"),
    _p("retry_window", "--retry-window",
       "with --fleet: a device lost mid-job that rejoins within SECONDS re-runs the job once (0 = never)",
       default=0.0, parse=parse_float, minimum=0, metavar="SECONDS", config=False, group="fleet"),
    _p("db", "--db", "ingest the finished run into this DuckDB results store (docs/store.md)",
       parse=Path, metavar="PATH", default_text="no store", config=False, group="fleet"),
)

BY_NAME: dict[str, Param] = {p.name: p for p in PARAMS}
SWEEPABLE: tuple[str, ...] = tuple(p.name for p in PARAMS if p.sweeps)


def param(name: str) -> Param:
    return BY_NAME[name]


# --- argparse ------------------------------------------------------------------------------------------


def _help(p: Param) -> str:
    text = p.help
    if p.sweeps:
        text += f"; sweeps: {SWEEP_GRAMMAR}" if p.parse is parse_int else "; sweeps: a,b,c"
    if p.kind != "flag" and (p.default is not None or p.default_text is not None):
        text += f" (default: {p.shown_default()})"
    return text.replace("%", "%%")


def add_arguments(parser: argparse.ArgumentParser, params: Iterable[Param] = PARAMS) -> None:
    """Register each param as a raw-string option; `collect` parses and validates them in one place,
    so a bad value is one line (exit 2) rather than argparse's usage block."""
    for p in params:
        if p.kind == "flag":
            parser.add_argument(p.flag, dest=p.name, action="store_true", default=p.default, help=_help(p))
            continue
        kwargs: dict[str, Any] = {"dest": p.name, "metavar": p.metavar, "help": _help(p), "default": None}
        if p.sweeps:
            kwargs["action"] = "append"  # repeated flags add values, as in llama-bench
        if p.const is not None:
            kwargs.update(nargs="?", const=p.const)
        parser.add_argument(p.flag, **kwargs)
        if p.negative:
            parser.add_argument(
                p.negative, dest=p.name, action="append_const" if p.sweeps else "store_const", const="0",
                help=f"same as {p.flag} 0",
            )


def _fail(p: Param, raw: str, problem: str) -> HarnessError:
    return HarnessError(f"{p.flag} {raw}: {problem}")


def _check_bounds(p: Param, raw: str, value: Any) -> None:
    allowed = p.allowed()
    if allowed and value not in allowed:
        raise _fail(p, raw, f'"{value}" is not one of {", ".join(allowed)}')
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    if p.minimum is not None and value < p.minimum:
        hint = " (leave the option out for the default)" if value == 0 and p.default is None else ""
        raise _fail(p, raw, f"{_num(value)} is not allowed; use {_num(p.minimum)} or more{hint}")
    if p.maximum is not None and value > p.maximum:
        raise _fail(p, raw, f"{_num(value)} is not allowed; use at most {_num(p.maximum)}")


def _num(value: float) -> str:
    """A bound or value as typed: whole numbers in full (4294967808, not 4.29497e+09)."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _no_duplicates(p: Param, raw: str, values: Sequence[Any]) -> None:
    seen: set[Any] = set()
    for v in values:
        if v in seen:
            raise _fail(p, raw, f'"{_fmt(v)}" is given twice; list each value once')
        seen.add(v)


def parse_value(p: Param, raw: Any) -> Any:
    """The validated value of one param from its raw command-line text (None/[] = not given: default)."""
    if p.kind == "flag":
        return bool(raw)
    if raw is None:
        return list(p.default) if isinstance(p.default, list) else p.default
    if p.kind in ("list", "sweep"):
        texts = raw if isinstance(raw, list) else [raw]
        joined = ",".join(texts)
        try:
            values = [v for t in texts for v in (parse_sweep(t, p.parse) if p.sweeps else split_list(t))]
        except ValueError as exc:
            raise _fail(p, joined, str(exc)) from None
        for v in values:
            _check_bounds(p, joined, v)
        _no_duplicates(p, joined, values)
        return values
    try:
        value = p.parse(raw)
    except ValueError as exc:
        raise _fail(p, str(raw), str(exc)) from None
    _check_bounds(p, str(raw), value)
    return value


def collect(args: argparse.Namespace, params: Iterable[Param] = PARAMS) -> dict[str, Any]:
    """{name: validated value} for every param; sweep params give a list of values, or None for the default."""
    return {p.name: parse_value(p, getattr(args, p.name, None)) for p in params}


# --- configs -------------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


@dataclass(frozen=True)
class Config:
    """One combination of settings. `settings` holds every sweepable param (None = the model's default);
    `swept` names those that vary in the run, for labels and CSV columns."""

    settings: tuple[tuple[str, Any], ...]
    swept: tuple[str, ...] = ()

    def __getitem__(self, name: str) -> Any:
        return dict(self.settings)[name]

    def get(self, name: str, default: Any = None) -> Any:
        return dict(self.settings).get(name, default)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.settings)

    @property
    def config_id(self) -> str:
        """8 hex of a hash of the settings that are set. Unset (None) ones are left out, so adding a new
        sweepable option later keeps the ids of existing configs."""
        payload = {k: v for k, v in self.settings if v is not None}
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
        return digest[:8]

    @property
    def label(self) -> str:
        """`threads=1 max_new_tokens=16`: the swept settings; empty when nothing is swept."""
        return " ".join(f"{k}={_fmt(self.get(k))}" for k in self.swept)


def expand(values: Mapping[str, Any], sweepable: Sequence[str] = SWEEPABLE) -> list[Config]:
    """The cartesian product of the sweep params, in table order (the first param varies slowest).
    `values[name]` is a list of values, a single value, or None (the default)."""
    axes: list[list[Any]] = []
    for name in sweepable:
        v = values.get(name)
        if v is None:
            v = BY_NAME[name].default if name in BY_NAME else None
        axes.append(list(v) if isinstance(v, list | tuple) else [v])
    combinations = math.prod(len(axis) for axis in axes)
    if combinations > MAX_CONFIGS:  # counted before itertools.product builds a single one
        sizes = " x ".join(str(len(a)) for a in axes if len(a) > 1)
        raise HarnessError(
            f"the sweep has {combinations} combinations ({sizes}); at most {MAX_CONFIGS}: sweep fewer values"
        )
    swept = tuple(name for name, axis in zip(sweepable, axes, strict=True) if len(axis) > 1)
    return [Config(tuple(zip(sweepable, combo, strict=True)), swept) for combo in itertools.product(*axes)]


def impossible(config: Config, n_ctx: int | None = None) -> str | None:
    """Why `config` cannot work whatever the model (None when it can). `n_ctx` is the model's context when
    the config leaves it to models.yaml."""
    max_new, min_new = config.get("max_new_tokens"), config.get("min_new_tokens")
    if max_new is not None and min_new is not None and min_new > max_new:
        return f"--min-new-tokens {min_new} is above --max-new-tokens {max_new}"
    ctx = config.get("n_ctx") or n_ctx
    if ctx is not None and (problem := n_ctx_problem(ctx)):
        return problem
    if ctx is not None and max_new is not None and max_new >= ctx:
        return f"--max-new-tokens {max_new} leaves no room for a prompt in n_ctx {ctx}"
    return None


def n_ctx_problem(n_ctx: Any, n_ctx_train: int | None = None) -> str | None:
    """Why a context size cannot be used (None when it can): not a whole number, above the engine's limit
    (N_CTX_ENGINE_MAX), or above what the model was trained for (`n_ctx_train` from its GGUF header; 0 or
    None = unknown, not checked)."""
    if isinstance(n_ctx, bool) or not isinstance(n_ctx, int) or n_ctx < 1:
        return f"n_ctx {n_ctx!r} is not a whole number of tokens of 1 or more"
    if n_ctx > N_CTX_ENGINE_MAX:
        return f"n_ctx {n_ctx} is above the engine limit of {N_CTX_ENGINE_MAX} tokens; use a smaller --n-ctx"
    if n_ctx_train and n_ctx > n_ctx_train:
        return (
            f"n_ctx {n_ctx} is above the model's trained context of {n_ctx_train} tokens (n_ctx_train in its "
            f"GGUF header); use --n-ctx {n_ctx_train} or less"
        )
    return None


def gguf_n_ctx_train(path: Path | None) -> int | None:
    """The trained context of a GGUF file (`{arch}.context_length`), or None when unknown or unreadable."""
    if path is None or not path.is_file() or path.suffix.lower() != ".gguf":
        return None
    from harness.models.gguf_header import read_gguf_header

    try:
        value = read_gguf_header(path).arch_key("context_length")
    except (OSError, ValueError):  # GgufHeaderError is a ValueError; the load reports a bad file itself
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def plan_size_problem(n_configs: int, n_models: int, n_documents: int, repeats: int) -> str | None:
    """Why a run is too large to plan (None when it is not): more than MAX_PLANNED_SAMPLES samples."""
    total = n_configs * n_models * n_documents * repeats
    if total <= MAX_PLANNED_SAMPLES:
        return None
    return (
        f"the run plans {total} samples ({n_configs} config(s) x {n_models} model(s) x {n_documents} document(s) "
        f"x {repeats} repeat(s)); at most {MAX_PLANNED_SAMPLES}: use fewer repeats, models, documents or sweep values"
    )


def describe_config(config: Config) -> str:
    """Every set setting, for messages: `threads=2 n_ctx=1024 max_new_tokens=16 min_new_tokens=0`."""
    return " ".join(f"{k}={_fmt(v)}" for k, v in config.settings if v is not None)


# --- threads ------------------------------------------------------------------------------------------


def thread_warnings(configs: Iterable[Config], cores: int) -> list[str]:
    """A warning (recorded in run.json) for each thread count above the CPUs this process may use
    (`harness.threads.usable_cpus`): oversubscribed llama.cpp threads stall each other at every op, so such
    figures measure the scheduler."""
    over = sorted({c.get("threads") for c in configs if (c.get("threads") or 0) > cores})
    return [
        f"--threads {t} is more than the {cores} CPU(s) this process may use: threads will share CPUs and slow "
        "each other"
        for t in over
    ]


# --- docs/running.md ----------------------------------------------------------------------------------------------


def describe(params: Iterable[Param] = PARAMS) -> str:
    """Markdown table of the options, for docs/running.md (generated, checked by a test)."""
    lines = ["| option | default | sweeps | meaning |", "|---|---|---|---|"]
    for p in params:
        flag = f"`{p.flag}{f' {p.metavar}' if p.metavar and p.kind != 'flag' else ''}`"
        if p.negative:
            flag += f", `{p.negative}`"
        sweeps = "yes" if p.sweeps else ""
        cells = (flag, p.shown_default(), sweeps, p.help)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


@dataclass
class Parsed:
    """The validated options: RunConfig keyword arguments, the sweep axes, and command-only options."""

    run: dict[str, Any] = field(default_factory=dict)
    sweep: dict[str, list[Any]] = field(default_factory=dict)
    command: dict[str, Any] = field(default_factory=dict)


def split_values(values: Mapping[str, Any], params: Iterable[Param] = PARAMS) -> Parsed:
    """RunConfig fields (a sweep param given one value fills its scalar field; more than one value goes
    to `sweep`, its scalar left at the first value) and the command's own options."""
    out = Parsed()
    if values.get("estimate_from") is not None and not values.get("dry_run"):
        # Silently ignoring it would run the whole benchmark when the user asked for an estimate.
        raise HarnessError("--estimate-from goes with --dry-run (it estimates a planned run); add --dry-run")
    for p in params:
        value = values.get(p.name)
        if not p.config:
            out.command[p.name] = value
        elif p.sweeps:
            if isinstance(value, list) and len(value) > 1:
                out.sweep[p.name] = list(value)
            out.run[p.name] = value[0] if isinstance(value, list) else value
        else:
            out.run[p.name] = value
    return out


__all__ = [
    "PARAMS",
    "SWEEPABLE",
    "SWEEP_GRAMMAR",
    "Config",
    "Param",
    "Parsed",
    "add_arguments",
    "collect",
    "describe",
    "describe_config",
    "expand",
    "gguf_n_ctx_train",
    "impossible",
    "int_range",
    "n_ctx_problem",
    "parse_sweep",
    "parse_value",
    "plan_size_problem",
    "split_values",
    "thread_warnings",
]
