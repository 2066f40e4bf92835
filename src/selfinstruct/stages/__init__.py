"""The paper's four stages, one module each. Each stage reads and writes only through the run store and
sends LM requests only through the engine, so any stage can be killed and re-run.

With lm.api = "chat" a stage sends chat-native prompts (prompts/chat_*.txt: a system message stating the format,
the few-shot examples of the completion prompts as user/assistant turns), and an answer that parses to nothing
gets one repair turn: the conversation, the answer, and a request to use the format. It is journaled as its own
request, under the stage's name plus " repair", so the summary counts repairs per stage."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from importlib import resources

from selfinstruct.lm import Message

# report(completed, total, info): the CLI draws progress bars with it; the Python API may pass None.
Report = Callable[[int, int, str], None]


def no_report(completed: int, total: int, info: str) -> None:
    pass


def load_prompt(name: str) -> str:
    """A few-shot prompt from the prompts/ data folder."""
    return resources.files("selfinstruct").joinpath("prompts", name).read_text(encoding="utf-8")


@cache
def load_chat_prompt(name: str) -> dict[str, str]:
    """A chat prompt file from prompts/: its sections ("[system]", "[user]", ...) by name, text stripped."""
    sections: dict[str, str] = {}
    parts = re.split(r"^\[(\w+)\]\n", load_prompt(name), flags=re.MULTILINE)
    for section, text in zip(parts[1::2], parts[2::2], strict=True):
        sections[section] = text.strip()
    return sections


@cache
def few_shot_examples(name: str) -> tuple[tuple[str, str], ...]:
    """The (task, answer) examples of a completion prompt file: each block "Task: ...\n<answer>". The chat
    prompts show the same examples as user/assistant turns, so both APIs see one set of examples."""
    blocks = re.split(r"\n\s*\n(?=Task:)", load_prompt(name))
    examples = []
    for block in blocks:
        if block.startswith("Task:"):
            task, _, answer = block.partition("\n")
            examples.append((task.removeprefix("Task:").strip(), answer.strip()))
    return tuple(examples)


def chat_messages(prompt: dict[str, str], user: str, examples: tuple[tuple[str, str], ...] = ()) -> list[Message]:
    """System message, few-shot examples as alternating user/assistant turns, then the request."""
    messages = [{"role": "system", "content": prompt["system"]}]
    for task, answer in examples:
        messages.append({"role": "user", "content": prompt["user"].format(instruction=task)})
        messages.append({"role": "assistant", "content": answer})
    messages.append({"role": "user", "content": user})
    return messages


def repair_messages(messages: list[Message], answer: str, prompt: dict[str, str]) -> list[Message]:
    """The repair turn: the conversation, the model's unusable answer, and a request to answer in the format."""
    return [*messages, {"role": "assistant", "content": answer}, {"role": "user", "content": prompt["repair"]}]
