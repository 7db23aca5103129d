"""The benchmark run: every selected model x talk x repeat, one worker process per model.

The runner knows models, talks and rows -- never backend details. For each model it resolves the
weights (in the parent, so downloads are not timed), launches a worker, and for each sample message
assembles a row from four places: the worker's latency stats, the parent's memory sampler, the device
state, and the scorer. Rows are written the moment they are complete.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness import __version__
from harness.backends import backend_class
from harness.backends.base import BackendOptions
from harness.corpus import Talk, builtin_corpus_path, load_corpus
from harness.env import collect_environment, physical_cores
from harness.errors import HarnessError
from harness.launchers.process import ProcessLauncher, WorkerDied
from harness.launchers.worker import ModelJob, SampleSpec
from harness.models.registry import ModelEntry, load_models, select_models
from harness.models.sources import cached_sha256, file_sha256, resolve
from harness.prompts import load_template
from harness.registry import unknown
from harness.results.summary import summarise_run
from harness.results.writer import RunWriter
from harness.scenarios.summarize import SummarizeConfig
from harness.scoring import score_summary
from harness.trackers.device import DeviceState, memory_bandwidth_gbs, throttling_suspected
from harness.trackers.memory import MemorySampler

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
    command: list[str] = field(default_factory=lambda: list(sys.argv))


Printer = Callable[[str], None]


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


class Runner:
    def __init__(self, config: RunConfig, echo: Printer = print) -> None:
        self.config = config
        self.echo = echo
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

    # ------------------------------------------------------------------------------------------------
    def run(self) -> tuple[Path, int]:
        """Run everything; returns (run directory, number of error rows)."""
        cfg = self.config
        writer = RunWriter(cfg.out)
        self.echo(
            f"harness {__version__} | run {writer.run_id} | {len(self.entries)} model(s) x "
            f"{len(self.talks)} talk(s) x {cfg.repeats} repeat(s) | threads {self.threads}"
        )
        started = datetime.now(timezone.utc).isoformat()
        wall0 = time.perf_counter()
        environment = collect_environment()
        if cfg.measure_bandwidth:
            environment["memory_bandwidth_gbs"] = round(memory_bandwidth_gbs(), 2)
        record: dict[str, Any] = {
            "run_id": writer.run_id,
            "harness_version": __version__,
            "git_commit": environment["git_commit"],
            "command": cfg.command,
            "started_at": started,
            "config": {
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
                "offline": cfg.offline,
                "sample_interval_s": cfg.sample_interval_s,
            },
            "environment": environment,
            "models": {},
            "prompts": {},
            "warnings": [],
        }
        writer.write_run_json(record)
        engine_s = 0.0
        errors = 0
        try:
            for entry in self.entries:
                errs, model_engine_s = self._run_model(entry, writer, record)
                errors += errs
                engine_s += model_engine_s
                writer.write_run_json(record)
        finally:
            writer.close()
            wall = time.perf_counter() - wall0
            record["finished_at"] = datetime.now(timezone.utc).isoformat()
            record["overhead"] = {
                "wall_s": round(wall, 3),
                "engine_s": round(engine_s, 3),  # model loads + warm-ups + timed generations, in workers
                "harness_s": round(wall - engine_s, 3),
                "note": "harness_s = wall_s - engine_s: model fetch, process start, scoring, writing, env probe",
            }
            summary = summarise_run(writer.dir)
            if summary is not None:
                record["summary"] = summary.run_json
                for line in summary.lines():
                    self.echo(line)
            writer.write_run_json(record)
        return writer.dir, errors

    def _backend_options(self, entry: ModelEntry) -> BackendOptions:
        """models.yaml flags, overridden by CLI flags."""
        cfg = self.config
        flags = dict(entry.flags)
        return BackendOptions(
            threads=self.threads,
            n_ctx=cfg.n_ctx or entry.n_ctx,
            n_gpu_layers=cfg.n_gpu_layers if cfg.n_gpu_layers is not None else int(flags.get("n_gpu_layers", 0)),
            flash_attn=cfg.flash_attn if cfg.flash_attn is not None else bool(flags.get("flash_attn", False)),
            use_mmap=not cfg.no_mmap and bool(flags.get("use_mmap", True)),
            provider=cfg.provider or entry.provider,
            provider_options=dict(entry.provider_options),
            chat_template_kwargs=dict(entry.chat_template_kwargs),
        )

    # ------------------------------------------------------------------------------------------------
    def _samples(self) -> list[tuple[Talk, int]]:
        return [(talk, r) for talk in self.talks for r in range(self.config.repeats)]

    def _summary_lang(self, talk: Talk) -> str:
        return self.config.summary_lang or talk.lang

    def _run_model(self, entry: ModelEntry, writer: RunWriter, record: dict[str, Any]) -> tuple[int, float]:
        cfg = self.config
        samples = self._samples()
        base_row: dict[str, Any] = {
            "run_id": writer.run_id,
            "model": entry.id,
            "backend": entry.backend,
            "quant": entry.quant,
            "threads": self.threads,
            "max_new_tokens": cfg.max_new_tokens,
            "min_new_tokens": cfg.min_new_tokens,
        }
        langs = {self._summary_lang(t) for t, _ in samples}
        if len(langs) > 1:
            raise HarnessError("the corpus mixes languages; pass --summary-lang zh or en")
        lang = langs.pop()
        template = load_template(lang, entry.prompt_style)
        record["prompts"][template.name] = template.sha
        base_row.update(prompt_name=template.name, prompt_sha=template.sha, summary_lang=lang)

        self.echo(f"\n== {entry.id} ({entry.backend}, {entry.quant})")
        try:
            path = resolve(entry, offline=cfg.offline, progress=True)
        except HarnessError as exc:
            self.echo(f"   cannot get model: {exc}")
            for talk, rep in samples:
                writer.write_row(
                    {
                        **base_row,
                        "talk_id": talk.id,
                        "repeat": rep,
                        "status": "error",
                        "error": str(exc),
                        "stop_reason": "error",
                    },
                    self._summary_record(writer.run_id, entry.id, talk, rep, "error", lang, "", template.name),
                )
            return len(samples), 0.0
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        size_bytes = sum(p.stat().st_size for p in files)
        model_record: dict[str, Any] = {
            "backend": entry.backend,
            "quant": entry.quant,
            "source": entry.source.kind,
            "files": [str(p) for p in files],
            "size_bytes": size_bytes,
            "sha256": cached_sha256(path) if path.is_file() else None,
            "provenance": entry.provenance or None,
        }
        record["models"][entry.id] = model_record

        options = self._backend_options(entry)
        flash_attn = options.flash_attn
        specs = [SampleSpec(i, talk.id, rep, talk.text) for i, (talk, rep) in enumerate(samples)]
        job = ModelJob(
            model_id=entry.id,
            backend=entry.backend,
            model_path=str(path),
            prompt_style=entry.prompt_style,
            options=options,
            template=template,
            scenario=SummarizeConfig(cfg.max_new_tokens, cfg.min_new_tokens),
            samples=specs,
            warmup=cfg.warmup,
            cooldown_s=cfg.cooldown_s,
        )
        base_row.update(flash_attn=flash_attn, model_file_mb=size_bytes / 2**20)
        bandwidth = record["environment"].get("memory_bandwidth_gbs")
        return self._drive_worker(job, samples, base_row, model_record, writer, record, size_bytes, bandwidth)

    def _summary_record(
        self,
        run_id: str,
        model: str,
        talk: Talk,
        rep: int,
        status: str,
        lang: str,
        prediction: str,
        prompt_name: str,
    ) -> dict[str, Any]:
        return {
            "run_id": run_id,
            "model": model,
            "talk_id": talk.id,
            "repeat": rep,
            "status": status,
            "summary_lang": lang,
            "prompt_name": prompt_name,
            "prediction": prediction,
            "references": list(talk.references_for(lang)),
            "source": talk.text,
        }

    def _drive_worker(
        self,
        job: ModelJob,
        samples: list[tuple[Talk, int]],
        base_row: dict[str, Any],
        model_record: dict[str, Any],
        writer: RunWriter,
        record: dict[str, Any],
        size_bytes: int,
        bandwidth: float | None,
    ) -> tuple[int, float]:
        lang = base_row["summary_lang"]
        pending = dict(enumerate(samples))
        errors = 0
        engine_s = 0.0
        freq_start: list[float | None] = []
        freq_end: list[float | None] = []
        engine_gaps: list[tuple[float, float | None]] = []  # (decode_vs_engine_pct, outside_engine_ms_per_tok)
        launcher = ProcessLauncher(job)
        launcher.start()
        sampler = MemorySampler(launcher.pid, interval_s=self.config.sample_interval_s)
        sampler.__enter__()
        device_before = DeviceState(None, None)
        load_info: dict[str, Any] = {}

        def error_row(index: int, message: str) -> None:
            nonlocal errors
            talk, rep = pending.pop(index)
            errors += 1
            row = {
                **base_row,
                **_load_cols(load_info),
                "talk_id": talk.id,
                "repeat": rep,
                "status": "error",
                "error": message,
                "stop_reason": "error",
            }
            writer.write_row(
                row,
                self._summary_record(writer.run_id, job.model_id, talk, rep, "error", lang, "", job.template.name),
            )
            self.echo(f"   {talk.id} r{rep}: ERROR {message}")

        rss_before: float | None = None
        try:
            for msg in launcher.messages():
                kind = msg[0]
                if kind == "ready":
                    rss_before = sampler.current_rss_mb()
                    sampler.start_window()
                    launcher.go()  # load
                elif kind == "loaded":
                    load_mem = sampler.end_window(full_info=False)
                    info = msg[1]
                    load_info = {
                        "load_s": info["load_s"],
                        "provider": info["provider"],
                        "n_ctx": info["n_ctx"],
                        "mmap": info["mmap"],
                        "rss_before_load_mb": rss_before,
                        "rss_after_load_mb": sampler.current_rss_mb(),
                    }
                    engine_s += info["load_s"]
                    model_record.update(
                        load_s=round(info["load_s"], 4),
                        provider=info["provider"],
                        n_ctx=info["n_ctx"],
                        mmap=info["mmap"],
                        engine=info["extra"],
                        engine_system_info=info["system_info"],
                        load_peak_rss_mb=load_mem.peak_rss_mb,
                    )
                    if info["extra"].get("warning"):
                        self.echo(f"   warning: {info['extra']['warning']}")
                    self.echo(
                        f"   loaded in {info['load_s']:.2f} s on {info['provider']} | RSS "
                        f"{_fmt(rss_before, '.0f')} -> {_fmt(load_info['rss_after_load_mb'], '.0f')} MiB "
                        f"| weights {size_bytes / 2**20:.1f} MiB, mmap={'on' if info['mmap'] else 'off'}"
                    )
                    launcher.go()  # warm-up
                elif kind == "warm":
                    engine_s += msg[1]["warmup_s"]
                    model_record.update(warmup_s=round(msg[1]["warmup_s"], 3), warmup_runs=msg[1]["warmup_runs"])
                    device_before = DeviceState.read()
                    sampler.start_window()
                    launcher.go()  # first sample
                elif kind == "sample_start":
                    pass  # the window was opened before "go", so prompt rendering is inside it too
                elif kind == "sample_done":
                    index, payload = msg[1], msg[2]
                    mem = sampler.end_window()
                    device_after = DeviceState.read()
                    talk, rep = pending.pop(index)
                    lat = payload["latency"]
                    engine_s += lat["e2e_s"] or 0.0
                    row = self._ok_row(
                        base_row,
                        load_info,
                        talk,
                        rep,
                        payload,
                        mem,
                        device_before,
                        device_after,
                        size_bytes,
                        bandwidth,
                        lang,
                    )
                    freq_start.append(device_before.cpu_mhz)
                    freq_end.append(device_after.cpu_mhz)
                    writer.write_row(
                        row,
                        self._summary_record(
                            writer.run_id,
                            job.model_id,
                            talk,
                            rep,
                            "ok",
                            lang,
                            payload["text"],
                            job.template.name,
                        ),
                    )
                    self._echo_sample(row, payload)
                    if row.get("decode_vs_engine_pct") is not None and (row["output_tokens"] or 0) >= 8:
                        engine_gaps.append((row["decode_vs_engine_pct"], row["outside_engine_ms_per_tok"]))
                    device_before = DeviceState.read()
                    sampler.start_window()
                    launcher.go()
                elif kind == "sample_error":
                    sampler.end_window(full_info=False)
                    error_row(msg[1], msg[2])
                    sampler.start_window()
                    launcher.go()
                elif kind == "fatal":
                    self.echo(f"   worker failed: {msg[1]}")
                    for index in list(pending):
                        error_row(index, msg[1])
                elif kind == "done":
                    break
        except WorkerDied as exc:
            self.echo(f"   {exc}; remaining samples of {job.model_id} recorded as errors")
            for index in list(pending):
                error_row(index, str(exc))
        finally:
            sampler.stop()
            launcher.close()
        model_record["sampler"] = {
            "polls": sampler.polls,
            "cpu_s": round(sampler.cpu_s, 4),
            "interval_s": sampler.interval_s,
        }
        warning = engine_gap_warning(job.model_id, engine_gaps)
        if warning:
            record["warnings"].append(warning)
            self.echo(f"   warning: {warning}")
        if throttling_suspected(freq_start, freq_end):
            warning = f"{job.model_id}: CPU frequency dropped >10% across samples: thermal throttling suspected"
            record["warnings"].append(warning)
            self.echo(f"   warning: {warning}")
        return errors, engine_s

    def _ok_row(
        self,
        base_row: dict[str, Any],
        load_info: dict[str, Any],
        talk: Talk,
        rep: int,
        payload: dict[str, Any],
        mem: Any,
        before: DeviceState,
        after: DeviceState,
        size_bytes: int,
        bandwidth: float | None,
        lang: str,
    ) -> dict[str, Any]:
        lat = payload["latency"]
        scores = score_summary(payload["text"], talk.references_for(lang), lang, source=talk.text)
        decode = lat["decode_tok_s"]
        util = decode * size_bytes / (bandwidth * 1e9) if decode and bandwidth else None
        return {
            **base_row,
            **_load_cols(load_info),
            **lat,
            **scores,
            "talk_id": talk.id,
            "repeat": rep,
            "status": "ok",
            "error": "",
            "peak_rss_mb": mem.peak_rss_mb,
            "uss_mb": mem.uss_mb,
            "pss_mb": mem.pss_mb,
            "cpu_mhz_start": before.cpu_mhz,
            "cpu_mhz_end": after.cpu_mhz,
            "temp_c_end": after.temp_c,
            "decode_bw_util": util,
            "stop_reason": payload["stop_reason"],
            "truncated": payload["truncated"],
            "input_chars": payload["input_chars"],
        }

    def _echo_sample(self, row: dict[str, Any], payload: dict[str, Any]) -> None:
        self.echo(
            f"   {row['talk_id']} r{row['repeat']}: {row['prompt_tokens']}+{row['output_tokens']} tok | "
            f"ttft {_fmt(row['ttft_s'], '.3f')} s | prefill {_fmt(row['prefill_tok_s'], '.1f')} tok/s | "
            f"decode {_fmt(row['decode_tok_s'], '.1f')} tok/s (engine {_fmt(row['engine_decode_tok_s'], '.1f')}) | "
            f"peak RSS {_fmt(row['peak_rss_mb'], '.0f')} MiB | ROUGE-L {_fmt(row['rougeL_f'], '.3f')} | "
            f"{row['stop_reason']}"
        )
        if payload["truncated"]:
            self.echo(
                f"   note: {row['talk_id']} truncated to {payload['input_chars']} chars to fit "
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
        f"{model_id}: decode_tok_s differs from the engine's own counter by {pcts[0]:+.1f}..{pcts[-1]:+.1f}% "
        f"(> {ENGINE_TOLERANCE_PCT:g}%) on {len(off)}/{len(gaps)} samples; median time outside the engine "
        f"per token {median} (sampling over the vocabulary + Python loop: outside_engine_ms_per_tok)"
    )


def _load_cols(load_info: dict[str, Any]) -> dict[str, Any]:
    return {
        k: load_info.get(k) for k in ("load_s", "provider", "n_ctx", "mmap", "rss_before_load_mb", "rss_after_load_mb")
    }


def _sha_file(path: Path) -> str | None:
    try:
        return file_sha256(path)
    except OSError:
        return None


__all__ = ["RunConfig", "Runner"]
