"""Shared test helpers: a scripted LM that answers each stage's prompt in the expected format.

The scripted LM is for fast unit tests of the pipeline logic; tests/test_embedded_model.py runs the real
llama.cpp model end to end.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from selfinstruct.config import Sampling
from selfinstruct.lm import BackendError, Completion
from selfinstruct.lm import scripted as scripted_backend

SHARED = Path(__file__).resolve().parents[2] / "shared"


class Interrupt(BaseException):
    """Stands in for a SIGKILL in tests that interrupt a run in-process (not caught by `except Exception`)."""


class ScriptedLM(scripted_backend.ScriptedLM):
    """Answers like a cooperative model. `calls` counts each (prompt, seed) sent; `fail` decides faults."""

    def __init__(
        self,
        fail: Callable[[str, int], BackendError | None] | None = None,
        interrupt_after: int | None = None,
        classify_answer: str | None = None,
    ) -> None:
        super().__init__(classify_answer=classify_answer)
        self.calls: Counter[tuple[str, int]] = Counter()
        self.sent = 0
        self.fail = fail
        self.interrupt_after = interrupt_after

    async def complete(self, prompt: str, sampling: Sampling, seed: int) -> Completion:
        if self.interrupt_after is not None and self.sent >= self.interrupt_after:
            raise Interrupt()
        self.sent += 1
        self.calls[(prompt, seed)] += 1
        if self.fail and (error := self.fail(prompt, self.sent)):
            raise error
        return await super().complete(prompt, sampling, seed)


@pytest.fixture
def scripted() -> ScriptedLM:
    return ScriptedLM()


TINY_WORDS = [f"{a}{b}" for a in "bcdfgklmnprst" for b in "aeiou"]  # 65 distinct two-letter words


def save_tiny_llama(path: Path, chat_template: str | None = None, adjust: Callable[[Any], None] | None = None) -> None:
    """A random 2-layer Llama and a word-level tokenizer over TINY_WORDS, saved as a Hugging Face model directory.

    Built in-process (no downloads) so that tests run the real transformers/TRL/PEFT code in a second or two.
    `adjust(model)` may change the weights (under torch.no_grad) before they are saved.
    """
    import tokenizers
    import torch
    import transformers

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(TINY_WORDS)}}
    model = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    model.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=model, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    if chat_template:
        tok.chat_template = chat_template
    tok.save_pretrained(path)
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=None,
    )
    model = transformers.LlamaForCausalLM(config)
    if adjust is not None:
        with torch.no_grad():
            adjust(model)
    model.save_pretrained(path)
