"""The worker process: one per model. Loads the backend, warms up, runs the samples.

It talks to the parent over a pipe and waits for a "go" before each sample, so the parent's own work
(scoring, writing the row, reading memory) never overlaps a timed generation. Timing happens here, in
the thread that drives the engine; memory is observed from the parent.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from harness.backends import backend_class
from harness.backends.base import BackendOptions
from harness.errors import HarnessError
from harness.prompts import PromptTemplate
from harness.scenarios.summarize import SummarizeConfig, SummarizeScenario
from harness.trackers.latency import LatencyStats


@dataclass(frozen=True)
class SampleSpec:
    index: int
    talk_id: str
    repeat: int
    text: str


@dataclass(frozen=True)
class ModelJob:
    model_id: str
    backend: str
    model_path: str
    prompt_style: str
    options: BackendOptions
    template: PromptTemplate
    scenario: SummarizeConfig
    samples: list[SampleSpec]
    warmup: int = 1
    cooldown_s: float = 0.0
    env: dict[str, str] = field(default_factory=dict)


Message = tuple[Any, ...]


def _wait_go(conn: Connection) -> bool:
    msg = conn.recv()
    return bool(msg and msg[0] == "go")


def worker_main(conn: Connection, job: ModelJob) -> None:
    os.environ.update(job.env)
    try:
        _run(conn, job)
    except Exception as exc:  # report, don't die silently: the parent turns this into error rows
        conn.send(("fatal", _one_line(exc), traceback.format_exc()))
    finally:
        conn.close()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, HarnessError) else text


def _run(conn: Connection, job: ModelJob) -> None:
    cls = backend_class(job.backend)
    backend = cls(Path(job.model_path), job.options, job.prompt_style)
    conn.send(("ready",))  # imports done: the parent records RSS "before load" now
    if not _wait_go(conn):
        return
    t0 = time.perf_counter()
    info = backend.load()
    load_s = time.perf_counter() - t0
    conn.send(
        (
            "loaded",
            {
                "load_s": load_s,
                "provider": info.provider,
                "n_ctx": info.n_ctx,
                "mmap": info.mmap,
                "files": [str(p) for p in info.model_files],
                "extra": info.extra,
                "system_info": cls.system_info(),
            },
        )
    )
    scenario = SummarizeScenario(backend, job.template, info.n_ctx, job.scenario)

    if not _wait_go(conn):
        return
    warmup_s = 0.0
    if job.warmup and job.samples:
        # Page weights in and allocate compute buffers; short, but over a real prompt length.
        prompt = scenario.prepare(job.samples[0].text)
        t0 = time.perf_counter()
        for _ in range(job.warmup):
            scenario.run(prompt, max_new_tokens=min(16, job.scenario.max_new_tokens))
        warmup_s = time.perf_counter() - t0
    conn.send(("warm", {"warmup_s": warmup_s, "warmup_runs": job.warmup}))

    for i, sample in enumerate(job.samples):
        if not _wait_go(conn):
            return
        if i and job.cooldown_s > 0:
            time.sleep(job.cooldown_s)
        try:
            prompt = scenario.prepare(sample.text)
            conn.send(("sample_start", sample.index))
            result = scenario.run(prompt)
            stats = LatencyStats.from_generation(len(prompt.ids), result)
            if result.prompt_tokens_evaluated is not None and result.prompt_tokens_evaluated != len(
                prompt.ids
            ):
                # A mismatch means the engine reused a cached prefix: TTFT/prefill would be fiction.
                raise RuntimeError(
                    f"engine evaluated {result.prompt_tokens_evaluated} prompt tokens, expected {len(prompt.ids)} "
                    "(KV-cache prefix reuse?)"
                )
            conn.send(
                (
                    "sample_done",
                    sample.index,
                    {
                        "latency": stats.as_row(),
                        "text": result.text,
                        "stop_reason": result.stop_reason,
                        "truncated": prompt.truncated,
                        "input_chars": prompt.input_chars,
                        "engine_counters": asdict(result.counters) if result.counters else None,
                    },
                )
            )
        except Exception as exc:
            conn.send(("sample_error", sample.index, _one_line(exc)))
    backend.close()
    conn.send(("done",))
