"""llama.cpp through llama-cpp-python: GGUF models on CPU (or GPU when the build offloads).

Why the low-level loop instead of `create_completion(stream=True)`: streamed text chunks are not tokens
(llama-cpp-python holds back incomplete UTF-8, so one Chinese character arrives as one chunk after
several byte-level tokens). `Llama.generate` yields token ids, which we timestamp one by one.

Why `reset()` + `kv_cache_clear()` before every generation: llama-cpp-python silently reuses the KV cache
of the longest common prompt prefix, so a repeat of the same talk would skip prefill (TTFT ~3 ms).
The engine's prompt-eval count is checked against the prompt length after every sample.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, ClassVar

import llama_cpp
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from harness.backends.base import (
    Backend,
    BackendOptions,
    EngineCounters,
    GenerationRequest,
    GenerationResult,
    LoadInfo,
)
from harness.errors import HarnessError
from harness.prompts import RenderedPrompt


class LlamaCppBackend(Backend):
    name: ClassVar[str] = "llama_cpp"

    def __init__(self, model_path: Path, options: BackendOptions, prompt_style: str) -> None:
        super().__init__(model_path, options, prompt_style)
        self.llm: llama_cpp.Llama | None = None
        self._formatter: Jinja2ChatFormatter | None = None

    def load(self) -> LoadInfo:
        opts = self.options
        gpu_ok = bool(llama_cpp.llama_supports_gpu_offload())
        n_gpu_layers = opts.n_gpu_layers if gpu_ok else 0
        self.llm = llama_cpp.Llama(
            model_path=str(self.model_path),
            n_ctx=opts.n_ctx,
            # Prefill runs on n_threads_batch, decode on n_threads: set both or prefill uses all cores.
            n_threads=opts.threads,
            n_threads_batch=opts.threads,
            n_gpu_layers=n_gpu_layers,
            use_mmap=opts.use_mmap,
            flash_attn=opts.flash_attn,
            seed=opts.seed,
            verbose=False,
            no_perf=False,
        )
        template = self.llm.metadata.get("tokenizer.chat_template")
        if self.prompt_style == "chat":
            if not template:
                raise HarnessError(
                    f"{self.model_path.name} has no chat template; set prompt_style: completion in models.yaml"
                )
            vocab = self.llm._model.vocab
            self._formatter = Jinja2ChatFormatter(
                template=template,
                bos_token=self._piece(llama_cpp.llama_vocab_bos(vocab)),
                eos_token=self._piece(llama_cpp.llama_vocab_eos(vocab)),
            )
        provider = "llama.cpp CPU" if n_gpu_layers == 0 else f"llama.cpp GPU ({n_gpu_layers} layers)"
        extra: dict[str, Any] = {
            "n_ctx_train": self.llm._model.n_ctx_train(),
            "n_batch": self.llm.n_batch,
            "n_threads": opts.threads,
            "n_threads_batch": opts.threads,
            "flash_attn": opts.flash_attn,
            "gpu_offload_supported": gpu_ok,
            "architecture": self.llm.metadata.get("general.architecture"),
            "file_type": self.llm.metadata.get("general.file_type"),
            "has_chat_template": bool(template),
        }
        if opts.n_gpu_layers and not gpu_ok:
            extra["warning"] = "n_gpu_layers ignored: this llama.cpp build has no GPU offload"
        return LoadInfo(
            provider=provider,
            n_ctx=self.llm.n_ctx(),
            model_files=[self.model_path],
            mmap=opts.use_mmap,
            extra=extra,
        )

    def _piece(self, token: int) -> str:
        assert self.llm is not None
        if token < 0:
            return ""
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    def tokenize_prompt(self, prompt: RenderedPrompt) -> list[int]:
        assert self.llm is not None
        if self.prompt_style == "chat":
            assert self._formatter is not None
            rendered = self._formatter(messages=prompt.messages(), **self.options.chat_template_kwargs).prompt
            # The template writes BOS itself when the model wants one; special=True parses control tokens.
            return self.llm.tokenize(rendered.encode("utf-8"), add_bos=False, special=True)
        return self.llm.tokenize(prompt.content.encode("utf-8"), add_bos=True, special=False)

    def generate(self, request: GenerationRequest) -> GenerationResult:
        llm = self.llm
        assert llm is not None
        ctx = llm._ctx.ctx
        vocab = llm._model.vocab
        llm.reset()
        llm._ctx.kv_cache_clear()
        llama_cpp.llama_perf_context_reset(ctx)
        ids: list[int] = []
        times: list[int] = []
        stop_reason = "length"
        start = self.now_ns()
        for token in llm.generate(
            request.prompt_ids, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0, reset=True
        ):
            now = self.now_ns()
            if llama_cpp.llama_vocab_is_eog(vocab, token) and len(ids) >= request.min_new_tokens:
                stop_reason = "eos"
                break
            ids.append(token)
            times.append(now)
            if len(ids) >= request.max_new_tokens:
                break
        perf = llama_cpp.llama_perf_context(ctx)
        counters = EngineCounters(
            prompt_tokens=int(perf.n_p_eval),
            prompt_ms=float(perf.t_p_eval_ms),
            decode_tokens=int(perf.n_eval),
            decode_ms=float(perf.t_eval_ms),
        )
        # Decode bytes once: per-token pieces can be partial UTF-8 sequences.
        text = llm.detokenize(ids).decode("utf-8", errors="replace")
        return GenerationResult(
            token_ids=ids,
            text=text,
            start_ns=start,
            token_ns=times,
            stop_reason=stop_reason,
            prompt_tokens_evaluated=counters.prompt_tokens,
            counters=counters,
        )

    def close(self) -> None:
        if self.llm is not None:
            with contextlib.suppress(Exception):
                self.llm.close()
            self.llm = None

    @classmethod
    def system_info(cls) -> dict[str, Any]:
        return {
            "llama_cpp_python": llama_cpp.__version__,
            "system_info": llama_cpp.llama_print_system_info().decode("utf-8", errors="replace").strip(),
            "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
            "mmap_supported": bool(llama_cpp.llama_supports_mmap()),
            "cpu_count": os.cpu_count(),
        }
