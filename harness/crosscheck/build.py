"""llama.cpp's own tools (llama-bench, llama-server) built from the vendored sources of the installed
llama-cpp-python, cached so that only the first build on a machine pays (`harness tools build`).

Why from the sdist: its `vendor/llama.cpp` is the exact engine the harness runs in-process, so a gap between the
harness and llama-bench is the harness's (or the instrument's), never a different llama.cpp commit. The options
are the wheel's where they change the code that runs (see CMAKE_OPTIONS): shared libraries, GGML_NATIVE (the
wheel is built on this machine with -march=native), OpenMP on, no BLAS, plus $CMAKE_ARGS when set, as pip's
build of the wheel reads it too.

Cache: `<tools cache>/llama.cpp-<llama-cpp-python version>-<arch>-<hash of the CPU's ISA flags>/` with the two
binaries, their shared libraries beside them (RPATH $ORIGIN, so they run from there) and manifest.json (what was
built, with which options, how long it took). The tools cache is $HARNESS_TOOLS, else ~/.cache/harness/tools:
not under $HARNESS_CACHE, which tests point at a throwaway directory, because a build costs 10-20 min.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

TOOLS = ("llama-bench", "llama-server")
PACKAGE = "llama-cpp-python"
MANIFEST = "manifest.json"

# The wheel's build (llama-cpp-python's CMakeLists.txt + llama.cpp's defaults on a native, non-Apple build):
# shared libs, curl off, GGML_NATIVE on (its default when not cross-compiling), OpenMP on, BLAS off. The
# rest only keeps the build to the two targets and off the network (the server's prebuilt web UI is a
# download; OpenSSL is for HTTPS model URLs).
CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=ON",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DGGML_NATIVE=ON",
    "-DGGML_OPENMP=ON",
    "-DGGML_BLAS=OFF",
    "-DCMAKE_BUILD_RPATH=$ORIGIN",  # the libraries travel beside the binaries into the cache
)

# CPU features that GGML_NATIVE compiles for: a machine that differs in any of them needs its own build.
ISA_FLAGS = frozenset(
    {
        "sse3", "ssse3", "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "bmi2", "avx_vnni",
        "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd", "avx512_vnni", "avx512vnni", "avx512_bf16",
        "avx512vbmi", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16",
        "neon", "asimd", "asimddp", "sve", "sve2", "i8mm", "fphp", "asimdhp", "sme",
    }
)  # fmt: skip


def tools_cache() -> Path:
    env = os.environ.get("HARNESS_TOOLS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "harness" / "tools"


def package_version() -> str:
    try:
        return md.version(PACKAGE)
    except md.PackageNotFoundError:
        raise HarnessError(f"{PACKAGE} is not installed; install the harness first (pip install -e .)") from None


def cpu_isa_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str]:
    """The ISA flags of the first processor that a native build depends on (x86 `flags`, ARM `Features`)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            return sorted(set(value.split()) & ISA_FLAGS)
    return []


def build_key(version: str | None = None, flags: list[str] | None = None) -> str:
    version = version or package_version()
    flags = cpu_isa_flags() if flags is None else flags
    digest = hashlib.sha256(" ".join(sorted(flags)).encode()).hexdigest()[:10]
    return f"llama.cpp-{version}-{platform.machine() or 'cpu'}-{digest}"


def build_dir() -> Path:
    return tools_cache() / build_key()


def manifest(directory: Path | None = None) -> dict[str, Any] | None:
    """The cached build's manifest, or None when there is no complete build for this machine."""
    directory = directory or build_dir()
    try:
        data = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not all((directory / tool).is_file() for tool in TOOLS):
        return None
    return data if isinstance(data, dict) else None


def find_tool(name: str) -> Path | None:
    """The cached build's binary (the in-process engine's exact sources) first, then one on PATH."""
    cached = build_dir() / name
    if manifest() is not None and os.access(cached, os.X_OK):
        return cached
    found = shutil.which(name)
    return Path(found) if found else None


def build_hint() -> str:
    from harness.env import harness_command

    return f"build it from the installed {PACKAGE}'s sources with: {harness_command()} tools build"


@dataclass(frozen=True)
class BuildResult:
    directory: Path
    cached: bool
    seconds: float
    manifest: dict[str, Any]


