"""llama.cpp's weight repacking ("extra buffer types"), and a self-check that it works on this CPU.

At load, llama.cpp's CPU backend may copy quantised weights into an "extra buffer type" laid out for a
faster kernel: `CPU_REPACK` (e.g. Q4_0 -> q4_0x8 on AVX2/AVX-512) or `AMX` (Q4_0/Q4_1/Q8_0/Q4_K/Q6_K... on
Intel CPUs with AMX tiles). llama-bench calls the switch `--repack 0|1`, llama-server `--repack/--no-repack`
(env LLAMA_ARG_REPACK), the C API `llama_model_params.use_extra_bufts`. On some CPUs or VMs the repacked
kernel faults (seen: Intel Xeon with `amx_int8`, llama.cpp 0c1e570: a general protection fault in
libggml-cpu.so on the first decode of every quantised model), which kills the process with SIGSEGV.

Why a self-check in a throwaway process: the crash takes the whole process down, so it can only be
observed from outside. Before the first llama.cpp model of a run, a child process loads a tiny generated
*quantised* model (`tiny-qwen2-q8_0` and `tiny-qwen2-q4_0`: the types both extra buffer types repack) with
repack on and decodes a few tokens. Its verdict is cached per (llama.cpp build, CPU identity) under the
model cache, so it costs one child process once per machine and build. A crash means the run uses repack off
for every model whose repack the user left on auto, and says so; `--repack 1` runs what the user asked.

`HARNESS_FAULT_REPACK_SEGV=1` is a fault-injection hook for tests: a process that would run llama.cpp with
repack on kills itself with SIGSEGV at the point the real crash happens (first decode), so the fallback
path is tested on every CPU, including ones where repack works.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FAULT_ENV = "HARNESS_FAULT_REPACK_SEGV"
CHECK_TIMEOUT_S = 30.0
CHECK_MODELS = ("tiny-qwen2-q8_0", "tiny-qwen2-q4_0")
VERDICT_VERSION = 1  # bump when what the check does changes, so old cached verdicts are not trusted

# llama.cpp's load log: "load_tensors:   CPU_REPACK model buffer size =  1.23 MiB", "AMX model buffer size"
_BUFFER_LINE = re.compile(r"(\w+) model buffer size")


def fault_injected() -> bool:
    return os.environ.get(FAULT_ENV, "") not in ("", "0")


def crash_if_injected(repack: bool) -> None:
    """The test hook: die as the real crash does (SIGSEGV at the first decode with repack on)."""
    if repack and fault_injected():
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGSEGV)


@contextlib.contextmanager
def model_params_repack(repack: bool) -> Iterator[None]:
    """Make llama-cpp-python's `Llama(...)` load with `use_extra_bufts = repack`.

    llama-cpp-python 0.3.x has no keyword for it: `Llama.__init__` starts from
    `llama_cpp.llama_cpp.llama_model_default_params()` and sets the fields it knows. Wrapping that function
    for the duration of the load sets the one field it leaves alone. Single-threaded use only (the worker
    loads one model at a time)."""
    import llama_cpp.llama_cpp as lib

    original = lib.llama_model_default_params

    def with_repack() -> Any:
        params = original()
        params.use_extra_bufts = repack
        return params

    lib.llama_model_default_params = with_repack
    try:
        yield
    finally:
        lib.llama_model_default_params = original


# --- the verdict --------------------------------------------------------------------------------------


@dataclass
class RepackVerdict:
    """What the self-check found on this machine and build; recorded in run.json `engine_check`."""

    repack_ok: bool | None  # None: the check itself could not run (then repack stays as requested)
    summary: str  # one line for the terminal and run.json
    key: str = ""
    build: str = ""
    cpu: str = ""
    cpu_flags: list[str] = field(default_factory=list)  # the flags that select a repack path
    buffer_types: list[str] = field(default_factory=list)  # extra buffer types the check saw llama.cpp use
    signal: str | None = None  # how the child died with repack on
    repack_off_ok: bool | None = None  # the same check with repack off (only run after a crash)
    seconds: float = 0.0  # what the check cost when it ran
    checked_at: str = ""
    cached: bool = False  # this run read the verdict from the cache (no child process)
    version: int = VERDICT_VERSION

    def record(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def remedy(self) -> str:
        return (
            "the run uses repack off for models left on auto (--repack 0 does the same explicitly); "
            "--repack 1 forces it on"
        )


_REPACK_FLAGS = ("amx_tile", "amx_int8", "amx_bf16", "avx512f", "avx512_vnni", "avx512vnni", "avx2", "avx_vnni")


def cpu_identity() -> tuple[str, list[str]]:
    """(model name + microcode, the CPU flags that choose llama.cpp's repack kernels)."""
    name, microcode, flags = "", "", set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and not name:
                name = value.strip()
            elif key == "microcode" and not microcode:
                microcode = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    if not name:
        import platform

        name = platform.processor() or platform.machine()
    return f"{name} (microcode {microcode or '?'})", sorted(f for f in _REPACK_FLAGS if f in flags)


def build_identity() -> str:
    """llama-cpp-python's version and its shared library (size + mtime): a rebuilt wheel is a new build."""
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    version = "?"
    lib_id = ""
    if spec is not None and spec.origin:
        pkg = Path(spec.origin).parent
        with contextlib.suppress(OSError):
            version_line = next(
                (ln for ln in (pkg / "__init__.py").read_text().splitlines() if ln.startswith("__version__")), ""
            )
            version = version_line.split("=", 1)[-1].strip().strip("\"'") or "?"
        libs = sorted(pkg.glob("lib/libggml-cpu*")) + sorted(pkg.glob("lib/libllama*"))
        for lib in libs:
            with contextlib.suppress(OSError):
                st = lib.stat()
                lib_id += f"{lib.name}:{st.st_size}:{int(st.st_mtime)};"
    return f"llama-cpp-python {version} [{hashlib.sha256(lib_id.encode()).hexdigest()[:12]}]"


def _verdict_path(cache: Path, key: str) -> Path:
    return cache / ".engine-check" / f"repack-{key}.json"


def _key(build: str, cpu: str, flags: list[str]) -> str:
    return hashlib.sha256(f"{VERDICT_VERSION}|{build}|{cpu}|{','.join(flags)}".encode()).hexdigest()[:16]


def check_repack(cache: Path, *, timeout_s: float = CHECK_TIMEOUT_S) -> RepackVerdict:
    """The cached verdict for this build × CPU, or run the check (a child process) and cache it."""
    build = build_identity()
    cpu, flags = cpu_identity()
    key = _key(build, cpu, flags)
    path = _verdict_path(cache, key)
    fault = fault_injected()  # a test's injected crash is never cached, nor read from the cache
    if not fault:
        with contextlib.suppress(OSError, ValueError, TypeError):
            data = json.loads(path.read_text())
            if isinstance(data, dict) and data.get("version") == VERDICT_VERSION and data.get("key") == key:
                verdict = RepackVerdict(**{k: v for k, v in data.items() if k in RepackVerdict.__dataclass_fields__})
                verdict.cached = True
                return verdict
    verdict = _run_check(cache, timeout_s, flags)
    verdict.key, verdict.build, verdict.cpu, verdict.cpu_flags = key, build, cpu, flags
    verdict.checked_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if not fault and verdict.repack_ok is not None:
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".verdict-")
            with os.fdopen(fd, "w") as fh:
                json.dump(verdict.record(), fh, indent=1)
            os.replace(tmp, path)
    return verdict


