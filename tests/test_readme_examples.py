"""Every `.venv/bin/python -m harness …` example in the README and in docs/*.md runs, as written where it can.

The examples are read from the pages themselves (fenced code lines and inline code spans), so a renamed option
or a changed default breaks this test rather than a newcomer's first hour. Each one runs through the CLI's
`main` from the repository root (the shared tiny run goes through a real `python -m harness` subprocess;
an identical command is run once), after these substitutions:

- `run` uses the generated `tiny-qwen2` instead of downloaded models (seconds instead of minutes, no network),
  on one talk with 8 new tokens, into a temporary `--out`;
- placeholders are filled: `results/<run>` (any `<…>` run) is a tiny run made first, `results/<baseline_run>`
  the committed `results/baseline`, `predictions.jsonl` a file in the format docs/methodology.md gives; optional
  `[…]` parts are dropped;
- an `--out` file or folder an example names goes to a temporary folder, never into the checkout;
- an identical command on several pages runs once.

Examples that need a hub, a server, an ONNX build or minutes of real work are skipped with the reason listed
in `SKIPS` (pytest -ra prints them). Non-harness steps of a chain (`python3 -m venv`, pip) are not run: CI
runs the README's install line itself.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
# The pages whose examples run: the front door and every docs page (tests/test_docs.py checks their links).
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
HARNESS = ".venv/bin/python -m harness"
TINY = ["--models", "tiny-qwen2"]

# (pattern in the example, why it is not run here). First match wins.
SKIPS: tuple[tuple[str, str], ...] = (
    (r"harness …$|harness COMMAND", "stands for any command"),
    (r"\bprepare onnx\b", "builds an ONNX model with torch/transformers: minutes"),
    (r"\btools build\b", "compiles llama.cpp's own tools: minutes"),
    (r"\bcrosscheck\b", "runs llama.cpp's own tools against the harness on a real model: minutes"),
    (r"\bjudge\b", "needs a judge model served over HTTP"),
    (r"onnx-int\d|onnx-fp\d", "needs a model built by `prepare onnx` first"),
    # A real Qwen id (qwen2.5-…, qwen3-…), not the generated tiny-qwen2 or the talk alibaba-qwen.
    (r"(?<![\w-])qwen\d", "a real Qwen model: a hub (not reachable here) or a 0.5-1 GB download"),
    (r"--provider (qnn|openvino|cuda|dml|coreml|webgpu)\b", "needs that execution provider's hardware"),
    (r"\bmodels pull\b(?! tiny-)", "downloads weights"),  # the tiny models are generated here instead
    (r"--via\b|--server-pid\b|--concurrency\b|\bopenai\b", "needs an inference server"),
    (r"--fleet\b|\bfleet worker\b", "needs a Dask scheduler and devices"),
    (r"--by device\b", "needs a fleet run (rows from several devices)"),
    (r"--db\b", "needs a DuckDB results store"),
    (r"--estimate-from\b|--resume\b", "needs an earlier run of its own"),
)


def readme_examples(pages: list[Path] = PAGES) -> list[str]:
    examples: list[str] = []
    for page in pages:
        examples += page_examples(page)
    return list(dict.fromkeys(examples))


def page_examples(page: Path) -> list[str]:
    examples: list[str] = []
    fenced = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):  # fences indented inside a list item count too
            fenced = not fenced
            continue
        if fenced:
            if HARNESS in line:
                examples.append(re.split(r"\s{2,}#", line)[0].strip())
        else:
            examples += [m.group(1).strip() for m in re.finditer(r"`(\.venv/bin/python -m harness[^`]*)`", line)]
    return examples


EXAMPLES = readme_examples()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    # The session's model cache (see conftest), so tiny-qwen2 is generated once.
    cache = tmp_path_factory.getbasetemp() / "model-cache"
    cache.mkdir(exist_ok=True)
    return dict(os.environ, HARNESS_CACHE=str(cache), PYTHONUNBUFFERED="1", COLUMNS="200")


_DONE: dict[tuple[str, ...], tuple[int, str, str]] = {}


def harness(args: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `python -m harness ARGS` run in this process from the repo root."""
    key = tuple(args)
    if key not in _DONE:
        monkeypatch.chdir(REPO)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(args)
            except SystemExit as exc:  # argparse errors
                code = int(exc.code or 0)
        _DONE[key] = (code, out.getvalue(), err.getvalue())
    return _DONE[key]


