"""The results.csv schema: one row per model x talk x repeat.

Column names are a stable interface (compare, report and users' notebooks read them). Add columns at the
end of a group; never rename. `COLUMNS` is the order written; `describe()` feeds the README table.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    name: str
    unit: str
    doc: str


_C = Column

COLUMN_SPECS: tuple[Column, ...] = (
    # --- identity -----------------------------------------------------------------------------
    _C("run_id", "", "run directory name (UTC timestamp + short hash)"),
    _C("model", "", "model id from models.yaml"),
    _C("backend", "", "llama_cpp or onnx"),
    _C("provider", "", "where it ran: llama.cpp CPU/GPU build, or the ONNX execution provider that ran"),
    _C("quant", "", "quantisation from models.yaml (Q4_1, Q4_K_M, int4, ...)"),
    _C("threads", "", "decode threads (= batch/prefill threads)"),
    _C("talk_id", "", "talk id from the corpus"),
    _C("repeat", "", "0-based repeat index; warm-up generations are never written"),
    # --- latency (measured in the worker process, from the token stream) -------------------------
    _C("prompt_tokens", "tokens", "tokens in the rendered prompt, as fed to the engine"),
    _C("output_tokens", "tokens", "generated tokens, EOS excluded"),
    _C("load_s", "s", "model load time in the worker (once per model, repeated on each row)"),
    _C("ttft_s", "s", "prompt submitted -> first generated token (prefill + first sample)"),
    _C("prefill_tok_s", "tok/s", "prompt_tokens / ttft_s"),
    _C("decode_tok_s", "tok/s", "(output_tokens - 1) / (last token time - first token time)"),
    _C("e2e_s", "s", "prompt submitted -> last token"),
    # --- memory (sampled by the parent process from outside the worker) --------------------------
    _C(
        "peak_rss_mb",
        "MiB",
        "peak resident set size of the worker during this sample (max of 10 ms polls and kernel VmHWM)",
    ),
    # --- quality --------------------------------------------------------------------------------
    _C("rouge1_f", "0-1", "ROUGE-1 F, best over references"),
    _C("rouge2_f", "0-1", "ROUGE-2 F, best over references"),
    _C("rougeL_f", "0-1", "ROUGE-L F, best over references"),
    # --- outcome --------------------------------------------------------------------------------
    _C("status", "", "ok or error"),
    _C("error", "", "error message when status=error"),
    # --- detail: latency -------------------------------------------------------------------------
    _C("itl_p50_ms", "ms", "inter-token latency, median over the sample's decode steps"),
    _C("itl_p90_ms", "ms", "inter-token latency, 90th percentile"),
    _C("itl_p99_ms", "ms", "inter-token latency, 99th percentile"),
    _C(
        "engine_prompt_tokens", "tokens", "engine's own count of prompt tokens evaluated (llama.cpp n_p_eval)"
    ),
    _C("engine_prefill_tok_s", "tok/s", "engine's own prefill rate (llama.cpp n_p_eval / t_p_eval)"),
    _C("engine_decode_tokens", "tokens", "engine's own count of decode steps (llama.cpp n_eval)"),
    _C("engine_decode_tok_s", "tok/s", "engine's own decode rate (llama.cpp n_eval / t_eval)"),
    _C("decode_vs_engine_pct", "%", "100 * (decode_tok_s / engine_decode_tok_s - 1)"),
    _C("outside_engine_ms_per_tok", "ms", "per decode step, wall time outside the engine's eval timer (sampling)"),
    _C("stop_reason", "", "eos, length (max_new_tokens) or error"),
    _C("max_new_tokens", "tokens", "generation cap for this sample"),
    _C("min_new_tokens", "tokens", "forced minimum length (EOS ignored until reached); 0 = natural stop"),
    _C("n_ctx", "tokens", "context size the model was loaded with"),
    _C("flash_attn", "", "flash attention setting of the engine"),
    _C("truncated", "", "true when the talk was cut to fit n_ctx - max_new_tokens"),
    _C("input_chars", "chars", "characters of talk text in the prompt (after truncation)"),
    _C("prompt_name", "", "prompt template file name"),
    _C("prompt_sha", "", "first 12 hex of the template's sha256"),
    _C("summary_lang", "", "language the summary was requested in"),
    # --- detail: memory and device state --------------------------------------------------------
    _C("rss_before_load_mb", "MiB", "worker RSS before the model was loaded"),
    _C("rss_after_load_mb", "MiB", "worker RSS right after load"),
    _C("uss_mb", "MiB", "worker unique set size at the end of the sample (where the OS gives it)"),
    _C("pss_mb", "MiB", "worker proportional set size at the end of the sample (Linux)"),
    _C("model_file_mb", "MiB", "size of the weight file(s) on disk"),
    _C("mmap", "", "true when weights are memory-mapped (file pages then count in RSS)"),
    _C("cpu_mhz_start", "MHz", "mean current CPU frequency before the sample (where the OS exposes it)"),
    _C("cpu_mhz_end", "MHz", "mean current CPU frequency after the sample"),
    _C("temp_c_end", "C", "highest CPU temperature after the sample (where the OS exposes it)"),
    _C("decode_bw_util", "0-1", "decode_tok_s * model_file bytes / measured memory bandwidth (roofline)"),
    # --- detail: quality ------------------------------------------------------------------------
    _C("rougeLsum_f", "0-1", "ROUGE-Lsum F (sentence-split LCS), best over references"),
    _C("rouge1_p", "0-1", "ROUGE-1 precision of the best reference"),
    _C("rouge1_r", "0-1", "ROUGE-1 recall of the best reference"),
    _C("rouge2_p", "0-1", "ROUGE-2 precision"),
    _C("rouge2_r", "0-1", "ROUGE-2 recall"),
    _C("rougeL_p", "0-1", "ROUGE-L precision"),
    _C("rougeL_r", "0-1", "ROUGE-L recall"),
    _C("rouge_tokenizer", "", "how text was tokenised for ROUGE (char, jieba, porter)"),
    _C("compression_ratio", "", "summary tokens / talk tokens (ROUGE tokens)"),
    _C("novel_1gram", "0-1", "share of summary unigrams absent from the talk"),
    _C("novel_2gram", "0-1", "share of summary bigrams absent from the talk (copying vs abstracting)"),
    _C("repetition_rate", "0-1", "share of summary 4-grams that repeat an earlier 4-gram (degeneration)"),
    _C("lang_match", "", "true when the summary is in the requested language"),
)

COLUMNS: tuple[str, ...] = tuple(c.name for c in COLUMN_SPECS)
REQUIRED_COLUMNS: tuple[str, ...] = COLUMNS[: COLUMNS.index("error") + 1]


def describe() -> str:
    """Markdown table of the columns, for the README."""
    lines = ["| column | unit | meaning |", "|---|---|---|"]
    lines += [f"| `{c.name}` | {c.unit} | {c.doc} |" for c in COLUMN_SPECS]
    return "\n".join(lines)
