"""Preparing models for backends that cannot read the shipped files directly.

`harness prepare onnx MODEL_ID --precision int4|int8|fp16|fp32` builds an onnxruntime-genai model
(see `harness.prepare.onnx`). This package imports nothing heavy: torch and transformers are
imported only inside the build, so the ONNX runtime path needs onnxruntime-genai alone.

Naming rule for prepared models: `<base>-onnx-<precision>`, where `<base>` is the source model id
without its GGUF quantisation suffix (the entry's `quant`, or a trailing `-q4_k_m` / `-q8_0` /
`-f16` …), lower-cased; for a Hugging Face hub id, the part after the `/`.
  smollm2-135m-instruct-q4_1          -> smollm2-135m-instruct-onnx-int8
  Qwen/Qwen2.5-0.5B-Instruct (hub)    -> qwen2.5-0.5b-instruct-onnx-int4
"""

from __future__ import annotations

import re

# GGUF quantisation suffixes as they end model ids: q4_1, q4_k_m, q8_0, iq4_xs, f16, f32, bf16.
_QUANT_SUFFIX = re.compile(r"-(?:i?q\d[a-z0-9_]*|f16|f32|bf16)$", re.IGNORECASE)


def onnx_model_id(base_id: str, precision: str, quant: str | None = None) -> str:
    """The id a prepared ONNX model is registered under (rule in the module docstring)."""
    stem = base_id.rsplit("/", 1)[-1].lower()
    suffix = f"-{quant.lower()}" if quant else ""
    if suffix and stem.endswith(suffix) and len(stem) > len(suffix):
        stem = stem[: -len(suffix)]
    else:
        stem = _QUANT_SUFFIX.sub("", stem)
    return f"{stem}-onnx-{precision.lower()}"
