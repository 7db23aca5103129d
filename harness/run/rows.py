"""Writing a sample's outcome as its row, the moment it exists, and counting what was written.

The row's shape belongs to `harness.results.rows` (`ok_row`, `error_row`); this stage writes it through the
run's writer (results.csv + summaries.jsonl, durable before the next sample starts), prints its line, and
keeps the counts run.json and the exit code are made from.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass

from harness.launchers.session import SampleOutcome
from harness.results.layout import RESULTS_CSV
from harness.results.rows import ModelRowContext, error_row, ok_row, summary_record
from harness.results.writer import RunWriter
from harness.run.echo import Echo
from harness.run.plan import PlannedSample


@dataclass
class RowSink:
    writer: RunWriter
    echo: Echo
    ok: int = 0  # this attempt's ok rows
    errors: int = 0  # this attempt's error rows
    first_error: str = ""
    engine_s: float = 0.0  # the timed generations' end-to-end time (run.json overhead)

    def outcome(self, ctx: ModelRowContext, item: PlannedSample, outcome: SampleOutcome) -> dict | None:
        """The sample's row (an error row when it failed); the ok row is returned for the caller's checks."""
        if outcome.result is None:
            self.error(ctx, item, outcome.error)
            return None
        result = outcome.result
        self.ok += 1
        row = ok_row(ctx, item.talk, item.repeat, result, outcome.columns)
        self.engine_s += result.latency.e2e_s or 0.0
        self.writer.write_row(row, summary_record(row, item.talk, result.text))
        self.echo.sample(row)
        return row

    def error(self, ctx: ModelRowContext, item: PlannedSample, message: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or message
        row = error_row(ctx, item.talk, item.repeat, message, item.seq)
        self.writer.write_row(row, summary_record(row, item.talk, ""))
        self.echo.error_row(item.talk.id, item.repeat, message)

    def counts(self, resumed: bool) -> tuple[int, int]:
        """(ok rows, error rows) in results.csv: this attempt's, and on --resume the earlier attempt's too."""
        if not resumed:
            return self.ok, self.errors
        try:
            with (self.writer.dir / RESULTS_CSV).open(newline="", encoding="utf-8") as fh:
                ok = sum(r.get("status") == "ok" for r in csv.DictReader(fh))
        except OSError:
            ok = self.ok
        return ok, max(0, self.writer.rows_written - ok)

    def every_sample_failed(self, resumed: bool) -> str | None:
        """'every sample failed: …' when the run wrote rows and none is ok (then the run is `failed`, exit 4)."""
        ok, errors = self.counts(resumed)
        if not errors or ok:
            return None
        return f"every sample failed ({errors} error rows): {self.first_error or 'see the error column of results.csv'}"


__all__ = ["RowSink"]
