"""The environment record written to run.json: enough to tell whether two runs are comparable.

Engine facts (llama.cpp's build line, onnxruntime's providers, ...) come from each backend's own
`Backend.environment()`, so this module names no engine and imports no backend module.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil

from harness import __version__
from harness.backends import backends

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


def package_versions() -> dict[str, str]:
    """Installed versions of PACKAGES; a package that is not installed is left out (not None)."""
    out: dict[str, str] = {}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return out


def harness_command(argv0: str | None = None) -> str:
    """How the user started the CLI, for messages and examples that name a command: `.venv/bin/python -m
    harness` under `-m` (as typed, so a pasted fix uses the same interpreter), else `harness`."""
    orig = list(getattr(sys, "orig_argv", []) or [])
    if argv0 is None:
        argv0 = sys.argv[0] if sys.argv else ""
    if Path(argv0).name == "__main__.py" and "-m" in orig:
        return " ".join([*orig[: orig.index("-m")], "-m", "harness"])
    return "harness"


def command_line() -> list[str]:
    """The command as the user typed it: `.venv/bin/python -m harness run …` or `harness run …`.

    `sys.argv[0]` is the path of `harness/__main__.py` under `python -m harness`, which nobody typed;
    `sys.orig_argv` (Python 3.10+) keeps the interpreter's own arguments. Interpreter options before
    `-m` (e.g. `-X dev`) are kept, as they were typed too.
    """
    orig = list(getattr(sys, "orig_argv", []) or [])
    if "-m" in orig:
        return orig
    argv = list(sys.argv)
    if argv and Path(argv[0]).name == "__main__.py" and Path(argv[0]).parent.name == "harness":
        return [Path(sys.executable).name, "-m", "harness", *argv[1:]]
    if argv and Path(argv[0]).name in {"harness", "harness.exe"}:
        return ["harness", *argv[1:]]
    return argv


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


# /proc/cpuinfo keys of the first processor block -> cpu record keys. x86 names the part by vendor,
# family, model and stepping (e.g. AMD family 25 model 17 = Zen 4 "Genoa"), which tells CPU generations
# apart where a VM's model name is only "AMD EPYC"; ARM by implementer, part, variant and revision.
_PROC_CPUINFO_KEYS = {
    "vendor_id": "vendor",
    "cpu family": "family",
    "model": "model",
    "stepping": "stepping",
    "model name": "model_name",
    "microcode": "microcode",
    "CPU implementer": "implementer",
    "CPU architecture": "architecture",
    "CPU variant": "variant",
    "CPU part": "part",
    "CPU revision": "revision",
}


def proc_cpuinfo(path: Path = Path("/proc/cpuinfo")) -> dict[str, str]:
    """The identifying fields of the first processor in /proc/cpuinfo (Linux); {} where unreadable."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if out:
                break  # end of the first processor's block
            continue
        key, sep, value = line.partition(":")
        name = _PROC_CPUINFO_KEYS.get(key.strip())
        if sep and name and name not in out and value.strip():
            out[name] = value.strip()
    return out


def _microcode_sysfs(root: Path = Path("/sys/devices/system/cpu/cpu0/microcode/version")) -> str | None:
    try:
        return root.read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def cpu_record(proc_path: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    """CPU identity: brand, vendor, family/model/stepping (or ARM part ids), microcode, flags, caches.

    The OS's own words (/proc/cpuinfo) win over py-cpuinfo's, which fills in elsewhere (macOS,
    Windows). Keys whose value nobody reports are left out.
    """
    try:
        import cpuinfo  # py-cpuinfo; spawns a subprocess, ~1 s, so only once per run

        info = cpuinfo.get_cpu_info()
    except Exception:
        info = {}
    proc = proc_cpuinfo(proc_path)
    # Where the OS describes the CPU, its fields are used as a set (an ARM /proc/cpuinfo has no family
    # and must not borrow one); py-cpuinfo's cpuid reading only fills in where there is no /proc.
    ident = proc or {
        "vendor": info.get("vendor_id_raw"),
        "family": info.get("family"),
        "model": info.get("model"),
        "stepping": info.get("stepping"),
    }
    record: dict[str, Any] = {
        "brand": proc.get("model_name") or info.get("brand_raw") or platform.processor() or None,
        "arch": info.get("arch_string_raw") or platform.machine(),
        "vendor": ident.get("vendor"),
        "family": _int_or_text(ident.get("family")),
        "model": _int_or_text(ident.get("model")),
        "stepping": _int_or_text(ident.get("stepping")),
        "microcode": proc.get("microcode") or _microcode_sysfs(),
        "hz_advertised": info.get("hz_advertised_friendly"),
        "flags": sorted(info.get("flags", [])),
        "l2_cache_size": info.get("l2_cache_size"),
        "l3_cache_size": info.get("l3_cache_size"),
    }
    for key in ("implementer", "architecture", "variant", "part", "revision"):
        if key in proc:
            record[key] = proc[key]
    return {k: v for k, v in record.items() if v is not None and v != ""}


def _int_or_text(value: object) -> int | str | None:
    if value is None or value == "":
        return None
    text = str(value).strip()
    return int(text) if text.isdigit() else text  # /proc/cpuinfo writes family/model/stepping in decimal


def cpu_description(cpu: dict[str, Any]) -> str:
    """One line for people: 'AMD EPYC (AuthenticAMD family 25 model 17 stepping 1, microcode 0x1000065)'."""
    ident = " ".join(
        f"{k} {cpu[k]}" for k in ("family", "model", "stepping") if cpu.get(k) not in (None, "")
    )
    arm = " ".join(f"{k} {cpu[k]}" for k in ("implementer", "part", "variant", "revision") if cpu.get(k))
    details = " ".join(p for p in (str(cpu.get("vendor") or ""), ident or arm) if p)
    if cpu.get("microcode"):
        details += f", microcode {cpu['microcode']}" if details else f"microcode {cpu['microcode']}"
    brand = str(cpu.get("brand") or "")
    if not details:
        return brand
    return f"{brand} ({details})" if brand else details


def engine_environment() -> dict[str, Any]:
    """Every registered backend's `environment()`, under the keys it declares (`environment_keys`): a key
    whose engine is not installed here is None, so the record has the same keys on every machine."""
    out: dict[str, Any] = {}
    for cls in backends().values():
        for key in cls.environment_keys:
            out.setdefault(key, None)
        try:
            facts = cls.environment()
        except Exception:  # one engine's broken install must not cost the run its environment record
            facts = None
        out.update(facts or {})
    return out


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
        **engine_environment(),  # llama_cpp_system_info, onnxruntime, ...: the backends' own
    }
