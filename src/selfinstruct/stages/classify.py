"""Stage 2 (§2.2): ask the LM whether each machine-written instruction is a classification task.

Seed tasks carry their own flag and are not asked. An answer that is neither yes nor no is never counted as
"No" (the paper's scripts did): it is retried, then recorded as unknown and reported. Retries sample at
temperature 1 over the whole distribution (top_p 1: the paper's top_p 0 is read by OpenAI-style endpoints as the
smallest nucleus, i.e. greedy again), since a greedy decoder would only repeat the same unparseable answer.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

from selfinstruct.config import Config, object_schema, stage_sampling
from selfinstruct.lm.engine import Engine, run_all
from selfinstruct.lmtypes import Completion, Prompt
from selfinstruct.parsing import verdict
from selfinstruct.stages import Report, chat_messages, no_report, repair_messages
from selfinstruct.stages.prompts import Prompts, classify_question
from selfinstruct.stages.prompts import for_run as prompts_for_run
from selfinstruct.store import Instruction, Store

STAGE = "classify"
REPAIR = "classify repair"
SCHEMA = json.dumps(object_schema(answer={"type": "string", "enum": ["Yes", "No"]}), sort_keys=True)  # lm.structured
RETRY_TEMPERATURE = 1.0


def encoder(prompts: Prompts, chat: bool) -> Callable[[str], Prompt]:
    """The request for an instruction: the few-shot text, the task and the examples' question; or in chat, the
    same examples as user/assistant turns, then the task."""
    if not chat:
        prefix, question = prompts.fill("classify.txt"), classify_question(prompts)
        return lambda instruction: f"{prefix}Task: {instruction.strip()}\n{question}"
    name = "chat_classify.txt"
    system = prompts.fill(name, "system")
    examples = [
        (prompts.fill(name, "user", instruction=task), answer.rsplit("?", 1)[-1].strip())
        for task, answer in prompts.examples("classify.txt")
    ]
    return lambda instruction: chat_messages(
        system, examples, prompts.fill(name, "user", instruction=instruction.strip())
    )


def parse_answer(text: str) -> str | None:
    """'yes' or 'no': the first verdict the answer states, in any shape (parsing.verdict); None when it states
    none, or both at once ("Yes/No"). The paper's scripts took exactly "Yes" as yes and everything else as no."""
    return verdict(text)


async def classify(config: Config, store: Store, engine: Engine, report: Report = no_report) -> None:
    prompts = prompts_for_run(config)
    encode = encoder(prompts, config.lm.api == "chat")
    cfg = config.classify
    first_sampling = stage_sampling(config, STAGE, SCHEMA)
    chat = config.lm.api == "chat"
    todo = [i for i in store.accepted("machine") if i.classification is None]
    counts = {"yes": 0, "no": 0, "unknown": 0, "failed": 0}

    def progress() -> None:
        report(sum(counts.values()), len(todo), ", ".join(f"{k} {v}" for k, v in counts.items()))

    async def one(instruction: Instruction) -> None:
        prompt = encode(instruction.text)

        def record(request_id: int, completion: Completion) -> None:
            answer = parse_answer(completion.text)
            if answer:  # stored with its response, in one transaction
                store.set_classification(instruction.id, answer)

        answer = ""
        for attempt in range(cfg.max_attempts):
            stage, sent, sampling = STAGE, prompt, first_sampling
            if attempt == 1 and chat and isinstance(prompt, list):  # the repair turn
                stage, sent = REPAIR, repair_messages(prompt, answer, prompts.fill("chat_classify.txt", "repair"))
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
