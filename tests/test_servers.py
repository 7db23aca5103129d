"""Managed servers (--via) without a model: a server that never answers or exits at once is a one-line error
naming its log, bounded in time; the pid on a listening port is found; unknown or missing servers are refused."""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from harness.errors import HarnessError
from harness.http import ServerKind
from harness.servers import server_class
from harness.servers.base import REGISTERED, ManagedServer, ServerSettings, listening_pid, local_server_pid


class _Script(ManagedServer):
    kind: ClassVar[ServerKind] = "openai"
    script: ClassVar[str] = ""

    def command(self) -> list[str]:
        return [sys.executable, "-c", self.script]


@pytest.fixture
def scripted() -> Iterator[None]:
    yield
    for name in ("test-silent", "test-crash", "test-linked"):
        REGISTERED.pop(name, None)


def _settings(tmp_path: Path, timeout: float) -> ServerSettings:
    return ServerSettings("m", tmp_path / "m.gguf", 1, 512, tmp_path / "server.log", ready_timeout_s=timeout)


def test_a_server_that_never_answers_is_stopped_after_the_timeout(tmp_path: Path, scripted: None) -> None:
    class Silent(_Script):
        name: ClassVar[str] = "test-silent"
        script: ClassVar[str] = "import time; print('loading forever', flush=True); time.sleep(60)"

    server = Silent(_settings(tmp_path, timeout=1.5))
    t0 = time.monotonic()
    with pytest.raises(HarnessError, match=r"no answer on .* within 1.5 s") as info:
        server.start()
    assert time.monotonic() - t0 < 10 and "loading forever" in str(info.value) and "\n" not in str(info.value)
    assert not server.alive  # stopped, not left behind


def test_a_server_that_exits_reports_its_code_and_log(tmp_path: Path, scripted: None) -> None:
    class Crash(_Script):
        name: ClassVar[str] = "test-crash"
        script: ClassVar[str] = "import sys; print('error: model file not found', flush=True); sys.exit(3)"

    with pytest.raises(HarnessError, match=r"exited with code 3.*model file not found"):
        Crash(_settings(tmp_path, timeout=30)).start()


def test_a_planted_link_as_the_server_log_is_refused(tmp_path: Path, scripted: None) -> None:
    """The log lives in the run directory: a link planted as server.log is refused (harness.safefs), before the
    process starts, and what it points to is left as it was."""

    class Linked(_Script):
        name: ClassVar[str] = "test-linked"
        script: ClassVar[str] = "print('would overwrite the outside file', flush=True)"

    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"not the harness's\n")
    (tmp_path / "server.log").symlink_to(outside)
    server = Linked(_settings(tmp_path, timeout=5))
    with pytest.raises(HarnessError, match=r"server.log: is a symbolic link") as info:
        server.start()
    assert "\n" not in str(info.value) and server.process is None
    assert outside.read_bytes() == b"not the harness's\n"


def test_listening_pid_finds_this_process() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        if listening_pid(port) is None:
            pytest.skip("psutil cannot see listening sockets here (no privileges)")
        assert listening_pid(port) == os.getpid()
        assert local_server_pid(f"http://127.0.0.1:{port}/v1") == os.getpid()
    assert local_server_pid("http://192.0.2.1:8080") is None  # not this machine: never guessed


def test_unknown_server_and_missing_binary(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match=r'unknown --via server "llama-srv".*Did you mean "llama-server"'):
        server_class("llama-srv")
    monkeypatch.setenv("PATH", "")
    monkeypatch.setenv("HARNESS_TOOLS", str(tmp_path))  # nor a `harness tools build` in the cache
    with pytest.raises(HarnessError, match="no llama-server on PATH"):
        server_class("llama-server").preflight()
    with pytest.raises(HarnessError, match="no ollama on PATH"):
        server_class("ollama").preflight()


def test_llama_cpp_server_command_pins_template_and_queues_requests(tmp_path: Path) -> None:
    server = server_class("llama-cpp-server")(_settings(tmp_path, timeout=1))
    command = server.command()
    # Through the launcher that sets llama.cpp's repack switch (llama-cpp-python's settings have none).
    assert command[:5] == [sys.executable, "-m", "harness.servers.llama_cpp_server_main", "--repack", "1"]
    pairs = dict(zip(command[3::2], command[4::2], strict=True))
    assert pairs["--chat_format"] == "chat_template.default" and pairs["--interrupt_requests"] == "False"
    assert pairs["--host"] == "127.0.0.1" and pairs["--n_threads"] == pairs["--n_threads_batch"] == "1"
    assert pairs["--n_ctx"] == "512" and pairs["--port"] == str(server.port)
    flags = server.endpoint()
    assert flags.server == "llama-cpp-python" and flags.tokenizer == str(tmp_path / "m.gguf")
