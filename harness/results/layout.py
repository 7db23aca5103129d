"""The files of a run directory, named once: the runner writes them, and summary, score, compare and report
read them through these names.

    <out>/<run_id>/results.csv         one row per model x talk x repeat (schema.COLUMNS)
    <out>/<run_id>/summaries.jsonl     generated text per row, with references and source for re-scoring
    <out>/<run_id>/summary.csv         per model x talk aggregate over repeats (written at the end)
    <out>/<run_id>/summary_models.csv  per model aggregate over talks (written at the end)
    <out>/<run_id>/run.json            the run record (harness.results.record.RunRecord)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RESULTS_CSV = "results.csv"
SUMMARIES_JSONL = "summaries.jsonl"
SUMMARY_CSV = "summary.csv"
SUMMARY_MODELS_CSV = "summary_models.csv"
RUN_JSON = "run.json"


@dataclass(frozen=True)
class RunFiles:
    """The paths of one run directory's files."""

    dir: Path

    @property
    def results_csv(self) -> Path:
        return self.dir / RESULTS_CSV

    @property
    def summaries_jsonl(self) -> Path:
        return self.dir / SUMMARIES_JSONL

    @property
    def summary_csv(self) -> Path:
        return self.dir / SUMMARY_CSV

    @property
    def summary_models_csv(self) -> Path:
        return self.dir / SUMMARY_MODELS_CSV

    @property
    def run_json(self) -> Path:
        return self.dir / RUN_JSON
