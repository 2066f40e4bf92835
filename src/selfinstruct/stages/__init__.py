"""The paper's four stages, one module each. Each stage reads and writes only through the run store and
sends LM requests only through the engine, so any stage can be killed and re-run.

The prompts come from prompt files (stages/prompts.py: the package's, or the user's --prompts directory). With
lm.api = "chat" a stage sends chat-native prompts (chat_*.txt: a system message stating the format, the few-shot
examples of the completion prompts as user/assistant turns), and an answer that parses to nothing
gets one repair turn: the conversation, the answer, and a request to use the format. It is journaled as its own
request, under the stage's name plus " repair", so the summary counts repairs per stage."""

from __future__ import annotations

from collections.abc import Callable

from selfinstruct.lmtypes import Message

# report(completed, total, info): the CLI draws progress bars with it; the Python API may pass None.
Report = Callable[[int, int, str], None]


def no_report(completed: int, total: int, info: str) -> None:
    pass


def chat_messages(system: str, examples: list[tuple[str, str]], user: str) -> list[Message]:
    """System message, few-shot examples as alternating user/assistant turns, then the request."""
    messages = [{"role": "system", "content": system}]
    for turn, answer in examples:
        messages.append({"role": "user", "content": turn})
        messages.append({"role": "assistant", "content": answer})
    messages.append({"role": "user", "content": user})
    return messages


def repair_messages(messages: list[Message], answer: str, repair: str) -> list[Message]:
    """The repair turn: the conversation, the model's unusable answer, and a request to answer in the format."""
    return [*messages, {"role": "assistant", "content": answer}, {"role": "user", "content": repair}]