@dataclass
class _ChildResult:
    ok: bool
    signal: str | None
    detail: str
    buffers: list[str]


def _run_child(model_paths: list[Path], repack: bool, timeout_s: float) -> _ChildResult:
    cmd = [sys.executable, "-m", "harness.backends.llama_cpp_repack", "1" if repack else "0", *map(str, model_paths)]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout_s, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as exc:
        log = (exc.stderr or b"").decode("utf-8", "replace")
        return _ChildResult(False, "timeout", f"no answer within {timeout_s:.0f} s", _buffers(log))
    log = proc.stderr.decode("utf-8", "replace")
    buffers = _buffers(log)
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name if -proc.returncode in signal.valid_signals() else "?"
        return _ChildResult(False, name, f"killed by {name}", buffers)
    if proc.returncode != 0:
        tail = [ln for ln in log.strip().splitlines() if ln.strip()][-1:] or ["no output"]
        return _ChildResult(False, None, f"exit code {proc.returncode}: {tail[0][:200]}", buffers)
    return _ChildResult(True, None, "ok", buffers)


def _buffers(log: str) -> list[str]:
    seen = {m.group(1) for m in _BUFFER_LINE.finditer(log)}
    return sorted(b for b in seen if b not in ("CPU", "CPU_Mapped", "CPU_mapped"))


