"""Preparing a model x config for its worker, in the parent, before anything is timed.

Everything about a model that comes before its worker starts: the prompt template and the scenario's
config, the engine options (models.yaml flags, the config's settings, the repack decision), the weights
(fetched here so downloads are never timed; their size, sha256, the bytes one decode step reads and the
KV cache shape, from the GGUF header), a managed server when the run goes `--via` one, and the row
context every row of the model starts from. The result is a typed `PreparedModel`; a model that cannot be
prepared carries the one-line reason instead, and its samples become error rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.backends import backend_class, backend_ref
from harness.errors import HarnessError
from harness.launchers.worker import WorkerJob
from harness.models.registry import ModelEntry
from harness.models.sources import cached_sha256, resolve
from harness.params import Config, gguf_n_ctx_train, n_ctx_problem
from harness.prompts import load_template
from harness.results.record import ModelRecord
from harness.results.rows import ModelRowContext
from harness.run.config import RunSetup, backend_options
from harness.run.echo import Echo
from harness.run.engine_check import EngineCheck, effective_repack
from harness.run.record import RecordBuilder
from harness.scenarios import scenario_ref
from harness.scenarios.base import ScenarioSettings
from harness.serving import ServedModel, Serving
from harness.trackers.device import KvCacheShape, kv_cache_shape, weights_read_bytes


@dataclass
class PreparedModel:
    """A model x config ready for its worker; `failed` set: it cannot run, and why (one line)."""

    ctx: ModelRowContext
    record: ModelRecord  # where its load facts go in run.json
    job: WorkerJob | None = None
    served: ServedModel | None = None
    failed: str | None = None


def prepare_model(
    setup: RunSetup,
    entry: ModelEntry,
    config: Config,
    *,
    run_id: str,
    run_dir: Path,
    builder: RecordBuilder,
    engine: EngineCheck,
    serving: Serving,
    bandwidth: float | None,
    echo: Echo,
) -> PreparedModel:
    lang = setup.summary_lang()
    template = load_template(lang, entry.prompt_style)
    builder.prompt(template)
    options = backend_options(setup.config, entry, config, repack=engine.repack_for(entry, config))
    scenario = setup.scenario.build_config(
        ScenarioSettings(config["max_new_tokens"], config["min_new_tokens"], lang, entry.prompt_style)
    )
    for extra_template in scenario.templates:
        builder.prompt(extra_template)
    ctx = ModelRowContext(
        base={
            "run_id": run_id,
            "model": entry.id,
            "backend": entry.backend,
            "quant": entry.quant,
            "threads": config["threads"],
            "max_new_tokens": config["max_new_tokens"],
            "min_new_tokens": config["min_new_tokens"],
            "config_id": config.config_id,
            "sweep": config.label,
            "n_gpu_layers": getattr(options.flags, "n_gpu_layers", None),
            "long_strategy": setup.long_strategy,
            "prompt_name": template.name,
            "prompt_sha": template.sha,
            "summary_lang": lang,
            "flash_attn": getattr(options.flags, "flash_attn", None),
            "repack": effective_repack(options.flags),
        },
        bandwidth_gbs=bandwidth,
    )
    echo.model_header(entry, config)
    detached = ModelRecord()  # a model that fails before its weights are resolved gets no run.json entry
    try:
        path = resolve(entry, offline=setup.config.offline, progress=True)
    except HarnessError as exc:  # no weights: the model's samples become error rows
        return _failed(ctx, detached, echo, "cannot get model", exc)
    # No local weights (source kind remote): size 0, empty sha256; the server holds the model.
    files = [] if path is None else sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    size_bytes = sum(p.stat().st_size for p in files)
    ctx.weight_bytes = size_bytes
    local_file = path is not None and path.is_file()
    # The context asked for must fit the model (n_ctx_train in its GGUF header), not only the engine.
    train = gguf_n_ctx_train(path) if local_file else None
    ctx_problem = n_ctx_problem(options.n_ctx, train) if options.n_ctx is not None else None
    if ctx_problem:
        echo.line(f"   cannot run model: {ctx_problem}")
        return PreparedModel(ctx, detached, failed=ctx_problem)
    ctx.weights_read_bytes = weights_read_bytes(path) if local_file else None
    ctx.kv_shape = kv_cache_shape(path) if local_file else None
    ctx.base["model_file_mb"] = size_bytes / 2**20
    # One config: its load facts sit on the model's record, as before sweeps; several: one entry each.
    group = builder.model_prepared(
        entry.id,
        config if len(setup.configs) > 1 else None,
        backend=entry.backend,
        quant=entry.quant,
        source=entry.source.kind,
        size_bytes=size_bytes,
        sha256=cached_sha256(path) if local_file else "" if path is None else None,
        provenance=entry.provenance,
    )
    try:
        served = serving.start(entry, path, options, run_dir, echo.line)
    except HarnessError as exc:  # the server did not start: the model's samples become error rows
        return _failed(ctx, group, echo, "cannot serve model", exc)
    if served is not None:
        builder.model_served(group, served.record)
        ctx.base["backend"] = served.backend_name
        options = served.options
    job = WorkerJob(
        model_id=entry.id,
        # An importable reference, so a backend defined outside harness.backends loads in the worker too.
        backend=served.backend_ref if served else backend_ref(backend_class(entry.backend)),
        model_path=str(path) if path is not None else "",
        prompt_style=entry.prompt_style,
        options=options,
        template=template,
        scenario=scenario_ref(setup.scenario),
        scenario_config=scenario.config,
    )
    return PreparedModel(ctx, group, job, served)


def _failed(ctx: ModelRowContext, record: ModelRecord, echo: Echo, what: str, exc: HarnessError) -> PreparedModel:
    echo.line(f"   {what}: {exc}")
    return PreparedModel(ctx, record, failed=str(exc))


def kv_cache_mb(model_path: str, shape: KvCacheShape | None, n_ctx: int) -> float | None:
    """The KV cache the engine allocates at `n_ctx` (f16 K and V; sliding-window layers keep their window),
    from the GGUF header (`shape`, read once per model); None for other formats."""
    if not model_path.endswith(".gguf"):
        return None
    return shape.read_bytes(n_ctx) / 2**20 if shape else None


__all__ = ["PreparedModel", "kv_cache_mb", "prepare_model"]
