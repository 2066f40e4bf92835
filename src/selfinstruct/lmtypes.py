"""The plain values every layer shares: what is sent to a model (a prompt), what comes back (a completion) and
what it costs (prices). A leaf module: it imports nothing of selfinstruct, so the run store, the engine, the
backends and the report can all use it without importing one another."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

# A chat message, {"role": "system" | "user" | "assistant", "content": text}. A prompt is a plain text to continue
# (the paper's completion prompts) or a list of messages for a chat model.
Message: TypeAlias = dict[str, str]
Prompt: TypeAlias = str | list[Message]


def fold_system(messages: list[Message]) -> list[Message]:
    """The messages with any system message folded into the first user turn, for chat templates and servers that
    refuse the system role (Gemma's, some hosted APIs)."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if system and rest and rest[0]["role"] == "user":
        rest[0]["content"] = f"{system}\n\n{rest[0]['content']}"
    elif system:
        rest.insert(0, {"role": "user", "content": system})
    return rest


def render_prompt(prompt: Prompt) -> str:
    """A prompt as readable text (the run store's prompt column, the report)."""
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in prompt)


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str  # "stop" | "length" | backend-specific
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Prices:
    """US dollars per million tokens."""

    input: float = 0.0
    output: float = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1e6
