"""Stage 3 (§2.2): generate input/output instances for each machine-written instruction.

Classification tasks are prompted output-first (a class label, then an input for it), so the labels do not
all collapse onto the one the model finds easiest; other tasks input-first. Instructions whose classification
is unknown are treated as non-classification. The raw responses are stored; stage 4 parses them.
"""

from __future__ import annotations

from selfinstruct.config import Config
from selfinstruct.lm.engine import Engine, run_all
from selfinstruct.stages import Report, load_prompt, no_report
from selfinstruct.store import Instruction, Store

STAGE = "instances"


def encode_prompt(prefix: str, instruction: str) -> str:
    return f"{prefix}Task: {instruction.strip()}\n"


async def generate_instances(config: Config, store: Store, engine: Engine, report: Report = no_report) -> None:
    prefixes = {
        True: load_prompt("instances_classification.txt"),
        False: load_prompt("instances_generation.txt"),
    }
    done = {inst.id for inst, _ in store.instance_responses()}
    todo = [i for i in store.accepted("machine") if i.id not in done and i.classification is not None]
    # Grouped by template, so a backend can reuse the cached few-shot prefix from one request to the next.
    todo.sort(key=lambda i: (i.classification != "yes", i.id))
    finished = failed = 0

    async def one(instruction: Instruction) -> None:
        nonlocal finished, failed
        prompt = encode_prompt(prefixes[instruction.classification == "yes"], instruction.text)
        if await engine.request(STAGE, prompt, config.instances.sampling, instruction_id=instruction.id) is None:
            failed += 1
        finished += 1
        report(finished, len(todo), f"failed {failed}")

    report(0, len(todo), "failed 0")
    await run_all(engine, map(one, todo))
