"""Benchmark: generated tokens/s of the transformers backend (batch 1 and 8) against the llama.cpp backend.

    .venv/bin/python benchmarks/transformers_backend.py              # SmolLM2-135M from the embedded GGUF
    .venv/bin/python benchmarks/transformers_backend.py --no-llamacpp --max-tokens 32

Sends the same short prompts to each configuration, all at once (as the engine does), greedy, and prints a
markdown table: load time, wall time, generated tokens, tokens/s, and how many greedy outputs equal the batch-1
(parallel 1) outputs of the same backend. Both backends use every core (2 here): run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import resource
import time
from typing import Any

from selfinstruct.config import Sampling
from selfinstruct.lm import Completion

PROMPTS = [
    "Come up with a series of tasks:\n1.",
    "Write a short poem about the sea.\nPoem:",
    "Give three tips for staying healthy.\n1.",
    "Translate to French: The weather is nice today.\nFrench:",
    "Explain what a binary search does.\nAnswer:",
    "List five fruits that are red.\n1.",
    "Summarize the plot of Romeo and Juliet in one sentence.\nSummary:",
    "Write a Python function that reverses a string.\n```python\n",
    "What is the capital of Japan?\nAnswer:",
    "Classify the sentiment of: I loved this movie!\nSentiment:",
    "Suggest a name for a coffee shop.\nName:",
    "Describe the color blue to someone who cannot see.\nDescription:",
    "Instruction: Sort these numbers: 5, 2, 9, 1.\nOutput:",
    "Write an email declining a meeting invitation.\nEmail:",
    "Is the following statement true or false? The sun is a star.\nAnswer:",
    "Give an example of a renewable energy source.\nExample:",
]


async def _complete(lm: Any, prompt: str, sampling: Sampling) -> Completion:
    result = lm.complete(prompt, sampling, 0)
    return await result if inspect.isawaitable(result) else result  # the llama.cpp backend may still be sync


async def _run(lm: Any, sampling: Sampling) -> tuple[float, list[Completion]]:
    start = time.perf_counter()
    results = await asyncio.gather(*(_complete(lm, p, sampling) for p in PROMPTS))
    return time.perf_counter() - start, list(results)


def _row(name: str, load: float, wall: float, results: list[Completion], reference: list[Completion]) -> str:
    tokens = sum(c.completion_tokens for c in results)
    same = sum(a.text == b.text for a, b in zip(results, reference, strict=True))
    return f"| {name} | {load:.1f} | {wall:.1f} | {tokens} | {tokens / wall:.1f} | {same}/{len(results)} |"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model directory or .gguf (default: the embedded SmolLM2 GGUF)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--no-llamacpp", action="store_true", help="skip the llama.cpp comparison")
    args = parser.parse_args()
    sampling = Sampling(temperature=0.0, max_tokens=args.max_tokens)

    from selfinstruct.lm.transformers import TransformersLM

    rows = []
    start = time.perf_counter()
    lm = TransformersLM(args.model, batch_size=1)
    load = time.perf_counter() - start
    await _run(lm, Sampling(max_tokens=4))  # warm-up: first-call allocations
    wall, sequential = await _run(lm, sampling)
    rows.append(_row("transformers, batch 1", load, wall, sequential, sequential))
    lm.batch_size = 8  # same loaded model: only the batching changes
    wall, batched = await _run(lm, sampling)
    rows.append(_row("transformers, batch 8", 0.0, wall, batched, sequential))
    await lm.aclose()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux: peak of the transformers part

    if not args.no_llamacpp:
        from selfinstruct.lm.llamacpp import LlamaCppLM

        gguf = args.model if args.model and args.model.endswith(".gguf") else None
        # The embedded backend decodes `parallel` sequences together where it supports that.
        batched = "parallel" in inspect.signature(LlamaCppLM).parameters
        reference: list[Completion] = []
        for parallel in (1, 8) if batched else (None,):
            start = time.perf_counter()
            llama = LlamaCppLM(gguf, parallel=parallel) if parallel else LlamaCppLM(gguf)
            load = time.perf_counter() - start
            await _run(llama, Sampling(max_tokens=4))
            wall, results = await _run(llama, sampling)
            reference = reference or results
            name = f"llama.cpp, parallel {parallel}" if parallel else "llama.cpp"
            rows.append(_row(name, load, wall, results, reference))
            close = getattr(llama, "aclose", None)
            if close is not None:
                await close()

    print(f"{len(PROMPTS)} prompts, greedy, max_tokens {args.max_tokens}, model {lm.model_id}\n")
    print("| backend | load s | wall s | generated tokens | tokens/s | same text as batch 1 |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nPeak RSS after the transformers runs (before llama.cpp loads): {rss:.2f} GB")


if __name__ == "__main__":
    asyncio.run(main())
