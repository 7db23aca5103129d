"""`harness providers`: what this machine's engines can run on.

python -m harness providers [--json]

ONNX Runtime: its version, the execution providers it can create, which harness provider names
(`--provider` / models.yaml `provider:`) they answer to, and what `auto` picks. llama.cpp: the
build's SIMD/backend features and whether it can offload layers to a GPU. Either package may be
absent; the command says so instead of failing.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import json
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "providers",
        help="ONNX Runtime execution providers and llama.cpp build features on this machine",
        description="Show the onnxruntime version and available execution providers (and what "
        "--provider auto picks), and llama.cpp's build features and GPU offload support.",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.set_defaults(func=_providers)


def onnx_report() -> dict[str, Any]:
    """onnxruntime / onnxruntime-genai facts; `installed: False` with a hint when absent."""
    try:
        ort = importlib.import_module("onnxruntime")
    except ImportError:
        return {"installed": False, "hint": "pip install -e '.[onnx]'"}
    report: dict[str, Any] = {"installed": True, "version": getattr(ort, "__version__", None)}
    try:
        genai = importlib.import_module("harness.backends.onnx_genai")
    except ImportError:
        report["available"] = list(ort.get_available_providers())
        report["genai_version"] = None
        report["hint"] = "the onnx backend needs onnxruntime-genai: pip install -e '.[onnx]'"
        return report
    available = genai.available_providers()
    report["available"] = available
    report["genai_version"] = genai.genai_version()
    report["providers"] = [
        {"name": p.name, "ep": p.ep, "available": p.ep in available, "package": p.package}
        for p in genai.PROVIDERS.values()
    ]
    report["auto"] = genai.select_provider("auto", available).name
    report["auto_order"] = list(genai.AUTO_ORDER)
    return report


def llama_cpp_report() -> dict[str, Any]:
    try:
        llama_cpp = importlib.import_module("llama_cpp")
    except ImportError:
        return {"installed": False, "hint": "pip install llama-cpp-python==0.3.36"}
    try:
        version = md.version("llama-cpp-python")
    except md.PackageNotFoundError:
        version = getattr(llama_cpp, "__version__", None)
    info = llama_cpp.llama_print_system_info()
    text = info.decode("utf-8", errors="replace") if isinstance(info, bytes) else str(info)
    features = {}
    # "CPU : SSE3 = 1 | AVX2 = 1 | … |" -> {"SSE3": "1", …}; backend names prefix some entries.
    for part in text.replace(":", "|").split("|"):
        if "=" in part:
            key, _, value = part.partition("=")
            features[key.strip()] = value.strip()
    return {
        "installed": True,
        "version": version,
        "system_info": text.strip(),
        "features": features,
        "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
    }


def _providers(args: argparse.Namespace) -> int:
    onnx = onnx_report()
    llama = llama_cpp_report()
    if args.json:
        print(json.dumps({"onnxruntime": onnx, "llama_cpp": llama}, indent=2, ensure_ascii=False))
        return 0

    from rich.table import Table

    from harness.console import plain_console

    console = plain_console()  # hints such as pip install -e '.[onnx]' hold brackets: no markup
    if not onnx["installed"]:
        console.print(f"ONNX Runtime: not installed ({onnx['hint']})")
    else:
        genai = onnx.get("genai_version")
        console.print(
            f"ONNX Runtime {onnx['version']}"
            + (f", onnxruntime-genai {genai}" if genai else ", onnxruntime-genai not installed")
        )
        console.print(f"  available: {', '.join(onnx['available']) or 'none'}")
        if "providers" in onnx:
            table = Table(title_justify="left")
            for column in ("--provider", "execution provider", "available", "comes with"):
                table.add_column(column)
            for p in onnx["providers"]:
                table.add_row(p["name"], p["ep"], "yes" if p["available"] else "no", p["package"])
            console.print(table)
            console.print(
                f"  auto picks: {onnx['auto']} (first available of: {', '.join(onnx['auto_order'])}; "
                f"a model built for a GPU provider prefers that one)"
            )
        if onnx.get("hint"):
            console.print(f"  {onnx['hint']}")
    if not llama["installed"]:
        console.print(f"llama.cpp: not installed ({llama['hint']})")
    else:
        console.print(f"llama.cpp (llama-cpp-python {llama['version']})")
        console.print(f"  {llama['system_info']}")
        console.print(f"  GPU offload: {'yes' if llama['gpu_offload'] else 'no (CPU-only build)'}")
    return 0
