"""Load: the run's prompts with N requests in flight against a server, per request and per level.

Why: a server is shared. One request at a time says how fast a model answers a user; N in flight says how many
users it serves and how much each one waits. For each level of `--concurrency 1,2,4` the same requests (every
talk x repeat, in the run's order) go through a bounded async pool (`httpx.AsyncClient`, at most N open), and
each request is timed exactly as a sample (harness.http.stream: t0 = sent, TTFT to the first content
chunk, server-counted tokens).

Per level (load_summary.csv, printed):
    output_tok_s   sum of generated tokens of ok requests / level wall time (first send -> last answer)
    requests_per_s ok requests / level wall time
    ttft_*_s       percentiles over requests; itl_*_ms over every chunk gap of every request (itl_unit)
    tpot_p50_ms    median per-request time per output token = (tN - t1) / (tokens - 1)
    goodput_pct    share of all requests (errors count as misses) meeting every --slo bound: TTFT <= ttft,
                   time per output token <= itl, end-to-end <= e2e -- the goodput of vLLM's and AIPerf's
                   benchmarks (per request, TPOT as the inter-token bound); goodput_req_s the same per second.

Levels that mean what they say: each level keeps N requests in flight -- N workers, each sending its next
request as soon as its last one answers -- until at least `min_requests` (default MIN_REQUESTS_PER_SLOT x N, and
never fewer than the run's requests) have been sent and `min_seconds` have passed, repeating the corpus as
needed (`cycle` in load_requests.csv counts the passes). A level is `held` (load_summary.csv, printed) when N
were really in flight for at least HELD_MIN_PCT % of its wall time, it was not cut by its time limit, and the
server has N slots (when the harness knows them: a managed server started with `--parallel`); otherwise
`held_note` says why, e.g. "the server has 1 slot for 4 in flight: the other requests queue".

The minimums come from `--level-requests COUNT` (min_requests) and `--level-seconds SECONDS` (min_seconds);
both are recorded per level in load_summary.csv (`min_requests`: the requests the level was held for).

Bounds: each request has the endpoint's timeout; each level stops launching at `level_limit_s` (LEVEL_LIMIT_S,
or min_seconds plus one request's timeout when that is longer: level_time_limit) and records the requests it
did not finish as errors. Both output files are opened through harness.safefs: a planted link in the run
directory is refused.
"""

from __future__ import annotations

import asyncio
import csv
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from harness import safefs
from harness.errors import HarnessError
from harness.http import (
    COUNT_PATH,
    EndpointConfig,
    RequestError,
    StreamOutcome,
    StreamParser,
    bad_stream,
    build_request,
    count_difference,
    http_failure,
    needs_text_count,
    stream_ok,
)
from harness.params import parse_int, parse_sweep
from harness.prompts import RenderedPrompt

LOAD_REQUESTS_FILE = "load_requests.csv"
LOAD_SUMMARY_FILE = "load_summary.csv"
# Why 2: with one request per slot a level is a single wave that starts together and drains; a second request
# per slot is what puts a new request beside running ones, which is the state a serving benchmark measures.
MIN_REQUESTS_PER_SLOT = 2
HELD_MIN_PCT = 50.0  # below this share of the wall time with N in flight, the level measured a drain
LEVEL_LIMIT_S = 600.0  # a level's wall-time bound when no minimum time asks for longer


def level_time_limit(min_seconds: float, request_timeout_s: float) -> float:
    """A level's wall-time bound: LEVEL_LIMIT_S, or the asked minimum plus one request's timeout when that is
    longer -- the requests in flight when the minimum is reached must be able to finish, not be cut."""
    return max(LEVEL_LIMIT_S, min_seconds + request_timeout_s)


def planned_requests(run_requests: int, concurrency: int, min_requests: int | None) -> int:
    """Requests a level sends at least: every one of the run's, and `min_requests` (default
    MIN_REQUESTS_PER_SLOT per slot), repeating the run's requests as needed."""
    return max(run_requests, MIN_REQUESTS_PER_SLOT * concurrency if min_requests is None else min_requests)


