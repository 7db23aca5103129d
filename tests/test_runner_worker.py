"""The runner's process model, memory tracker and failure paths, with the model-free `dummy` backend."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from harness.run import RunConfig, Runner

DUMMY = """\
- id: {id}
  backend: dummy
  quant: none
  n_ctx: 4096
  prompt_style: chat
  source: {{kind: path, path: {path}}}
  flags: {opts}
"""


def _models(write_models, path: Path, **entries: dict) -> Path:
    body = "".join(DUMMY.format(id=name, path=path, opts=opts) for name, opts in entries.items())
    return write_models(body)


def _run(models_file: Path, out: Path, models: list[str], **kw) -> tuple[Path, int, pd.DataFrame]:
    cfg = RunConfig(
        models=models,
        models_file=models_file,
        out=out,
        talks=["alibaba-qwen", "qualcomm-npu"],
        measure_bandwidth=False,
        max_new_tokens=8,
        **kw,
    )
    run_dir, errors = Runner(cfg, echo=lambda _line: None).run()
    return run_dir, errors, pd.read_csv(run_dir / "results.csv")


def test_peak_memory_of_a_known_workload(write_models, dummy_model_file: Path, tmp_path: Path) -> None:
    # 300 MiB resident from load, plus a 200 MiB spike inside each generation, freed before it returns.
    models = _models(
        write_models, dummy_model_file, mem={"alloc_mb": 300, "sample_alloc_mb": 200, "tok_per_s": 200}
    )
    _, errors, df = _run(models, tmp_path, ["mem"])
    assert errors == 0
    row = df.iloc[0]
    base = row["rss_before_load_mb"]
    # Tolerance: the interpreter's own growth between "ready" and the sample (imports, buffers) is
    # well under 40 MiB; the known workload is 500 MiB.
    assert row["rss_after_load_mb"] - base == pytest.approx(300, abs=40)
    assert row["peak_rss_mb"] - base == pytest.approx(500, abs=40)
    # the spike was freed: the process ends the sample far below its peak
    assert row["uss_mb"] < row["peak_rss_mb"] - 150


def test_each_model_is_measured_in_its_own_process(
    write_models, dummy_model_file: Path, tmp_path: Path
) -> None:
    models = _models(write_models, dummy_model_file, big={"alloc_mb": 400}, small={"alloc_mb": 20})
    _, _, df = _run(models, tmp_path, ["big", "small"])
    big = df[df["model"] == "big"]["peak_rss_mb"].max()
    small = df[df["model"] == "small"]["peak_rss_mb"].max()
    assert big - small > 300  # the big model's memory does not leak into the small one's figure


def test_killed_worker_gives_error_rows_and_the_run_goes_on(
    write_models, dummy_model_file: Path, tmp_path: Path
) -> None:
    # call 1 is the warm-up; call 3 is the second timed sample: SIGKILL there
    models = _models(write_models, dummy_model_file, dies={"kill_at_call": 3}, fine={})
    run_dir, errors, df = _run(models, tmp_path, ["dies", "fine"], repeats=2)
    dies = df[df["model"] == "dies"]
    assert len(dies) == 4 and errors == 3
    assert dies.iloc[0]["status"] == "ok"  # written before the crash, kept
    assert (dies.iloc[1:]["status"] == "error").all()
    assert dies.iloc[1]["error"] == "worker process killed by signal SIGKILL during sample"  # the phase it died in
    assert (df[df["model"] == "fine"]["status"] == "ok").all() and len(df[df["model"] == "fine"]) == 4
    assert len((run_dir / "summaries.jsonl").read_text(encoding="utf-8").splitlines()) == 8


def test_exception_in_one_sample_is_an_error_row_only(
    write_models, dummy_model_file: Path, tmp_path: Path
) -> None:
    models = _models(write_models, dummy_model_file, flaky={"raise_at_call": 2})
    _, errors, df = _run(models, tmp_path, ["flaky"])
    assert errors == 1
    assert df["status"].tolist() == ["error", "ok"]
    assert "dummy failure" in df.iloc[0]["error"]


def test_only_a_real_signal_gets_the_crash_explanation(write_models, dummy_model_file: Path, tmp_path: Path) -> None:
    # An error whose text mentions a signal is not a worker killed by one: the row keeps the backend's own
    # words, with no phase or repack advice appended (those come from the worker's exit status only).
    models = _models(write_models, dummy_model_file, talky={"raise_at_call": 2, "raise_message": "got signal 11"})
    _, errors, df = _run(models, tmp_path, ["talky"])
    assert errors == 1
    assert df["error"].iloc[0] == "RuntimeError: got signal 11 at call 2"


def test_dummy_latency_matches_its_known_rate(write_models, dummy_model_file: Path, tmp_path: Path) -> None:
    models = _models(write_models, dummy_model_file, rate={"tok_per_s": 100})
    _, _, df = _run(models, tmp_path, ["rate"], min_new_tokens=8)
    # sleep(10 ms) per token: the measured rate can only be at or below 100 tok/s, and not far below
    assert ((df["decode_tok_s"] <= 100.5) & (df["decode_tok_s"] > 60)).all()
    assert (df["output_tokens"] == 8).all()
