"""The environment record written to run.json: enough to tell whether two runs are comparable."""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil

from harness import __version__

PACKAGES = (
    "harness",
    "llama-cpp-python",
    "onnxruntime",
    "onnxruntime-genai",
    "numpy",
    "pandas",
    "psutil",
    "rouge-score",
    "jieba",
    "gguf",
    "pydantic",
    "huggingface-hub",
    "transformers",
    "torch",
    "tokenizers",
    # Hardware-specific onnxruntime builds: which one is installed decides the execution providers.
    "onnxruntime-gpu",
    "onnxruntime-genai-cuda",
    "onnxruntime-directml",
    "onnxruntime-genai-directml",
    "onnxruntime-qnn",
    "onnxruntime-openvino",
)


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> str | None:
    """Commit of the harness checkout (None for an installed wheel); '+dirty' when it has local changes."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_record() -> dict[str, Any]:
    try:
        import cpuinfo  # py-cpuinfo; spawns a subprocess, ~1 s, so only once per run

        info = cpuinfo.get_cpu_info()
    except Exception:
        info = {}
    return {
        "brand": info.get("brand_raw") or platform.processor() or None,
        "arch": info.get("arch_string_raw") or platform.machine(),
        "hz_advertised": info.get("hz_advertised_friendly"),
        "flags": sorted(info.get("flags", [])),
        "l2_cache_size": info.get("l2_cache_size"),
        "l3_cache_size": info.get("l3_cache_size"),
    }


def llama_cpp_info() -> str | None:
    try:
        import llama_cpp

        return llama_cpp.llama_print_system_info().decode("utf-8", errors="replace").strip()
    except Exception:
        return None


def onnxruntime_info() -> dict[str, Any] | None:
    try:
        ort = importlib.import_module("onnxruntime")
    except ImportError:
        return None
    info: dict[str, Any] = {"version": ort.__version__, "providers": ort.get_available_providers(),
                            "genai_version": None}
    try:
        # The backend knows the build-specific package names and plugin EPs that onnxruntime does not list.
        from harness.backends.onnx_genai import available_providers, genai_version

        info["providers"] = available_providers()
        info["genai_version"] = genai_version()
    except ImportError:
        pass
    return info


def physical_cores() -> int:
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def collect_environment() -> dict[str, Any]:
    uname = platform.uname()
    return {
        "harness_version": __version__,
        "git_commit": git_commit(),
        "cpu": cpu_record(),
        "cores_physical": psutil.cpu_count(logical=False),
        "cores_logical": psutil.cpu_count(logical=True),
        "cpu_affinity": len(psutil.Process().cpu_affinity())
        if hasattr(psutil.Process, "cpu_affinity")
        else None,
        "ram_gb": round(psutil.virtual_memory().total / 1e9, 2),
        "os": f"{uname.system} {platform.release()}",
        "kernel": uname.version,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "packages": package_versions(),
        "llama_cpp_system_info": llama_cpp_info(),
        "onnxruntime": onnxruntime_info(),
    }
