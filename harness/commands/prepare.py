"""`harness prepare onnx MODEL_ID`: build an onnxruntime-genai model and register it.

python -m harness prepare onnx MODEL_ID --precision int4|int8|fp16|fp32 [--provider cpu|cuda|dml|webgpu]
                               [--offline] [--force] [--id NEW_ID] [--n-ctx N] [--builder-option K=V …]
                               [--models-file F]

MODEL_ID is a GGUF entry of models.yaml (built offline, via transformers) or a Hugging Face hub id
`owner/name` (the builder downloads it; needs the hub). The new model is registered as
`<base>-onnx-<precision>` (see `harness.prepare`). Needs the build extras: pip install -e '.[onnx-build]'.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.env import harness_command
from harness.prepare import onnx_model_id


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prepare",
        help="convert a model for another backend (`prepare onnx ID --precision int4`)",
        description="Prepare models for backends that cannot read the shipped files directly.",
    )
    sub = parser.add_subparsers(dest="prepare_kind", metavar="{onnx}")
    example = onnx_model_id("smollm2-135m-instruct-q4_1", "int8", "Q4_1")
    onnx = sub.add_parser(
        "onnx",
        help="build an onnxruntime-genai model from a GGUF entry or a hub id, and register it",
        description=(
            "Build an onnxruntime-genai model into the model cache and register it in the cache's "
            f"registered.yaml as <base>-onnx-<precision> (e.g. {example})."
            " A GGUF entry is dequantised with transformers first; an int4 build from a 4-bit GGUF is"
            " quantised twice and marked double_quantised in its provenance."
        ),
    )
    onnx.add_argument(
        "model_id", metavar="MODEL_ID", help="GGUF model id from `harness models`, or owner/name on the hub"
    )
    onnx.add_argument(
        "--precision",
        required=True,
        choices=["int4", "int8", "fp16", "fp32"],
        help="weights of the ONNX model (int4/int8: the builder's block-wise MatMulNBits)",
    )
    onnx.add_argument(
        "--provider",
        default="cpu",
        choices=["cpu", "cuda", "dml", "webgpu"],
        help="execution provider the graph is built for (default cpu)",
    )
    onnx.add_argument(
        "--offline", action="store_true", help="never touch the network: the GGUF must already be in the cache"
    )
    onnx.add_argument("--force", action="store_true", help="rebuild even if the target folder exists")
    onnx.add_argument(
        "--id", dest="new_id", metavar="NEW_ID", help="register under this id (default: <base>-onnx-<precision>)"
    )
    onnx.add_argument(
        "--n-ctx",
        type=int,
        metavar="N",
        help="context size of the new entry (default: the GGUF entry's, or 8192 for a hub id)",
    )
    onnx.add_argument(
        "--builder-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra option for the model builder, e.g. block_size=64 (repeatable; default: none)",
    )
    onnx.add_argument(
        "--models-file",
        type=Path,
        default=None,
        metavar="FILE.yaml",
        help="models.yaml to read (default: the shipped one)",
    )
    onnx.set_defaults(func=_prepare_onnx)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _prepare_onnx(args: argparse.Namespace) -> int:
    from harness.errors import HarnessError
    from harness.prepare.onnx import PrepareRequest, prepare_onnx

    if args.n_ctx is not None and args.n_ctx < 1:
        raise HarnessError(f"--n-ctx must be positive, got {args.n_ctx}")
    request = PrepareRequest(
        model_id=args.model_id,
        precision=args.precision,
        provider=args.provider,
        offline=args.offline,
        force=args.force,
        models_file=args.models_file,
        new_id=args.new_id,
        n_ctx=args.n_ctx,
        builder_options=tuple(args.builder_option),
    )
    entry = prepare_onnx(request, echo=lambda line: print(line, flush=True))
    print(f"run it with: {harness_command()} run --models {entry.id}")
    return 0
