"""Stage 2 (§2.2): ask the LM whether each machine-written instruction is a classification task.

Seed tasks carry their own flag and are not asked. An answer that is neither yes nor no is never counted as
"No" (the paper's scripts did): it is retried, then recorded as unknown and reported. Retries sample at
temperature 1 over the whole distribution (top_p 1: the paper's top_p 0 is read by OpenAI-style endpoints as the
smallest nucleus, i.e. greedy again), since a greedy decoder would only repeat the same unparseable answer.
"""

from __future__ import annotations

import dataclasses
import re

from selfinstruct.config import Config
from selfinstruct.lm import Completion
from selfinstruct.lm.engine import Engine, run_all
from selfinstruct.stages import Report, load_prompt, no_report
from selfinstruct.store import Instruction, Store

STAGE = "classify"
RETRY_TEMPERATURE = 1.0
_ANSWER = re.compile(r"^\W*(yes|no)\b", re.IGNORECASE)
_WORD = re.compile(r"[a-z]+")


def encode_prompt(prefix: str, instruction: str) -> str:
    return f"{prefix}Task: {instruction.strip()}\nIs it classification?"


def parse_answer(text: str) -> str | None:
    """'yes' or 'no' when the answer starts with one of them and does not also say the other ("Yes/No" is
    no answer); None otherwise. The paper's scripts took exactly "Yes" as yes and everything else as no."""
    match = _ANSWER.match(text)
    if not match:
        return None
    answer = match.group(1).lower()
    other = "no" if answer == "yes" else "yes"
    return None if other in _WORD.findall(text.lower()) else answer


async def classify(config: Config, store: Store, engine: Engine, report: Report = no_report) -> None:
    prefix = load_prompt("classify.txt")
    cfg = config.classify
    todo = [i for i in store.accepted("machine") if i.classification is None]
    counts = {"yes": 0, "no": 0, "unknown": 0, "failed": 0}

    def progress() -> None:
        report(sum(counts.values()), len(todo), ", ".join(f"{k} {v}" for k, v in counts.items()))

    async def one(instruction: Instruction) -> None:
        prompt = encode_prompt(prefix, instruction.text)

        def record(request_id: int, completion: Completion) -> None:
            answer = parse_answer(completion.text)
            if answer:  # stored with its response, in one transaction
                store.set_classification(instruction.id, answer)

        for attempt in range(cfg.max_attempts):
            sampling = (
                cfg.sampling
                if attempt == 0
                else dataclasses.replace(
                    cfg.sampling, temperature=max(cfg.sampling.temperature, RETRY_TEMPERATURE), top_p=1.0
                )
            )
            completion = await engine.request(
                STAGE, prompt, sampling, sample_index=attempt, instruction_id=instruction.id, on_result=record
            )
            if completion is None:
                counts["failed"] += 1  # left unclassified: the next run retries it
                break
            if label := parse_answer(completion.text):
                counts[label] += 1
                break
        else:
            store.set_classification(instruction.id, "unknown")
            counts["unknown"] += 1
        progress()

    progress()
    await run_all(engine, map(one, todo))
