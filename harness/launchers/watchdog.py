"""The per-sample watchdog: how long a sample may take, and what happens when it takes longer.

Why: a worker can stall -- stuck in native code, starved, stopped (SIGSTOP, a debugger), swapping -- and
without a deadline the parent would wait on it forever, or write a stalled sample as `ok` at a fraction
of its real speed once it recovers.

Policy (documented in docs/running.md, "Failures and interruptions"):

- Each sample has a deadline: `--sample-timeout S`, or by default `default_sample_timeout()` = 60 s +
  the largest prompt the context allows at a floor prefill rate of 20 tok/s + max_new_tokens at a floor
  decode rate of 2 tok/s. On the 2-core CI machine the smallest real model prefills at ~200 tok/s and
  decodes at ~50 tok/s, so the default is far from a slow-but-healthy sample; it only catches hangs.
  (Long-document strategies that call the engine several times per sample need a larger
  `--sample-timeout`.)
- A sample that passes its deadline is killed with its worker and written as an error row
  `timeout after S s`. A result that arrives late anyway (the worker recovered; the parent itself was
  paused) is treated the same way: a sample is never `ok` if it took longer than S, as measured by the
  parent, or by the worker's own clock for its end-to-end latency.
- The model's remaining samples then run in a fresh worker (load + warm-up again), so one stall costs
  one sample. After `MAX_TIMEOUTS_IN_A_ROW` consecutive timeouts the model is given up: its remaining
  samples become error rows saying so, and the run goes on with the next model.
- Every other phase of a worker has a deadline too, enforced from the parent (`PhaseDeadlines`), because a
  stall there (a stopped worker, a server that trickles bytes, a chat template that burns CPU) would
  otherwise hang the run before its first row: start (spawn + imports, until `Ready`) `START_S`; load
  `LOAD_BASE_S` + the weights at a floor read rate of `FLOOR_READ_MIB_S`; warm-up as many sample deadlines
  as warm-up runs; stop `STOP_S`, then the worker is killed. A missed start/load/warm-up deadline kills the
  worker and the model's samples become error rows naming the phase and the deadline.
"""

from __future__ import annotations

from dataclasses import dataclass

BASE_S = 60.0
FLOOR_PREFILL_TOK_S = 20.0
FLOOR_DECODE_TOK_S = 2.0
MAX_TIMEOUTS_IN_A_ROW = 2
START_S = 120.0  # spawn + imports (llama_cpp, onnxruntime, torch) on a slow, loaded machine
LOAD_BASE_S = 120.0
FLOOR_READ_MIB_S = 20.0  # weights read at this rate at worst (no-mmap load from a slow disk)
STOP_S = 10.0


@dataclass(frozen=True)
class PhaseDeadlines:
    """Seconds each phase of a worker may take before the parent kills it (None = no deadline: tests)."""

    start_s: float | None = START_S
    load_s: float | None = LOAD_BASE_S
    warmup_s: float | None = None
    stop_s: float = STOP_S


def phase_deadlines(sample_timeout_s: float, weight_bytes: int | None, warmup_runs: int) -> PhaseDeadlines:
    """The deadlines of a worker's phases for a model whose samples may take `sample_timeout_s` each."""
    load = LOAD_BASE_S + (weight_bytes or 0) / 2**20 / FLOOR_READ_MIB_S
    return PhaseDeadlines(
        start_s=START_S, load_s=round(load, 1), warmup_s=round(max(1, warmup_runs) * sample_timeout_s, 1)
    )


def phase_timeout_message(phase: str, timeout_s: float) -> str:
    return f"{phase} did not finish within {timeout_s:g} s (deadline); worker killed"


def default_sample_timeout(max_new_tokens: int, n_ctx: int | None) -> float:
    """Seconds a sample may take before the watchdog kills it, when --sample-timeout is not given."""
    prompt = max(0, (n_ctx or 0) - max_new_tokens)
    return round(BASE_S + prompt / FLOOR_PREFILL_TOK_S + max_new_tokens / FLOOR_DECODE_TOK_S, 1)


def timeout_message(timeout_s: float) -> str:
    return f"timeout after {timeout_s:g} s"


def overran(timeout_s: float | None, waited_s: float, e2e_s: float | None) -> bool:
    """True when a sample that did answer took longer than its deadline (parent's or worker's clock)."""
    if timeout_s is None:
        return False
    return waited_s > timeout_s or (e2e_s is not None and e2e_s > timeout_s)


__all__ = [
    "MAX_TIMEOUTS_IN_A_ROW",
    "PhaseDeadlines",
    "default_sample_timeout",
    "overran",
    "phase_deadlines",
    "phase_timeout_message",
    "timeout_message",
]