def _run_check(cache: Path, timeout_s: float, flags: list[str]) -> RepackVerdict:
    from harness.models.generators import GENERATORS

    t0 = time.perf_counter()
    models_dir = cache / ".engine-check" / "models"
    paths: list[Path] = []
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        for name in CHECK_MODELS:
            path = models_dir / f"{name}.gguf"
            if not path.is_file():
                fd, tmp = tempfile.mkstemp(dir=models_dir, prefix=f".{name}-", suffix=".gguf")
                os.close(fd)
                GENERATORS[name](Path(tmp))
                os.replace(tmp, path)
            paths.append(path)
    except (OSError, ImportError, ValueError) as exc:
        return RepackVerdict(None, f"repack self-check not run: cannot write its tiny models ({exc})")
    on = _run_child(paths, True, timeout_s)
    if on.ok:
        used = ", ".join(on.buffers) or "none on this CPU"
        return RepackVerdict(
            True, f"repack self-check: ok (extra buffer types used: {used})",
            buffer_types=on.buffers, seconds=round(time.perf_counter() - t0, 3),
        )  # fmt: skip
    if on.signal is None:  # the check failed in a way that is not a crash: no verdict on repack
        return RepackVerdict(
            None, f"repack self-check inconclusive ({on.detail}); repack left as requested",
            buffer_types=on.buffers, seconds=round(time.perf_counter() - t0, 3),
        )  # fmt: skip
    off = _run_child(paths, False, timeout_s)
    where = ", ".join(on.buffers) or "the repacked weights"
    cpu_note = f"CPU flags {' '.join(f for f in flags if f.startswith('amx'))}" if any(
        f.startswith("amx") for f in flags
    ) else f"CPU flags {' '.join(flags) or 'unknown'}"
    cause = f"llama.cpp with repack on ({where} buffer) was {on.detail} on a tiny quantised model ({cpu_note})"
    if off.ok:
        summary = f"{cause}; with repack off it runs"
    else:
        summary = f"{cause}; with repack off it also failed ({off.detail}): this llama.cpp build does not run here"
    return RepackVerdict(
        False, summary, buffer_types=on.buffers, signal=on.signal, repack_off_ok=off.ok,
        seconds=round(time.perf_counter() - t0, 3),
    )  # fmt: skip


# --- the child ------------------------------------------------------------------------------------------


def _child(repack: bool, model_paths: list[str]) -> int:
    import llama_cpp
    import numpy as np

    for model_path in model_paths:
        with model_params_repack(repack):
            llm = llama_cpp.Llama(model_path=model_path, n_ctx=128, n_threads=1, n_threads_batch=1, verbose=True)
        crash_if_injected(repack)
        tokens = llm.tokenize("你好，世界。The talk was about small models.".encode(), add_bos=False)
        llm.eval(tokens)
        for _ in range(4):
            llm.eval([int(np.argmax(llm.scores[llm.n_tokens - 1]))])
        llm.close()
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1] == "1", sys.argv[2:]))
