"""`harness crosscheck` and `harness tools build`: the interleaved comparison with llama-bench (ratios, intervals,
verdicts, the settings passed to llama-bench), the tools cache (keyed by version and CPU flags, found before
PATH), and -- where the tools build exists -- a real crosscheck of the generated tiny model."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from harness.crosscheck import build as tools
from harness.crosscheck import measure
from harness.crosscheck.measure import BenchSample, HarnessSample, Settings
from harness.errors import HarnessError

BENCH_TEST = {
    "build_commit": "0c1e570", "model_type": "qwen2 ?B F32", "n_threads": 2, "n_batch": 512, "n_ubatch": 512,
    "flash_attn": False, "n_prompt": 0, "n_gen": 16, "n_depth": 100, "avg_ts": 50.0, "stddev_ts": 0.0,
    "samples_ns": [320000000], "samples_ts": [50.0],
}  # fmt: skip


def _harness_sample(prefill: float = 300.0, decode: float = 51.0) -> HarnessSample:
    return HarnessSample(
        prompt_tokens=100, output_tokens=16, ttft_s=100 / prefill, prefill_tok_s=prefill, decode_tok_s=decode,
        itl_p50_ms=19.0, itl_p99_ms=25.0, engine_prefill_tok_s=prefill * 1.01, engine_decode_tok_s=decode * 1.01,
        repack=False, n_batch=256, n_ubatch=128,
    )  # fmt: skip


def test_llama_bench_json_is_read_with_its_samples() -> None:
    text = "some log line\n" + json.dumps([BENCH_TEST, {**BENCH_TEST, "samples_ts": [40.0, 60.0]}])
    tests = measure.parse_bench_json(text)
    assert measure._rate(tests, "n_gen") == (50.0, [50.0, 40.0, 60.0], "0c1e570")
    with pytest.raises(HarnessError, match="no JSON test list"):
        measure.parse_bench_json("error: unknown argument --repack")
    with pytest.raises(HarnessError, match="no test with n_prompt > 0"):
        measure._rate(tests, "n_prompt")


@pytest.mark.parametrize(
    ("lo", "hi", "expected"),
    [(0.98, 1.02, "agrees"), (1.05, 1.10, "differs"), (0.80, 0.95, "differs"), (0.99, 1.05, "inconclusive"),
     (None, None, "inconclusive")],
)  # fmt: skip
def test_verdict_against_the_tolerance(lo: float | None, hi: float | None, expected: str) -> None:
    assert measure.verdict({"mean": 1.0, "lo": lo, "hi": hi, "n": 3}, 3.0) == expected


def test_outliers_are_rounds_far_from_the_median() -> None:
    assert measure.outliers([310.0, 300.0, 133.0, 305.0]) == [2]
    assert measure.outliers([1.0, 2.0]) == []  # too few to have a median worth the name


def test_summary_ratios_and_intervals() -> None:
    harness = [_harness_sample(decode=d) for d in (51.0, 50.0, 49.0)]
    harness[1].noisy = True  # the harness's own noise flag is carried, not judged here
    bench = [BenchSample(300.0, 50.0, [300.0], [50.0], "abc", []) for _ in harness]
    report = measure.summarize(harness, bench, 3.0)
    assert report["noisy_rounds"] == [1]
    assert any(line.startswith("noisy: the harness flagged round(s) 2") for line in measure.format_report(
        {**report, "settings": {"model": "m", "talk": "t", "depth": 1, "tokens": 1, "threads": 1, "flash_attn": False,
                                "repack_used": None, "n_batch": 1, "n_ubatch": 1, "poll": 50, "prio": 0, "rounds": 3}}
    ))  # fmt: skip
    decode = report["ratios"]["decode"]
    assert decode["per_round"] == pytest.approx([1.02, 1.0, 0.98]) and decode["mean"] == pytest.approx(1.0)
    assert decode["lo"] < 1.0 < decode["hi"] and decode["n"] == 3
    assert report["ratios"]["prefill"]["per_round"] == pytest.approx([1.0] * 3)
    assert report["llama_bench"]["ms_per_token"]["mean"] == pytest.approx(20.0)
    assert report["harness"]["itl_p99_ms"]["mean"] == 25.0


def test_control_arm_measures_the_instruments_own_spread() -> None:
    harness = [_harness_sample(decode=50.0) for _ in range(4)]
    bench = [BenchSample(300.0, tg, [300.0], [tg], "abc", []) for tg in (50.0, 50.0, 50.0, 50.0)]
    control = [BenchSample(300.0, tg, [300.0], [tg], "abc", []) for tg in (40.0, 60.0, 45.0, 55.0)]
    report = measure.summarize(harness, bench, 3.0, control)
    aa = report["ratios"]["control_decode"]
    assert aa["per_round"] == pytest.approx([0.8, 1.2, 0.9, 1.1]) and aa["verdict"] == "inconclusive"
    assert aa["rounds_needed"] > 4  # a spread of ~18 % per round cannot resolve 3 % in 4 rounds
    assert report["ratios"]["control_prefill"]["verdict"] == "agrees"
    assert report["ratios"]["decode"]["rounds_needed"] == 2  # no spread at all: the minimum for an interval
    assert report["control"]["tg_tok_s"]["mean"] == pytest.approx(50.0)
    assert "control_decode" not in measure.summarize(harness, bench, 3.0)["ratios"]  # only when asked


def test_rounds_needed_follows_the_t_interval() -> None:
    from scipy import stats

    values = [0.9, 1.1, 0.95, 1.05, 1.0]
    n = measure.rounds_needed(values, 3.0)
    assert n is not None
    sd = float(__import__("numpy").std(values, ddof=1))
    half = lambda k: stats.t.ppf(0.975, k - 1) * sd / k**0.5  # noqa: E731
    assert half(n) <= 0.03 < half(n - 1)  # the smallest such n
    assert measure.rounds_needed([1.0], 3.0) is None
    assert measure.rounds_needed([0.1, 10.0], 0.001) is None  # beyond MAX_ROUNDS_NEEDED


def test_round_order_keeps_the_control_next_to_llama_bench() -> None:
    assert measure.round_order(0, False) == ("harness", "bench")
    assert measure.round_order(1, False) == ("bench", "harness")
    assert measure.round_order(0, True) == ("harness", "bench", "control")
    assert measure.round_order(1, True) == ("control", "bench", "harness")


def _fake_bench(tmp_path: Path) -> Path:
    """A llama-bench stand-in: records its argv, prints one test of the asked kind as JSON."""
    script = tmp_path / "llama-bench"
    log = tmp_path / "bench-calls.jsonl"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        "a = sys.argv[1:]\n"
        "v = dict(zip(a[::2], a[1::2]))\n"
        f"open({str(log)!r}, 'a').write(json.dumps(a) + '\\n')\n"
        "p, n = int(v['-p']), int(v['-n'])\n"
        "print(json.dumps([{'build_commit': 'fake', 'n_prompt': p, 'n_gen': n, 'n_depth': int(v['-d']),"
        " 'avg_ts': 250.0 if p else 50.0, 'samples_ts': [250.0 if p else 50.0]}]))\n",
        encoding="utf-8",
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_rounds_interleave_and_llama_bench_gets_the_harness_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    order: list[str] = []

    def fake_harness(s: Settings, out: Path) -> HarnessSample:
        order.append("harness")
        return _harness_sample()

    real_bench = measure.run_bench

    def traced_bench(*args: object) -> BenchSample:
        order.append("bench")
        return real_bench(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(measure, "run_harness", fake_harness)
    monkeypatch.setattr(measure, "run_bench", traced_bench)
    settings = Settings(model="m", talk="t", threads=2, tokens=16, rounds=3, flash_attn=True, poll=0, prio=1)
    lines: list[str] = []
    report = measure.crosscheck(settings, tmp_path / "m.gguf", _fake_bench(tmp_path), tmp_path / "run", 3.0,
                                echo=lines.append)  # fmt: skip
    assert order == ["harness", "bench", "bench", "harness", "harness", "bench"]  # the first arm alternates
    calls = [json.loads(line) for line in (tmp_path / "bench-calls.jsonl").read_text().splitlines()]
    pp, tg = (dict(zip(c[::2], c[1::2], strict=False)) for c in calls[:2])
    assert (pp["-p"], pp["-n"], pp["-d"]) == ("100", "0", "0")  # pp<prompt tokens> from an empty cache
    assert (tg["-p"], tg["-n"], tg["-d"]) == ("0", "16", "100")  # tg<tokens> @ d<prompt tokens>
    for args in (pp, tg):
        assert args["-t"] == "2" and args["-fa"] == "1" and args["--repack"] == "0"  # repack as the harness ran
        assert (args["-b"], args["-ub"], args["--poll"], args["--prio"], args["-r"]) == ("256", "128", "0", "1", "1")
    assert report["ratios"]["decode"]["mean"] == pytest.approx(51.0 / 50.0)
    assert report["ratios"]["prefill"]["mean"] == pytest.approx(300.0 / 250.0)
    assert report["ratios"]["prefill"]["verdict"] == "differs"
    saved = json.loads((tmp_path / "run" / measure.CROSSCHECK_JSON).read_text(encoding="utf-8"))
    assert saved["settings"]["depth"] == 100 and len(saved["rounds"]) == 3
    assert saved["settings"]["llama_bench_build_commit"] == "fake"
    assert report["ratios"]["decode"]["verdict"] == "agrees"  # 1.02 every round: inside 3 %
    assert any(line.startswith("ratio prefill") and "differs" in line for line in lines)
    assert any(line.startswith("ratio decode") and "agrees" in line for line in lines)
    assert not any(line.startswith("A/A") for line in lines)
    (tmp_path / "bench-calls.jsonl").unlink()
    order.clear()
    with_control = Settings(model="m", talk="t", threads=2, tokens=16, rounds=2, control=True)
    report = measure.crosscheck(with_control, tmp_path / "m.gguf", _fake_bench(tmp_path), tmp_path / "run2", 3.0,
                                echo=lines.append)  # fmt: skip
    assert order == ["harness", "bench", "bench", "bench", "bench", "harness"]  # 2 llama-bench arms per round
    assert len((tmp_path / "bench-calls.jsonl").read_text().splitlines()) == 8  # pp and tg, 4 arms
    assert report["ratios"]["control_decode"]["mean"] == pytest.approx(1.0) and "control" in report["rounds"][0]
    assert any(line.startswith("A/A   decode") and "agrees" in line for line in lines)


def test_a_failing_llama_bench_is_one_line(tmp_path: Path) -> None:
    script = tmp_path / "llama-bench"
    script.write_text("#!/bin/sh\necho 'error: unknown argument: --repack' >&2\nexit 1\n", encoding="utf-8")
    script.chmod(0o755)
    settings = Settings(model="m", talk="t", threads=1, tokens=4, rounds=1)
    with pytest.raises(HarnessError, match=r"llama-bench exited with code 1 \(error: unknown argument: --repack\)"):
        measure.run_bench(script, tmp_path / "m.gguf", settings, 10, _harness_sample())


def test_cli_without_llama_bench_names_the_build_command(tmp_path: Path, cli_env: dict[str, str]) -> None:
    env = {**cli_env, "HARNESS_TOOLS": str(tmp_path / "none"), "PATH": os.path.dirname(sys.executable)}
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "crosscheck", "--models", "tiny-qwen2", "--out", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no llama-bench found" in proc.stderr and "tools build" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "crosscheck", "--models", "tiny-qwen2", "--talks", "nope"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2 and 'unknown talk "nope"' in proc.stderr


# --- the tools cache ---------------------------------------------------------------------------------------
def test_build_key_follows_version_and_cpu_flags(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nflags : fpu sse3 avx2 fma hypervisor amx_tile\n", encoding="utf-8")
    assert tools.cpu_isa_flags(cpuinfo) == ["amx_tile", "avx2", "fma", "sse3"]  # only what a native build uses
    key = tools.build_key("0.3.36", ["avx2", "fma"])
    assert key.startswith("llama.cpp-0.3.36-") and key != tools.build_key("0.3.37", ["avx2", "fma"])
    assert key != tools.build_key("0.3.36", ["avx2", "fma", "avx512f"])
    assert key == tools.build_key("0.3.36", ["fma", "avx2"])


def test_find_tool_prefers_a_complete_cached_build_over_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_TOOLS", str(tmp_path / "tools"))
    on_path = tmp_path / "bin"
    on_path.mkdir()
    for name in tools.TOOLS:
        (on_path / name).write_text("#!/bin/sh\n", encoding="utf-8")
        (on_path / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(on_path))
    assert tools.find_tool("llama-server") == on_path / "llama-server"  # nothing cached yet
    cached = tools.build_dir()
    cached.mkdir(parents=True)
    for name in tools.TOOLS:
        (cached / name).write_text("#!/bin/sh\n", encoding="utf-8")
        (cached / name).chmod(0o755)
    assert tools.manifest() is None and tools.find_tool("llama-server") == on_path / "llama-server"  # incomplete
    (cached / tools.MANIFEST).write_text(json.dumps({"version": "x"}), encoding="utf-8")
    assert tools.find_tool("llama-server") == cached / "llama-server"
    result = tools.ensure_built()  # cached: no build, instant
    assert result.cached and result.directory == cached


# --- for real, where `harness tools build` has run ------------------------------------------------------
@pytest.mark.skipif(tools.manifest() is None, reason="no llama-bench built (run: python -m harness tools build)")
def test_real_crosscheck_of_the_tiny_model(tmp_path: Path, cli_env: dict[str, str]) -> None:
    pytest.importorskip("llama_cpp")
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "crosscheck", "--models", "tiny-qwen2", "--talks", "alibaba-qwen",
         "--rounds", "2", "--max-new-tokens", "16", "--threads", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, env=cli_env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr + proc.stdout
    run_dir = Path(proc.stdout.strip().splitlines()[-1])
    report = json.loads((run_dir / measure.CROSSCHECK_JSON).read_text(encoding="utf-8"))
    assert report["settings"]["depth"] > 100 and len(report["rounds"]) == 2
    for name in ("prefill", "decode"):
        ratio = report["ratios"][name]
        assert ratio["n"] == 2 and ratio["mean"] > 0 and ratio["lo"] is not None
        assert ratio["verdict"] in ("agrees", "differs", "inconclusive")
    assert "ratio decode" in proc.stdout and "ms per token" in proc.stdout


def test_llama_server_command_uses_the_build_and_a_slot_per_level(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.servers import ServerSettings, server_class

    monkeypatch.setenv("HARNESS_TOOLS", str(tmp_path / "tools"))
    cached = tools.build_dir()
    cached.mkdir(parents=True)
    for name in tools.TOOLS:
        (cached / name).write_text("#!/bin/sh\n", encoding="utf-8")
        (cached / name).chmod(0o755)
    (cached / tools.MANIFEST).write_text("{}", encoding="utf-8")
    monkeypatch.setenv("PATH", "")
    server_class("llama-server").preflight()  # found in the tools cache, though not on PATH
    settings = ServerSettings("m", tmp_path / "m.gguf", threads=2, n_ctx=4096, log_path=tmp_path / "log", parallel=4)
    server = server_class("llama-server")(settings)
    command = server.command()

    def value(flag: str) -> str:
        return command[command.index(flag) + 1]

    assert command[0] == str(cached / "llama-server") and server.slots == 4
    assert value("--parallel") == "4" and value("--ctx-size") == str(4 * 4096)  # n_ctx per slot
