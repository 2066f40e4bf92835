"""An optional backend: Hugging Face transformers (PyTorch) running a model directory or a GGUF file in-process.

Install with `pip install 'selfinstruct[transformers]'`. On a small CPU it is several times slower than the
llama.cpp backend (docs/transformers-backend.md); it is here for models llama.cpp cannot run and for checking a
fine-tuned checkpoint before converting it to GGUF.

One worker thread owns the model. `complete` queues the request and awaits a future; the worker takes up to
`batch_size` queued requests with the same sampling parameters and decodes them in one left-padded `generate`
call. Sampling is done row by row in our own logits processor (one seeded generator per request), so a request's
output does not depend on which requests it was batched with, up to floating-point noise (see `_Sampler`).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selfinstruct.config import Sampling
from selfinstruct.lm import BackendError, Queued
from selfinstruct.lmtypes import Completion, Message, Prompt, fold_system

if TYPE_CHECKING:
    import torch

INSTALL_HINT = "pip install 'selfinstruct[transformers]'"
# After the first request arrives, wait this long for more so that concurrent requests share a batch.
GATHER_SECONDS = 0.01


@dataclass(eq=False)
class _Request(Queued):
    ids: list[int] | None = None  # prompt tokens, filled in by the worker
    limit: int = 0  # new tokens allowed: max_tokens, or less near the context limit
    chat: bool = False  # a chat-template rendering: it has its special tokens already


_CLOSE = object()  # queue sentinel: stop the worker


def _resolve(fut: asyncio.Future[Completion], result: Completion | None, error: BaseException | None) -> None:
    if fut.done():  # the caller gave up (cancelled)
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)  # type: ignore[arg-type]


def _deliver(req: _Request, result: Completion | None = None, error: BaseException | None = None) -> None:
    # The worker thread must not touch the future directly: hand it to the request's event loop.
    with contextlib.suppress(RuntimeError):  # the loop is already closed: nobody is waiting any more
        req.loop.call_soon_threadsafe(_resolve, req.future, result, error)


def _check_model_path(path: Path) -> None:
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise BackendError(f"{path} is not a Hugging Face model directory (no config.json)", retryable=False)
        return
    if not path.is_file():
        raise BackendError(f"model not found: {path} (pass a model directory or a .gguf file)", retryable=False)
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise BackendError(f"{path} is neither a model directory nor a GGUF file", retryable=False)


class TransformersLM:
    def __init__(
        self, model: str | None = None, seed: int = 0, batch_size: int = 8, threads: int | None = None
    ) -> None:
        if model:
            path = Path(model).expanduser()
        else:
            from selfinstruct.lm.weights import default_model_path

            path = default_model_path()
        _check_model_path(path)
        try:
            import torch
            import transformers
        except ImportError as e:
            raise BackendError(
                f"the transformers backend needs torch and transformers ({e}): {INSTALL_HINT}", retryable=False
            ) from None

        if threads:
            torch.set_num_threads(threads)
        torch.manual_seed(seed)  # only for anything outside our per-request generators
        self._torch = torch
        self._tokenizer, self._model = _load(transformers, torch, path)
        self.model_id = f"transformers:{path.name}"  # not the llama.cpp id: the two compute differently
        self.batch_size = max(1, batch_size)
        self._context = int(getattr(self._model.config, "max_position_embeddings", 0) or 1 << 20)
        gen_eos = self._model.generation_config.eos_token_id
        eos = {self._tokenizer.eos_token_id, *(gen_eos if isinstance(gen_eos, list) else [gen_eos])}
        self._eos = sorted(t for t in eos if t is not None)
        pad = self._tokenizer.pad_token_id
        self._pad = pad if pad is not None else (self._eos[0] if self._eos else 0)
        # Replace the model's generation defaults (e.g. a repetition_penalty from generation_config.json) with a
        # neutral config: every decoding choice is made by the request's Sampling.
        self._model.generation_config = transformers.GenerationConfig(
            do_sample=False,
            num_beams=1,
            eos_token_id=self._eos or None,
            pad_token_id=self._pad,
            bos_token_id=self._tokenizer.bos_token_id,
        )

        self.fold_system = False  # learned: the chat template refuses the system role
        self._queue: queue.Queue[Any] = queue.Queue()
        self._lock = threading.Lock()  # orders `complete`'s enqueue against the worker's final drain
        self._stopped = False
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"transformers-{self.model_id}", daemon=True)
        self._thread.start()

    def apply_chat_template(self, messages: list[Message]) -> str:
        """The messages rendered with the tokenizer's chat template, ready for the assistant's answer. A template
        that refuses the system role (it raises) gets it folded into the first user turn, and that is remembered."""
        if not getattr(self._tokenizer, "chat_template", None):
            raise BackendError(f"{self.model_id} has no chat template: use --api completions", retryable=False)
        while True:
            chosen = fold_system(messages) if self.fold_system else messages
            try:
                return self._tokenizer.apply_chat_template(chosen, add_generation_prompt=True, tokenize=False)
            except Exception as e:  # jinja2's TemplateError, raised by the template itself
                if self.fold_system or not any(m["role"] == "system" for m in messages):
                    raise BackendError(f"the chat template of {self.model_id} failed: {e}", retryable=False) from e
                self.fold_system = True

    async def complete(self, prompt: Prompt, sampling: Sampling, seed: int) -> Completion:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Completion] = loop.create_future()
        chat = isinstance(prompt, list)
        text = self.apply_chat_template(prompt) if isinstance(prompt, list) else prompt
        with self._lock:
            if self._stopped:
                raise BackendError("the transformers backend is closed", retryable=False)
            self._queue.put(_Request(text, sampling, seed, loop, fut, chat=chat))
        return await fut

    async def aclose(self) -> None:
        self._closing.set()  # ends a running generate() at its next step
        self._queue.put(_CLOSE)
        await asyncio.to_thread(self._thread.join)
        self._model = None  # release the weights
        self._tokenizer = None

    # --- worker thread ---

    def _run(self) -> None:
        pending: list[_Request] = []
        batch: list[_Request] = []
        try:
            with self._torch.inference_mode():  # thread-local, so it is entered here
                while self._gather(pending):
                    batch = self._take_batch(pending)
                    if batch:
                        self._serve(batch)
                    batch = []
        except BaseException as e:  # a bug in the loop itself: fail everything below rather than hang
            crash: BaseException | None = e
        else:
            crash = None
        finally:
            with self._lock:
                self._stopped = True
            while True:  # nothing can be queued any more: fail what is left
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not _CLOSE:
                    pending.append(item)
            if crash is not None:
                error = BackendError(f"the transformers worker crashed: {crash!r}", retryable=False)
            else:
                error = BackendError("the transformers backend was closed", retryable=False)
            for req in batch + pending:  # already answered ones are skipped by _resolve
                _deliver(req, error=error)

    def _gather(self, pending: list[_Request]) -> bool:
        """Move queued requests into `pending`; block while there is nothing to do. False when closing."""
        deadline = None
        while True:
            if pending and deadline is None:
                deadline = time.monotonic() + GATHER_SECONDS
            if len(pending) >= self.batch_size:
                timeout = 0.0
            elif deadline is None:
                timeout = None  # idle: block until a request arrives
            else:
                timeout = max(0.0, deadline - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout) if timeout != 0.0 else self._queue.get_nowait()
            except queue.Empty:
                return True
            if item is _CLOSE or self._closing.is_set():
                if item is not _CLOSE:
                    pending.append(item)
                return False
            pending.append(item)

    def _take_batch(self, pending: list[_Request]) -> list[_Request]:
        """Remove and return up to batch_size requests sharing the oldest request's sampling parameters."""
        pending[:] = [r for r in pending if not r.future.done()]  # drop requests whose callers gave up
        if not pending:
            return []
        key = pending[0].sampling
        batch = [r for r in pending if r.sampling == key][: self.batch_size]
        taken = {id(r) for r in batch}
        pending[:] = [r for r in pending if id(r) not in taken]
        return batch

    def _serve(self, batch: list[_Request]) -> None:
        ready = []
        for req in batch:  # a bad prompt fails its own request, not the batch
            try:
                if req.sampling.max_tokens < 1:
                    raise BackendError("max_tokens must be at least 1", rejected=True)
                req.ids = self._tokenizer(req.prompt, add_special_tokens=not req.chat)["input_ids"]
                if not req.ids:
                    raise BackendError("empty prompt: the model needs at least one token to continue", rejected=True)
                room = self._context - len(req.ids)
                if room < 1:
                    raise BackendError(
                        f"prompt of {len(req.ids)} tokens does not fit the model's context of {self._context}",
                        rejected=True,
                    )
                req.limit = min(req.sampling.max_tokens, room)
                ready.append(req)
            except Exception as e:
                _deliver(req, error=e if isinstance(e, BackendError) else BackendError(repr(e), retryable=False))
        if not ready:
            return
        try:
            results = self._generate(ready)
        except Exception as e:  # e.g. out of memory: this batch fails, the worker carries on
            for req in ready:
                _deliver(req, error=BackendError(f"transformers generate failed: {e!r}"))
            return
        if self._closing.is_set():  # generate was cut short: its outputs are not real completions
            for req in ready:
                _deliver(req, error=BackendError("the transformers backend was closed", retryable=False))
            return
        for req, result in zip(ready, results, strict=True):
            _deliver(req, result)

    def _generate(self, batch: list[_Request]) -> list[Completion]:
        torch = self._torch
        sampling = batch[0].sampling
        ids = [req.ids or [] for req in batch]
        width = max(len(x) for x in ids)
        # Left padding: every row's next token is then at the same position, and generate derives each row's
        # position ids from the attention mask, so a padded row decodes like the same prompt alone.
        input_ids = torch.tensor([[self._pad] * (width - len(x)) + x for x in ids], dtype=torch.long)
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], dtype=torch.long)
        tails = [x[-1:] for x in ids]
        limits = [req.limit for req in batch]
        stopper = _Stopper(width, tails, limits, sampling.stop, self._decode, set(self._eos), self._closing)
        sampler = _Sampler(torch, width, sampling, [req.seed for req in batch])
        self._model.generate(
            input_ids=input_ids,
            attention_mask=mask,
            max_new_tokens=max(limits),
            logits_processor=[sampler],
            stopping_criteria=[stopper],
        )
        results = []
        for row in range(len(batch)):
            tokens = stopper.tokens[row]
            text = self._decode(tails[row], tokens)
            reason = stopper.reasons[row] or "length"
            cut = _first_stop(text, sampling.stop)
            if cut is not None:
                text, reason = text[:cut], "stop"
            results.append(Completion(text, reason, len(ids[row]), len(tokens)))
        return results

    def _decode(self, tail: list[int], tokens: Sequence[int]) -> str:
        # Decode after the prompt's last token and drop its text: tokenizers that strip a leading space at the
        # start of a sequence (SentencePiece) would otherwise glue the completion's first word to the prompt.
        head = self._tokenizer.decode(tail, skip_special_tokens=True)
        text = self._tokenizer.decode([*tail, *tokens], skip_special_tokens=True)
        if text.startswith(head):
            return text[len(head) :]
        # The last prompt token was part of a character that the completion finished: decode on its own.
        return self._tokenizer.decode(tokens, skip_special_tokens=True)


