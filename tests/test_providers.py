"""`harness providers`: ONNX Runtime providers and llama.cpp build features, with either package absent."""

from __future__ import annotations

import importlib
import importlib.util
import json
from typing import Any

import pytest

from harness.cli import main
from harness.commands import providers


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    rc = main(["providers", *argv])
    return rc, capsys.readouterr().out


def hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make `importlib.import_module` fail for `modules` inside the providers command."""
    real = importlib.import_module

    def fake(name: str, *args: Any) -> Any:
        if name in modules:
            raise ImportError(f"No module named {name!r}", name=name)
        return real(name, *args)

    monkeypatch.setattr(providers.importlib, "import_module", fake)


def test_json_matches_what_is_installed(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = run(capsys, "--json")
    assert rc == 0
    report = json.loads(out)
    onnx, llama = report["onnxruntime"], report["llama_cpp"]
    assert onnx["installed"] is (importlib.util.find_spec("onnxruntime") is not None)
    assert llama["installed"] is (importlib.util.find_spec("llama_cpp") is not None)
    if onnx["installed"]:
        import onnxruntime

        assert onnx["version"] == onnxruntime.__version__
        assert "CPUExecutionProvider" in onnx["available"]
    if llama["installed"]:
        assert isinstance(llama["gpu_offload"], bool)
        assert llama["system_info"]


def test_provider_table_and_auto_choice(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime_genai")
    from harness.backends.onnx_genai import AUTO_ORDER, available_providers, select_provider

    report = json.loads(run(capsys, "--json")[1])["onnxruntime"]
    rows = {row["name"]: row for row in report["providers"]}
    assert rows["cpu"]["available"] is True and rows["cpu"]["ep"] == "CPUExecutionProvider"
    assert {name for name, row in rows.items() if row["available"]} == {
        name for name, row in rows.items() if row["ep"] in available_providers()
    }
    assert report["auto"] == select_provider("auto", available_providers()).name
    assert report["auto_order"] == list(AUTO_ORDER)


def test_text_output_names_versions_and_auto(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime_genai")
    import onnxruntime

    rc, out = run(capsys)
    assert rc == 0
    assert f"ONNX Runtime {onnxruntime.__version__}" in out
    assert "auto picks:" in out
    assert "llama.cpp" in out


def test_llama_cpp_feature_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = type(
        "FakeLlama",
        (),
        {
            "llama_print_system_info": staticmethod(lambda: b"CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 0 | "),
            "llama_supports_gpu_offload": staticmethod(lambda: False),
        },
    )
    real = importlib.import_module
    monkeypatch.setattr(providers.importlib, "import_module", lambda n, *a: fake if n == "llama_cpp" else real(n, *a))
    report = providers.llama_cpp_report()
    assert report["features"] == {"SSE3": "1", "AVX2": "1", "AVX512": "0"}
    assert report["gpu_offload"] is False


def test_absent_packages_are_reported_not_fatal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hide(monkeypatch, "onnxruntime", "llama_cpp")
    rc, out = run(capsys, "--json")
    assert rc == 0
    report = json.loads(out)
    assert report["onnxruntime"] == {"installed": False, "hint": "pip install -e '.[onnx]'"}
    assert report["llama_cpp"]["installed"] is False
    rc, text = run(capsys)
    assert rc == 0 and "ONNX Runtime: not installed" in text and "llama.cpp: not installed" in text


def test_onnxruntime_without_genai(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime")
    hide(monkeypatch, "harness.backends.onnx_genai")
    report = json.loads(run(capsys, "--json")[1])["onnxruntime"]
    assert report["installed"] is True and report["genai_version"] is None
    assert "CPUExecutionProvider" in report["available"]
    assert "onnxruntime-genai" in report["hint"]
