"""llama.cpp pieces the llama_cpp backend drives directly, below llama-cpp-python's `Llama` object.

Greedy decoding without a sampler object (`GreedyDecoder`):
- `Llama.generate` builds a new `LlamaSampler` on every call. Its chain keeps an n_vocab x 12-byte
  candidate buffer (3 MiB at Gemma's 262k vocabulary), and llama-cpp-python's wrapper holds itself in a
  reference cycle (its ExitStack callback closes over `self`), so each one was freed only when Python's
  cyclic GC happened to run: peak RSS grew by the buffer's size with every sample.
- Even one reused llama.cpp sampler chain copies all n_vocab logits into that candidate array and scans it
  for every token: ~0.45 ms per token at 262k tokens (~3 % of decode for Gemma 3 270M; measured 1.25 ms vs
  0.07 ms here on a loaded 2-core VM), where an argmax over llama.cpp's logits in place costs ~0.07 ms.
  llama-bench samples nothing, so this cost is pure harness overhead. Greedy is an argmax either way; both
  take the first of equal maxima.
- `--min-new-tokens` bans end-of-generation tokens as llama.cpp's `--ignore-eos` does: a -inf logit bias on
  every token `llama_vocab_is_eog` reports, here applied to a copy of the logits only when the argmax lands
  on one. A test checks the result token for token against llama.cpp's own logit-bias + greedy chain.

`attach_threadpool` gives the context one persistent ggml threadpool with llama-bench's defaults (poll
50, normal priority, default affinity), as llama-bench does. Without one, ggml builds a throwaway
threadpool for every graph it computes -- every decoded token: a small allocation in OpenMP builds (what
llama.cpp's CMake makes where the compiler has OpenMP; OpenMP then runs the threads and `poll` has no effect),
but n_threads - 1 new OS threads per token where llama.cpp is built without OpenMP. The
ggml functions are not wrapped by llama-cpp-python; they are looked up the way llama-bench does, through
the CPU backend registry, so builds that load ggml-cpu dynamically work too.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

GGML_MAX_N_THREADS = 512  # ggml.h: size of ggml_threadpool_params.cpumask
# llama-bench's defaults (tools/llama-bench/llama-bench.cpp cmd_params_defaults): --poll 50, --prio 0
LLAMA_BENCH_POLL = 50
LLAMA_BENCH_PRIO = 0  # GGML_SCHED_PRIO_NORMAL: keep the inherited scheduling policy and priority


def eog_tokens(vocab: Any) -> list[int]:
    """Every end-of-generation token of the vocabulary (EOS, EOT, <|im_end|>, ...): what llama.cpp's
    --ignore-eos bans. One FFI call per token: ~0.1 s at 262k tokens, once per model load."""
    import llama_cpp

    n_vocab = int(llama_cpp.llama_vocab_n_tokens(vocab))
    return [t for t in range(n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, t)]


class GreedyDecoder:
    """The next token of a greedy decode from the context's last logits, optionally with the model's
    end-of-generation tokens banned (-inf). Holds no per-generation state or buffers: a numpy view of
    llama.cpp's logits buffer, rebuilt only if llama.cpp moves the buffer (`np.ctypeslib.as_array` per
    token would leave a ctypes reference cycle per token for the garbage collector)."""

    def __init__(self, n_vocab: int, eog: list[int]) -> None:
        from llama_cpp import llama_cpp as bindings

        # Our own function object (indexing a CDLL returns a fresh one): the address as an int, no ctypes
        # pointer object per call, and llama-cpp-python's own binding is left as it is.
        get_logits = bindings._lib["llama_get_logits_ith"]
        get_logits.restype = ctypes.c_void_p
        get_logits.argtypes = [ctypes.c_void_p, ctypes.c_int32]
        self._get_logits = get_logits
        self._view_address: int | None = None
        self._view: np.ndarray = np.empty(0, dtype=np.float32)
        self.n_vocab = n_vocab
        self.eog = frozenset(eog)
        self._eog_ids = np.asarray(sorted(eog), dtype=np.int64)

    def logits(self, ctx: Any) -> np.ndarray:
        """The logits of the last decoded position: llama.cpp's buffer, not a copy."""
        address = self._get_logits(ctx, -1)
        if not address:
            raise RuntimeError("llama.cpp returned no logits for the last position")
        if address != self._view_address:
            buffer = (ctypes.c_float * self.n_vocab).from_address(address)
            self._view = np.frombuffer(buffer, dtype=np.float32)
            self._view_address = address
        return self._view

    def next_token(self, ctx: Any, ban_eog: bool = False) -> int:
        logits = self.logits(ctx)
        token = int(logits.argmax())
        if ban_eog and token in self.eog:
            masked = logits.copy()
            masked[self._eog_ids] = -np.inf
            token = int(masked.argmax())
        return token


