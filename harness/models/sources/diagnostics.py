"""Why a download could not start or failed, in one line: DNS probes, environment switches, first lines."""

from __future__ import annotations

import os
import socket

PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")

# Substrings of pip's output that mean "the index could not be reached" rather than "no such package".
NETWORK_HINTS = (
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


def env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def first_line(exc: BaseException) -> str:
    """`Type: first line of the message` (160 characters at most), for one-line errors."""
    text = str(exc).strip()
    first = text.splitlines()[0][:160] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def dns_failure(host: str) -> str | None:
    """Why `host` does not resolve, or None when it does (a cheap "is there a network" probe)."""
    if not host or any(os.environ.get(v) for v in PROXY_VARS):
        return None  # behind a proxy the hub's name may only resolve on the proxy
    try:
        socket.getaddrinfo(host, 443, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        return str(exc) or type(exc).__name__
    return None
