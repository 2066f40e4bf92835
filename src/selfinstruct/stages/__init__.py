"""The paper's four stages, one module each. Each stage reads and writes only through the run store and
sends LM requests only through the engine, so any stage can be killed and re-run."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources

# report(completed, total, info): the CLI draws progress bars with it; the Python API may pass None.
Report = Callable[[int, int, str], None]


def no_report(completed: int, total: int, info: str) -> None:
    pass


def load_prompt(name: str) -> str:
    """A few-shot prompt from the prompts/ data folder."""
    return resources.files("selfinstruct").joinpath("prompts", name).read_text(encoding="utf-8")