class _ThreadpoolParams(ctypes.Structure):
    # struct ggml_threadpool_params (ggml.h)
    _fields_ = [
        ("cpumask", ctypes.c_bool * GGML_MAX_N_THREADS),
        ("n_threads", ctypes.c_int),
        ("prio", ctypes.c_int),  # enum ggml_sched_priority
        ("poll", ctypes.c_uint32),
        ("strict_cpu", ctypes.c_bool),
        ("paused", ctypes.c_bool),
    ]


@dataclass
class Threadpool:
    """A ggml threadpool attached to one llama context; `release()` detaches and frees it."""

    handle: int
    ctx: Any
    _free: Any
    _detach: Any

    def release(self) -> None:
        if self.handle:
            self._detach(self.ctx)
            self._free(ctypes.c_void_p(self.handle))
            self.handle = 0


def openmp_build() -> bool | None:
    """Whether llama.cpp was built with OpenMP (then ggml's `poll` level has no effect: OpenMP's own
    barrier and wait policy run the threads)."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode("utf-8", errors="replace")
    if "OPENMP = 1" in info:
        return True
    if "OPENMP = 0" in info:
        return False
    return None


def attach_threadpool(ctx: Any, n_threads: int) -> tuple[Threadpool | None, dict[str, Any]]:
    """Create a ggml threadpool with llama-bench's settings and attach it to `ctx` for decode and prefill.

    Returns (threadpool or None, settings for LoadInfo.extra). None with a `threadpool: "per graph
    (engine default)"` record and the reason when the build does not export what is needed.
    """
    import llama_cpp
    from llama_cpp import llama_cpp as bindings
    from llama_cpp._ctypes_extensions import load_shared_library

    settings: dict[str, Any] = {"openmp": openmp_build()}
    try:
        lib_dir = Path(bindings._lib._name).parent
        ggml = load_shared_library("ggml", lib_dir)
        ggml_base = load_shared_library("ggml-base", lib_dir)
        ggml.ggml_backend_reg_by_name.restype = ctypes.c_void_p
        ggml.ggml_backend_reg_by_name.argtypes = [ctypes.c_char_p]
        ggml_base.ggml_backend_reg_get_proc_address.restype = ctypes.c_void_p
        ggml_base.ggml_backend_reg_get_proc_address.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        ggml_base.ggml_threadpool_params_init.restype = None
        ggml_base.ggml_threadpool_params_init.argtypes = [ctypes.POINTER(_ThreadpoolParams), ctypes.c_int]
        cpu_reg = ggml.ggml_backend_reg_by_name(b"CPU")
        if not cpu_reg:
            raise OSError("no CPU backend registered")

        def proc(name: bytes, restype: Any, *argtypes: Any) -> Any:
            address = ggml_base.ggml_backend_reg_get_proc_address(cpu_reg, name)
            if not address:
                raise OSError(f"CPU backend does not export {name.decode()}")
            return ctypes.CFUNCTYPE(restype, *argtypes)(address)

        threadpool_new = proc(b"ggml_threadpool_new", ctypes.c_void_p, ctypes.POINTER(_ThreadpoolParams))
        threadpool_free = proc(b"ggml_threadpool_free", None, ctypes.c_void_p)
        attach = bindings._lib.llama_attach_threadpool
        attach.restype = None
        attach.argtypes = [llama_cpp.llama_context_p_ctypes, ctypes.c_void_p, ctypes.c_void_p]
        detach = bindings._lib.llama_detach_threadpool
        detach.restype = None
        detach.argtypes = [llama_cpp.llama_context_p_ctypes]
    except (OSError, AttributeError) as exc:
        settings.update(threadpool="per graph (engine default)", threadpool_error=str(exc))
        return None, settings

    params = _ThreadpoolParams()
    ggml_base.ggml_threadpool_params_init(ctypes.byref(params), int(n_threads))
    params.poll = LLAMA_BENCH_POLL
    params.prio = LLAMA_BENCH_PRIO
    handle = threadpool_new(ctypes.byref(params))
    if not handle:
        settings.update(threadpool="per graph (engine default)", threadpool_error="ggml_threadpool_new failed")
        return None, settings
    attach(ctx, handle, None)  # NULL batch pool: prefill uses the same pool (n_threads_batch == n_threads)
    settings.update(
        threadpool="attached",
        threadpool_n_threads=int(params.n_threads),
        threadpool_poll=int(params.poll),
        threadpool_prio=int(params.prio),
        threadpool_strict_cpu=bool(params.strict_cpu),
    )
    return Threadpool(handle=handle, ctx=ctx, _free=threadpool_free, _detach=detach), settings
