"""ONNX Runtime through onnxruntime-genai: models built by `harness prepare onnx` (or any genai folder).

A model is a folder with `genai_config.json`, `model.onnx(.data)` and the Hugging Face tokenizer files.
`harness prepare onnx` also writes `harness.json` beside them (provenance, the source's BOS rule).

Why the explicit execution-provider handling: onnxruntime-genai runs on whatever `genai_config.json`
names, and onnxruntime quietly places nodes on CPU when an accelerator is missing. A benchmark must
say what ran, so a requested provider that this onnxruntime lacks is an error naming the ones it has,
and `LoadInfo.provider` is the EP name that was configured (e.g. "QNNExecutionProvider").

Why threads are set here: onnxruntime-genai leaves `intra_op_num_threads` to genai_config.json, and
the builder writes none, so the CPU EP's thread count would be a default (which behaved like one
thread on the 2-core machines here) and llama.cpp-vs-ONNX comparisons would compare thread counts.

Why token ids come from Hugging Face `tokenizers` when it is installed: onnxruntime-genai's own
tokenizer splits long runs of text without spaces differently from Hugging Face and llama.cpp for
SentencePiece-style vocabularies (Gemma 3: 1-4 more tokens per Chinese talk), so the same prompt would
reach the two engines as different ids. `tokenizers` reads the same tokenizer.json and gives
llama.cpp's ids; without it the genai tokenizer is used and LoadInfo.extra["tokenizer"] says so.

Why a fresh `og.Generator` per sample: the generator owns the KV cache, so a new one cannot reuse a
previous prompt's prefix; prefill is measured in full every time.
"""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from harness.backends.base import (
    Backend,
    BackendOptions,
    GenerationRequest,
    GenerationResult,
    LazyModule,
    LoadInfo,
    TokenStream,
)
from harness.env import harness_command
from harness.errors import HarnessError, unknown
from harness.prompts import RenderedPrompt

if TYPE_CHECKING:
    import onnxruntime_genai as og
else:
    og = LazyModule("onnxruntime_genai")  # imported when a model loads, not when the backend registers

GENAI_CONFIG = "genai_config.json"
HARNESS_JSON = "harness.json"  # written by `harness prepare onnx` beside the model


@dataclass(frozen=True)
class Provider:
    """One execution provider: harness name -> onnxruntime-genai config name -> onnxruntime EP name."""

    name: str  # what models.yaml / --provider say
    genai: str | None  # name for og.Config.append_provider; None = CPU (genai's default, nothing appended)
    ep: str  # onnxruntime.get_available_providers() name
    package: str  # the pip package that provides it (for the error message)


PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        Provider("cpu", None, "CPUExecutionProvider", "onnxruntime-genai"),
        Provider("cuda", "cuda", "CUDAExecutionProvider", "onnxruntime-genai-cuda"),
        Provider("dml", "dml", "DmlExecutionProvider", "onnxruntime-genai-directml"),
        Provider("qnn", "qnn", "QNNExecutionProvider", "onnxruntime-qnn"),
        Provider("openvino", "OpenVINO", "OpenVINOExecutionProvider", "onnxruntime-openvino"),
        Provider("coreml", "CoreML", "CoreMLExecutionProvider", "onnxruntime (macOS build)"),
        Provider("webgpu", "WebGPU", "WebGpuExecutionProvider", "onnxruntime-webgpu"),
    )
}

# `auto` takes the first available of these. NPUs first: this is an on-device benchmark and a user
# who installed the QNN or OpenVINO build wants it measured; then GPUs; CPU last (always present).
AUTO_ORDER: tuple[str, ...] = ("qnn", "openvino", "cuda", "dml", "coreml", "webgpu", "cpu")


def available_providers() -> list[str]:
    """Execution providers this onnxruntime can create, as onnxruntime names them.

    Includes plugin EPs registered as devices (onnxruntime >= 1.22), which get_available_providers()
    does not list.
    """
    import onnxruntime as ort

    names = list(ort.get_available_providers())
    get_ep_devices = getattr(ort, "get_ep_devices", None)
    if get_ep_devices is not None:
        try:
            devices = get_ep_devices()
        except Exception:  # an EP library failing to enumerate must not hide the others
            devices = []
        for device in devices:
            ep_name = getattr(device, "ep_name", None)
            if isinstance(ep_name, str) and ep_name not in names:
                names.append(ep_name)
    return names