def load_model(path: Path) -> tuple[Any, Any]:
    """(tokenizer, fp32 model in eval mode) from a model directory or a GGUF file; also used by finetune.py."""
    _check_model_path(path)
    try:
        import torch
        import transformers
    except ImportError as e:
        raise BackendError(
            f"loading {path} needs torch and transformers ({e}): {INSTALL_HINT}", retryable=False
        ) from None
    return _load(transformers, torch, path)


def _load(transformers: Any, torch: Any, path: Path) -> tuple[Any, Any]:
    if path.is_dir():
        where, extra = str(path), {}
    else:
        where, extra = str(path.parent), {"gguf_file": path.name}
    try:
        # The GGUF de-quantiser draws a progress bar on stderr with its own tqdm: keep the console clean.
        with contextlib.redirect_stderr(io.StringIO()):
            tokenizer = transformers.AutoTokenizer.from_pretrained(where, local_files_only=True, **extra)
            # fp32: a GGUF is de-quantised to fp32 anyway, and bf16 matmuls are slow on CPUs without bf16 units.
            model = transformers.AutoModelForCausalLM.from_pretrained(
                where, local_files_only=True, dtype=torch.float32, **extra
            )
    except Exception as e:
        raise BackendError(f"cannot load {path} with transformers: {e}", retryable=False) from None
    # A GGUF-loaded model keeps its quantizer attached though its weights are plain fp32 now; drop it so the
    # model behaves (and saves) like any other.
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
        model.hf_quantizer = None
    model.eval()
    return tokenizer, model


