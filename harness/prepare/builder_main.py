"""Run the onnxruntime-genai model builder with the config fixes it needs under transformers >= 5.

Usage (what `harness prepare onnx` runs in a child process): the builder's own command line,
    python -m harness.prepare.builder_main -i HF_DIR -o OUT -p int4 -e cpu -c CACHE --extra_options …

transformers >= 5 normalises RoPE settings into `config.rope_parameters`, nested per layer type for
models with local and global attention. The builder's Gemma 3 path still reads the flat attributes
`rope_theta` and `rope_local_base_freq` and a flat `rope_parameters` ("rope_type" at the top), and
fails with AttributeError/KeyError. Editing config.json cannot fix that (transformers re-nests the
keys on load), so the config object is adapted right after `AutoConfig.from_pretrained` returns it.
"""

from __future__ import annotations

import runpy
import sys
from typing import Any

# Builder classes (by the architecture they dispatch on) that read flat RoPE keys. Newer builder
# classes that understand the nested form (e.g. Gemma 4) are deliberately not listed.
FLAT_ROPE_ARCHITECTURES = frozenset({"Gemma3ForCausalLM", "Gemma3ForConditionalGeneration"})


def adapt_config(config: Any) -> list[str]:
    """Give `config` the flat RoPE attributes the builder reads; returns the attribute names set."""
    architectures = getattr(config, "architectures", None) or []
    rope = getattr(config, "rope_parameters", None)
    if not architectures or architectures[0] not in FLAT_ROPE_ARCHITECTURES:
        return []
    if not (isinstance(rope, dict) and isinstance(rope.get("full_attention"), dict)):
        return []
    full = dict(rope["full_attention"])
    local = rope.get("sliding_attention") if isinstance(rope.get("sliding_attention"), dict) else {}
    changed: list[str] = []
    if "rope_theta" in full and getattr(config, "rope_theta", None) is None:
        config.rope_theta = full["rope_theta"]
        changed.append("rope_theta")
    if "rope_theta" in local and getattr(config, "rope_local_base_freq", None) is None:
        config.rope_local_base_freq = local["rope_theta"]
        changed.append("rope_local_base_freq")
    # Global layers' settings in the flat form; the local cache gets rope_local_base_freq above.
    full.setdefault("rope_type", "default")
    config.rope_parameters = full
    changed.append("rope_parameters")
    return changed


def main(argv: list[str]) -> None:
    from transformers import AutoConfig

    original = AutoConfig.from_pretrained

    def from_pretrained(*args: Any, **kwargs: Any) -> Any:
        config = original(*args, **kwargs)
        changed = adapt_config(config)
        if changed:
            print(f"harness: adapted config for the builder: {', '.join(changed)}", flush=True)
        return config

    AutoConfig.from_pretrained = staticmethod(from_pretrained)  # type: ignore[method-assign]
    sys.argv = ["onnxruntime_genai.models.builder", *argv]
    runpy.run_module("onnxruntime_genai.models.builder", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
