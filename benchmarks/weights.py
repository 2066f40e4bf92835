"""Benchmark: why the embedded backend converts SmolLM2's Q4_1 weights (lm.weights), and to what.

    .venv/bin/python benchmarks/weights.py          # about 1 minute on 2 idle cores

For each weight type, llama.cpp's raw speed on 2 threads (llama_decode, flash attention, unified KV cache as in
lm/llamacpp.py) and how far its next-token distributions are from the exact weights:
- prompt tok/s: one 512-token prompt per call (best of 3);
- generation tok/s at 1, 8 and 16 sequences: 30 steps of one token per sequence after a 200-token prompt each;
- top-1 agreement and mean / 99th-percentile KL divergence over 2,000 positions of seed-task text, against F16.
  F16 holds every Q4_1 weight to within F16 rounding (it agrees with F32 on 99.85% of positions, mean KL 1e-5),
  so it stands for the exact weights. Q4_1 computed as Q4_1 also rounds the activations to 8 bits.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from selfinstruct.lm.weights import default_model_path, prepared_weights
from selfinstruct.seeds import load_seed_tasks

TYPES = ["original", "q8_0", "bf16", "f16"]
BATCH = 528


class Model:
    def __init__(self, path: Path, sequences: int = 16) -> None:
        import llama_cpp.llama_cpp as ll

        self.ll = ll
        with contextlib.redirect_stderr(io.StringIO()):
            self.model = ll.llama_model_load_from_file(str(path).encode(), ll.llama_model_default_params())
            params = ll.llama_context_default_params()
            params.n_ctx, params.n_seq_max, params.kv_unified = 4096 * 4, sequences, True
            params.n_batch = params.n_ubatch = BATCH
            params.n_threads = params.n_threads_batch = 2
            params.flash_attn_type = ll.LLAMA_FLASH_ATTN_TYPE_ENABLED
            self.ctx = ll.llama_init_from_model(self.model, params)
        self.memory = ll.llama_get_memory(self.ctx)
        self.batch = ll.llama_batch_init(BATCH, 0, 1)
        self.vocab = ll.llama_model_get_vocab(self.model)
        self.n_vocab = ll.llama_vocab_n_tokens(self.vocab)

    def decode(self, rows: list[tuple[int, int, int, bool]]) -> float:
        """One llama_decode call over (sequence, position, token, wants logits) rows; its seconds."""
        batch = self.batch
        for i, (seq, pos, token, logits) in enumerate(rows):
            batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = token, pos, 1, logits
            batch.seq_id[i][0] = seq
        batch.n_tokens = len(rows)
        started = time.perf_counter()
        if self.ll.llama_decode(self.ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")
        return time.perf_counter() - started

    def clear(self) -> None:
        self.ll.llama_memory_clear(self.memory, True)

    def prompt_rate(self) -> float:
        times = []
        for _ in range(3):
            self.clear()
            times.append(self.decode([(0, i, 200 + (7 * i) % 5000, i == 511) for i in range(512)]))
        return 512 / min(times)

    def generation_rate(self, sequences: int) -> float:
        self.clear()
        for seq in range(sequences):
            self.decode([(seq, i, 300 + (11 * i + seq) % 5000, i == 199) for i in range(200)])
        seconds = sum(
            self.decode([(s, 200 + step, 400 + step + s, True) for s in range(sequences)]) for step in range(30)
        )
        return sequences * 30 / seconds

    def log_probs(self, tokens: list[int]) -> np.ndarray:
        self.clear()
        rows = []
        for start in range(0, len(tokens), 512):
            chunk = tokens[start : start + 512]
            self.decode([(0, start + i, token, True) for i, token in enumerate(chunk)])
            logits = np.ctypeslib.as_array(self.ll.llama_get_logits(self.ctx), shape=(len(chunk), self.n_vocab))
            rows.append(logits.astype(np.float64))
        z = np.concatenate(rows)
        z -= z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    def tokenize(self, text: str) -> list[int]:
        data = text.encode()
        buffer = (self.ll.llama_token * (len(data) + 2))()
        n = self.ll.llama_tokenize(self.vocab, data, len(data), buffer, len(data) + 2, True, False)
        return buffer[:n]

    def close(self) -> None:
        self.ll.llama_batch_free(self.batch)
        self.ll.llama_free(self.ctx)
        self.ll.llama_model_free(self.model)


def main() -> None:
    from llama_cpp._logger import set_verbose

    set_verbose(False)  # llama.cpp's conversion and load logs
    source = default_model_path()
    tasks = load_seed_tasks(None)
    text = "\n".join(f"{t.instruction}\nInput: {t.instances[0].input}\nOutput: {t.instances[0].output}" for t in tasks)
    with tempfile.TemporaryDirectory() as cache:
        os.environ["XDG_CACHE_HOME"] = cache  # convert afresh, to time it
        results = {}
        for weights in TYPES:
            started = time.perf_counter()
            path = prepared_weights(source, weights)
            converted = time.perf_counter() - started
            model = Model(path)
            tokens = model.tokenize(text)[:2000]
            rates = [model.prompt_rate(), *(model.generation_rate(n) for n in (1, 8, 16))]
            results[weights] = (path.stat().st_size, converted, rates, model.log_probs(tokens))
            model.close()
    exact = results["f16"][3]
    header = ["weights", "file MB", "conversion s", "prompt tok/s", "generation tok/s x1", "x8", "x16"]
    header += ["top-1 agreement with F16", "mean KL", "p99 KL"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for weights, (size, converted, rates, log_probs) in results.items():
        kl = (np.exp(exact) * (exact - log_probs)).sum(axis=1)
        agreement = (exact.argmax(axis=1) == log_probs.argmax(axis=1)).mean()
        cells = [weights, f"{size / 1e6:.0f}", f"{converted:.2f}" if weights != "original" else "-"]
        cells += [f"{rate:.0f}" for rate in rates]
        cells += [f"{agreement:.2%}", f"{kl.mean():.5f}", f"{np.quantile(kl, 0.99):.4f}"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