def model_target_provider(model_dir: Path) -> str | None:
    """The provider the model was built for, from genai_config.json's provider_options (None = CPU)."""
    try:
        config = json.loads((model_dir / GENAI_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    entries = config.get("model", {}).get("decoder", {}).get("session_options", {}).get("provider_options", [])
    lookup = {p.name: p.name for p in PROVIDERS.values()}
    lookup.update({(p.genai or "cpu").lower(): p.name for p in PROVIDERS.values()})
    for entry in entries if isinstance(entries, list) else []:
        for key in entry if isinstance(entry, dict) else {}:
            if key.lower() in lookup:
                return lookup[key.lower()]
    return None


def select_provider(requested: str, available: list[str], model_target: str | None = None) -> Provider:
    """Resolve `requested` (a PROVIDERS name or "auto") against what onnxruntime offers.

    `auto`: the provider the model was built for when available, else the first available in
    AUTO_ORDER. A named provider that is not available is an error listing the available ones --
    never a quiet run on CPU.
    """
    requested = (requested or "auto").strip().lower()
    if requested == "auto":
        order = ([model_target] if model_target else []) + list(AUTO_ORDER)
        for name in order:
            if PROVIDERS[name].ep in available:
                return PROVIDERS[name]
        return PROVIDERS["cpu"]  # unreachable with a real onnxruntime: CPU is always available
    if requested not in PROVIDERS:
        raise unknown("execution provider", requested, [*PROVIDERS, "auto"])
    provider = PROVIDERS[requested]
    if provider.ep not in available:
        raise HarnessError(
            f'execution provider "{requested}" ({provider.ep}) is not available in this onnxruntime; '
            f"available: {', '.join(available) or 'none'}; install {provider.package} or use --provider auto"
        )
    return provider


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise HarnessError(f"{path}: not valid JSON ({exc}); rebuild the model with `harness prepare onnx`") from None
    return data if isinstance(data, dict) else {}


def _as_ids(value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, (list, tuple, np.ndarray)):
        return [int(v) for v in value]
    return [int(value)]


class _GenaiCodec:
    """Token ids <-> text with onnxruntime-genai's tokenizer."""

    name = "onnxruntime-genai"

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer

    def encode(self, text: str) -> list[int]:
        return [int(i) for i in self._tok.encode(text)]

    def decode(self, ids: list[int]) -> str:
        return str(self._tok.decode(np.asarray(ids, dtype=np.int32))) if ids else ""


class _HfCodec:
    """Token ids <-> text with Hugging Face `tokenizers` on the model's tokenizer.json."""

    def __init__(self, path: Path) -> None:
        import tokenizers

        self._tok = tokenizers.Tokenizer.from_file(str(path))
        self.name = f"tokenizers {tokenizers.__version__}"

    def encode(self, text: str) -> list[int]:
        # No post-processor specials (BOS is our decision, below); control tokens in the text still
        # map to their ids, as the chat template expects.
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: list[int]) -> str:
        return str(self._tok.decode(ids, skip_special_tokens=True)) if ids else ""


def make_codec(model_dir: Path, genai_tokenizer: Any) -> _GenaiCodec | _HfCodec:
    """`tokenizers` on tokenizer.json when both exist (same ids as llama.cpp), else genai's tokenizer."""
    path = model_dir / "tokenizer.json"
    if path.is_file() and importlib.util.find_spec("tokenizers") is not None:
        try:
            return _HfCodec(path)
        except Exception:  # a tokenizer.json `tokenizers` cannot read: genai may still manage
            pass
    return _GenaiCodec(genai_tokenizer)


class OnnxGenaiBackend(Backend):
    """No models.yaml `flags`: the execution provider (`provider`, `provider_options`) is the knob."""

    name: ClassVar[str] = "onnx"
    requires: ClassVar[dict[str, str]] = {"onnxruntime_genai": "harness[onnx]", "onnxruntime": "harness[onnx]"}
    providers: ClassVar[tuple[str, ...]] = tuple(PROVIDERS)

    def __init__(self, model_path: Path, options: BackendOptions, prompt_style: str) -> None:
        super().__init__(model_path, options, prompt_style)
        self.model: Any = None
        self.tokenizer: Any = None  # genai's: chat templates and EOS ids
        self.codec: _GenaiCodec | _HfCodec | None = None  # token ids <-> text
        self.provider: Provider | None = None
        self.n_ctx = 0
        self._eos: set[int] = set()
        self._bos: int | None = None
        self._add_bos = False
        self._min_max_length = 0

    # --- load ------------------------------------------------------------------------------------

    def load(self) -> LoadInfo:
        model_dir = Path(self.model_path)
        genai_path = model_dir / GENAI_CONFIG
        if not genai_path.is_file():
            raise HarnessError(
                f"{model_dir} is not an onnxruntime-genai model (no {GENAI_CONFIG}); "
                f"build one with `{harness_command()} prepare onnx MODEL_ID`"
            )
        genai_config = _read_json(genai_path)
        harness_meta = _read_json(model_dir / HARNESS_JSON)
        available = available_providers()
        provider = select_provider(self.options.provider, available, model_target_provider(model_dir))
        if self.options.threads < 1:
            raise HarnessError(f"threads must be at least 1, got {self.options.threads}")

        # Telemetry would send events over the network from inside timed code; nothing here needs it.
        if hasattr(og, "disable_telemetry_events"):
            og.disable_telemetry_events()

        config = og.Config(str(model_dir))
        session = {"intra_op_num_threads": int(self.options.threads)}
        config.overlay(json.dumps({"model": {"decoder": {"session_options": session}}}))
        config.clear_providers()
        if provider.genai is not None:
            config.append_provider(provider.genai)
            for key, value in self.options.provider_options.items():
                config.set_provider_option(provider.genai, str(key), _option_str(value))
        elif self.options.provider_options:
            raise HarnessError(
                "provider_options were given but the model runs on CPU, which takes none; "
                "remove provider_options from models.yaml or pick a provider"
            )
        try:
            self.model = og.Model(config)
        except Exception as exc:  # genai raises plain RuntimeError with a readable message
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise HarnessError(f"onnxruntime-genai could not load {model_dir} on {provider.ep}: {first}") from None
        self.tokenizer = og.Tokenizer(self.model)
        self.codec = make_codec(model_dir, self.tokenizer)
        self.provider = provider

        model_cfg = genai_config.get("model", {})
        context_length = int(model_cfg.get("context_length") or self.options.n_ctx)
        self.n_ctx = min(self.options.n_ctx, context_length)
        self._eos = set(_as_ids(getattr(self.tokenizer, "eos_token_ids", None))) or set(
            _as_ids(model_cfg.get("eos_token_id"))
        )
        bos = model_cfg.get("bos_token_id")
        self._bos = int(bos) if isinstance(bos, (int, float)) and not isinstance(bos, bool) else None
        self._add_bos = self._wants_bos(model_dir, harness_meta)
        self._min_max_length = self._kv_floor(model_cfg)

        extra: dict[str, Any] = {
            "onnxruntime": ort_version(),
            "onnxruntime_genai": genai_version(),
            "genai_provider": provider.genai or "cpu",
            "provider_options": {str(k): _option_str(v) for k, v in self.options.provider_options.items()},
            "available_providers": available,
            "device_type": _safe(lambda: self.model.device_type),
            "model_type": _safe(lambda: self.model.type) or model_cfg.get("type"),
            "intra_op_num_threads": int(self.options.threads),
            "context_length": context_length,
            "tokenizer": self.codec.name,
            "add_bos_token": self._add_bos,
            "eos_token_ids": sorted(self._eos),
        }
        if self._min_max_length:
            extra["min_kv_length"] = self._min_max_length
        if harness_meta.get("provenance"):
            extra["provenance"] = harness_meta["provenance"]
        files = sorted(p for p in model_dir.iterdir() if p.is_file())
        # ORT reads external weights into its own buffers (no mmap of the model file on the default
        # path), so memory readings include the weights.
        return LoadInfo(provider=provider.ep, n_ctx=self.n_ctx, model_files=files, mmap=False, extra=extra)

    def _wants_bos(self, model_dir: Path, harness_meta: dict[str, Any]) -> bool:
        """Whether the model expects a BOS the tokenizer may not add, from the model's own files.

        harness.json records the GGUF's `tokenizer.ggml.add_bos_token` (what llama.cpp obeys), which
        the tokenizer files saved by transformers do not always carry; tokenizer_config.json's
        `add_bos_token` is the Hugging Face equivalent.
        """
        if isinstance(harness_meta.get("add_bos_token"), bool):
            return bool(harness_meta["add_bos_token"])
        tok_cfg = _read_json(model_dir / "tokenizer_config.json")
        return bool(tok_cfg.get("add_bos_token", False))

    @staticmethod
    def _kv_floor(model_cfg: dict[str, Any]) -> int:
        """Smallest max_length the model's KV cache accepts (sliding-window models), from genai_config."""
        window = model_cfg.get("decoder", {}).get("sliding_window")
        if isinstance(window, dict):
            size = window.get("window_size")
            if isinstance(size, (int, float)) and size > 0:
                return int(size)
        return 0

    # --- prompt ----------------------------------------------------------------------------------

    def tokenize_prompt(self, prompt: RenderedPrompt) -> list[int]:
        assert self.codec is not None, "load() first"
        if self.prompt_style == "chat":
            text = self._chat_text(prompt)
            # The chat template writes BOS itself when the model wants one (as in the llama.cpp backend).
            return self._dedupe_bos(self.codec.encode(text))
        ids = self.codec.encode(prompt.content)
        if self._add_bos and self._bos is not None and ids[:1] != [self._bos]:
            ids.insert(0, self._bos)
        return self._dedupe_bos(ids)

    def _dedupe_bos(self, ids: list[int]) -> list[int]:
        # A template that writes BOS plus a tokenizer that also adds one gives two; models never want that.
        if self._bos is not None and ids[:2] == [self._bos, self._bos]:
            return ids[1:]
        return ids

    def _chat_text(self, prompt: RenderedPrompt) -> str:
        messages = prompt.messages()
        template = self._template_source()
        if template is None:
            raise HarnessError(
                f"{Path(self.model_path).name} has no chat template; set prompt_style: completion for it"
            )
        apply = getattr(self.tokenizer, "apply_chat_template", None)
        if apply is not None:
            return str(apply(json.dumps(messages, ensure_ascii=False), add_generation_prompt=True))
        return self._render_with_jinja(template, messages)  # onnxruntime-genai < 0.7 has no template API

    def _template_source(self) -> str | None:
        model_dir = Path(self.model_path)
        jinja_file = model_dir / "chat_template.jinja"  # transformers >= 4.50 saves it on its own
        if jinja_file.is_file():
            return jinja_file.read_text(encoding="utf-8")
        template = _read_json(model_dir / "tokenizer_config.json").get("chat_template")
        if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}]
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("default")
        return template if isinstance(template, str) and template else None

    def _render_with_jinja(self, template: str, messages: list[dict[str, str]]) -> str:
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        tok_cfg = _read_json(Path(self.model_path) / "tokenizer_config.json")

        def token_text(key: str) -> str:
            value = tok_cfg.get(key)
            return value.get("content", "") if isinstance(value, dict) else (value or "")

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        return env.from_string(template).render(
            messages=messages,
            add_generation_prompt=True,
            bos_token=token_text("bos_token"),
            eos_token=token_text("eos_token"),
        )

    # --- generate --------------------------------------------------------------------------------

    def generate(self, request: GenerationRequest) -> GenerationResult:
        assert self.model is not None and self.codec is not None, "load() first"
        n_prompt = len(request.prompt_ids)
        if n_prompt == 0:
            raise HarnessError("empty prompt: nothing to generate from")
        max_length = n_prompt + request.max_new_tokens
        if max_length > self.n_ctx:
            raise HarnessError(
                f"prompt ({n_prompt} tokens) + max_new_tokens ({request.max_new_tokens}) exceeds n_ctx "
                f"{self.n_ctx}; shorten the input or lower --max-new-tokens"
            )
        params = og.GeneratorParams(self.model)
        search: dict[str, Any] = {
            "do_sample": False,  # greedy; top_k=1 as well in case a build samples regardless
            "top_k": 1,
            "top_p": 1.0,
            "temperature": 1.0,
            "repetition_penalty": 1.0,
            "num_beams": 1,
            # The KV cache is sized from max_length; sliding-window models need at least one window.
            "max_length": max(max_length, self._min_max_length) if self._min_max_length else max_length,
        }
        if request.min_new_tokens:
            # genai masks EOS until the whole sequence reaches min_length (prompt included).
            search["min_length"] = n_prompt + request.min_new_tokens
        params.set_search_options(**search)
        generator = og.Generator(self.model, params)
        stream = TokenStream(request)
        try:
            start = self.now_ns()
            generator.append_tokens(np.asarray(request.prompt_ids, dtype=np.int32))
            evaluated = int(generator.token_count()) if hasattr(generator, "token_count") else None
            while not generator.is_done():
                generator.generate_next_token()
                token = int(generator.get_next_tokens()[0])
                if stream.add(token, self.now_ns(), token in self._eos):
                    break
        finally:
            del generator  # frees this sample's KV cache before the next one is allocated
        # Decode all ids at once: a Chinese character spans several byte-level tokens, so per-token
        # pieces are partial UTF-8.
        text = self.codec.decode(stream.ids)
        return GenerationResult(
            token_ids=stream.ids,
            text=text,
            start_ns=start,
            token_ns=stream.times,
            stop_reason=stream.stop_reason,
            prompt_tokens_evaluated=evaluated,
            counters=None,  # onnxruntime-genai keeps no per-generation timing counters
            end_ns=stream.end_ns,
        )

    @classmethod
    def preflight(cls, options: BackendOptions) -> None:
        # A named provider that this onnxruntime lacks fails the whole run up front, in one line.
        select_provider(options.provider, available_providers())

    def close(self) -> None:
        self.codec = None
        self.tokenizer = None
        self.model = None

    environment_keys: ClassVar[tuple[str, ...]] = ("onnxruntime",)

    @classmethod
    def environment(cls) -> dict[str, Any] | None:
        """run.json `onnxruntime`: its version, the execution providers it can create (plugin EPs included,
        which onnxruntime's own list leaves out) and onnxruntime-genai's version (None when not installed)."""
        if importlib.util.find_spec("onnxruntime") is None:
            return None
        try:
            info: dict[str, Any] = {"version": ort_version(), "providers": available_providers(), "genai_version": None}
        except ImportError:  # installed but unimportable (a broken build): nothing to report
            return None
        if importlib.util.find_spec("onnxruntime_genai") is not None:
            with contextlib.suppress(ImportError):
                info["genai_version"] = genai_version()
        return {"onnxruntime": info}

    @classmethod
    def system_info(cls) -> dict[str, Any]:
        return {
            "onnxruntime": ort_version(),
            "onnxruntime_genai": genai_version(),
            "providers": available_providers(),
            "auto_order": list(AUTO_ORDER),
        }


def _option_str(value: Any) -> str:
    # genai takes provider options as strings; JSON booleans become "1"/"0" as onnxruntime expects.
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def ort_version() -> str | None:
    import onnxruntime as ort

    return getattr(ort, "__version__", None)


def genai_version() -> str | None:
    # The distribution name depends on the build (onnxruntime-genai, -cuda, -directml, ...).
    version = getattr(og, "__version__", None)
    if version:
        return str(version)
    for dist in ("onnxruntime-genai", "onnxruntime-genai-cuda", "onnxruntime-genai-directml"):
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            continue
    return None


def _safe(getter: Any) -> Any:
    try:
        return getter()
    except Exception:
        return None