def ensure_built(
    jobs: int | None = None, sdist: Path | None = None, echo: Callable[[str], None] = print, force: bool = False
) -> BuildResult:
    """The cached build for this machine, building it first when missing (minutes)."""
    target = build_dir()
    existing = manifest(target)
    if existing is not None and not force:
        return BuildResult(target, True, 0.0, existing)
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            raise HarnessError(
                f"tools build needs {tool} on PATH (Debian/Ubuntu: sudo apt-get install build-essential cmake)"
            )
    version = package_version()
    jobs = jobs or max(1, os.cpu_count() or 1)
    t0 = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="harness-tools-", dir=target.parent) as tmp:
        work = Path(tmp)
        log_path = target.parent / f"{target.name}.build.log"
        with log_path.open("w", encoding="utf-8") as log:
            archive = sdist or _download_sdist(version, work, log, echo)
            echo(f"unpacking {archive.name}")
            source = _unpack(archive, work / "src")
            vendor = source / "vendor" / "llama.cpp"
            if not (vendor / "CMakeLists.txt").is_file():
                raise HarnessError(f"{archive} has no vendor/llama.cpp/CMakeLists.txt; is it {PACKAGE}'s sdist?")
            extra = shlex.split(os.environ.get("CMAKE_ARGS", ""))
            build = work / "build"
            configure = ["cmake", "-S", str(vendor), "-B", str(build), *CMAKE_OPTIONS, *extra]
            if shutil.which("ninja"):
                configure += ["-G", "Ninja"]
            echo(f"configuring llama.cpp ({vendor.relative_to(source)}); log {log_path}")
            _run(configure, log, "cmake configure", log_path)
            echo(f"building {' '.join(TOOLS)} with -j{jobs} (10-20 min on 2 cores)")
            _run(["cmake", "--build", str(build), "--target", *TOOLS, "-j", str(jobs)], log, "cmake build", log_path)
            staging = work / "out"
            staging.mkdir()
            binaries = build / "bin"
            for tool in TOOLS:
                shutil.copy2(binaries / tool, staging / tool)
            for lib in sorted(build.rglob("lib*.so*")):
                if (lib.is_file() or lib.is_symlink()) and not (staging / lib.name).exists():
                    shutil.copy2(lib, staging / lib.name, follow_symlinks=False)  # keep the .so links
            seconds = time.perf_counter() - t0
            data = {
                "package": PACKAGE,
                "version": version,
                "vendor_commit": _vendor_commit(vendor),
                "cmake_options": [*CMAKE_OPTIONS, *extra],
                "isa_flags": cpu_isa_flags(),
                "machine": platform.machine(),
                "jobs": jobs,
                "build_s": round(seconds, 1),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "python": sys.version.split()[0],
            }
            (staging / MANIFEST).write_text(json.dumps(data, indent=2), encoding="utf-8")
            _check_runs(staging, log_path)
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)  # atomic on one file system: a half-built cache never looks complete
    echo(f"built {', '.join(TOOLS)} in {seconds / 60:.1f} min into {target}")
    return BuildResult(target, False, seconds, data)


def _download_sdist(version: str, work: Path, log: Any, echo: Callable[[str], None]) -> Path:
    echo(f"downloading {PACKAGE}=={version} source (pip download; pip's cache is used when it has it)")
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        f"{PACKAGE}=={version}", "-d", str(work),
    ]  # fmt: skip
    _run(command, log, "pip download", None)
    found = sorted(work.glob("llama_cpp_python-*.tar.gz")) + sorted(work.glob("llama-cpp-python-*.tar.gz"))
    if not found:
        raise HarnessError(f"pip download of {PACKAGE}=={version} gave no sdist; pass --sdist FILE.tar.gz")
    return found[0]


def _unpack(archive: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    try:
        with tarfile.open(archive) as tar:
            if sys.version_info >= (3, 12):
                tar.extractall(dest, filter="data")
            else:  # pragma: no cover - older Pythons have no extraction filter
                tar.extractall(dest)  # pip's own sdist of a pinned version
    except (OSError, tarfile.TarError) as exc:
        raise HarnessError(f"cannot unpack {archive}: {exc}; download it again") from None
    tops = [p for p in dest.iterdir() if p.is_dir()]
    if len(tops) != 1:
        raise HarnessError(f"{archive}: expected one top directory, found {len(tops)}")
    return tops[0]


def _run(command: list[str], log: Any, what: str, log_path: Path | None) -> None:
    log.write(f"$ {shlex.join(command)}\n")
    log.flush()
    proc = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        where = f"; see {log_path}" if log_path is not None else ""
        raise HarnessError(f"tools build: {what} failed with exit code {proc.returncode}{where}")


def _vendor_commit(vendor: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(vendor), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _check_runs(staging: Path, log_path: Path) -> None:
    """Each binary starts from the staging directory (libraries found through $ORIGIN)."""
    for tool in TOOLS:
        proc = subprocess.run([str(staging / tool), "--version"], capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise HarnessError(f"tools build: the built {tool} does not start ({tail[0]}); see {log_path}")
