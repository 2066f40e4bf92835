"""Stage 1 (§2.2, §2.3): bootstrap new instructions from a pool of seed and machine-written ones.

Each request shows the LM 8 numbered instructions (2 machine-written, the rest seeds, shuffled) and lets it
continue the list from "9.". Every parsed candidate passes the text filters and the novelty filter (ROUGE-L
F1 <= threshold to every seed and every accepted instruction, including ones accepted moments earlier) or is
stored as rejected with its reason.
"""

from __future__ import annotations

import random
import re
from collections import Counter

from selfinstruct.config import Config
from selfinstruct.filters import check_instruction, instruction_filters
from selfinstruct.lm import Completion
from selfinstruct.lm.engine import Engine
from selfinstruct.similarity import SimilarityIndex
from selfinstruct.stages import Report, no_report
from selfinstruct.store import Store

STAGE = "bootstrap"
NEIGHBOURS = 10
_ITEM_SPLIT = re.compile(r"\n\d+\s?\.\s")


def encode_prompt(instructions: list[str]) -> str:
    lines = ["Come up with a series of tasks:"]
    for number, instruction in enumerate(instructions, 1):
        instruction = re.sub(r"\s+", " ", instruction).strip().rstrip(":")
        lines.append(f"{number}. {instruction}")
    lines.append(f"{len(instructions) + 1}.")
    return "\n".join(lines)


def sample_prompt_instructions(
    rng: random.Random, seeds: list[str], machine: list[str], total: int = 8, from_machine: int = 2
) -> list[str]:
    chosen = rng.sample(machine, min(from_machine, len(machine)))
    chosen += rng.sample(seeds, min(total - len(chosen), len(seeds)))
    rng.shuffle(chosen)
    return chosen


def clean_instruction(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    # Upper-case the first letter only: the paper's str.capitalize() also lower-cased the rest (names, acronyms).
    return text[:1].upper() + text[1:]


def parse_instructions(completion: Completion) -> list[str]:
    """The numbered items of a response that continues a list from "9.".

    A response cut off by max_tokens (finish reason "length") keeps its complete items and drops only the
    last, possibly unfinished one; the paper dropped the whole response.
    """
    items = [clean_instruction(item) for item in _ITEM_SPLIT.split(completion.text)]
    if completion.finish_reason == "length":
        items = items[:-1]
    return [item for item in items if item]


class Bootstrapper:
    def __init__(self, config: Config, store: Store, engine: Engine) -> None:
        self.config = config
        self.store = store
        self.engine = engine
        cfg = config.bootstrap
        self.filters = instruction_filters(cfg.min_words, cfg.max_words)
        self.seeds = [i.text for i in store.accepted("seed")]
        self.machine = [i.text for i in store.accepted("machine")]
        # Progress counts, kept in memory rather than re-counted in the database after every request.
        self.candidates = store.candidate_count()
        self.rejected = Counter(store.reject_reasons())
        self.index = SimilarityIndex(self.seeds + self.machine, cfg.similarity_threshold, cfg.tokenizer)

    def judge(self, request_id: int, completion: Completion) -> None:
        """Filter the candidates of one response and store each with its verdict (runs inside the
        transaction that stores the response)."""
        for position, text in enumerate(parse_instructions(completion)):
            keep, reason = check_instruction(text, self.filters)
            max_rouge = nearest = neighbours = mean = None
            if keep:
                similar = self.index.find_similar(text)  # exact and fast; the pool includes this response's
                if similar.nearest:
                    keep, reason = False, f"too_similar (ROUGE-L {similar.nearest.score:.3f})"
                    max_rouge, nearest = similar.nearest.score, similar.nearest.text
                else:  # the paper's record of the most similar instructions, for accepted ones
                    top = self.index.top_k(text, NEIGHBOURS)
                    neighbours = [(n.text, n.score) for n in top]
                    max_rouge, nearest = (top[0].score, top[0].text) if top else (0.0, None)
                    mean = sum(n.score for n in top) / len(top) if top else 0.0
            else:  # rejected by a text filter: still record how close it came to the pool
                closest = self.index.nearest(text)
                max_rouge, nearest = (closest.score, closest.text) if closest else (0.0, None)
            self.store.add_candidate(text, request_id, position, keep, reason, max_rouge, nearest, neighbours, mean)
            self.candidates += 1
            if not keep:
                self.rejected[reason.split(" (")[0]] += 1
            if keep:
                self.index.add(text)
                self.machine.append(text)

    def run(self, report: Report = no_report) -> None:
        target = self.config.num_instructions
        cfg = self.config.bootstrap

        def progress() -> None:
            rate = len(self.machine) / self.candidates if self.candidates else 0.0
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.rejected.items()))
            report(min(len(self.machine), target), target, f"kept {rate:.0%} of {self.candidates}; {reasons}")

        progress()
        # First the requests a killed run left in flight, or that failed: they are journaled and were meant to be
        # sent, so they are all sent again (even past the target), and none is left unanswered.
        for request in self.store.unfinished_requests(STAGE):
            self.engine.resend(request, self.judge)
            progress()
        while len(self.machine) < target:
            # The sample of in-context instructions depends only on the run seed, the request number and the
            # pool, so a run with a fixed seed is reproducible.
            number = self.store.count_requests(STAGE)
            rng = random.Random(f"{self.config.seed}:{STAGE}:{number}")
            shown = sample_prompt_instructions(
                rng, self.seeds, self.machine, cfg.num_prompt_instructions, cfg.num_machine_instructions
            )
            self.engine.request(STAGE, encode_prompt(shown), cfg.sampling, sample_index=number, on_result=self.judge)
            progress()


def bootstrap(config: Config, store: Store, engine: Engine, report: Report = no_report) -> None:
    Bootstrapper(config, store, engine).run(report)
