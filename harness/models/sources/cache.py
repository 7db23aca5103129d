"""Where fetched weights live: `<cache>/<model-id>/<filename>`, with `<cache>` = $HARNESS_CACHE or
~/.cache/harness/models.

Every cache path is built from names models.yaml validated as plain file names and is checked to resolve
inside the cache before anything is written, so a crafted entry (`filename: ../../x`, an absolute path, a
symlink planted in the cache) cannot make a pull write elsewhere. A fetch that fails removes the model
folder it created (`model_dir`).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path, PurePosixPath

from harness.errors import HarnessError
from harness.models.registry import ModelEntry, cache_dir, plain_file_name, repo_file_path

LOGS_DIR = ".logs"  # under the cache: pip's output per model pull


def cache_path(entry: ModelEntry, filename: str | None) -> Path:
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


@contextmanager
def model_dir(entry: ModelEntry) -> Iterator[Path]:
    """`<cache>/<id>` for a fetch, created when missing. If the fetch fails, a folder it created is removed
    with whatever the fetch left in it, and a folder that was there is removed only if empty: a failed
    pull leaves no empty cache folder behind."""
    folder = cache_path(entry, None)
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


def logs_dir() -> Path:
    return cache_dir() / LOGS_DIR