def _first_stop(text: str, stop: Sequence[str]) -> int | None:
    hits = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return min(hits) if hits else None


class _Sampler:
    """A logits processor that applies OpenAI's penalties and, when sampling, picks each row's token itself.

    Penalties follow the OpenAI definition over the tokens generated so far (not the prompt):
    logit[j] -= count[j] * frequency_penalty + (count[j] > 0) * presence_penalty.
    With temperature > 0 each row is sampled (temperature, then top_p) from its own torch.Generator seeded with
    the request's seed, and every other logit is set to -inf so that generate's greedy step takes that token.
    Hence a request's tokens depend on its prompt, sampling and seed, not on its batch neighbours, as long as the
    batched forward pass gives the same logits as the unbatched one; it does up to float rounding, which can flip
    a near-tie between two tokens.
    """

    def __init__(self, torch: Any, prompt_width: int, sampling: Sampling, seeds: list[int]) -> None:
        self.torch = torch
        self.start = prompt_width
        self.sampling = sampling
        self.generators = []
        if sampling.temperature > 0:
            for seed in seeds:
                gen = torch.Generator()
                gen.manual_seed(seed % (1 << 63))
                self.generators.append(gen)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        torch, s = self.torch, self.sampling
        scores = scores.float()
        generated = input_ids[:, self.start :]
        if (s.frequency_penalty or s.presence_penalty) and generated.shape[1] > 0:
            counts = torch.zeros_like(scores)
            counts.scatter_add_(1, generated, torch.ones_like(generated, dtype=scores.dtype))
            scores = scores - counts * s.frequency_penalty - (counts > 0).to(scores.dtype) * s.presence_penalty
        if s.temperature <= 0:
            return scores  # greedy: generate takes the argmax
        probs = torch.softmax(scores / s.temperature, dim=-1)
        picked = torch.empty(scores.shape[0], dtype=torch.long)
        if s.top_p >= 1:
            for row, gen in enumerate(self.generators):
                picked[row] = torch.multinomial(probs[row], 1, generator=gen)
        else:
            # Nucleus: keep the most likely tokens until their mass reaches top_p (always at least one).
            sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
            keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < s.top_p
            keep[:, 0] = True
            sorted_probs = sorted_probs * keep
            for row, gen in enumerate(self.generators):
                picked[row] = order[row, torch.multinomial(sorted_probs[row], 1, generator=gen)]
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(1, picked.unsqueeze(1), 0.0)
        return out


