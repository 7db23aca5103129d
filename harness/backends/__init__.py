"""Backend registry: name in models.yaml -> implementation, imported lazily.

Lazy so that a run with llama.cpp models never imports onnxruntime (and vice versa), and a missing
optional dependency is an error only for the models that need it.
"""

from __future__ import annotations

import importlib

from harness.backends.base import Backend
from harness.errors import HarnessError
from harness.registry import unknown

# name -> (module, class, pip extra that provides its dependency)
BACKENDS: dict[str, tuple[str, str, str]] = {
    "llama_cpp": ("harness.backends.llama_cpp", "LlamaCppBackend", "llama-cpp-python"),
    "onnx": ("harness.backends.onnx_genai", "OnnxGenaiBackend", "harness[onnx]"),
    "dummy": ("harness.backends.dummy", "DummyBackend", "harness"),
}


def backend_class(name: str) -> type[Backend]:
    if name not in BACKENDS:
        raise unknown("backend", name, BACKENDS)
    module_name, class_name, requirement = BACKENDS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HarnessError(
            f'backend "{name}" needs {exc.name or "a missing package"}; install it with pip install "{requirement}"'
        ) from None
    cls: type[Backend] = getattr(module, class_name)
    return cls
