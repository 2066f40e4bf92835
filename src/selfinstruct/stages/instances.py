"""Stage 3 (§2.2): generate input/output instances for each machine-written instruction.

Classification tasks are prompted output-first (a class label, then an input for it), so the labels do not
all collapse onto the one the model finds easiest; other tasks input-first. Instructions whose classification
is unknown are treated as non-classification. The raw responses are stored; stage 4 parses them.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from selfinstruct.config import Config, object_schema, stage_sampling
from selfinstruct.lm.engine import Engine, run_all
from selfinstruct.lmtypes import Completion, Prompt
from selfinstruct.stages import Report, chat_messages, no_report, repair_messages
from selfinstruct.stages.prepare import parse_instances
from selfinstruct.stages.prompts import Prompts
from selfinstruct.stages.prompts import for_run as prompts_for_run
from selfinstruct.store import Instruction, Request, Store

STAGE = "instances"
REPAIR = "instances repair"


TEMPLATES = {True: "instances_classification.txt", False: "instances_generation.txt"}


def _examples_schema(*fields: str) -> str:
    example = object_schema(**{f: {"type": "string"} for f in fields})
    return json.dumps(object_schema(examples={"type": "array", "items": example}), sort_keys=True)


SCHEMAS = {True: _examples_schema("label", "input"), False: _examples_schema("input", "output")}  # lm.structured


def encoder(prompts: Prompts, chat: bool, classification: bool, guidance: str = "") -> Callable[[str], Prompt]:
    """The request for an instruction: the few-shot text, then "Task: <instruction>"; or in chat, the same
    examples as user/assistant turns, then the task."""
    name = TEMPLATES[classification]
    if not chat:
        prefix = prompts.fill(name, guidance=guidance)
        return lambda instruction: f"{prefix}Task: {instruction.strip()}\n"
    chat_name = f"chat_{name}"
    system = prompts.fill(chat_name, "system", guidance=guidance)
    examples = [
        (prompts.fill(chat_name, "user", guidance=guidance, instruction=task), answer)
        for task, answer in prompts.examples(name)
    ]
    return lambda instruction: chat_messages(
        system, examples, prompts.fill(chat_name, "user", guidance=guidance, instruction=instruction.strip())
    )


def usable(completion: Completion, classification: bool) -> bool:
    """Whether an answer holds at least one instance that parses cleanly (stage 4 parses it for good)."""
    return any(not problem for _, _, problem in parse_instances(completion, classification))


async def generate_instances(config: Config, store: Store, engine: Engine, report: Report = no_report) -> None:
    prompts = prompts_for_run(config)
    chat = config.lm.api == "chat"
    encoders = {clf: encoder(prompts, chat, clf, config.instances.guidance) for clf in TEMPLATES}
    samplings = {clf: stage_sampling(config, STAGE, SCHEMAS[clf]) for clf in TEMPLATES}
    answered: dict[int, list[Request]] = {}
    for inst, request in store.instance_responses():
        answered.setdefault(inst.id, []).append(request)
    machine = [i for i in store.accepted("machine") if i.classification is not None]
    todo = [i for i in machine if i.id not in answered]
    # Chat answers that parsed to nothing and never got their repair turn (the run stopped in between).
    repairs = {
        i.id: requests[-1]
        for i in machine
        if chat
        and (requests := answered.get(i.id))
        and all(r.stage == STAGE for r in requests)
        and not usable(requests[-1].completion(), i.classification == "yes")
    }
    todo += [i for i in machine if i.id in repairs]
    # Grouped by template, so a backend can reuse the cached few-shot prefix from one request to the next.
    todo.sort(key=lambda i: (i.classification != "yes", i.id))
    finished = failed = 0

    async def one(instruction: Instruction) -> None:
        nonlocal finished, failed
        clf = instruction.classification == "yes"
        sampling = samplings[clf]
        prompt = encoders[clf](instruction.text)
        answer = repairs[instruction.id].text if instruction.id in repairs else None
        if answer is None:
            completion = await engine.request(STAGE, prompt, sampling, instruction_id=instruction.id)
            if completion is not None and chat and not usable(completion, clf):
                answer = completion.text
            failed += completion is None
        if answer is not None and isinstance(prompt, list):  # the repair turn
            repair = repair_messages(prompt, answer, prompts.fill(f"chat_{TEMPLATES[clf]}", "repair"))
            failed += await engine.request(REPAIR, repair, sampling, instruction_id=instruction.id) is None
        finished += 1
        report(finished, len(todo), f"failed {failed}")

    report(0, len(todo), "failed 0")
    await run_all(engine, map(one, todo))
