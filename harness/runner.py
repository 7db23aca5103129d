"""The benchmark run: orchestration only.

The runner turns the selection (models × talks × repeats) into a plan -- the order samples run in --
and walks it. For each model it resolves the weights (in the parent, so downloads are not timed) and
opens a `WorkerSession` the first time the plan reaches it; each planned sample is one request to that
session, and its outcome becomes a row through `harness.results.rows`, written the moment it exists.
What a sample is belongs to the scenario (in the worker), what is observed around it to the trackers,
how a row looks to `rows`: the runner names none of them.
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console

from harness import __version__
from harness.backends import backend_class, make_flags
from harness.backends.base import BackendOptions
from harness.corpus import Talk, builtin_corpus_path, load_corpus
from harness.env import collect_environment, physical_cores
from harness.errors import HarnessError, unknown
from harness.launchers.session import (
    LauncherFactory,
    SampleOutcome,
    SessionFailed,
    WorkerSession,
    process_launcher,
)
from harness.launchers.worker import WorkerJob
from harness.models.registry import ModelEntry, load_models, select_models
from harness.models.sources import cached_sha256, file_sha256, resolve
from harness.progress import Progress
from harness.prompts import PromptTemplate, load_template
from harness.results.rows import ModelRowContext, error_row, ok_row, summary_record
from harness.results.summary import summarise_run
from harness.results.writer import RunWriter
from harness.scenarios.base import SampleSpec
from harness.scenarios.summarize import SummarizeConfig
from harness.trackers import TrackerContext, make_trackers

ENGINE_TOLERANCE_PCT = 3.0


@dataclass
class RunConfig:
    models: list[str] = field(default_factory=list)  # empty = the default models
    talks: list[str] = field(default_factory=list)  # empty = all
    corpus: Path | None = None
    models_file: Path | None = None
    out: Path = Path("results")
    repeats: int = 1
    warmup: int = 1
    max_new_tokens: int = 256
    min_new_tokens: int = 0
    threads: int | None = None  # None = physical cores
    summary_lang: str | None = None  # None = each talk's own language
    cooldown_s: float = 0.0
    offline: bool = False
    no_mmap: bool = False
    flash_attn: bool | None = None  # None = models.yaml flag or off
    n_gpu_layers: int | None = None
    provider: str | None = None  # onnx execution provider override
    n_ctx: int | None = None  # override models.yaml
    measure_bandwidth: bool = True
    sample_interval_s: float = 0.01
    scenario: str = "summarize"
    command: list[str] = field(default_factory=lambda: list(sys.argv))


Printer = Callable[[str], None]


@dataclass(frozen=True)
class PlannedSample:
    seq: int  # global position in the run's order
    model_id: str
    talk: Talk
    repeat: int


def plan_samples(model_ids: list[str], talks: list[Talk], repeats: int) -> list[PlannedSample]:
    """Model by model; within a model, repeats round-robin over talks (talk 1 r0, talk 2 r0, …, talk 1 r1),
    so slow drift of the machine spreads over talks instead of lining up with one of them."""
    order = [(m, talk, r) for m in model_ids for r in range(repeats) for talk in talks]
    return [PlannedSample(seq, m, talk, r) for seq, (m, talk, r) in enumerate(order)]


def _select_talks(talks: list[Talk], wanted: list[str]) -> list[Talk]:
    if not wanted:
        return talks
    by_id = {t.id: t for t in talks}
    for name in wanted:
        if name not in by_id:
            raise unknown("talk", name, by_id)
    return [by_id[name] for name in wanted]


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


@dataclass
class _ModelState:
    """A model's progress through the plan: its session (opened when the plan first reaches it)."""

    entry: ModelEntry
    remaining: int
    ctx: ModelRowContext | None = None
    job: WorkerJob | None = None
    session: WorkerSession | None = None
    failed: str | None = None  # set once the model cannot produce rows any more: the message for the rest
    record: dict[str, Any] = field(default_factory=dict)
    engine_gaps: list[tuple[float, float | None]] = field(default_factory=list)


