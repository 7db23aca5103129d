"""Load levels against a loopback fake llama-server: requests in flight are bounded, per-level figures and
goodput follow their definitions, errors and the level time limit become error records."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path

import pytest
from fakeserver import Reply, fake_server, json_reply, recorded

from harness.errors import HarnessError
from harness.http import EndpointConfig
from harness.load import (
    LOAD_REQUESTS_FILE,
    LOAD_SUMMARY_FILE,
    LoadClient,
    LoadRequest,
    Slo,
    parse_concurrency,
    parse_slo,
    run_level,
    run_load,
)
from harness.prompts import load_template

TEMPLATE = load_template("zh", "chat")


def _requests(n: int) -> list[LoadRequest]:
    return [LoadRequest(i, f"talk{i % 3}", i // 3, TEMPLATE.render(f"第{i}篇演讲。"), None) for i in range(n)]


def _client(url: str, timeout_s: float = 10.0) -> LoadClient:
    config = EndpointConfig(endpoint=url, served_model="qwen2.5-0.5b", server="llama-server", timeout_s=timeout_s)
    return LoadClient(config, "llama-server", max_new_tokens=16, n_ctx=4096)


def test_parse_slo_and_concurrency() -> None:
    assert parse_slo("ttft=2s,itl=100ms") == Slo(ttft_s=2.0, itl_ms=100.0)
    assert parse_slo("e2e=1500ms") == Slo(e2e_s=1.5)
    for bad in ("ttft=2", "tfft=2s", "ttft=2s,ttft=1s", "itl=fast"):
        with pytest.raises(HarnessError, match="--slo"):
            parse_slo(bad)
    assert parse_concurrency("1,2,4") == [1, 2, 4] and parse_concurrency("1-8*2") == [1, 2, 4, 8]
    for bad in ("0", "2,2", "a"):
        with pytest.raises(HarnessError, match="--concurrency"):
            parse_concurrency(bad)


def test_level_keeps_n_in_flight_and_summarises(tmp_path: Path) -> None:
    routes = {("POST", "/v1/chat/completions"): Reply(lines=recorded("llama_server_chat.sse"), pause_s=0.02)}
    with fake_server(routes) as server:
        summaries = run_load(
            _client(server.url),
            _requests(6),
            [1, 3],
            Slo(ttft_s=5.0, itl_ms=1000.0),
            tmp_path,
            "m",
            echo=lambda line: None,
        )
        assert server.max_in_flight == 3  # never more than the highest level
    one, three = summaries
    assert one["requests"] == three["requests"] == 6 and one["errors"] == three["errors"] == 0
    # Three in flight finish the same six requests faster than one at a time.
    assert three["wall_s"] < one["wall_s"]
    assert three["requests_per_s"] == pytest.approx(6 / three["wall_s"])
    assert three["output_tok_s"] == pytest.approx(6 * 7 / three["wall_s"])  # 7 tokens each, by usage
    assert one["goodput_pct"] == 100.0 and one["itl_unit"] == "chunk"
    assert one["ttft_p50_s"] <= one["ttft_p90_s"] <= one["ttft_p99_s"]
    rows = list(csv.DictReader((tmp_path / LOAD_REQUESTS_FILE).open(encoding="utf-8")))
    assert len(rows) == 12 and {r["concurrency"] for r in rows} == {"1", "3"}
    assert all(r["output_tokens"] == "7" and r["output_tokens_source"] == "usage" for r in rows)
    levels = list(csv.DictReader((tmp_path / LOAD_SUMMARY_FILE).open(encoding="utf-8")))
    assert [r["concurrency"] for r in levels] == ["1", "3"] and levels[0]["slo"] == "ttft=5s,itl=1000ms"


def test_goodput_counts_misses_and_errors() -> None:
    replies = iter(
        [Reply(lines=recorded("llama_server_chat.sse"), pause_s=0.01)] * 3
        + [json_reply({"error": {"message": "busy"}}, 503)]
    )
    routes = {("POST", "/v1/chat/completions"): lambda body: next(replies)}
    with fake_server(routes) as server:
        records, _ = asyncio.run(run_level(_client(server.url), _requests(4), 1, Slo(ttft_s=60.0), 60.0))
    assert [r.status for r in records] == ["ok", "ok", "ok", "error"]
    assert "HTTP 503" in records[3].error and "busy" in records[3].error
    assert [r.meets_slo for r in records] == [True, True, True, False]
    assert not Slo(ttft_s=1e-6).met(records[0].ttft_s, records[0].tpot_ms, records[0].e2e_s)
    tpot = records[0].tpot_ms
    assert tpot == pytest.approx(1000.0 / records[0].decode_tok_s)


def test_level_time_limit_turns_unfinished_requests_into_errors() -> None:
    routes = {("POST", "/v1/chat/completions"): Reply(lines=recorded("llama_server_chat.sse"), delay_s=1.0)}
    with fake_server(routes) as server:
        records, wall = asyncio.run(run_level(_client(server.url), _requests(4), 1, Slo(), level_limit_s=1.5))
    assert [r.status for r in records].count("ok") == 1
    assert all("time limit" in r.error for r in records if r.status == "error")
    assert wall < 3.0
