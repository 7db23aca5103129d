"""What the Hugging Face and ModelScope kinds share: endpoints (mirrors) and the fetch-verify-record flow."""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from harness.env import harness_command
from harness.errors import ChecksumError, HarnessError, ModelUnavailableError
from harness.models.registry import HfSource, ModelEntry, ModelscopeSource
from harness.models.sources import cache, diagnostics, hashing

HF_DEFAULT_ENDPOINT = "https://huggingface.co"
MODELSCOPE_DEFAULT_ENDPOINT = "https://www.modelscope.cn"


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


def host(endpoint: str) -> str:
    parts = urllib.parse.urlsplit(endpoint)
    return parts.netloc or endpoint


def fetch_from_hub(
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
    path = cache.cache_path(entry, source.filename)
    if path.is_file() and path.stat().st_size > 0:
        hashing.verify(
            entry, path, source.sha256, fix=f"delete {path} and run `{harness_command()} models pull {entry.id}`"
        )
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
    hostname = urllib.parse.urlsplit(endpoint).hostname or ""
    dns_error = diagnostics.dns_failure(hostname)
    if dns_error:
        # Fail at once: hub clients retry with back-off for ~20 s before giving up.
        raise unavailable(f"cannot resolve {hostname}: {dns_error}")

    with cache.model_dir(entry) as folder:
        try:
            download(folder)
        except Exception as exc:  # any failure (no network, proxy, HTTP 5xx, disk) means "not fetched"
            specific = classify(exc)
            raise (specific or unavailable(diagnostics.first_line(exc))) from None
        if not path.is_file():
            raise unavailable(f"the {hub_name} client finished but {path} is missing")
        actual = hashing.file_sha256(path)
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
        hashing.write_marker(path, actual, record)
    return path
