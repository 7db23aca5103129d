"""Build an onnxruntime-genai model from a models.yaml GGUF entry or a Hugging Face hub id.

Two paths end in the onnxruntime-genai model builder (`onnxruntime_genai.models.builder`):

(a) a hub id (`owner/name`), online: the builder downloads the checkpoint itself (`-m`).
(b) a GGUF entry of models.yaml, offline: the GGUF is resolved into the model cache
    (`harness.models.sources.resolve`), dequantised by transformers into a float32 Hugging Face
    folder, and the builder reads that folder (`-i`). The builder's own GGUF reader handles float
    GGUFs only, so quantised files (Q4_1, Q4_K_M, …) go through transformers.

What the GGUF path means for the weights: transformers dequantises the GGUF, so fp32 and int8 builds
reproduce the GGUF's (already quantised) weights; an int4 build quantises them a second time with
the builder's own 4-bit scheme. The provenance says so (`double_quantised: true`), and results of
such a model measure "Q4 GGUF re-quantised to int4", not the original checkpoint at int4.

The result lives at `<cache>/<new-id>/` (genai_config.json, model.onnx(.data), tokenizer files,
`harness.json` with provenance and the BOS rule, `build.log`) and is registered in
`<cache>/registered.yaml` so `harness run --models <new-id>` finds it.

torch and transformers are imported inside the functions that need them: the runtime path
(`harness.backends.onnx_genai`) needs onnxruntime-genai alone.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import __version__
from harness.backends.llama_cpp import LlamaCppBackend
from harness.backends.onnx_genai import OnnxGenaiBackend
from harness.errors import HarnessError, suggest
from harness.models.registry import ModelEntry, load_models, register_model
from harness.prepare import onnx_model_id

PRECISIONS = ("int4", "int8", "fp16", "fp32")
BUILD_PROVIDERS = ("cpu", "cuda", "dml", "webgpu")
# The builder's valid precision x execution-provider pairs (it prints this list itself).
VALID_COMBOS = {
    ("fp32", "cpu"),
    ("fp32", "cuda"),
    ("fp16", "cuda"),
    ("fp16", "dml"),
    ("int8", "cpu"),
    ("int8", "cuda"),
    ("int8", "webgpu"),
    ("int4", "cpu"),
    ("int4", "cuda"),
    ("int4", "dml"),
    ("int4", "webgpu"),
}
FLOAT_QUANTS = {"F32", "F16", "BF16"}
BUILD_MODULES = ("torch", "transformers", "accelerate", "onnx", "onnx_ir", "onnxruntime_genai")
INSTALL_HINT = "pip install -e '.[onnx-build]'"
HARNESS_JSON = "harness.json"
DEFAULT_HUB_N_CTX = 8192
MODEL_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # as ModelEntry.id

Echo = Callable[[str], None]


@dataclass(frozen=True)
class PrepareRequest:
    model_id: str
    precision: str
    provider: str = "cpu"
    offline: bool = False
    force: bool = False
    models_file: Path | None = None
    new_id: str | None = None
    n_ctx: int | None = None
    builder_options: tuple[str, ...] = ()


@dataclass
class BuildInputs:
    """What the builder reads, and what we know about where it came from."""

    input_dir: Path | None = None  # -i: a local Hugging Face folder
    hub_id: str | None = None  # -m: a hub id the builder downloads
    add_bos_token: bool | None = None
    provenance: dict[str, Any] = field(default_factory=dict)


# --- checks --------------------------------------------------------------------------------------


def check_build_deps() -> None:
    """One-line error naming the install command when a build dependency is missing."""
    missing = [name for name in BUILD_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise HarnessError(f"building ONNX models needs {', '.join(missing)}; install with {INSTALL_HINT}")


def check_combo(precision: str, provider: str) -> None:
    if precision not in PRECISIONS:
        raise HarnessError(f'unknown precision "{precision}"; use one of {", ".join(PRECISIONS)}')
    if provider not in BUILD_PROVIDERS:
        raise HarnessError(
            f'the model builder cannot target "{provider}"; use one of {", ".join(BUILD_PROVIDERS)} '
            f"(QNN/OpenVINO models come from their vendors' toolchains: see docs/onnx.md)"
        )
    if (precision, provider) not in VALID_COMBOS:
        valid = ", ".join(sorted(f"{p}/{e}" for p, e in VALID_COMBOS))
        raise HarnessError(f"the model builder does not build {precision} for {provider}; valid: {valid}")


# --- GGUF → Hugging Face folder ------------------------------------------------------------------


def gguf_metadata(path: Path) -> dict[str, Any]:
    """The GGUF facts the ONNX model needs later: architecture, BOS rule, special ids, file type."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))

    def field_value(key: str) -> Any:
        f = reader.fields.get(key)
        if f is None:
            return None
        try:
            return f.contents()
        except Exception:  # an odd field type must not stop a build over metadata we only record
            return None

    file_type = field_value("general.file_type")
    return {
        "architecture": field_value("general.architecture"),
        "name": field_value("general.name"),
        "file_type": file_type,
        "file_type_name": _file_type_name(file_type),
        "add_bos_token": field_value("tokenizer.ggml.add_bos_token"),
        "bos_token_id": field_value("tokenizer.ggml.bos_token_id"),
        "eos_token_id": field_value("tokenizer.ggml.eos_token_id"),
        "has_chat_template": field_value("tokenizer.chat_template") is not None,
    }