def tiny_run_args(args: list[str], out: Path) -> list[str]:
    """A README `run` made quick: tiny-qwen2, one talk, 8 tokens, temporary --out (README values kept
    where they set something else)."""
    args = list(args)
    if "--models" in args:
        i = args.index("--models")
        del args[i : i + 2]
    if "--out" in args:
        i = args.index("--out")
        del args[i : i + 2]
    args += [*TINY, "--out", str(out), "--no-bandwidth"]
    if "--talks" not in args and "--corpus" not in args:
        args += ["--talks", "alibaba-qwen"]  # a talk of the built-in corpus
    if "--max-new-tokens" not in args:
        args += ["--max-new-tokens", "8"]
    return args


@pytest.fixture(scope="module")
def tiny_run(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("readme-runs")
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", *tiny_run_args([], out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip().splitlines()[-1])


def fill(args: list[str], tiny_run: Path, last_run: Path | None, tmp: Path) -> list[str]:
    out = []
    for arg in args:
        if arg == "results/<baseline_run>":
            arg = str(REPO / "results" / "baseline")
        elif re.fullmatch(r"results/<[^>]*>", arg):
            arg = str(last_run or tiny_run)
        elif out and out[-1] == "--out":  # an output file or folder an example names: never in the checkout
            arg = str(tmp / Path(arg).name)
        elif arg == "predictions.jsonl":
            path = tmp / "predictions.jsonl"
            path.write_text(
                json.dumps({"prediction": "模型在端侧运行。", "references": ["端侧运行的模型。"], "lang": "zh"}) + "\n",
                encoding="utf-8",
            )
            arg = str(path)
        out.append(arg)
    return out


def split_example(example: str) -> list[list[str]]:
    """The harness commands of an example (`a && b`), as argument lists after `-m harness`; optional
    `[…]` parts and `<run id>`-style spaces inside placeholders handled."""
    text = re.sub(r"\s*\[[^\]]*\]", "", example)  # [more runs…] [--out DIR]
    text = re.sub(r"<([^>]*)>", lambda m: "<" + m.group(1).replace(" ", "_") + ">", text)
    commands = []
    for part in text.split("&&"):
        words = shlex.split(part)
        if words[:3] == [".venv/bin/python", "-m", "harness"]:
            commands.append(words[3:])
    return commands


@pytest.mark.parametrize("example", EXAMPLES)
def test_readme_example_runs(
    example: str, tiny_run: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    for pattern, reason in SKIPS:
        if re.search(pattern, example):
            pytest.skip(f"not run here: {reason}")
    last_run: Path | None = None
    for args in split_example(example):
        if args and args[0] == "run":
            # One --out for all: identical commands then give identical arguments and run once.
            args = ["run", *tiny_run_args(args[1:], tmp_path_factory.getbasetemp() / "readme-example-runs")]
        if args[:2] == ["corpus", "derive"] and not (REPO.parent / "shared" / "seeds").is_dir():
            pytest.skip("corpus derive needs the seed articles in ../shared/seeds")
        args = fill(args, tiny_run, last_run, tmp_path_factory.getbasetemp())
        leftover = [a for a in args if re.search(r"<|…|\bID\b|\bDIR\b|\bFILE\b", a)]
        assert not leftover, f"unfilled placeholder in an example: {leftover}"
        code, out, err = harness(args, monkeypatch)
        assert code == 0, f"{' '.join(args)}\n{out[-2000:]}\n{err[-2000:]}"
        if args[0] == "run" and "--dry-run" not in args:  # a dry run prints its plan and writes nothing
            last_run = Path(out.strip().splitlines()[-1])
            assert (last_run / "results.csv").is_file()


def test_examples_were_found() -> None:
    # The README's two first commands and the quickstart's are among them, and the docs pages add their own.
    readme = page_examples(README)
    assert any(e.endswith("&& .venv/bin/python -m harness run") for e in readme)
    assert ".venv/bin/python -m harness run --models tiny-qwen2 --talks alibaba-qwen" in readme
    docs = [e for page in PAGES[1:] for e in page_examples(page)]
    assert any(e.startswith(f"{HARNESS} run ") for e in docs)  # e.g. docs/running.md's sweeps


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_bare_python(page: Path) -> None:
    """Bare `python -m harness` fails outside an activated venv: the pages only say so, never run it."""
    bare = [
        line
        for line in page.read_text(encoding="utf-8").splitlines()
        # "a bare `python -m harness`" explains the failure; after `source .venv/bin/activate` it works.
        if re.search(r"(?<![\w/.\\])(?<!bare `)python -m harness", line) and "source .venv/bin/activate" not in line
        and not line.startswith("| `--")  # the generated options table (harness.params) names commands itself
    ]
    assert not bare, bare
