"""Stage 1 (§2.2, §2.3): bootstrap new instructions from a pool of seed and machine-written ones.

Each request shows the LM 8 numbered instructions (2 machine-written, the rest seeds, shuffled) and lets it
continue the list from "9.". Every parsed candidate passes the text filters and the novelty filter (ROUGE-L
F1 <= threshold to every seed and every accepted instruction, including ones accepted moments earlier) or is
stored as rejected with its reason.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import re
from collections import Counter
from collections.abc import Callable

from selfinstruct.config import Config, ConfigError, object_schema, stage_sampling
from selfinstruct.filters import check_instruction, instruction_filters
from selfinstruct.lm.engine import Engine, run_all
from selfinstruct.lmtypes import Completion, Prompt
from selfinstruct.parsing import is_chatter, list_items, plain, strip_reasoning
from selfinstruct.similarity import SimilarityIndex
from selfinstruct.stages import Report, no_report, repair_messages
from selfinstruct.stages.prompts import Prompts
from selfinstruct.stages.prompts import for_run as prompts_for_run
from selfinstruct.store import Instruction, Request, Store

STAGE = "bootstrap"
REPAIR = "bootstrap repair"
SCHEMA = json.dumps(
    object_schema(tasks={"type": "array", "items": {"type": "string"}}), sort_keys=True
)  # lm.structured
NEIGHBOURS = 10
_ITEM_SPLIT = re.compile(r"\n\d+\s?\.\s")


def encoder(
    prompts: Prompts, chat: bool, classification: bool = False, guidance: str = ""
) -> Callable[[list[str]], Prompt]:
    """The request for a list of in-context instructions. Completions: the list, numbered, opening the next item
    for the model to continue (bootstrap.txt). Chat: the list in one user message (chat_bootstrap.txt)."""
    if not chat:
        section = "prompt_classification" if classification else "prompt"

        def text(instructions: list[str]) -> Prompt:
            tasks = "\n".join(f"{n}. {_one_line(task).rstrip(':')}" for n, task in enumerate(instructions, 1))
            text = prompts.fill("bootstrap.txt", section, guidance=guidance, tasks=tasks)
            return f"{text}\n{len(instructions) + 1}."

        return text
    name = "chat_bootstrap.txt"
    system = prompts.fill(name, "system", guidance=guidance)
    section = "user_classification" if classification else "user"

    def messages(instructions: list[str]) -> Prompt:
        tasks = "\n".join(f"{n}. {_one_line(task)}" for n, task in enumerate(instructions, 1))
        user = prompts.fill(name, section, guidance=guidance, tasks=tasks, count=str(len(instructions)))
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    return messages


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def sample_prompt_instructions(
    rng: random.Random,
    seeds: list[str],
    machine: list[str],
    total: int = 8,
    from_machine: int = 2,
    pool_size: int | None = None,
) -> list[str]:
    """`pool_size`: draw from the first `pool_size` machine instructions only (default: all of them). Drawing
    positions from a range picks exactly what rng.sample(machine[:pool_size], k) picks, without copying the pool
    for every prompt (a copy of 52K items per request showed up at the paper's scale)."""
    size = len(machine) if pool_size is None else pool_size
    chosen = [machine[i] for i in rng.sample(range(size), min(from_machine, size))]
    chosen += rng.sample(seeds, min(total - len(chosen), len(seeds)))
    rng.shuffle(chosen)
    return chosen


def in_context_sample(
    config: Config, group: int, seeds: list[str], machine: list[str], pool_size: int | None = None
) -> list[str]:
    """The in-context instructions of prompt group `group`: they depend only on the run seed, the group and the
    pool (the seeds the prompts draw from, the first `pool_size` machine instructions accepted, default all)."""
    rng = random.Random(f"{config.seed}:{STAGE}:{group}")
    cfg = config.bootstrap
    return sample_prompt_instructions(
        rng, seeds, machine, cfg.num_prompt_instructions, cfg.num_machine_instructions, pool_size
    )


def first_new_group(store: Store, config: Config) -> int:
    """The prompt group of the next new request: a group that a stopped run left part-sent keeps its one prompt."""
    spp = config.bootstrap.samples_per_prompt
    return -(-store.next_sample_index(STAGE) // spp)


def clean_instruction(text: str) -> str:
    text = _one_line(text)
    # Upper-case the first letter only: the paper's str.capitalize() also lower-cased the rest (names, acronyms).
    return text[:1].upper() + text[1:]


def parse_instructions(completion: Completion, chat: bool = False) -> list[tuple[str, str]]:
    """(item, problem) for the items of a response: the numbered items of a completion that continues a list from
    "9.", or the tasks of a chat answer in whatever list shape (parsing.list_items). Either way markdown is
    removed and chatter (a preamble, a closing remark) is no item.

    The last item of a response cut off by max_tokens (finish reason "length") may be unfinished: its problem is
    "truncated" and it is stored as rejected, so every candidate's verdict stays visible. The paper dropped the
    whole response.
    """
    text = strip_reasoning(completion.text)
    raw = list_items(text) if chat else [plain(item) for item in _ITEM_SPLIT.split(text) if not is_chatter(item)]
    items = [item for item in map(clean_instruction, raw) if item]
    problems = [""] * len(items)
    if completion.finish_reason == "length" and items:
        problems[-1] = "truncated"
    return list(zip(items, problems, strict=True))


def check_classification_seeds(instructions: list[str]) -> list[str]:
    """The classification seeds that `classification_seeds_only` prompts with; an error when there are none."""
    if not instructions:
        raise ConfigError(
            "bootstrap.classification_seeds_only is set, but no seed task is flagged as a classification task "
            "(is_classification): flag some in the seed file, or unset it"
        )
    return instructions


def prompt_seeds(config: Config, seeds: list[Instruction]) -> list[str]:
    """The seeds the prompts show: all of them, or the classification ones (bootstrap.classification_seeds_only)."""
    if config.bootstrap.classification_seeds_only:
        return check_classification_seeds([i.text for i in seeds if i.classification == "yes"])
    return [i.text for i in seeds]


class BarrenBootstrap(RuntimeError):
    """Many answered requests in a row gave no accepted instruction: the run stops instead of spending more."""


class Bootstrapper:
    """Sends bootstrap requests, up to the engine's concurrency at once, until the pool holds the target.

    It launches a request only while the accepted instructions plus those expected from requests in flight
    (at the yield seen so far) fall short of the target, so a run overshoots by little. Each prompt is sampled
    from the pool when a slot frees. In ordered mode, request n is sampled from the pool as it was after
    request n - concurrency, and the launch decision uses that snapshot too: with results applied in
    submission order, a fixed seed then gives the same pool whatever the timing.
    """

    PRIOR_YIELD = 2.0  # accepted instructions expected per request before any has been answered

    def __init__(self, config: Config, store: Store, engine: Engine) -> None:
        self.config = config
        self.store = store
        self.engine = engine
        cfg = config.bootstrap
        self.filters = instruction_filters(cfg.min_words, cfg.max_words)
        seeds = store.accepted("seed")
        self.seeds = [i.text for i in seeds]
        self.machine = [i.text for i in store.accepted("machine")]
        # The in-context seeds; novelty is judged against every seed in either case.
        self.prompt_seeds = prompt_seeds(config, seeds)
        self.texts = set(self.seeds) | set(self.machine)  # exact copies: see judge
        self.chat = config.lm.api == "chat"
        self.prompts = prompts_for_run(config)
        self.encode = encoder(self.prompts, self.chat, cfg.classification_seeds_only, cfg.guidance)
        self.sampling = stage_sampling(config, STAGE, SCHEMA)
        self.barren = 0  # answered requests in a row without an accepted instruction
        # Progress counts, kept in memory rather than re-counted in the database after every request.
        self.candidates = store.candidate_count()
        self.rejected = Counter(store.reject_reasons())
        self.answered = engine.usage[STAGE].requests if STAGE in engine.usage else 0
        self.index = SimilarityIndex(self.seeds + self.machine, cfg.similarity_threshold, cfg.tokenizer)
        self.report: Report = no_report
        # Request numbering and, in ordered mode, the (accepted, answered) state after each settled request.
        self.first = self.next = 0
        self.settled = 0
        self.snapshots: list[tuple[int, int]] = []
        self.initial = (len(self.machine), self.answered)
        self.cursor = -1  # ordered mode: the earliest snapshot still to consider for the next request
        # Requests come in groups of samples_per_prompt that send one prompt: the group's prompt, built when its
        # first request is sent, and (ordered mode) the pool it is sampled from, fixed when the group's first request
        # is launched.
        self.group_prompt: dict[int, tuple[Prompt, int]] = {}  # group -> (prompt, members still to send it)
        self.sent: dict[int, Prompt] = {}  # request number -> its prompt, for a repair turn
        self.pool_size: dict[int, int] = {}
        # Every idle worker asks for the same next number: one at a time waits for it (on the engine's condition),
        # the others queue on this lock, instead of all waking at every settled request to find nothing to do.
        self.numbering = asyncio.Lock()

    def judge(self, request_id: int, completion: Completion) -> None:
        """Filter the candidates of one response and store each with its verdict (runs inside the
        transaction that stores the response)."""
        self.answered += 1
        accepted = 0
        for position, (text, problem) in enumerate(parse_instructions(completion, self.chat)):
            keep, reason = (False, problem) if problem else check_instruction(text, self.filters)
            max_rouge = nearest = neighbours = mean = None
            if keep:
                similar = self.index.find_similar(text)  # exact and fast; the pool includes this response's
                if similar.nearest:
                    keep, reason = False, f"too_similar (ROUGE-L {similar.nearest.score:.3f})"
                    max_rouge, nearest = similar.nearest.score, similar.nearest.text
                elif text in self.texts:  # unreachable below a threshold of 1; a copy must never enter the pool
                    keep, reason, max_rouge, nearest = False, "duplicate", 1.0, text
                else:  # the paper's record of the most similar instructions, for accepted ones
                    top = self.index.top_k(text, NEIGHBOURS)
                    neighbours = [(n.text, n.score) for n in top]
                    max_rouge, nearest = (top[0].score, top[0].text) if top else (0.0, None)
                    mean = sum(n.score for n in top) / len(top) if top else 0.0
            else:  # rejected by a text filter: still record how close it came to the pool
                closest = self.index.nearest(text)
                max_rouge, nearest = (closest.score, closest.text) if closest else (0.0, None)
            self.store.add_candidate(text, request_id, position, keep, reason, max_rouge, nearest, neighbours, mean)
            self.candidates += 1
            if not keep:
                self.rejected[reason.split(" (")[0]] += 1
            if keep:
                accepted += 1
                self.index.add(text)
                self.texts.add(text)
                self.machine.append(text)
        self.barren = 0 if accepted else self.barren + 1

    def check_barren(self) -> None:
        limit = self.config.bootstrap.max_barren_requests
        if self.barren >= limit:
            reasons = ", ".join(f"{k} {v}" for k, v in self.rejected.most_common()) or "no candidate at all"
            raise BarrenBootstrap(
                f"bootstrap stopped: the last {self.barren} answered requests gave no accepted instruction "
                f"({len(self.machine)} accepted of {self.candidates} candidates so far; rejected: {reasons}). Likely "
                "causes: a backend or API that does not suit the prompt (a chat-only model behind --api completions, "
                "a base model behind chat), or a model that ignores the numbered-list format. Look at the responses "
                "(`selfinstruct report`), fix the cause and run the same command again, or raise "
                "bootstrap.max_barren_requests."
            )

    def progress(self) -> None:
        target = self.config.num_instructions
        rate = len(self.machine) / self.candidates if self.candidates else 0.0
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.rejected.items()))
        self.report(min(len(self.machine), target), target, f"kept {rate:.0%} of {self.candidates}; {reasons}")

    async def _next_number(self) -> int | None:
        """The number of the next request worth sending, once it is; None when the target is met.

        Launch while accepted + expected yield x requests in flight < target. Unordered, that is the live state.
        Ordered, it is the state after some earlier request settled, so that the decision and the prompt's pool
        do not depend on timing: the first snapshot, from request n - concurrency on, at which the condition holds
        (or the target is met). The last one, with nothing in flight, always decides."""
        target = self.config.num_instructions
        async with self.numbering, self.engine.changed:
            while True:
                number = self.next
                if self.engine.ordered:
                    j = max(self.cursor, number - self.first - self.engine.concurrency, -1)
                    if j >= len(self.snapshots):
                        await self.engine.changed.wait()
                        continue
                    accepted, answered = self.snapshots[j] if j >= 0 else self.initial
                    inflight = number - self.first - (j + 1)
                else:
                    accepted, answered, inflight = len(self.machine), self.answered, number - self.first - self.settled
                if accepted >= target:
                    return None
                expected = accepted / answered if answered else self.PRIOR_YIELD
                if accepted + expected * inflight < target:
                    self.pool_size.setdefault(number // self.config.bootstrap.samples_per_prompt, accepted)
                    self.next += 1
                    return number
                if self.engine.ordered:
                    self.cursor = j + 1  # deterministic: try the next snapshot
                else:
                    await self.engine.changed.wait()

    def _prompt(self, number: int) -> Prompt:
        group = number // self.config.bootstrap.samples_per_prompt
        if group not in self.group_prompt:
            pool_size = self.pool_size.pop(group)
            shown = in_context_sample(
                self.config, group, self.prompt_seeds, self.machine, pool_size if self.engine.ordered else None
            )
            prompt = self.encode(shown)
            self.group_prompt[group] = (prompt, self.config.bootstrap.samples_per_prompt)
        prompt, left = self.group_prompt.pop(group)
        if left > 1:
            self.group_prompt[group] = (prompt, left - 1)
        self.sent[number] = prompt
        return prompt

    async def _worker(self) -> None:
        while (number := await self._next_number()) is not None:
            try:
                completion = await self.engine.request(
                    STAGE,
                    functools.partial(self._prompt, number),
                    self.sampling,
                    sample_index=number,
                    on_result=self.judge,
                )
                prompt = self.sent.pop(number, None)
                if self.chat and completion is not None and isinstance(prompt, list) and not self._usable(completion):
                    repair = repair_messages(prompt, completion.text, self.prompts.fill("chat_bootstrap.txt", "repair"))
                    await self.engine.request(REPAIR, repair, self.sampling, sample_index=number, on_result=self.judge)
            finally:
                # Settled in number order in ordered mode (results are applied in submission order).
                self.settled += 1
                self.snapshots.append((len(self.machine), self.answered))
                self.progress()
                await self.engine.notify()
            self.check_barren()

    def _usable(self, completion: Completion) -> bool:
        return any(not problem for _, problem in parse_instructions(completion, self.chat))

    async def _resend(self, request: Request) -> None:
        await self.engine.resend(request, self.judge)
        self.progress()

    async def run(self, report: Report = no_report) -> None:
        self.report = report
        self.progress()
        # First the requests a killed run left in flight, or that failed: they are journaled and were meant to be
        # sent, so they are all sent again (even past the target), and none is left unanswered.
        unfinished = [
            request
            for stage in (STAGE, REPAIR)
            for request in self.store.unfinished_requests(stage, include_rejected=self.engine.retry_failed)
        ]
        await run_all(self.engine, map(self._resend, unfinished))
        # New requests start a new prompt group: a group that a stopped run left part-sent keeps its one prompt.
        self.first = self.next = first_new_group(self.store, self.config) * self.config.bootstrap.samples_per_prompt
        self.initial = (len(self.machine), self.answered)
        # Twice as many workers as slots: while one stores and judges its answer, another already holds the slot it
        # freed and sends (the engine bounds what is in flight; `_next_number` counts the waiting ones as in flight).
        workers = 2 * self.engine.concurrency
        await run_all(self.engine, (self._worker() for _ in range(workers)), limit=workers)


async def bootstrap(config: Config, store: Store, engine: Engine, report: Report = no_report) -> None:
    await Bootstrapper(config, store, engine).run(report)
