"""Stage 3 (§2.2): generate input/output instances for each machine-written instruction.

Classification tasks are prompted output-first (a class label, then an input for it), so the labels do not
all collapse onto the one the model finds easiest; other tasks input-first. Instructions whose classification
is unknown are treated as non-classification. The raw responses are stored; stage 4 parses them.
"""

from __future__ import annotations

from selfinstruct.config import Config
from selfinstruct.lm.engine import Engine
from selfinstruct.stages import Report, load_prompt, no_report
from selfinstruct.store import Store

STAGE = "instances"


def encode_prompt(prefix: str, instruction: str) -> str:
    return f"{prefix}Task: {instruction.strip()}\n"


def generate_instances(config: Config, store: Store, engine: Engine, report: Report = no_report) -> None:
    prefixes = {
        True: load_prompt("instances_classification.txt"),
        False: load_prompt("instances_generation.txt"),
    }
    done = {inst.id for inst, _ in store.instance_responses()}
    todo = [i for i in store.accepted("machine") if i.id not in done and i.classification is not None]
    # Grouped by template, so the backend can reuse the cached few-shot prefix from one request to the next.
    todo.sort(key=lambda i: (i.classification != "yes", i.id))
    failed = 0
    for n, instruction in enumerate(todo):
        report(n, len(todo), f"failed {failed}")
        prompt = encode_prompt(prefixes[instruction.classification == "yes"], instruction.text)
        if engine.request(STAGE, prompt, config.instances.sampling, instruction_id=instruction.id) is None:
            failed += 1
    report(len(todo), len(todo), f"failed {failed}")
