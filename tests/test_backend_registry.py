"""The backend registry: names, flags and providers come from the backend classes; a subclass registers
itself; nothing imports an engine until a model needs it; worker processes get the class by reference."""

from __future__ import annotations

import ast
import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import ClassVar

import pytest

import harness
from harness.backends import (
    backend_class,
    backend_names,
    backend_ref,
    backends,
    find_backend,
    flag_defaults,
    make_flags,
)
from harness.backends.base import (
    REGISTERED,
    Backend,
    BackendFlags,
    BackendOptions,
    GenerationRequest,
    LazyModule,
)
from harness.errors import HarnessError, close_matches, suggest, unknown
from harness.models.registry import ModelEntry

TESTS = Path(__file__).resolve().parent
HARNESS_DIR = Path(harness.__file__).resolve().parent


@pytest.fixture
def echo() -> Iterator[ModuleType]:
    """Import tests/echo_backend.py (registering "test-echo"); unregister it afterwards."""
    sys.path.insert(0, str(TESTS))
    try:
        yield importlib.import_module("echo_backend")
    finally:
        REGISTERED.pop("test-echo", None)
        sys.modules.pop("echo_backend", None)
        sys.path.remove(str(TESTS))


def entry(backend: str, **extra: object) -> ModelEntry:
    return ModelEntry.model_validate(
        {
            "id": "m",
            "backend": backend,
            "quant": "none",
            "n_ctx": 1024,
            "prompt_style": "chat",
            "source": {"kind": "path", "path": "/nonexistent/m.bin"},
            **extra,
        }
    )


def test_shipped_backends_register_from_their_modules() -> None:
    found = backends()
    for name in ("llama_cpp", "onnx", "dummy"):
        assert found[name].name == name and found[name].__module__.startswith("harness.backends.")


def test_a_backend_defined_outside_harness_registers_itself(echo: ModuleType) -> None:
    assert "test-echo" in backend_names()
    assert find_backend("test-echo") is echo.EchoBackend
    model = entry("test-echo", flags={"word": "回声", "tok_per_call": 2})  # models.yaml accepts it
    flags = make_flags(echo.EchoBackend, model.flags)
    assert flags == echo.EchoFlags(word="回声", tok_per_call=2)
    backend = backend_class("test-echo")(Path("m.bin"), BackendOptions(threads=1, n_ctx=64, flags=flags), "chat")
    backend.load()
    assert backend.generate(_request()).text == "回声 回声"
    with pytest.raises(ValueError, match=r'unknown flag "words" for backend test-echo\. Did you mean "word"'):
        entry("test-echo", flags={"words": "x"})


def _request() -> GenerationRequest:
    return GenerationRequest(prompt_ids=[1, 2, 3], max_new_tokens=8)


def test_backend_ref_brings_the_class_back_in_a_fresh_process(echo: ModuleType) -> None:
    ref = backend_ref(echo.EchoBackend)
    assert ref == "echo_backend:EchoBackend" and backend_class(ref) is echo.EchoBackend
    assert backend_ref("dummy") == "harness.backends.dummy:DummyBackend"
    code = "import sys; from harness.backends import backend_class; print(backend_class(sys.argv[1]).name)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", code, ref], capture_output=True, text=True, env=env, timeout=60, check=True
    )
    assert out.stdout.strip() == "test-echo"


def test_bad_references_are_one_line_errors() -> None:
    with pytest.raises(HarnessError, match="cannot import backend"):
        backend_class("harness.backends.dummy:NoSuchBackend")
    with pytest.raises(HarnessError, match="is not a Backend subclass"):
        backend_class("harness.backends.base:BackendFlags")


def test_a_second_class_cannot_take_a_registered_name() -> None:
    with pytest.raises(TypeError, match=r'backend name "dummy" .* is already taken by harness\.backends\.dummy'):

        class Impostor(Backend):
            name = "dummy"


