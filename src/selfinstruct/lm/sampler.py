"""Next-token sampling with OpenAI's semantics, for the embedded backend.

Presence and frequency penalties on the tokens generated so far (not the prompt's), then temperature, then the
nucleus (top_p: the most likely tokens until their probability reaches top_p, the one crossing it included), then
a draw from the request's own seeded generator. Temperature 0 is greedy, and so is top_p 0 (a nucleus of one).

Why not llama.cpp's sampler chain: it normalises the whole 49,152-token vocabulary at every step, 0.8 ms per
token with these settings, which was 13% of the bootstrap stage's time with 16 sequences. Here the nucleus is
found among the tokens within a factor of the most likely one (few, for the paper's top_p 0.5), and the exact
answer is guaranteed: if those candidates do not hold top_p of the mass, the factor widens.
"""

from __future__ import annotations

import numpy as np

from selfinstruct.config import Sampling

# Candidates for the nucleus: tokens at least this fraction as likely as the most likely one, widened if needed.
_FIRST_CUT = 1e-3


class Sampler:
    def __init__(self, sampling: Sampling, seed: int) -> None:
        self.temperature = sampling.temperature
        self.top_p = min(sampling.top_p, 1.0)
        self.presence = sampling.presence_penalty
        self.frequency = sampling.frequency_penalty
        self.counts: dict[int, int] = {}  # generated tokens so far, for the penalties
        self.rng = np.random.default_rng(seed % 2**64)  # numpy refuses negative seeds

    def sample(self, logits: np.ndarray) -> int:
        """The next token, from one row of logits (left unchanged); it counts for later penalties."""
        if self.counts and (self.presence or self.frequency):
            ids = np.fromiter(self.counts, dtype=np.intp, count=len(self.counts))
            times = np.fromiter(self.counts.values(), dtype=np.float32, count=len(self.counts))
            logits = logits.copy()
            logits[ids] -= self.presence + self.frequency * times
        greedy = self.temperature <= 0 or self.top_p <= 0
        token = int(np.argmax(logits)) if greedy else self._draw(logits)
        self.counts[token] = self.counts.get(token, 0) + 1
        return token

    def _draw(self, logits: np.ndarray) -> int:
        # Unnormalised probabilities, the most likely token at 1.
        weights = np.exp((logits - logits.max()) / np.float32(self.temperature))
        if self.top_p >= 1:
            cumulative = np.cumsum(weights, dtype=np.float64)
            tokens = None
        else:
            needed = self.top_p * weights.sum(dtype=np.float64)
            cut = _FIRST_CUT
            while True:
                # Every candidate is more likely than every other token, so once they hold `needed` the nucleus,
                # a prefix of the tokens sorted by probability, lies among them.
                candidates = np.flatnonzero(weights >= cut)
                if cut == 0 or weights[candidates].sum(dtype=np.float64) >= needed:
                    break
                cut = cut * _FIRST_CUT if cut > 1e-30 else 0.0
            tokens = candidates[np.argsort(-weights[candidates], kind="stable")]
            cumulative = np.cumsum(weights[tokens], dtype=np.float64)
            size = int(np.searchsorted(cumulative, needed)) + 1  # up to the token that reaches top_p
            tokens, cumulative = tokens[:size], cumulative[:size]
        index = int(np.searchsorted(cumulative, self.rng.random() * cumulative[-1], side="right"))
        index = min(index, len(cumulative) - 1)
        return index if tokens is None else int(tokens[index])
