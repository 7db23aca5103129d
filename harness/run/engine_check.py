"""Before the first llama.cpp model: does llama.cpp's weight repacking run on this CPU?

On some CPUs (Intel AMX machines with some llama.cpp builds) the repacked kernels crash at the first decode.
The self-check (harness.backends.llama_cpp_repack) answers once per build x CPU, in a child process, and is
cached. This stage turns its verdict into each model's repack setting (`--repack` when given; else the
models.yaml flag; else off when the check saw repack crash, else llama.cpp's default, on), into run.json
`engine_check`, and into the words a dead worker's message gets.
"""

from __future__ import annotations

import dataclasses

from harness.backends import backend_class
from harness.backends.base import BackendFlags
from harness.backends.llama_cpp_repack import RepackVerdict, check_repack
from harness.models.registry import ModelEntry, cache_dir
from harness.params import Config


def has_repack(entry: ModelEntry) -> bool:
    """The entry's backend has llama.cpp's repack setting (a `repack` flag): the self-check concerns it."""
    return "repack" in {f.name for f in dataclasses.fields(backend_class(entry.backend).flags_type)}


def effective_repack(flags: BackendFlags) -> bool | None:
    """The repack setting a llama.cpp model runs with (None: the backend has no such setting)."""
    if not hasattr(flags, "repack"):
        return None
    value = flags.repack
    return True if value is None else bool(value)


@dataclasses.dataclass
class EngineCheck:
    """The self-check's verdict for this run (None until `run`, and when no model has the setting)."""

    verdict: RepackVerdict | None = None

    def run(self, entries: list[ModelEntry], configs: list[Config]) -> tuple[dict[str, object] | None, list[str]]:
        """Run (or read from the cache) the self-check when a model has the repack setting: (run.json
        `engine_check` or None, warnings for the run)."""
        if not any(has_repack(e) for e in entries):
            return None, []
        verdict = self.verdict = check_repack(cache_dir())
        warnings: list[str] = []
        applied = "repack on (llama.cpp's default)"
        if verdict.repack_ok is False:
            forced = sorted({e.id for e in entries for c in configs if c.get("repack") is True})
            applied = "repack off for models left on auto" + (
                f"; forced on by --repack 1: {', '.join(forced)}" if forced else ""
            )
            warnings.append(f"{verdict.summary}: {verdict.remedy}")
            if forced:
                warnings.append(
                    f"--repack 1 asked for repack on {', '.join(forced)}: expect those workers to crash "
                    f"({verdict.signal}); drop --repack 1 or use --repack 0"
                )
        elif verdict.repack_ok is None:
            warnings.append(verdict.summary)
        return {"repack": verdict.record(), "applied": applied}, warnings

    def repack_for(self, entry: ModelEntry, config: Config) -> bool | None:
        """--repack when given; else the models.yaml flag (None here); else off when the self-check saw repack
        crash on this CPU, else None (llama.cpp's default: on)."""
        asked = config.get("repack")
        if asked is not None:
            return bool(asked)
        if "repack" in entry.flags or not has_repack(entry):
            return None
        if self.verdict is not None and self.verdict.repack_ok is False:
            return False
        return None

    def explain(self, message: str, repack_on: bool | None) -> str:
        """What the self-check adds to the message of a worker killed by a signal while repack was on."""
        verdict = self.verdict
        if verdict is not None and verdict.repack_ok is False and repack_on:
            return f"{message} (repack self-check: {verdict.summary}; run with --repack 0)"
        if verdict is not None and verdict.repack_ok and repack_on:
            return f"{message} (the repack self-check passed on this CPU; try --repack 0 to rule it out)"
        return message


__all__ = ["EngineCheck", "effective_repack", "has_repack"]
