"""The results.csv schema: one row per model x talk x repeat, and the one table of facts about each column.

Column names are a stable interface (compare, report and users' notebooks read them). Add columns at the
end of a group; never rename. `COLUMNS` is the order written; `describe()` feeds the table in docs/results.md.

Each column declares what it is (`kind`: identity, setting, metric or info), whether its cells are numbers,
which direction is better, how a model's samples combine into one figure (`aggregate`), and in which
headline views it appears (`summary`: the tables a run prints and summary*.csv; `report`; `compare`'s
defaults). compare, summary, score and report take these facts from here and keep no list of their own.
Declare a new column with `_metric`, `_flag`, `_setting`, `_id` or `_info`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["id", "setting", "metric", "info"]
Better = Literal["higher", "lower", ""]
# How one model's samples become one figure (harness.results.aggregate):
#   mean   mean over repeats per talk, then over talks (talks weigh equally, whatever their repeats)
#   max    as mean, and the largest single sample is reported too (`<name>_max`: peaks)
#   share  a true/false column: how many samples are true, of how many
Aggregate = Literal["mean", "max", "share", ""]
View = Literal["summary", "report", "compare"]

ALL_VIEWS: tuple[View, ...] = ("summary", "report", "compare")
QUALITY_VIEWS: tuple[View, ...] = ("summary", "report")


@dataclass(frozen=True)
class Column:
    name: str
    unit: str
    doc: str
    kind: Kind = "info"
    numeric: bool = False
    better: Better = ""  # "" = no direction: compared, never flagged
    aggregate: Aggregate = ""
    label: str = ""  # short table heading; the name when empty
    views: tuple[View, ...] = ()
    # A function of the generated text alone (ROUGE, token counts): identical on every repeat under greedy
    # decoding, so a talk contributes one value, not one per repeat.
    deterministic: bool = False

    @property
    def heading(self) -> str:
        """Short table heading with the unit: 'TTFT s', 'decode tok/s', 'ROUGE-L F'."""
        label = self.label or self.name
        return f"{label} {self.unit}" if self.unit and self.unit != "0-1" else label


def _id(name: str, unit: str, doc: str, *, numeric: bool = False) -> Column:
    """Identifies a sample (model, talk, repeat, ...): grouping keys, never aggregated."""
    return Column(name, unit, doc, kind="id", numeric=numeric)


def _setting(name: str, unit: str, doc: str, *, numeric: bool = True) -> Column:
    """How a sample was produced: checked for like-for-like in compare, never aggregated."""
    return Column(name, unit, doc, kind="setting", numeric=numeric)


def _info(name: str, unit: str, doc: str, *, numeric: bool = False) -> Column:
    """Descriptive text (status, error, names)."""
    return Column(name, unit, doc, kind="info", numeric=numeric)


def _metric(
    name: str,
    unit: str,
    doc: str,
    *,
    better: Better = "",
    aggregate: Aggregate = "mean",
    label: str = "",
    views: tuple[View, ...] = (),
    deterministic: bool = False,
) -> Column:
    """A measured number."""
    return Column(name, unit, doc, "metric", True, better, aggregate, label, views, deterministic)


def _flag(name: str, unit: str, doc: str, *, better: Better = "", deterministic: bool = False) -> Column:
    """A measured true/false (written as true/false): counted per model."""
    return Column(name, unit, doc, "metric", False, better, "share", "", (), deterministic)


def _C(name: str, unit: str, doc: str) -> Column:
    """A column declared without facts: one with a unit is a numeric metric, one without is info text."""
    return _metric(name, unit, doc) if unit else _info(name, unit, doc)


COLUMN_SPECS: tuple[Column, ...] = (
    # --- identity -----------------------------------------------------------------------------
    _id("run_id", "", "run directory name (UTC timestamp + short hash)"),
    _id("model", "", "model id from models.yaml"),
    _id("backend", "", "llama_cpp or onnx"),
    _id("provider", "", "where it ran: llama.cpp CPU/GPU build, or the ONNX execution provider that ran"),
    _id("quant", "", "quantisation from models.yaml (Q4_1, Q4_K_M, int4, ...)"),
    _setting("threads", "", "decode threads (= batch/prefill threads)"),
    _id("talk_id", "", "talk id from the corpus"),
    _id("repeat", "", "0-based repeat index; warm-up generations are never written", numeric=True),
    # --- latency (measured in the worker process, from the token stream) -------------------------
    _metric("prompt_tokens", "tokens", "tokens in the rendered prompt, as fed to the engine", deterministic=True),
    _metric("output_tokens", "tokens", "generated tokens, EOS excluded", deterministic=True),
    _metric("load_s", "s", "model load time in the worker (once per model, repeated on each row)", better="lower"),
    _metric(
        "ttft_s",
        "s",
        "prompt submitted -> first generated token (prefill + first sample)",
        better="lower",
        label="TTFT",
        views=ALL_VIEWS,
    ),
    _metric("prefill_tok_s", "tok/s", "prompt_tokens / ttft_s", better="higher", label="prefill", views=ALL_VIEWS),
    _metric(
        "decode_tok_s",
        "tok/s",
        "(output_tokens - 1) / (last token time - first token time)",
        better="higher",
        label="decode",
        views=ALL_VIEWS,
    ),
    _metric("e2e_s", "s", "prompt submitted -> last token", better="lower", label="e2e", views=ALL_VIEWS),
    # --- memory (sampled by the parent process from outside the worker) --------------------------
    _metric(
        "peak_rss_mb",
        "MiB",
        "peak resident set size of the worker during this sample (kernel VmHWM reset per sample; else 10 ms polls). "
        "The reset starts from the RSS the sample begins with, so memory an earlier, longer sample made resident "
        "stays in it (llama.cpp's attention compute buffer and KV pages are touched up to the longest context so "
        "far and never returned): a short talk after a long one reads the long one's level. Per model: "
        "peak_rss_mb_max = largest sample, peak_rss_mb_mean = mean of the sample peaks",
        better="lower",
        aggregate="max",
        label="peak RSS",
        views=ALL_VIEWS,
    ),
    # --- quality --------------------------------------------------------------------------------
    _metric(
        "rouge1_f",
        "0-1",
        "ROUGE-1 F, best over references",
        better="higher",
        label="ROUGE-1 F",
        views=QUALITY_VIEWS,
        deterministic=True,
    ),
    _metric(
        "rouge2_f",
        "0-1",
        "ROUGE-2 F, best over references",
        better="higher",
        label="ROUGE-2 F",
        views=QUALITY_VIEWS,
        deterministic=True,
    ),
    _metric(
        "rougeL_f",
        "0-1",
        "ROUGE-L F, best over references",
        better="higher",
        label="ROUGE-L F",
        views=ALL_VIEWS,
        deterministic=True,
    ),
    # --- outcome --------------------------------------------------------------------------------
    _info("status", "", "ok or error"),
    _info("error", "", "error message when status=error"),
    # --- detail: latency -------------------------------------------------------------------------
    _metric(
        "itl_p50_ms",
        "ms",
        "inter-token latency, median over the sample's decode steps",
        better="lower",
        label="ITL p50",
        views=("report",),
    ),
    _metric("itl_p90_ms", "ms", "inter-token latency, 90th percentile", better="lower"),
    _metric("itl_p99_ms", "ms", "inter-token latency, 99th percentile", better="lower"),
    _metric(
        "engine_prompt_tokens",
        "tokens",
        "engine's own count of prompt tokens evaluated (llama.cpp n_p_eval)",
        deterministic=True,
    ),
    _metric(
        "engine_prefill_tok_s", "tok/s", "engine's own prefill rate (llama.cpp n_p_eval / t_p_eval)", better="higher"
    ),
    _metric(
        "engine_decode_tokens", "tokens", "engine's own count of decode steps (llama.cpp n_eval)", deterministic=True
    ),
    _metric("engine_decode_tok_s", "tok/s", "engine's own decode rate (llama.cpp n_eval / t_eval)", better="higher"),
    _metric("decode_vs_engine_pct", "%", "100 * (decode_tok_s / engine_decode_tok_s - 1)"),
    _metric(
        "outside_engine_ms_per_tok",
        "ms",
        "per decode step, wall time outside the engine's eval timer (sampling); over t1..EOS on EOS stops",
    ),
    _info("stop_reason", "", "eos, length (max_new_tokens) or error"),
    _setting("max_new_tokens", "tokens", "generation cap for this sample"),
    _setting("min_new_tokens", "tokens", "forced minimum length (end tokens banned until reached); 0 = natural stop"),
    _setting("n_ctx", "tokens", "context size the model was loaded with"),
    _setting("flash_attn", "", "flash attention setting of the engine", numeric=False),
    _setting(
        "repack", "",
        "llama.cpp weight repacking into the CPU's extra buffer types (llama-bench --repack) as the sample ran: "
        "off where the engine self-check saw it crash on this CPU (run.json engine_check)",
        numeric=False,
    ),
    _flag("truncated", "", "true when the talk was cut to fit n_ctx - max_new_tokens", deterministic=True),
    _metric("input_chars", "chars", "characters of talk text in the prompt (after truncation)", deterministic=True),
    _info("prompt_name", "", "prompt template file name"),
    _setting("prompt_sha", "", "first 12 hex of the template's sha256", numeric=False),
    _setting("summary_lang", "", "language the summary was requested in", numeric=False),
    # --- detail: memory and device state --------------------------------------------------------
    _metric("rss_before_load_mb", "MiB", "worker RSS before the model was loaded"),
    _metric("rss_after_load_mb", "MiB", "worker RSS right after load", better="lower"),
    _metric("uss_mb", "MiB", "worker unique set size at the end of the sample (where the OS gives it)", better="lower"),
    _metric("pss_mb", "MiB", "worker proportional set size at the end of the sample (Linux)", better="lower"),
    _metric("model_file_mb", "MiB", "size of the weight file(s) on disk", deterministic=True),
    _setting("mmap", "", "true when weights are memory-mapped (file pages then count in RSS)", numeric=False),
    _metric("cpu_mhz_start", "MHz", "mean current CPU frequency before the sample (where the OS exposes it)"),
    _metric("cpu_mhz_end", "MHz", "mean current CPU frequency after the sample"),
    _metric("temp_c_end", "C", "highest CPU temperature after the sample (where the OS exposes it)"),
    _metric(
        "decode_bw_util",
        "0-1",
        "decode_tok_s * (weights_read_mb_per_tok + kv_read_mb_per_tok) / memory bandwidth measured with the "
        "run's threads (roofline)",
        better="higher",
    ),
    _metric(
        "weights_read_mb_per_tok",
        "MB",
        "weight bytes one decode step reads (all tensors; one token-embedding row unless the head is tied), 1e6 B",
        deterministic=True,
    ),
    _metric(
        "kv_read_mb_per_tok",
        "MB",
        "KV-cache bytes one decode step reads, averaged over the sample's depths (f16 cache; windows), 1e6 B",
        deterministic=True,
    ),
    # --- detail: quality ------------------------------------------------------------------------
    _metric(
        "rougeLsum_f",
        "0-1",
        "ROUGE-Lsum F (sentence-split LCS), best over references",
        better="higher",
        deterministic=True,
    ),
    _metric("rouge1_p", "0-1", "ROUGE-1 precision of the best reference", better="higher", deterministic=True),
    _metric("rouge1_r", "0-1", "ROUGE-1 recall of the best reference", better="higher", deterministic=True),
    _metric("rouge2_p", "0-1", "ROUGE-2 precision", better="higher", deterministic=True),
    _metric("rouge2_r", "0-1", "ROUGE-2 recall", better="higher", deterministic=True),
    _metric("rougeL_p", "0-1", "ROUGE-L precision", better="higher", deterministic=True),
    _metric("rougeL_r", "0-1", "ROUGE-L recall", better="higher", deterministic=True),
    _info("rouge_tokenizer", "", "how text was tokenised for ROUGE (char, jieba, porter)"),
    _metric("compression_ratio", "", "summary tokens / talk tokens (ROUGE tokens)", deterministic=True),
    _metric("novel_1gram", "0-1", "share of summary unigrams absent from the talk", deterministic=True),
    _metric(
        "novel_2gram",
        "0-1",
        "share of summary bigrams absent from the talk (copying vs abstracting)",
        deterministic=True,
    ),
    _metric(
        "repetition_rate",
        "0-1",
        "share of summary 4-grams that repeat an earlier 4-gram (degeneration)",
        better="lower",
        deterministic=True,
    ),
    _flag("lang_match", "", "true when the summary is in the requested language", deterministic=True),
    _flag(
        "degenerate",
        "",
        "true when the output hit max_new_tokens while looping (repetition_rate > 0.2) or is in the wrong "
        "language: not a summary, whatever its ROUGE (harness.scoring.signals.is_degenerate)",
        better="lower",
        deterministic=True,
    ),
    # --- detail: run order, tokenizer cost, energy (harness.trackers.energy) ---------------------
    _info("sample_seq", "", "global position of this sample in the run's order (0-based)", numeric=True),
    _metric(
        "tokens_per_char",
        "tok/char",
        "prompt_tokens / characters of the rendered prompt's talk text: the tokenizer's cost, drives TTFT",
        better="lower",
        deterministic=True,
    ),
    _metric(
        "energy_j",
        "J",
        "energy of the sources in power_source during the sample (whole package/GPU)",
        better="lower",
    ),
    _metric("avg_power_w", "W", "energy_j / sample wall time", better="lower"),
    _metric("j_per_token", "J/tok", "energy_j / tokens generated in the sample (all stages)", better="lower"),
    _info("power_source", "", "energy counters summed: rapl:package-N, nvml:N; empty = none readable (see run.json)"),
    # --- serving over HTTP (harness.backends.openai_http) ---------------------------------------
    _setting(
        "itl_unit",
        "",
        "what the ITL gaps are between: token (in-process, or one streamed chunk per token) or chunk (HTTP chunks "
        "that may hold several tokens)",
        numeric=False,
    ),
    _info(
        "output_tokens_source",
        "",
        "where output_tokens came from: engine (token ids), usage, timings (llama-server), eval_count (ollama), "
        "max_tokens (stopped by the cap) or server_tokenize (EOS: the server's tokenizer counting the text; "
        "llama-cpp-python's server streams no usage)",
    ),
    # --- sweeps and long documents (harness.params, harness.scenarios.long_document) -------------
    _id(
        "config_id",
        "",
        "8-hex hash of the sample's settings (threads, n_ctx, max/min_new_tokens, flash_attn, n_gpu_layers, "
        "provider): the same settings get the same id in every run",
    ),
    _id("sweep", "", "the swept settings of this config, e.g. threads=2 max_new_tokens=16; empty: no sweep"),
    _setting("n_gpu_layers", "", "llama.cpp layers offloaded to a GPU (0 = CPU only, -1 = all)"),
    _setting(
        "long_strategy",
        "",
        "truncate, map-reduce or refine: how a document longer than the context is handled",
        numeric=False,
    ),
    _metric("chunks", "", "pieces the document was cut into (1 = it fitted whole)", deterministic=True),
    _metric("stages", "", "backend calls for this sample (maps + reduces, or refine steps)", deterministic=True),
    _metric("total_prompt_tokens", "tokens", "prompt tokens over all stages", deterministic=True),
    _metric("total_output_tokens", "tokens", "generated tokens over all stages", deterministic=True),
    _info(
        "stage_timings",
        "",
        "per stage, JSON [[name, prompt_tokens, output_tokens, ttft_s, e2e_s], ...] (empty for one-call samples)",
    ),
    _metric(
        "kv_cache_mb",
        "MiB",
        "KV-cache size at the loaded n_ctx: n_ctx x layers x (K + V dims per layer) x 2 bytes (f16), from the "
        "GGUF metadata; empty for other formats",
        deterministic=True,
    ),
    # --- fleet (harness.fleet) -------------------------------------------------------------------
    _id("device", "", "fleet device that ran the sample (`harness fleet worker --device`); empty on a single machine"),
    # --- system noise (harness.trackers.noise; docs/noise.md) -----------------------------------
    _metric(
        "other_cpu_pct",
        "%",
        "CPU time other processes used on the worker's CPUs during the sample, % of one core (/proc/stat minus "
        "the worker's process tree and the harness itself); empty without /proc",
    ),
    _metric("steal_pct", "%", "share of the worker's CPUs' time the hypervisor gave to other guests (VMs)"),
    _metric("load1", "", "1-minute load average at the end of the sample (/proc/loadavg)"),
    _metric("procs_running", "", "runnable processes at the end of the sample, the reader included (/proc/stat)"),
    _metric("throttle_events", "", "thermal throttle events on the worker's CPUs during the sample (where exposed)"),
    _metric(
        "canary_ms_before",
        "ms",
        "fixed-work probe (16 MiB numpy copy, best of 3) on the worker's CPUs right before the sample: the "
        "machine's own speed",
    ),
    _metric("canary_ms_after", "ms", "the same probe right after the sample"),
    _metric("quiet_wait_s", "s", "--wait-quiet: seconds the sample waited for a quiet machine; empty when not asked"),
    _flag(
        "noisy",
        "",
        "true when other processes used > 25 % of a core on the worker's CPUs during the sample, or steal "
        "> 10 %: its speed figures are not representative; compare leaves them out of speed verdicts",
    ),
    # --- copying and unsupported content (harness.scoring.extractive, harness.scoring.unsupported) ------
    _metric(
        "extractive_coverage",
        "0-1",
        "share of summary tokens inside fragments copied from the talk (Grusky et al. 2018; ROUGE tokens)",
        label="coverage",
        views=QUALITY_VIEWS,
        deterministic=True,
    ),
    _metric(
        "extractive_density",
        "tokens",
        "mean squared copied-fragment length per summary token: high = whole sentences pasted (Grusky et al. 2018)",
        label="density",
        views=QUALITY_VIEWS,
        deterministic=True,
    ),
    _metric("longest_fragment", "tokens", "longest stretch copied verbatim from the talk", deterministic=True),
    _metric(
        "unsupported_numbers",
        "count",
        "distinct numbers/percentages in the summary that the talk does not contain (hallucination proxy)",
        better="lower",
        label="unsupp. numbers",
        views=QUALITY_VIEWS,
        deterministic=True,
    ),
    _metric(
        "unsupported_entities",
        "count",
        "distinct named entities (jieba nr/ns/nt/nz; capitalised Latin spans) absent from the talk; empty when "
        "summary and talk languages differ (hallucination proxy)",
        better="lower",
        label="unsupp. entities",
        views=QUALITY_VIEWS,
        deterministic=True,
    ),
    _metric(
        "supported_entity_share",
        "0-1",
        "share of the summary's distinct named entities found in the talk; empty when it names none",
        better="higher",
        deterministic=True,
    ),
    # --- LLM judge (`harness judge`, harness.judge): joined from judgements.jsonl by compare and report ----
    *(
        _metric(f"judge_{c}", "1-5", f"LLM judge's {c} score (judge-rubric-v1)", better="higher", deterministic=True)
        for c in ("faithfulness", "coverage", "fluency", "conciseness")
    ),
    _metric(
        "judge_overall",
        "1-5",
        "mean of the four judge scores; see `judge` for which judge and `judge_fit` for its validity probe",
        better="higher",
        label="judge",
        views=("report",),  # compare: `--metrics judge_overall`, and its note per judged run
        deterministic=True,
    ),
    _info("judge", "", "the judge behind the judge_* columns (model and endpoint, as recorded in run.json)"),
    _flag(
        "judge_fit",
        "",
        "false when the judge failed its reference probe (it preferred another talk's reference too often): "
        "its scores are marked unfit",
        deterministic=True,
    ),
)

COLUMNS: tuple[str, ...] = tuple(c.name for c in COLUMN_SPECS)
REQUIRED_COLUMNS: tuple[str, ...] = COLUMNS[: COLUMNS.index("error") + 1]
SPECS: dict[str, Column] = {c.name: c for c in COLUMN_SPECS}
NUMERIC_COLUMNS: frozenset[str] = frozenset(c.name for c in COLUMN_SPECS if c.numeric)
METRICS: tuple[str, ...] = tuple(c.name for c in COLUMN_SPECS if c.kind == "metric")
SETTINGS: tuple[str, ...] = tuple(c.name for c in COLUMN_SPECS if c.kind == "setting")
DIRECTIONS: dict[str, Better] = {c.name: c.better for c in COLUMN_SPECS if c.better}


def view(name: View) -> tuple[str, ...]:
    """The headline metrics of a view, in column order."""
    return tuple(c.name for c in COLUMN_SPECS if name in c.views)


def describe() -> str:
    """Markdown table of the columns, for docs/results.md."""
    lines = ["| column | unit | better | meaning |", "|---|---|---|---|"]
    lines += [f"| `{c.name}` | {c.unit} | {c.better} | {c.doc} |" for c in COLUMN_SPECS]
    return "\n".join(lines)
