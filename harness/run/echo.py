"""What a run prints while it runs: one place for every console line of `harness run`.

Lines go through a `Printer` (the progress display's `echo` on a terminal, a test's list, a fleet job's
row streamer), so the stages never print themselves and the wording of a line is found here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness import __version__
from harness.models.registry import ModelEntry
from harness.params import Config

Printer = Callable[[str], None]


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


class Echo:
    def __init__(self, printer: Printer) -> None:
        self.printer = printer

    def line(self, text: str) -> None:
        self.printer(text)

    def header(
        self, run_id: str, models: int, configs: list[Config], talks: int, repeats: int, threads: int,
        resumed: tuple[int, int] | None,
    ) -> None:  # fmt: skip
        """The run's first line: what it will do; `resumed`: (rows already written, planned samples)."""
        swept = len(configs) > 1
        self.printer(
            f"harness {__version__} | run {run_id} | {models} model(s) x "
            + (f"{len(configs)} configs x " if swept else "")
            + f"{talks} talk(s) x {repeats} repeat(s) | "
            + (f"sweep: {', '.join(configs[0].swept)}" if swept else f"threads {threads}")
            + (f" | resuming: {resumed[0]} of {resumed[1]} rows already written" if resumed else "")
        )

    def warning(self, text: str) -> None:
        self.printer(f"   warning: {text}")

    def model_header(self, entry: ModelEntry, config: Config) -> None:
        self.printer(f"\n== {entry.id} ({entry.backend}, {entry.quant}){f' [{config.label}]' if config.label else ''}")

    def loaded(self, load: dict[str, Any], weight_bytes: int | None, mmap: bool) -> None:
        before, after = load.get("rss_before_load_mb"), load.get("rss_after_load_mb")
        self.printer(
            f"   loaded in {load['load_s']:.2f} s on {load['provider']} | RSS {_fmt(before, '.0f')} -> "
            f"{_fmt(after, '.0f')} MiB | weights {(weight_bytes or 0) / 2**20:.1f} MiB, mmap={'on' if mmap else 'off'}"
        )

    def worker_failed(self, message: str) -> None:
        self.printer(f"   worker failed: {message}")

    def sample(self, row: dict[str, Any]) -> None:
        from harness.progress import sample_line

        self.printer(sample_line(row))  # map-reduce/refine lines lead with chunks, stages and e2e
        if row["truncated"]:
            self.printer(
                f"   note: {row['talk_id']} truncated to {row['input_chars']} chars to fit "
                f"n_ctx {row['n_ctx']} - max_new_tokens {row['max_new_tokens']}"
            )

    def error_row(self, talk_id: str, repeat: int, message: str) -> None:
        self.printer(f"   {talk_id} r{repeat}: ERROR {message}")

    def gave_up(self, model_id: str, message: str) -> None:
        self.printer(f"   {message}; remaining samples of {model_id} recorded as errors")

    def fresh_worker(self, model_id: str, message: str) -> None:
        self.printer(f"   {message}: worker killed; {model_id} continues in a fresh worker")


__all__ = ["Echo", "Printer"]
