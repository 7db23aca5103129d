"""Rows in one place: a sample's typed result, the trackers' columns and the scores become one CSV row
(and its summaries.jsonl record). The error row is built here too, so an ok row and an error row of the
same model carry the same identity and setting columns.

    ModelRowContext   what every row of one model (× config) shares: identity, settings, load columns
    ok_row()          SampleResult + tracker columns + scores -> row
    error_row()       a sample that produced nothing -> row with status=error and the message
    summary_record()  the summaries.jsonl line beside each row (text, references, source for rescoring)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.corpus import Talk
from harness.scenarios.base import SampleResult
from harness.scoring import score_summary
from harness.scoring.signals import is_degenerate
from harness.trackers.device import KvCacheShape, roofline_util


@dataclass
class ModelRowContext:
    """Columns shared by every row of one model in one configuration."""

    base: dict[str, Any]  # run_id, model, backend, quant, threads, settings, prompt name/sha, summary_lang…
    load: dict[str, Any] = field(default_factory=dict)  # load_s, provider, n_ctx, mmap + load-window tracker columns
    weight_bytes: int | None = None  # size of the weight file(s)
    weights_read_bytes: int | None = None  # bytes one decode step reads (harness.trackers.device), GGUF only
    kv_shape: KvCacheShape | None = None  # the model's KV cache, for the KV bytes each decode step reads
    bandwidth_gbs: float | None = None  # measured once per run (device tracker), for the roofline column

    @property
    def lang(self) -> str:
        return str(self.base["summary_lang"])


def _identity(ctx: ModelRowContext, talk: Talk, repeat: int, seq: int | None) -> dict[str, Any]:
    return {**ctx.base, **ctx.load, "talk_id": talk.id, "repeat": repeat, "sample_seq": seq}


def ok_row(
    ctx: ModelRowContext, talk: Talk, repeat: int, result: SampleResult, tracker_columns: dict[str, Any]
) -> dict[str, Any]:
    lat = result.latency
    scores = score_summary(result.text, talk.references_for(ctx.lang), ctx.lang, source=talk.text)
    # Roofline: a decode step streams the weights it uses plus the KV cache at its depth (docs/methodology.md).
    weights = ctx.weights_read_bytes or ctx.weight_bytes
    kv_read = ctx.kv_shape.mean_read_bytes(lat.prompt_tokens, lat.output_tokens) if ctx.kv_shape else None
    return {
        **_identity(ctx, talk, repeat, result.index),
        **lat.as_row(),
        **scores,
        **tracker_columns,
        **result.columns,
        "status": "ok",
        "error": "",
        "weights_read_mb_per_tok": weights / 1e6 if weights else None,
        "kv_read_mb_per_tok": kv_read / 1e6 if kv_read is not None else None,
        "decode_bw_util": roofline_util(lat.decode_tok_s, weights, kv_read, ctx.bandwidth_gbs),
        # One-call samples only: a multi-stage sample's prompt_tokens are its first stage's, not the document's.
        "tokens_per_char": lat.prompt_tokens / result.input_chars if result.input_chars and not result.stages else None,
        "stop_reason": result.stop_reason,
        "truncated": result.truncated,
        "input_chars": result.input_chars,
        "degenerate": is_degenerate(result.stop_reason, scores.get("repetition_rate"), scores.get("lang_match")),
    }


def error_row(ctx: ModelRowContext, talk: Talk, repeat: int, message: str, seq: int | None) -> dict[str, Any]:
    return {
        **_identity(ctx, talk, repeat, seq),
        "status": "error",
        "error": message,
        "stop_reason": "error",
    }


def summary_record(row: dict[str, Any], talk: Talk, prediction: str) -> dict[str, Any]:
    lang = str(row["summary_lang"])
    return {
        "run_id": row["run_id"],
        "model": row["model"],
        "talk_id": talk.id,
        "repeat": row["repeat"],
        "status": row["status"],
        "summary_lang": lang,
        "prompt_name": row.get("prompt_name"),
        "prediction": prediction,
        "references": list(talk.references_for(lang)),
        "source": talk.text,
    }
