"""The fleet's jobs and their rows: one job per device x model, and the rows it owes the run.

A job (`JobState`) plans the same samples as a local run of its model would (harness.run.plan.plan), each
`n_configs` times when settings are swept (the device plans its configs itself: their ids depend on the
device's thread count). `FleetRows` writes the rows as they arrive -- each sample once, however often a
re-run or a late event repeats it -- and knows, per job, which planned samples still have no row: those
become error rows (harness.results.rows.error_row) when the job is refused, fails, is lost or ends early.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.corpus import Talk
from harness.models.registry import ModelEntry
from harness.results.rows import ModelRowContext, error_row, summary_record
from harness.results.schema import COLUMNS
from harness.results.writer import RunWriter
from harness.run.config import RunConfig
from harness.run.plan import PlannedSample

SampleKey = tuple[str, str, str, str, str]  # device, model, config_id, talk_id, repeat
SlotKey = tuple[str, str, str, str]  # device, model, talk_id, repeat: n_configs rows each


@dataclass
class JobState:
    """One device x model job as the driver tracks it, through attempts, to its outcome."""

    device: str
    entry: ModelEntry
    samples: list[PlannedSample]  # the model's planned (talk, repeat)s; the device numbers its own sample_seq
    attempt: int = 0
    future: Any = None
    done: bool = False
    lost_at: float | None = None
    outcome: str = "pending"  # done | refused | failed | lost | cancelled | "cancelled, unconfirmed"
    reason: str = ""
    run_json: dict[str, Any] = field(default_factory=dict)  # the job's own run.json, once it returned

    @property
    def job_id(self) -> str:
        return f"{self.device}/{self.entry.id}"


def sample_key(row: dict[str, Any]) -> SampleKey:
    """What makes a row unique in a fleet run (config_id: the sweep's config, empty without a sweep)."""
    return tuple(str(row.get(k, "") or "") for k in ("device", "model", "config_id", "talk_id", "repeat"))  # type: ignore[return-value]


def n_configs(config: Any) -> int:
    """How many configs each model runs: the product of the swept values (1 without a sweep)."""
    sweep = getattr(config, "sweep", None) or {}
    return math.prod(len(v) for v in sweep.values()) if sweep else 1


class FleetRows:
    """The run's rows: written once each, counted per device x model x talk x repeat (`slots`)."""

    def __init__(self, writer: RunWriter, config: RunConfig, warn: Callable[[str], None]) -> None:
        self.writer = writer
        self.config = config
        self.warn = warn  # a run.json warning (the driver's record builder)
        self.per_slot = n_configs(config)
        self.written: set[SampleKey] = set()
        self.slots: Counter[SlotKey] = Counter()
        self.errors = 0
        self.column_warned: set[str] = set()

    @property
    def total(self) -> int:
        return sum(self.slots.values())

    def of_device(self, device: str) -> int:
        return sum(n for k, n in self.slots.items() if k[0] == device)

    def of_job(self, state: JobState) -> int:
        return sum(self.slots[(state.device, state.entry.id, s.talk_id, str(s.repeat))] for s in state.samples)

    def row(self, row: dict[str, Any], summary: dict[str, Any]) -> None:
        """A row a device sent (streamed or returned); a repeat of one already written is dropped."""
        key = sample_key(row)
        slot = (key[0], key[1], key[3], key[4])
        if key in self.written or self.slots[slot] >= self.per_slot:
            return  # a re-run's repeat of a finished sample, or a late row for one already written as an error
        self.written.add(key)
        self.slots[slot] += 1
        unknown_columns = sorted(set(row) - set(COLUMNS))
        if unknown_columns and key[0] not in self.column_warned:
            # Same version number, other code: keep the row in this run's schema and say what was dropped.
            self.column_warned.add(key[0])
            self.warn(
                f"{key[0]}: rows had columns this driver does not know, dropped: {', '.join(unknown_columns)}; "
                f"install the driver's harness commit on the device"
            )
        run_id = self.writer.run_id
        self.writer.write_row({k: v for k, v in row.items() if k in COLUMNS} | {"run_id": run_id},
                              {**summary, "run_id": run_id})  # fmt: skip
        if str(row.get("status", "")).strip() != "ok":
            self.errors += 1

    def missing(self, state: JobState, talk_id: str, repeat: int) -> int:
        return max(0, self.per_slot - self.slots[(state.device, state.entry.id, talk_id, str(repeat))])

    def missing_talks(self, state: JobState) -> list[str]:
        """The documents a re-run of the job must cover (those with a planned sample still missing)."""
        return list(dict.fromkeys(s.talk_id for s in state.samples if self.missing(state, s.talk_id, s.repeat)))

    def error_rows(self, state: JobState, message: str) -> int:
        """One error row per planned sample of `state` that has no row yet."""
        n = 0
        for s in state.samples:
            for _ in range(self.missing(state, s.talk_id, s.repeat)):
                self._error_row(state, s.talk, s.repeat, message)
                n += 1
        return n

    def _error_row(self, state: JobState, talk: Talk, repeat: int, message: str) -> None:
        """One error row. Its config_id stays empty: the driver knows how many of a sample's configs are
        missing, not which (the runner plans them on the device); the message names the device and why."""
        base = {
            "run_id": self.writer.run_id,
            "device": state.device,
            "model": state.entry.id,
            "backend": state.entry.backend,
            "quant": state.entry.quant,
            "max_new_tokens": self.config.max_new_tokens,
            "min_new_tokens": self.config.min_new_tokens,
            "summary_lang": self.config.summary_lang or talk.lang,
        }
        row = error_row(ModelRowContext(base=base), talk, repeat, message, None)
        self.errors += 1
        self.slots[(state.device, state.entry.id, talk.id, str(repeat))] += 1
        self.writer.write_row(row, {**summary_record(row, talk, ""), "device": state.device})


__all__ = ["FleetRows", "JobState", "SampleKey", "n_configs", "sample_key"]
