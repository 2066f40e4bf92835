"""Stage 2 (§2.2): ask the LM whether each machine-written instruction is a classification task.

Seed tasks carry their own flag and are not asked. An answer that is neither yes nor no is never counted as
"No" (the paper's scripts did): it is retried, then recorded as unknown and reported. Retries sample at
temperature 1 over the whole distribution (top_p 1: the paper's top_p 0 is read by OpenAI-style endpoints as the
smallest nucleus, i.e. greedy again), since a greedy decoder would only repeat the same unparseable answer.
"""

from __future__ import annotations

import dataclasses
import json

from selfinstruct.config import Config, object_schema, stage_sampling
from selfinstruct.lm import Completion, Message
from selfinstruct.lm.engine import Engine, run_all
from selfinstruct.parsing import verdict
from selfinstruct.stages import (
    Report,
    chat_messages,
    few_shot_examples,
    load_chat_prompt,
    load_prompt,
    no_report,
    repair_messages,
)
from selfinstruct.store import Instruction, Store

STAGE = "classify"
REPAIR = "classify repair"
SCHEMA = json.dumps(object_schema(answer={"type": "string", "enum": ["Yes", "No"]}), sort_keys=True)  # lm.structured
RETRY_TEMPERATURE = 1.0


def encode_prompt(prefix: str, instruction: str) -> str:
    return f"{prefix}Task: {instruction.strip()}\nIs it classification?"


def encode_chat(instruction: str) -> list[Message]:
    """The chat form: the same 30 examples as user/assistant turns, then the question."""
    prompt = load_chat_prompt("chat_classify.txt")
    examples = tuple((task, answer.rsplit("?", 1)[-1].strip()) for task, answer in few_shot_examples("classify.txt"))
    return chat_messages(prompt, prompt["user"].format(instruction=instruction.strip()), examples)


def parse_answer(text: str) -> str | None:
    """'yes' or 'no': the first verdict the answer states, in any shape (parsing.verdict); None when it states
    none, or both at once ("Yes/No"). The paper's scripts took exactly "Yes" as yes and everything else as no."""
    return verdict(text)


async def classify(config: Config, store: Store, engine: Engine, report: Report = no_report) -> None:
    prefix = load_prompt("classify.txt")
    cfg = config.classify
    first_sampling = stage_sampling(config, STAGE, SCHEMA)
    chat = config.lm.api == "chat"
    todo = [i for i in store.accepted("machine") if i.classification is None]
    counts = {"yes": 0, "no": 0, "unknown": 0, "failed": 0}

    def progress() -> None:
        report(sum(counts.values()), len(todo), ", ".join(f"{k} {v}" for k, v in counts.items()))

    async def one(instruction: Instruction) -> None:
        prompt = encode_chat(instruction.text) if chat else encode_prompt(prefix, instruction.text)

        def record(request_id: int, completion: Completion) -> None:
            answer = parse_answer(completion.text)
            if answer:  # stored with its response, in one transaction
                store.set_classification(instruction.id, answer)

        answer = ""
        for attempt in range(cfg.max_attempts):
            stage, sent, sampling = STAGE, prompt, first_sampling
            if attempt == 1 and chat and isinstance(prompt, list):  # the repair turn
                stage, sent = REPAIR, repair_messages(prompt, answer, load_chat_prompt("chat_classify.txt"))
            elif attempt:
                sampling = dataclasses.replace(
                    first_sampling, temperature=max(first_sampling.temperature, RETRY_TEMPERATURE), top_p=1.0
                )
            completion = await engine.request(
                stage, sent, sampling, sample_index=attempt, instruction_id=instruction.id, on_result=record
            )
            if completion is None:
                counts["failed"] += 1  # left unclassified: the next run retries it
                break
            if label := parse_answer(completion.text):
                counts[label] += 1
                break
            answer = completion.text
        else:
            store.set_classification(instruction.id, "unknown")
            counts["unknown"] += 1
        progress()

    progress()
    await run_all(engine, map(one, todo))