def test_a_missing_engine_fails_only_the_backend_that_needs_it() -> None:
    class NeedsMissing(Backend):
        name = "test-needs-missing"
        requires: ClassVar[dict[str, str]] = {"harness_test_no_such_module": "no-such-engine>=1"}

    try:
        assert find_backend("test-needs-missing") is NeedsMissing  # listing and validation still work
        entry("test-needs-missing")
        with pytest.raises(HarnessError) as err:
            backend_class("test-needs-missing")
        message = str(err.value)
        assert 'backend "test-needs-missing" needs harness_test_no_such_module' in message
        assert 'pip install "no-such-engine>=1"' in message and "\n" not in message
        assert backend_class("dummy").name == "dummy"  # the others are unaffected
    finally:
        REGISTERED.pop("test-needs-missing", None)


def test_listing_backends_and_models_imports_no_engine() -> None:
    code = (
        "import json, sys\n"
        "from harness.backends import backends, find_backend, make_flags\n"
        "from harness.models.registry import load_models\n"
        "backends(); entries = load_models(include_registered=False)\n"
        "for e in entries.values(): make_flags(find_backend(e.backend), e.flags)\n"
        "before = [m for m in ('llama_cpp', 'onnxruntime', 'onnxruntime_genai') if m in sys.modules]\n"
        "from harness.backends import backend_class\n"
        "try:\n"
        "    backend_class('llama_cpp')\n"
        "except Exception:\n"
        "    pass\n"
        "after = [m for m in ('llama_cpp', 'onnxruntime', 'onnxruntime_genai') if m in sys.modules]\n"
        "print(json.dumps([before, after]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    before, after = json.loads(out.stdout)
    assert before == []  # names, flags and models.yaml validation cost no engine import
    assert "onnxruntime" not in after and "onnxruntime_genai" not in after  # a llama.cpp run never loads ORT


def test_each_backend_name_is_written_in_one_definition() -> None:
    """The registry is the only list: no other code compares with, lists or types a backend name."""
    names = {name for name, cls in backends().items() if cls.__module__.startswith("harness.")}
    definitions: dict[str, list[str]] = {name: [] for name in names}
    repeats: list[str] = []
    for path in HARNESS_DIR.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                for stmt in node.body:
                    target = stmt.target if isinstance(stmt, ast.AnnAssign) else None
                    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                        target = stmt.targets[0]
                    value = getattr(stmt, "value", None)
                    is_name = isinstance(target, ast.Name) and target.id == "name"
                    if is_name and isinstance(value, ast.Constant) and value.value in names:
                        definitions[value.value].append(f"{path.name}:{stmt.lineno}")
            elif isinstance(node, ast.Compare):
                consts = [c for c in [node.left, *node.comparators] if isinstance(c, ast.Constant)]
                repeats += [f"{path.name}:{node.lineno} compares {c.value!r}" for c in consts if c.value in names]
            elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "Literal":
                consts = [c.value for c in ast.walk(node.slice) if isinstance(c, ast.Constant)]
                if len([c for c in consts if c in names]) >= 2:
                    repeats.append(f"{path.name}:{node.lineno} Literal of backend names {consts}")
            elif isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    is_backend = isinstance(key, ast.Constant) and key.value == "backend"
                    if is_backend and isinstance(value, ast.Constant) and value.value in names:
                        repeats.append(f"{path.name}:{node.lineno} backend={value.value!r}")
            elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                consts = [c.value for c in node.elts if isinstance(c, ast.Constant)]
                if len([c for c in consts if c in names]) >= 2:
                    repeats.append(f"{path.name}:{node.lineno} lists backend names {consts}")
    assert {name: len(found) for name, found in definitions.items()} == dict.fromkeys(names, 1), definitions
    assert repeats == [], "use the backend class's `.name` (e.g. LlamaCppBackend.name) instead of the string"


def test_flags_from_models_yaml_then_command_line_overrides() -> None:
    llama = find_backend("llama_cpp")
    assert flag_defaults(llama) == {
        "n_gpu_layers": 0,
        "flash_attn": False,
        "repack": None,  # auto: on unless the run's self-check saw it crash (harness.backends.llama_cpp_repack)
        "use_mmap": True,
        "n_batch": None,
        "n_ubatch": None,
    }
    flags = make_flags(
        llama, {"n_batch": 256, "flash_attn": True}, overrides={"flash_attn": False, "use_mmap": None, "x": 1}
    )
    assert (flags.n_batch, flags.flash_attn, flags.use_mmap) == (256, False, True)  # type: ignore[attr-defined]
    with pytest.raises(HarnessError, match=r'command line: flag "n_gpu_layers" of backend llama_cpp'):
        make_flags(llama, {}, overrides={"n_gpu_layers": "all"})
    assert make_flags(find_backend("onnx"), {}, overrides={"flash_attn": True}) == BackendFlags()


def test_lazy_module_imports_on_first_use_and_caches() -> None:
    lazy = LazyModule("colorsys")
    sys.modules.pop("colorsys", None)
    assert "colorsys" not in sys.modules
    assert lazy.rgb_to_hsv(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0)
    assert "colorsys" in sys.modules and "rgb_to_hsv" in vars(lazy)  # cached on the proxy
    with pytest.raises(ImportError):
        _ = LazyModule("harness_test_no_such_module").anything


def test_llama_cpp_batch_flags_reach_the_engine(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    from harness.models.generators import write_tiny_qwen2

    model = tmp_path / "tiny.gguf"
    write_tiny_qwen2(model)
    cls = backend_class("llama_cpp")
    recorded = {}
    for flags in ({}, {"n_batch": 64, "n_ubatch": 32}):
        options = BackendOptions(threads=1, n_ctx=1024, flags=make_flags(cls, flags))
        backend = cls(model, options, "chat")
        try:
            extra = backend.load().extra
        finally:
            backend.close()
        recorded[json.dumps(flags)] = (extra["n_batch"], extra["n_ubatch"])
    assert recorded == {"{}": (512, 512), '{"n_batch": 64, "n_ubatch": 32}': (64, 32)}


# --- "did you mean" --------------------------------------------------------------------------------

IDS = ["smollm2-135m-instruct-q4_1", "gemma-3-270m-q4_k_m", "tiny-qwen2", "qwen2.5-0.5b-instruct-q4_k_m"]


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("smollm2", ["smollm2-135m-instruct-q4_1"]),  # prefix
        ("SmolLM2", ["smollm2-135m-instruct-q4_1"]),  # any case
        ("270m", ["gemma-3-270m-q4_k_m"]),  # substring
        ("tiny-qwen", ["tiny-qwen2"]),
        ("gemma-3-270m-q4km", ["gemma-3-270m-q4_k_m"]),  # typo
        ("qwen", ["qwen2.5-0.5b-instruct-q4_k_m", "tiny-qwen2"]),  # prefix first, then substring
        ("llama", []),
        ("", []),
    ],
)
def test_close_matches_prefix_substring_typo(typed: str, expected: list[str]) -> None:
    assert close_matches(typed, IDS) == expected


def test_suggest_and_unknown_wording() -> None:
    assert suggest("smollm2", IDS) == ' Did you mean "smollm2-135m-instruct-q4_1"?'
    assert suggest("q", ["qa", "qb", "qc", "qd"]) == ' Did you mean "qa", "qb" or "qc"?'  # at most three
    assert suggest("zzz", IDS) == ""
    message = str(unknown("talk", "alibaba", ["alibaba-qwen", "qualcomm-npu"]))
    assert message == 'unknown talk "alibaba". Did you mean "alibaba-qwen"? Known: alibaba-qwen, qualcomm-npu'


def test_docs_document_every_flag_of_the_shipped_backends() -> None:
    # The backends' flags table (`| backend | flags (default) |`, with adding a model) is on one of the pages.
    repo = HARNESS_DIR.parent
    pages = [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]
    lines = [line for page in pages for line in page.read_text(encoding="utf-8").splitlines()]
    for name in ("llama_cpp", "dummy"):
        row = next((line for line in lines if line.startswith(f"| `{name}` |")), None)
        assert row is not None, f"no flags row for backend {name} in README.md or docs/*.md"
        assert [f for f in flag_defaults(find_backend(name)) if f"`{f}`" not in row] == [], name