# --- options ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Slo:
    """Service-level bounds a request must meet to count as goodput (None = not bounded)."""

    ttft_s: float | None = None
    itl_ms: float | None = None
    e2e_s: float | None = None

    def __str__(self) -> str:
        parts = [
            f"ttft={self.ttft_s:g}s" if self.ttft_s is not None else "",
            f"itl={self.itl_ms:g}ms" if self.itl_ms is not None else "",
            f"e2e={self.e2e_s:g}s" if self.e2e_s is not None else "",
        ]
        return ",".join(p for p in parts if p)

    def met(self, ttft_s: float | None, tpot_ms: float | None, e2e_s: float | None) -> bool:
        checks = ((self.ttft_s, ttft_s), (self.itl_ms, tpot_ms), (self.e2e_s, e2e_s))
        return all(bound is None or (value is not None and value <= bound) for bound, value in checks)


DEFAULT_SLO = Slo(ttft_s=2.0, itl_ms=100.0)
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s)$")


def parse_slo(text: str) -> Slo:
    """`ttft=2s,itl=100ms[,e2e=30s]` -> Slo; a unit is required (s or ms)."""
    values: dict[str, float] = {}
    for part in text.split(","):
        key, _, raw = part.strip().partition("=")
        key = key.strip().lower()
        if key not in ("ttft", "itl", "e2e"):
            raise HarnessError(f'--slo {text}: unknown bound "{key}"; use ttft=, itl=, e2e= (e.g. ttft=2s,itl=100ms)')
        m = _DURATION.match(raw.strip())
        if not m:
            raise HarnessError(f'--slo {text}: "{raw}" needs a number and a unit, s or ms (e.g. {key}=2s)')
        seconds = float(m.group(1)) / (1000.0 if m.group(2) == "ms" else 1.0)
        if key in values:
            raise HarnessError(f"--slo {text}: {key} is given twice")
        values[key] = seconds
    return Slo(
        ttft_s=values.get("ttft"),
        itl_ms=values["itl"] * 1000.0 if "itl" in values else None,
        e2e_s=values.get("e2e"),
    )


def parse_concurrency(text: str) -> list[int]:
    """`1,2,4` or a range `1-8*2`: levels of requests in flight, each at least 1."""
    try:
        levels = parse_sweep(text, parse_int)
    except ValueError as exc:
        raise HarnessError(f"--concurrency {text}: {exc}") from None
    if not levels or any(level < 1 for level in levels) or len(set(levels)) != len(levels):
        raise HarnessError(f"--concurrency {text}: give distinct levels of 1 or more, e.g. 1,2,4")
    return levels


# --- one request ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadRequest:
    index: int
    talk_id: str
    repeat: int
    prompt: RenderedPrompt
    prompt_tokens: int | None  # local count when a tokenizer is known


@dataclass
class RequestRecord:
    concurrency: int
    index: int
    talk_id: str
    repeat: int
    status: str
    error: str
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    output_tokens_source: str = ""
    sent_s: float | None = None  # since the level started
    ttft_s: float | None = None
    e2e_s: float | None = None
    decode_tok_s: float | None = None
    tpot_ms: float | None = None
    itl_p50_ms: float | None = None
    itl_p90_ms: float | None = None
    itl_p99_ms: float | None = None
    itl_unit: str = ""
    meets_slo: bool = False
    cycle: int = 0  # which pass through the run's requests (a level repeats them to hold N in flight)
    ended_s: float | None = None  # since the level started: answered, failed or cut
    gaps_ms: tuple[float, ...] = ()  # every chunk gap, for the level's pooled ITL (not written)


def _record(level: int, req: LoadRequest, out: StreamOutcome, level_t0: int, slo: Slo) -> RequestRecord:
    times = out.chunk_ns
    n = out.completion_tokens
    ttft = (times[0] - out.start_ns) / 1e9 if times else None
    e2e = (times[-1] - out.start_ns) / 1e9 if times else None
    span = (times[-1] - times[0]) / 1e9 if len(times) >= 2 else 0.0
    decode = (n - 1) / span if n is not None and n >= 2 and span > 0 else None
    tpot = 1000.0 / decode if decode else None
    gaps = tuple(float(g) for g in np.diff(np.asarray(times, dtype=np.int64)) / 1e6) if len(times) >= 2 else ()
    pct = (lambda q: float(np.percentile(gaps, q))) if gaps else (lambda q: None)
    return RequestRecord(
        concurrency=level,
        index=req.index,
        talk_id=req.talk_id,
        repeat=req.repeat,
        status="ok",
        error="",
        prompt_tokens=out.prompt_tokens if out.prompt_tokens is not None else req.prompt_tokens,
        output_tokens=n,
        output_tokens_source=out.output_tokens_source,
        sent_s=(out.start_ns - level_t0) / 1e9,
        ttft_s=ttft,
        e2e_s=e2e,
        decode_tok_s=decode,
        tpot_ms=tpot,
        itl_p50_ms=pct(50),
        itl_p90_ms=pct(90),
        itl_p99_ms=pct(99),
        itl_unit=out.itl_unit,
        meets_slo=slo.met(ttft, tpot, e2e),
        gaps_ms=gaps,
    )


