"""User-facing errors, and the "unknown name" error every lookup shares.

A `HarnessError` is a mistake the user can fix (bad flag, malformed file, missing model). The CLI prints
its message on one line and exits with status 2 -- no traceback. Anything else is a bug and keeps its
traceback.

`unknown(kind, name, choices)` is how every registry (models, talks, backends, metrics, providers,
generators, tokenizers) answers a name it does not know: one line with "did you mean" and the known names.
It lives here, beside the error it builds, so that any module can use it without importing a registry.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

MAX_SUGGESTIONS = 3


class HarnessError(Exception):
    """A problem with the user's input or environment, with a message that names the fix."""


class ModelUnavailableError(HarnessError):
    """A model's weights are not in the cache and cannot be fetched (offline, no network, no file)."""


class ChecksumError(HarnessError):
    """Downloaded or cached weights do not match the sha256 in models.yaml."""


def close_matches(name: str, choices: Iterable[str], n: int = MAX_SUGGESTIONS) -> list[str]:
    """Choices that `name` probably meant, best first: those it starts (`smollm2` ->
    `smollm2-135m-instruct-q4_1`), then those containing it, then difflib's near-spellings (typos).
    Case-insensitive; an empty name matches nothing."""
    needle = name.strip().lower()
    if not needle:
        return []
    options = sorted(set(choices))
    prefix = [c for c in options if c.lower().startswith(needle)]
    inside = [c for c in options if needle in c.lower() and c not in prefix]
    lowered = {c.lower(): c for c in options}
    typos = [lowered[c] for c in difflib.get_close_matches(needle, list(lowered), n=n, cutoff=0.6)]
    picked: list[str] = []
    for choice in [*prefix, *inside, *typos]:
        if choice not in picked and choice != name:
            picked.append(choice)
    return picked[:n]


def suggest(name: str, choices: Iterable[str]) -> str:
    """' Did you mean "x"?' (or '"x", "y" or "z"') for the likely choices, or '' when none is close."""
    picks = [f'"{c}"' for c in close_matches(name, choices)]
    if not picks:
        return ""
    listed = picks[0] if len(picks) == 1 else f"{', '.join(picks[:-1])} or {picks[-1]}"
    return f" Did you mean {listed}?"


def unknown(kind: str, name: str, choices: Iterable[str]) -> HarnessError:
    """The one-line error for a name missing from a registry: the name, likely matches, all known names."""
    options = sorted(set(choices))
    return HarnessError(f'unknown {kind} "{name}".{suggest(name, options)} Known: {", ".join(options)}')