class _Stopper:
    """Stopping criteria per row: EOS, a stop string in the decoded text, the row's own token limit, or closing.

    Records the tokens each row really generated (generate pads finished rows until the whole batch ends)."""

    def __init__(
        self,
        prompt_width: int,
        tails: list[list[int]],
        limits: list[int],
        stop: Sequence[str],
        decode: Callable[[list[int], Sequence[int]], str],
        eos: set[int],
        closing: threading.Event,
    ) -> None:
        self.start = prompt_width
        self.tails = tails
        self.limits = limits
        self.stop = [s for s in stop if s]
        self.decode = decode
        self.eos = eos
        self.closing = closing
        self.tokens: list[list[int]] = [[] for _ in limits]
        self.reasons: list[str | None] = [None] * len(limits)
        self.done = [False] * len(limits)

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        import torch

        for row, tokens in enumerate(input_ids[:, self.start :].tolist()):
            if self.done[row]:
                continue
            self.tokens[row] = tokens
            if tokens and tokens[-1] in self.eos:
                self.tokens[row], self.reasons[row] = tokens[:-1], "stop"
            # Decoding the whole completion each step is simple and cheap next to a forward pass.
            elif self.stop and _first_stop(self.decode(self.tails[row], tokens), self.stop) is not None:
                self.reasons[row] = "stop"
            elif len(tokens) >= self.limits[row]:
                self.reasons[row] = "length"
            self.done[row] = self.reasons[row] is not None
        if self.closing.is_set():
            return torch.ones(len(self.done), dtype=torch.bool)
        return torch.tensor(self.done, dtype=torch.bool)