class LoadClient:
    """Streams one request at a time per call; many calls run concurrently on one AsyncClient."""

    def __init__(
        self,
        config: EndpointConfig,
        flavor: str,
        max_new_tokens: int,
        n_ctx: int,
        chat_template_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.flavor = flavor
        self.max_new_tokens = max_new_tokens
        self.n_ctx = n_ctx
        self.chat_template_kwargs = chat_template_kwargs  # as the per-sample requests send them

    async def stream(self, client: httpx.AsyncClient, prompt: RenderedPrompt) -> StreamOutcome:
        req = build_request(
            self.flavor, self.config, prompt, self.max_new_tokens, self.n_ctx, self.chat_template_kwargs
        )
        start = time.perf_counter_ns()
        parser = StreamParser(start, req.ndjson)
        deadline = start + int(self.config.timeout_s * 1e9)
        try:
            async with client.stream("POST", self.config.root + req.path, json=req.body) as response:
                if not stream_ok(response, req.ndjson):
                    await response.aread()
                    raise bad_stream(response)
                async for line in response.aiter_lines():
                    now = time.perf_counter_ns()
                    parser.feed(line, now)
                    if now > deadline:
                        raise RequestError(f"request timed out (limit {self.config.timeout_s:g} s)")
            outcome = parser.finish(time.perf_counter_ns())
            if needs_text_count(self.flavor, outcome, self.max_new_tokens):
                model = self.config.served_model
                full, empty = [
                    await client.post(self.config.root + COUNT_PATH, json={"model": model, "input": t})
                    for t in (outcome.text, "")
                ]
                outcome.completion_tokens = count_difference(full, empty) if outcome.text else 0
                outcome.output_tokens_source = "server_tokenize"
            return outcome
        except httpx.HTTPError as exc:
            raise http_failure(exc, self.config) from None


async def run_level(
    load: LoadClient,
    requests: Sequence[LoadRequest],
    concurrency: int,
    slo: Slo,
    level_limit_s: float,
    min_requests: int | None = None,
    min_seconds: float = 0.0,
) -> tuple[list[RequestRecord], float]:
    """N requests in flight (N = `concurrency`) until at least `min_requests` were sent (default: the run's
    requests, and MIN_REQUESTS_PER_SLOT per slot) and `min_seconds` passed, cycling through `requests`;
    (records in send order, level wall seconds)."""
    if not requests:
        return [], 0.0
    planned = planned_requests(len(requests), concurrency, min_requests)
    # No keep-alive: llama-server may close a connection right after a stream ends, and a request sent on it
    # then fails with "Server disconnected without sending a response" (seen with the real server). A new
    # loopback connection per request costs well under a millisecond (inside TTFT, as for a fresh client).
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
    t0 = time.perf_counter_ns()
    records: dict[int, RequestRecord] = {}
    sent: dict[int, int] = {}  # index -> send time (ns), for requests still in flight when the limit cuts them
    next_index = 0
    last_end = t0

    def since(ns: int) -> float:
        return (ns - t0) / 1e9

    def request_for(index: int) -> tuple[LoadRequest, int]:
        return requests[index % len(requests)], index // len(requests)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_index, last_end
        while next_index < planned or since(time.perf_counter_ns()) < min_seconds:
            index = next_index
            next_index += 1
            req, cycle = request_for(index)
            sent[index] = time.perf_counter_ns()
            try:
                outcome = await load.stream(client, req.prompt)
                record = _record(concurrency, req, outcome, t0, slo)
            except RequestError as exc:
                record = RequestRecord(concurrency, index, req.talk_id, req.repeat, "error", str(exc))
                record.sent_s = since(sent[index])
            end = time.perf_counter_ns()
            record.index, record.cycle, record.ended_s = index, cycle, since(end)
            records[index] = record
            last_end = max(last_end, end)

    async with httpx.AsyncClient(timeout=load.config.timeout(), headers=load.config.headers(), limits=limits) as client:
        # The level's clock starts here: making the client (its TLS context) takes tens of milliseconds, which
        # would otherwise count as time with nothing in flight.
        t0 = last_end = time.perf_counter_ns()
        workers = [asyncio.ensure_future(worker(client)) for _ in range(concurrency)]
        _, pending = await asyncio.wait(workers, timeout=level_limit_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
            last_end = time.perf_counter_ns()
    cut = f"level time limit {level_limit_s:g} s reached"
    for index in range(max(planned, next_index)):
        if index not in records:  # cut in flight, or never sent
            req, cycle = request_for(index)
            record = RequestRecord(concurrency, index, req.talk_id, req.repeat, "error", cut, cycle=cycle)
            if index in sent:
                record.sent_s, record.ended_s = since(sent[index]), since(last_end)
            records[index] = record
    return [records[i] for i in sorted(records)], (last_end - t0) / 1e9


def _pct(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def in_flight(records: Sequence[RequestRecord], level: int, wall_s: float) -> tuple[float, float]:
    """(seconds with at least `level` requests in flight, mean requests in flight) over the level's wall time,
    from each request's send and end times."""
    events = sorted(
        [(r.sent_s, 1) for r in records if r.sent_s is not None and r.ended_s is not None]
        + [(r.ended_s, -1) for r in records if r.sent_s is not None and r.ended_s is not None]
    )
    full = busy = 0.0
    count, previous = 0, 0.0
    for at, step in events:
        span = max(0.0, at - previous)
        busy += count * span
        if count >= level:
            full += span
        count, previous = count + step, at
    return full, (busy / wall_s if wall_s > 0 else 0.0)


def held_verdict(
    records: Sequence[RequestRecord], level: int, wall_s: float, slots: int | None, min_seconds: float = 0.0
) -> tuple[bool, str, float, float]:
    """(held, why not, seconds with N in flight, mean in flight) for one level."""
    full_s, mean = in_flight(records, level, wall_s)
    pct = 100.0 * full_s / wall_s if wall_s > 0 else 0.0
    why = ""
    if slots is not None and slots < level:
        why = f"the server has {slots} slot{'s' if slots != 1 else ''} for {level} in flight: the others queue"
    elif any(r.status == "error" and r.error.startswith("level time limit") for r in records):
        why = "cut by the level time limit"
    elif pct < HELD_MIN_PCT:
        why = f"{level} in flight only {pct:.0f} % of the level's {wall_s:.1f} s (needs {HELD_MIN_PCT:g} %)"
    elif min_seconds > 0 and full_s < min_seconds:
        why = f"{level} in flight {full_s:.1f} s of the {min_seconds:g} s asked for"
    return not why, why, full_s, mean


def summarize_level(
    records: Sequence[RequestRecord],
    wall_s: float,
    slo: Slo,
    slots: int | None = None,
    min_seconds: float = 0.0,
    min_requests: int | None = None,
) -> dict[str, Any]:
    """One level's row of load_summary.csv (and run.json `load`); `min_requests` is the number the level was
    held for (planned_requests), `min_seconds` the time asked for."""
    ok = [r for r in records if r.status == "ok"]
    ttfts = [r.ttft_s for r in ok if r.ttft_s is not None]
    gaps = [g for r in ok for g in r.gaps_ms]
    tpots = [r.tpot_ms for r in ok if r.tpot_ms is not None]
    e2es = [r.e2e_s for r in ok if r.e2e_s is not None]
    tokens = sum(r.output_tokens or 0 for r in ok)
    good = sum(1 for r in ok if r.meets_slo)
    per_s = (lambda x: x / wall_s) if wall_s > 0 else (lambda x: None)
    units = {r.itl_unit for r in ok}
    level = records[0].concurrency if records else 0
    held, why, full_s, mean = held_verdict(records, level, wall_s, slots, min_seconds)
    return {
        "concurrency": records[0].concurrency if records else None,
        "requests": len(records),
        "ok": len(ok),
        "errors": len(records) - len(ok),
        "wall_s": wall_s,
        "output_tok_s": per_s(tokens),
        "requests_per_s": per_s(len(ok)),
        "ttft_p50_s": _pct(ttfts, 50),
        "ttft_p90_s": _pct(ttfts, 90),
        "ttft_p99_s": _pct(ttfts, 99),
        "itl_p50_ms": _pct(gaps, 50),
        "itl_p90_ms": _pct(gaps, 90),
        "itl_p99_ms": _pct(gaps, 99),
        "itl_unit": "token" if units == {"token"} else "chunk" if units else "",
        "tpot_p50_ms": _pct(tpots, 50),
        "e2e_p50_s": _pct(e2es, 50),
        "slo": str(slo),
        "goodput_pct": 100.0 * good / len(records) if records else None,
        "goodput_req_s": per_s(good),
        "server_slots": slots,
        "min_requests": min_requests,
        "min_seconds": min_seconds,
        "mean_in_flight": mean,
        "full_in_flight_s": full_s,
        "held": held,
        "held_note": why,
    }


REQUEST_COLUMNS = [f.name for f in fields(RequestRecord) if f.name != "gaps_ms"]


def _write_csv(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str], append: bool) -> None:
    # check_target refuses a link or special file before the header decision: is_file() would follow a link.
    new = not (append and safefs.check_target(path))
    with safefs.open_output(path, append=not new) as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerows(rows)


def run_load(
    load: LoadClient,
    requests: Sequence[LoadRequest],
    levels: Sequence[int],
    slo: Slo,
    run_dir: Path,
    model_id: str,
    echo: Callable[[str], None] = print,
    level_limit_s: float = LEVEL_LIMIT_S,
    slots: int | None = None,
    min_requests: int | None = None,
    min_seconds: float = 0.0,
) -> list[dict[str, Any]]:
    """Every level in turn; appends to load_requests.csv and load_summary.csv in `run_dir`; one line per level.
    `slots`: how many requests the server runs at once, when known (llama-server's --parallel)."""
    summaries: list[dict[str, Any]] = []
    for level in levels:
        records, wall = asyncio.run(
            run_level(load, requests, level, slo, level_limit_s, min_requests=min_requests, min_seconds=min_seconds)
        )
        held_for = planned_requests(len(requests), level, min_requests)
        summary = {"model": model_id, **summarize_level(records, wall, slo, slots, min_seconds, held_for)}
        rows = [{"model": model_id, **{k: v for k, v in asdict(r).items() if k != "gaps_ms"}} for r in records]
        _write_csv(run_dir / LOAD_REQUESTS_FILE, rows, ["model", *REQUEST_COLUMNS], append=True)
        _write_csv(run_dir / LOAD_SUMMARY_FILE, [summary], list(summary), append=True)
        summaries.append(summary)
        echo(format_summary(summary))
        for r in records:
            if r.status != "ok":
                echo(f"   load c={level} {r.talk_id} r{r.repeat}: ERROR {r.error}")
    return summaries


def format_summary(s: dict[str, Any]) -> str:
    def f(v: Any, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    return (
        f"   load c={s['concurrency']}: {s['ok']}/{s['requests']} ok in {f(s['wall_s'], '.1f')} s | "
        f"{f(s['output_tok_s'], '.1f')} out tok/s | {f(s['requests_per_s'], '.2f')} req/s | TTFT p50/p90/p99 "
        f"{f(s['ttft_p50_s'], '.3f')}/{f(s['ttft_p90_s'], '.3f')}/{f(s['ttft_p99_s'], '.3f')} s | "
        f"ITL p50/p99 {f(s['itl_p50_ms'], '.1f')}/{f(s['itl_p99_ms'], '.1f')} ms per {s['itl_unit'] or '-'} | "
        f"goodput {f(s['goodput_pct'], '.0f')}% ({s['slo']})"
        + ("" if s.get("held", True) else f" | NOT HELD: {s.get('held_note') or 'see load_summary.csv'}")
    )