class Runner:
    def __init__(
        self, config: RunConfig, echo: Printer | None = None, launcher_factory: LauncherFactory = process_launcher
    ) -> None:
        self.config = config
        self._custom_echo = echo
        self.echo: Printer = echo or print
        self.launcher_factory = launcher_factory
        if config.repeats < 1:
            raise HarnessError("--repeats must be at least 1")
        if config.max_new_tokens < 1:
            raise HarnessError("--max-new-tokens must be at least 1")
        if config.min_new_tokens < 0 or config.min_new_tokens > config.max_new_tokens:
            raise HarnessError("--min-new-tokens must be between 0 and --max-new-tokens")
        if config.warmup < 0:
            raise HarnessError("--warmup must be 0 or more")
        self.talks = _select_talks(load_corpus(config.corpus), config.talks)
        self.entries = select_models(load_models(config.models_file), config.models)
        self.threads = config.threads or physical_cores()
        if self.threads < 1:
            raise HarnessError("--threads must be at least 1")
        for entry in self.entries:
            backend_class(entry.backend).preflight(self._backend_options(entry))
        self.tracker_context = TrackerContext(
            threads=self.threads,
            measure_bandwidth=config.measure_bandwidth,
            sample_interval_s=config.sample_interval_s,
        )
        self.engine_s = 0.0
        self.errors = 0

    # ------------------------------------------------------------------------------------------------
    def run(self) -> tuple[Path, int]:
        """Run everything; returns (run directory, number of error rows)."""
        cfg = self.config
        writer = RunWriter(cfg.out)
        plan = plan_samples([e.id for e in self.entries], self.talks, cfg.repeats)
        self.echo(
            f"harness {__version__} | run {writer.run_id} | {len(self.entries)} model(s) x "
            f"{len(self.talks)} talk(s) x {cfg.repeats} repeat(s) | threads {self.threads}"
        )
        started = datetime.now(timezone.utc).isoformat()
        wall0 = time.perf_counter()
        environment = collect_environment()
        trackers_env = {t.name: t.environment() for t in make_trackers(self.tracker_context)}
        environment["trackers"] = trackers_env
        bandwidth = trackers_env.get("device", {}).get("memory_bandwidth_gbs")
        if bandwidth is not None:
            environment["memory_bandwidth_gbs"] = bandwidth
        record: dict[str, Any] = {
            "run_id": writer.run_id,
            "harness_version": __version__,
            "git_commit": environment["git_commit"],
            "command": cfg.command,
            "started_at": started,
            "config": self._config_record(plan),
            "environment": environment,
            "models": {},
            "prompts": {},
            "warnings": [],
        }
        writer.write_run_json(record)
        states = {e.id: _ModelState(e, sum(1 for p in plan if p.model_id == e.id)) for e in self.entries}
        quiet = Console(file=io.StringIO()) if self._custom_echo else None
        progress = Progress(total=len(plan), console=quiet)
        if not self._custom_echo:
            self.echo = progress.echo
        try:
            with progress:
                for item in plan:
                    state = states[item.model_id]
                    self._run_planned(item, state, writer, record, bandwidth, progress)
                    if state.remaining == 0:
                        self._finish_model(state, record)
                        writer.write_run_json(record)
        finally:
            for state in states.values():
                if state.session is not None:  # interrupted: release the worker
                    self._finish_model(state, record)
            writer.close()
            wall = time.perf_counter() - wall0
            record["finished_at"] = datetime.now(timezone.utc).isoformat()
            record["overhead"] = {
                "wall_s": round(wall, 3),
                "engine_s": round(self.engine_s, 3),  # model loads + warm-ups + timed generations, in workers
                "harness_s": round(wall - self.engine_s, 3),
                "note": "harness_s = wall_s - engine_s: model fetch, process start, scoring, writing, env probe",
            }
            summary = summarise_run(writer.dir)
            if summary is not None:
                record["summary"] = summary.run_json
                for line in summary.lines():
                    self.echo(line)
            writer.write_run_json(record)
        return writer.dir, self.errors

    def _config_record(self, plan: list[PlannedSample]) -> dict[str, Any]:
        cfg = self.config
        return {
            "models": [e.id for e in self.entries],
            "talks": [t.id for t in self.talks],
            "repeats": cfg.repeats,
            "warmup": cfg.warmup,
            "max_new_tokens": cfg.max_new_tokens,
            "min_new_tokens": cfg.min_new_tokens,
            "threads": self.threads,
            "summary_lang": cfg.summary_lang or "talk",
            "cooldown_s": cfg.cooldown_s,
            "corpus": str(cfg.corpus) if cfg.corpus else "builtin:summit",
            "corpus_sha256": _sha_file(cfg.corpus or builtin_corpus_path()),
            "no_mmap": cfg.no_mmap,
            "flash_attn": cfg.flash_attn,
            "n_ctx": cfg.n_ctx,
            "n_gpu_layers": cfg.n_gpu_layers,
            "provider": cfg.provider,
            "offline": cfg.offline,
            "sample_interval_s": cfg.sample_interval_s,
            "scenario": cfg.scenario,
            "order": "models in turn; repeats round-robin over talks",
            "planned_samples": len(plan),
        }

    def _backend_options(self, entry: ModelEntry) -> BackendOptions:
        """models.yaml flags, overridden by the command line's engine options (None = not given)."""
        cfg = self.config
        cls = backend_class(entry.backend)
        overrides = {
            "n_gpu_layers": cfg.n_gpu_layers,
            "flash_attn": cfg.flash_attn,
            "use_mmap": False if cfg.no_mmap else None,
        }
        return BackendOptions(
            threads=self.threads,
            n_ctx=cfg.n_ctx or entry.n_ctx,
            provider=cfg.provider or entry.provider,
            provider_options=dict(entry.provider_options),
            chat_template_kwargs=dict(entry.chat_template_kwargs),
            flags=make_flags(cls, entry.flags, where=f'model "{entry.id}": ', overrides=overrides),
        )

    def _summary_lang(self) -> str:
        langs = {self.config.summary_lang or t.lang for t in self.talks}
        if len(langs) > 1:
            raise HarnessError("the corpus mixes languages; pass --summary-lang zh or en")
        return langs.pop()

    # -- one planned sample ------------------------------------------------------------------------------
    def _run_planned(
        self,
        item: PlannedSample,
        state: _ModelState,
        writer: RunWriter,
        record: dict[str, Any],
        bandwidth: float | None,
        progress: Progress,
    ) -> None:
        state.remaining -= 1
        if state.ctx is None:
            self._prepare_model(state, writer, record, bandwidth)
        assert state.ctx is not None
        if state.failed is None and state.session is None:
            self._open_session(state, item, record, progress)
        if state.failed is not None:
            self._write_error(writer, state, item, state.failed)
            return
        assert state.session is not None
        if self.config.cooldown_s > 0 and item.seq:
            time.sleep(self.config.cooldown_s)
        progress.sample_start(item.seq + 1, state.entry.id, item.talk.id, item.repeat)
        t0 = time.perf_counter()
        outcome = state.session.run(SampleSpec(item.seq, item.talk.id, item.repeat, item.talk.text))
        progress.sample_end(time.perf_counter() - t0)
        self._write_outcome(writer, state, item, outcome)
        if state.session.dead and state.remaining:
            state.failed = state.session.dead
            self.echo(f"   {state.session.dead}; remaining samples of {state.entry.id} recorded as errors")

    def _prepare_model(
        self, state: _ModelState, writer: RunWriter, record: dict[str, Any], bandwidth: float | None
    ) -> None:
        """Everything about a model that comes before its worker: prompt template, weights, row context."""
        cfg, entry = self.config, state.entry
        lang = self._summary_lang()
        template: PromptTemplate = load_template(lang, entry.prompt_style)
        record["prompts"][template.name] = template.sha
        options = self._backend_options(entry)
        state.ctx = ModelRowContext(
            base={
                "run_id": writer.run_id,
                "model": entry.id,
                "backend": entry.backend,
                "quant": entry.quant,
                "threads": self.threads,
                "max_new_tokens": cfg.max_new_tokens,
                "min_new_tokens": cfg.min_new_tokens,
                "prompt_name": template.name,
                "prompt_sha": template.sha,
                "summary_lang": lang,
                "flash_attn": getattr(options.flags, "flash_attn", None),
            },
            bandwidth_gbs=bandwidth,
        )
        self.echo(f"\n== {entry.id} ({entry.backend}, {entry.quant})")
        try:
            path = resolve(entry, offline=cfg.offline, progress=True)
        except HarnessError as exc:
            self.echo(f"   cannot get model: {exc}")
            state.failed = str(exc)
            return
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        size_bytes = sum(p.stat().st_size for p in files)
        state.ctx.weight_bytes = size_bytes
        state.ctx.base["model_file_mb"] = size_bytes / 2**20
        state.record = {
            "backend": entry.backend,
            "quant": entry.quant,
            "source": entry.source.kind,
            "size_bytes": size_bytes,
            "sha256": cached_sha256(path) if path.is_file() else None,
            "provenance": entry.provenance or None,
        }
        record["models"][entry.id] = state.record
        cls = backend_class(entry.backend)
        state.job = WorkerJob(
            model_id=entry.id,
            # An importable reference, so a backend defined outside harness.backends loads in the worker too.
            backend=f"{cls.__module__}:{cls.__qualname__}",
            model_path=str(path),
            prompt_style=entry.prompt_style,
            options=options,
            template=template,
            scenario=cfg.scenario,
            scenario_config=SummarizeConfig(cfg.max_new_tokens, cfg.min_new_tokens),
        )

    def _open_session(
        self, state: _ModelState, first: PlannedSample, record: dict[str, Any], progress: Progress
    ) -> None:
        assert state.job is not None and state.ctx is not None
        session = WorkerSession(state.job, make_trackers(self.tracker_context), self.launcher_factory)
        state.session = session
        progress.phase(state.entry.id, "loading")
        try:
            if self.config.warmup:
                # The warm-up runs over the first planned talk's full prompt: a real prompt length.
                session.open(SampleSpec(-1, first.talk.id, -1, first.talk.text), self.config.warmup)
            else:
                session.open(None, 0)
        except SessionFailed as exc:
            self.echo(f"   worker failed: {exc}")
            state.failed = str(exc)
            return
        loaded, warmed = session.info.loaded, session.info.warmed
        assert loaded is not None and warmed is not None
        self.engine_s += loaded.load_s + warmed.warmup_s
        state.ctx.load = {
            "load_s": loaded.load_s,
            "provider": loaded.provider,
            "n_ctx": loaded.n_ctx,
            "mmap": loaded.mmap,
            **session.info.load_columns,
        }
        state.record.update(
            load_s=round(loaded.load_s, 4),
            provider=loaded.provider,
            n_ctx=loaded.n_ctx,
            mmap=loaded.mmap,
            engine=loaded.extra,
            engine_system_info=loaded.system_info,
            warmup_s=round(warmed.warmup_s, 3),
            warmup_runs=warmed.runs,
        )
        if loaded.extra.get("warning"):
            self.echo(f"   warning: {loaded.extra['warning']}")
        before, after = state.ctx.load.get("rss_before_load_mb"), state.ctx.load.get("rss_after_load_mb")
        self.echo(
            f"   loaded in {loaded.load_s:.2f} s on {loaded.provider} | RSS {_fmt(before, '.0f')} -> "
            f"{_fmt(after, '.0f')} MiB | weights {(state.ctx.weight_bytes or 0) / 2**20:.1f} MiB, "
            f"mmap={'on' if loaded.mmap else 'off'}"
        )

    def _finish_model(self, state: _ModelState, record: dict[str, Any]) -> None:
        if state.session is not None:
            info = state.session.close()
            state.session = None
            for _name, report in info.reports:
                state.record.update(report.record)
                for warning in report.warnings:
                    self._warn(record, f"{state.entry.id}: {warning}")
        warning = engine_gap_warning(state.entry.id, state.engine_gaps)
        if warning:
            self._warn(record, warning)
        state.engine_gaps = []

    def _warn(self, record: dict[str, Any], warning: str) -> None:
        record["warnings"].append(warning)
        self.echo(f"   warning: {warning}")

    # -- rows --------------------------------------------------------------------------------------------
    def _write_outcome(
        self, writer: RunWriter, state: _ModelState, item: PlannedSample, outcome: SampleOutcome
    ) -> None:
        assert state.ctx is not None
        if outcome.result is None:
            self._write_error(writer, state, item, outcome.error)
            return
        result = outcome.result
        row = ok_row(state.ctx, item.talk, item.repeat, result, outcome.columns)
        self.engine_s += result.latency.e2e_s or 0.0
        writer.write_row(row, summary_record(row, item.talk, result.text))
        self._echo_sample(row)
        if row.get("decode_vs_engine_pct") is not None and (row["output_tokens"] or 0) >= 8:
            state.engine_gaps.append((row["decode_vs_engine_pct"], row["outside_engine_ms_per_tok"]))

    def _write_error(self, writer: RunWriter, state: _ModelState, item: PlannedSample, message: str) -> None:
        assert state.ctx is not None
        self.errors += 1
        row = error_row(state.ctx, item.talk, item.repeat, message, item.seq)
        writer.write_row(row, summary_record(row, item.talk, ""))
        self.echo(f"   {item.talk.id} r{item.repeat}: ERROR {message}")

    def _echo_sample(self, row: dict[str, Any]) -> None:
        self.echo(
            f"   {row['talk_id']} r{row['repeat']}: {row['prompt_tokens']}+{row['output_tokens']} tok | "
            f"ttft {_fmt(row['ttft_s'], '.3f')} s | prefill {_fmt(row['prefill_tok_s'], '.1f')} tok/s | "
            f"decode {_fmt(row['decode_tok_s'], '.1f')} tok/s (engine {_fmt(row['engine_decode_tok_s'], '.1f')}) | "
            f"peak RSS {_fmt(row.get('peak_rss_mb'), '.0f')} MiB | ROUGE-L {_fmt(row['rougeL_f'], '.3f')} | "
            f"stop: {row['stop_reason']}{' (degenerate)' if row.get('degenerate') else ''}"
        )
        if row["truncated"]:
            self.echo(
                f"   note: {row['talk_id']} truncated to {row['input_chars']} chars to fit "
                f"n_ctx {row['n_ctx']} - max_new_tokens {row['max_new_tokens']}"
            )


def engine_gap_warning(model_id: str, gaps: list[tuple[float, float | None]]) -> str | None:
    """One line per model when the harness's decode rate strays from the engine's own counter by more than
    ENGINE_TOLERANCE_PCT, with the per-token time outside the engine that explains it."""
    off = [g for g in gaps if abs(g[0]) > ENGINE_TOLERANCE_PCT]
    if not off:
        return None
    pcts = sorted(g[0] for g in off)
    outside = sorted(g[1] for g in gaps if g[1] is not None)
    median = f"{outside[len(outside) // 2]:.2f} ms" if outside else "unknown"
    return (
        f"{model_id}: decode_tok_s differs from the engine's own counter by {pcts[0]:+.2f}..{pcts[-1]:+.2f}% "
        f"(> {ENGINE_TOLERANCE_PCT:g}%) on {len(off)}/{len(gaps)} samples; median time outside the engine "
        f"per token {median} (sampling over the vocabulary + Python loop: outside_engine_ms_per_tok)"
    )


def _sha_file(path: Path) -> str | None:
    try:
        return file_sha256(path)
    except OSError:
        return None


__all__ = ["PlannedSample", "RunConfig", "Runner", "plan_samples"]
