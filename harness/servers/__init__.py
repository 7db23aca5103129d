"""Managed local servers for `harness run --via NAME`, by name: llama-cpp-server (llama-cpp-python's server,
tested), llama-server (llama.cpp's binary on PATH) and ollama (a running daemon), one file each."""

from __future__ import annotations

from harness.errors import unknown
from harness.servers import llama_cpp_server, llama_server, ollama  # noqa: F401 - each module registers its class
from harness.servers.base import REGISTERED, ManagedServer, ServerSettings


def server_class(name: str) -> type[ManagedServer]:
    if name not in REGISTERED:
        raise unknown("--via server", name, REGISTERED)
    return REGISTERED[name]


def server_names() -> list[str]:
    return sorted(REGISTERED)


__all__ = ["ManagedServer", "ServerSettings", "server_class", "server_names"]
