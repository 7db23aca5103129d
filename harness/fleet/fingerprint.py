"""A device's fingerprint: what a fleet row was measured on.

Published to the scheduler once, when `harness fleet worker` joins (Dask carries it in the worker's
startup information, so it disappears with the worker), and copied into the run.json of every run that
used the device. It answers "were these two devices the same hardware and software?": CPU model, cores,
RAM, OS, the accelerators the OS exposes, ONNX Runtime's execution providers, llama.cpp's build features,
and the harness version + commit. Everything is plain JSON data (msgpack on the wire).
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import psutil

from harness import __version__
from harness.env import collect_environment

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

# ONNX Runtime execution provider -> the accelerator class it drives (what a provider *can* use; the
# `accelerators` list says what the OS shows).
PROVIDER_HARDWARE = {
    "CUDAExecutionProvider": "NVIDIA GPU",
    "TensorrtExecutionProvider": "NVIDIA GPU",
    "ROCMExecutionProvider": "AMD GPU",
    "MIGraphXExecutionProvider": "AMD GPU",
    "DmlExecutionProvider": "DirectX 12 GPU/NPU",
    "QNNExecutionProvider": "Qualcomm Hexagon NPU",
    "OpenVINOExecutionProvider": "Intel CPU/GPU/NPU",
    "CoreMLExecutionProvider": "Apple Neural Engine/GPU",
    "WebGpuExecutionProvider": "GPU (WebGPU)",
}


def check_name(kind: str, name: str) -> str:
    """Device and tag names become Dask resource names and run.json keys: a short plain token."""
    if not NAME_RE.fullmatch(name):
        from harness.errors import HarnessError

        raise HarnessError(
            f'{kind} name "{name}" is not allowed; use letters, digits, ".", "_" or "-" (at most 64, '
            f"starting with a letter or digit)"
        )
    return name


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip() or None
    except OSError:
        return None


def _driver(device_dir: Path) -> str | None:
    try:
        return (device_dir / "device" / "driver").resolve().name
    except OSError:
        return None


def linux_accelerators(sys_root: Path = Path("/sys"), dev_root: Path = Path("/dev")) -> list[str]:
    """GPUs (DRM render nodes) and NPUs (the kernel's accel subsystem) that Linux exposes, by driver."""
    found: list[str] = []
    for node in sorted((sys_root / "class" / "accel").glob("accel*")):
        found.append(f"npu:{node.name} ({_driver(node) or 'unknown driver'})")
    for node in sorted((sys_root / "class" / "drm").glob("renderD*")):
        vendor = _read(node / "device" / "vendor")
        found.append(f"gpu:{node.name} ({_driver(node) or 'unknown driver'}{', vendor ' + vendor if vendor else ''})")
    if (dev_root / "kfd").exists():
        found.append("gpu:kfd (AMD ROCm)")
    return found


def nvidia_gpus() -> list[str]:
    """`nvidia-smi` names and memory of NVIDIA GPUs; [] without the tool (or when it fails)."""
    tool = shutil.which("nvidia-smi")
    if not tool:
        return []
    try:
        out = subprocess.run(
            [tool, "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [f"gpu:nvidia ({line.strip()})" for line in out.splitlines() if line.strip()]


def accelerators() -> list[str]:
    """Accelerators this machine's OS shows, as 'kind:name (detail)' strings."""
    system = platform.system()
    found = nvidia_gpus()
    if system == "Linux":
        found += linux_accelerators()
    elif system == "Darwin" and platform.machine() == "arm64":
        found += ["gpu:apple (Metal)", "npu:apple (Neural Engine)"]
    return found


def device_fingerprint(device: str, tags: list[str], memory_limit_bytes: int | None = None) -> dict[str, Any]:
    """The fingerprint a worker publishes. `memory_limit_bytes`: the RAM a model may use on this device
    (default: all of it); a job whose weights are larger is refused."""
    from harness.commands.providers import llama_cpp_report, onnx_report

    environment = collect_environment()
    total = psutil.virtual_memory().total
    onnx = onnx_report()
    return {
        "device": device,
        "tags": list(tags),
        "harness_version": __version__,
        "git_commit": environment.get("git_commit"),
        "cpu": (environment.get("cpu") or {}).get("brand"),
        "cores_physical": environment.get("cores_physical"),
        "cores_logical": environment.get("cores_logical"),
        "ram_gb": environment.get("ram_gb"),
        "memory_limit_bytes": int(memory_limit_bytes or total),
        "os": environment.get("os"),
        "platform": environment.get("platform"),
        "accelerators": accelerators(),
        "onnxruntime_providers": list(onnx.get("available") or []),
        "provider_hardware": sorted(
            {PROVIDER_HARDWARE[p] for p in onnx.get("available") or [] if p in PROVIDER_HARDWARE}
        ),
        "llama_cpp": llama_cpp_report(),
        "environment": environment,
    }


def summary_line(fp: dict[str, Any]) -> str:
    """One line for people: 'a: Intel Xeon (4 cores, 16 GB RAM, Linux 6.1) | ort: CPU | harness 0.1.0'."""
    extras = ", ".join(fp.get("accelerators") or []) or "no accelerator"
    providers = ",".join(p.removesuffix("ExecutionProvider") for p in fp.get("onnxruntime_providers") or []) or "-"
    return (
        f"{fp.get('device')}: {fp.get('cpu') or 'unknown CPU'} ({fp.get('cores_physical')} cores, "
        f"{fp.get('ram_gb')} GB RAM, {fp.get('os')}); {extras}; onnxruntime: {providers}; "
        f"harness {fp.get('harness_version')}"
    )