def _file_type_name(file_type: Any) -> str | None:
    from gguf import LlamaFileType

    try:
        return LlamaFileType(int(file_type)).name
    except (TypeError, ValueError):
        return None


def source_is_quantised(file_type: Any, quant: str | None) -> bool:
    """Whether the GGUF's weights are below 16 bits: from its `general.file_type`, else the entry's quant."""
    from gguf import LlamaFileType

    floats = {LlamaFileType.ALL_F32, LlamaFileType.MOSTLY_F16, LlamaFileType.MOSTLY_BF16}
    try:
        return LlamaFileType(int(file_type)) not in floats
    except (TypeError, ValueError):
        return quant is not None and quant.upper() not in FLOAT_QUANTS


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """Keep transformers off the network while it reads local files (no hub on many machines)."""
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def gguf_to_hf(gguf_path: Path, out_dir: Path) -> dict[str, Any]:
    """Dequantise `gguf_path` with transformers and save a float32 Hugging Face folder at `out_dir`.

    transformers refuses to save a GGUF-loaded model (its quantisation config marks it
    unserialisable), so the weights move into a fresh model built from the same config minus
    `quantization_config`. The fresh model is created on the meta device and takes the loaded
    tensors by assignment, so memory holds one copy of the weights, not two.
    """
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    folder, name = str(gguf_path.parent), gguf_path.name
    with _hub_offline():
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
            loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        except (ValueError, KeyError, NotImplementedError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise HarnessError(
                f"transformers {transformers.__version__} cannot load {name}: {first}; "
                f"build from the original checkpoint instead (a Hugging Face hub id, online)"
            ) from None
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        with torch.device("meta"):
            fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        fresh.load_state_dict(loaded.state_dict(), strict=True, assign=True)
        fresh.tie_weights()  # assign=True replaced the tied parameter objects; re-tie them
        architecture = type(fresh).__name__
        del loaded
        out_dir.mkdir(parents=True, exist_ok=True)
        fresh.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
        del fresh
        gc.collect()
    return {"hf_architecture": architecture, "transformers": transformers.__version__, "torch": torch.__version__}


def builder_config_fixes(hf_dir: Path) -> list[str]:
    """The config attributes `builder_main` will adapt for this folder (recorded in provenance)."""
    from transformers import AutoConfig

    from harness.prepare.builder_main import adapt_config

    with _hub_offline():
        config = AutoConfig.from_pretrained(str(hf_dir))
    return adapt_config(config)


def tokenizer_adds_bos(hf_dir: Path) -> bool:
    """Whether the saved tokenizer puts BOS in front of plain text (Hugging Face semantics)."""
    from transformers import AutoTokenizer

    with _hub_offline():
        tok = AutoTokenizer.from_pretrained(str(hf_dir))
    bos = tok.bos_token_id
    if bos is None:
        return False
    ids = tok("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == bos


# --- the builder ---------------------------------------------------------------------------------


def builder_options(precision: str, user_options: Sequence[str]) -> list[str]:
    """KEY=VALUE options for the builder: ours first, the user's after (later keys win)."""
    options = [
        # Prefill computes logits for the last prompt token only, as llama.cpp does; with a 262k
        # vocabulary (Gemma 3) full-prompt logits would cost ~1 MB per prompt token.
        "prune_lm_head=true",
        "hf_token=false",  # never send a stored hub token; local folders need none
    ]
    if precision == "int8":
        # Tied-embedding models would try an 8-bit GatherBlockQuantized, which only exists in 4-bit
        # (the builder logs an error and keeps float embeddings); ask for that outright.
        options.append("shared_embeddings=false")
    for option in user_options:
        if "=" not in option:
            raise HarnessError(f'builder option "{option}" must be KEY=VALUE, e.g. block_size=64')
    return [*options, *user_options]


def run_builder(
    inputs: BuildInputs,
    out_dir: Path,
    precision: str,
    provider: str,
    cache: Path,
    options: Sequence[str],
    log_path: Path,
) -> None:
    """Run the model builder in a child process, its (long) output going to `log_path`.

    A child process because the builder puts its own folder on sys.path (top-level modules named
    `builders`, `quantization`, …) and keeps the converted graph in memory until it exits.
    """
    # builder_main runs the builder's own __main__ with the config fixes transformers >= 5 needs.
    cmd = [sys.executable, "-m", "harness.prepare.builder_main"]
    if inputs.input_dir is not None:
        cmd += ["-i", str(inputs.input_dir)]
    else:
        assert inputs.hub_id is not None
        cmd += ["-m", inputs.hub_id]
    cmd += ["-o", str(out_dir), "-p", precision, "-e", provider, "-c", str(cache), "--extra_options", *options]
    env = dict(os.environ, PYTHONUNBUFFERED="1", TRANSFORMERS_VERBOSITY="error")
    if inputs.input_dir is not None:
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    with log_path.open("w", encoding="utf-8") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
    if proc.returncode != 0 or not (out_dir / "genai_config.json").is_file():
        raise HarnessError(
            f"the onnxruntime-genai model builder failed (exit {proc.returncode}): "
            f"{_last_error_line(log_path)}; full log: {log_path}"
        )


def _last_error_line(log_path: Path) -> str:
    try:
        lines = [ln.strip() for ln in log_path.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return "no log"
    lines = [ln for ln in lines if ln]
    for line in reversed(lines):
        if "Error" in line or "error:" in line or "Exception" in line:
            return line[:300]
    return lines[-1][:300] if lines else "no output"


# --- orchestration -------------------------------------------------------------------------------


def _has_chat_template(model_dir: Path) -> bool:
    if (model_dir / "chat_template.jinja").is_file():
        return True
    try:
        tok_cfg = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(tok_cfg.get("chat_template"))


def _context_length(model_dir: Path) -> int | None:
    try:
        config = json.loads((model_dir / "genai_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = config.get("model", {}).get("context_length")
    return int(value) if isinstance(value, (int, float)) else None


def prepare_onnx(request: PrepareRequest, echo: Echo = print) -> ModelEntry:
    """Build, store and register an ONNX model; returns the registered entry."""
    from harness.models.sources import cache_dir, cached_sha256, resolve

    check_combo(request.precision, request.provider)
    entries = load_models(request.models_file)
    base: ModelEntry | None = entries.get(request.model_id)
    if base is None and "/" not in request.model_id:
        raise HarnessError(
            f'unknown model "{request.model_id}".{suggest(request.model_id, entries)} Give a GGUF model id '
            f"from `harness models` or a Hugging Face hub id (owner/name)"
        )
    if base is not None and base.backend != LlamaCppBackend.name:
        raise HarnessError(
            f'model "{base.id}" is already a {base.backend} model; '
            f"prepare a GGUF ({LlamaCppBackend.name}) entry instead"
        )
    if base is None and request.offline:
        raise HarnessError(
            f'"{request.model_id}" is a hub id, which the builder downloads; drop --offline, '
            f"or give a GGUF model id from models.yaml to build offline"
        )
    check_build_deps()
    from harness.backends.onnx_genai import genai_version  # after the check: needs onnxruntime-genai

    new_id = request.new_id or onnx_model_id(
        request.model_id, request.precision, base.quant if base is not None else None
    )
    if not MODEL_ID_PATTERN.match(new_id):
        raise HarnessError(f'"{new_id}" is not a valid model id; use letters, digits, ".", "_" and "-"')
    root = cache_dir()
    final_dir = root / new_id
    if final_dir.exists() and not request.force:
        raise HarnessError(f"{final_dir} already exists; pass --force to rebuild it")
    root.mkdir(parents=True, exist_ok=True)
    # Build next to the cache (same disk) and rename into place at the end, so an interrupted build
    # never looks like a ready model.
    work = Path(tempfile.mkdtemp(prefix=f".prepare-{new_id}-", dir=root))
    try:
        stage = work / "onnx"
        inputs = BuildInputs()
        quant = base.quant if base is not None else None
        if base is not None:
            echo(f"[1/3] resolving {base.id} ({base.quant} GGUF)")
            gguf_path = resolve(base, offline=request.offline)
            assert gguf_path is not None  # a llama_cpp entry (checked above) always has local weights
            meta = gguf_metadata(gguf_path)
            echo(f"[2/3] dequantising {gguf_path.name} with transformers (float32 Hugging Face folder)")
            t0 = time.perf_counter()
            hf_dir = work / "hf"
            versions = gguf_to_hf(gguf_path, hf_dir)
            adapted = builder_config_fixes(hf_dir)
            echo(f"      done in {time.perf_counter() - t0:.1f} s")
            inputs.input_dir = hf_dir
            add_bos = meta.get("add_bos_token")
            inputs.add_bos_token = add_bos if isinstance(add_bos, bool) else tokenizer_adds_bos(hf_dir)
            requantised = source_is_quantised(meta.get("file_type"), quant)
            inputs.provenance = {
                "source_model": base.id,
                "source_kind": "gguf",
                "source_file": gguf_path.name,
                "source_sha256": cached_sha256(gguf_path),
                "source_quant": quant,
                "source_file_type": meta.get("file_type_name"),
                "gguf_architecture": meta.get("architecture"),
                "hf_architecture": versions["hf_architecture"],
                "dequantised_with": f"transformers {versions['transformers']} (torch {versions['torch']})",
                "builder_config_fixes": adapted,
                # int4 quantises the GGUF's already-quantised weights again with another scheme.
                "double_quantised": bool(requantised and request.precision == "int4"),
            }
        else:
            echo(f"[1/3] {request.model_id} is a hub id: the builder downloads it")
            echo("[2/3] (no GGUF to dequantise)")
            inputs.hub_id = request.model_id
            inputs.provenance = {"source_model": request.model_id, "source_kind": "hf_hub", "double_quantised": False}

        options = builder_options(request.precision, request.builder_options)
        echo(f"[3/3] building {request.precision} for {request.provider} with the onnxruntime-genai model builder")
        t0 = time.perf_counter()
        log_path = work / "build.log"
        try:
            run_builder(inputs, stage, request.precision, request.provider, work / "builder-cache", options, log_path)
        except HarnessError:
            kept = root / f".prepare-{new_id}.log"  # the work folder goes; keep the log for the user
            shutil.copyfile(log_path, kept)
            raise HarnessError(
                f"the onnxruntime-genai model builder failed: {_last_error_line(log_path)}; full log: {kept}"
            ) from None
        echo(f"      done in {time.perf_counter() - t0:.1f} s")
        (root / f".prepare-{new_id}.log").unlink(missing_ok=True)  # an earlier failure's log is stale now
        shutil.move(str(log_path), stage / "build.log")
        if inputs.add_bos_token is None:
            inputs.add_bos_token = tokenizer_adds_bos(stage)

        provenance = {
            **inputs.provenance,
            "precision": request.precision,
            "execution_provider": request.provider,
            "builder": "onnxruntime_genai.models.builder",
            "builder_version": genai_version(),
            "builder_options": options,
            "built_by": f"harness {__version__} prepare onnx",
            "built_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        (stage / HARNESS_JSON).write_text(
            json.dumps(
                {"model_id": new_id, "add_bos_token": bool(inputs.add_bos_token), "provenance": provenance},
                indent=2,
                ensure_ascii=False,
            )
            + "\n",
            encoding="utf-8",
        )
        chat = _has_chat_template(stage)
        if base is not None:
            prompt_style = base.prompt_style if chat or base.prompt_style == "completion" else "completion"
            if prompt_style != base.prompt_style:
                echo(f"note: the converted tokenizer has no chat template; {new_id} uses completion prompts")
            n_ctx = request.n_ctx or base.n_ctx
        else:
            prompt_style = "chat" if chat else "completion"
            n_ctx = request.n_ctx or min(_context_length(stage) or DEFAULT_HUB_N_CTX, DEFAULT_HUB_N_CTX)
        description = f"{request.model_id} built for onnxruntime-genai, {request.precision} ({request.provider})"
        if provenance.get("double_quantised"):
            description += f"; re-quantised from the {quant} GGUF"
        entry = ModelEntry.model_validate(
            {
                "id": new_id,
                "backend": OnnxGenaiBackend.name,
                "source": {"kind": "onnx_dir", "path": str(final_dir)},
                "quant": request.precision.upper(),
                "n_ctx": n_ctx,
                "prompt_style": prompt_style,
                "description": description,
                "provider": request.provider,
                "provenance": provenance,
            }
        )
        if final_dir.exists():
            shutil.rmtree(final_dir)
        os.replace(stage, final_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    registered = register_model(entry, models_file=request.models_file)
    size_mb = sum(p.stat().st_size for p in final_dir.iterdir() if p.is_file()) / 1e6
    echo(f"registered {new_id} in {registered} ({size_mb:.1f} MB at {final_dir})")
    return entry
