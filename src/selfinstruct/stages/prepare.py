"""Stage 4 (§2.3, §2.4): parse the instance responses, filter them, and keep the fine-tuning instances.

Preparing is a pure function of the stored responses: it rewrites every machine instance with its verdict,
so it can be re-run at any time (for example after changing the limits) without any LM call.
"""

from __future__ import annotations

import re
from collections import defaultdict

from selfinstruct.config import Config
from selfinstruct.filters import check_instance
from selfinstruct.lm import Completion
from selfinstruct.stages import Report, no_report
from selfinstruct.store import Store

# Markers count only at the start of a line, case-insensitively, so "Example" or "input:" inside content
# never splits an instance.
_EXAMPLE = re.compile(r"^[ \t]*Example[ \t]*\d+[ \t]*[:.]?[ \t]*$", re.IGNORECASE | re.MULTILINE)
_INPUT = re.compile(r"^[ \t]*Input[ \t]*:", re.IGNORECASE | re.MULTILINE)
_OUTPUT = re.compile(r"^[ \t]*Output[ \t]*:", re.IGNORECASE | re.MULTILINE)
_NEXT_INPUT = re.compile(r"(?=^[ \t]*Input[ \t]*:)", re.IGNORECASE | re.MULTILINE)
_LABEL = re.compile(r"^[ \t]*Class[ \t]+label[ \t]*:", re.IGNORECASE | re.MULTILINE)

# (input, output, problem): problem is "" when the text parsed cleanly.
Parsed = tuple[str, str, str]


def _parse_input_first(block: str) -> Parsed:
    out = _OUTPUT.search(block)
    if out is None:
        return "", "", "no_output_marker"
    inp = _INPUT.search(block, 0, out.start())
    input_text = block[inp.end() : out.start()] if inp else ""
    if not inp and block[: out.start()].strip():
        return "", "", "text_before_output_without_input_marker"
    return input_text.strip(), block[out.end() :].strip(), ""


def _parse_output_first(block: str) -> Parsed:
    inp = _INPUT.search(block)
    label = block[: inp.start()] if inp else block
    input_text = block[inp.end() :] if inp else ""
    return input_text.strip(), label.strip(), ""


def parse_instances(completion: Completion, classification: bool) -> list[Parsed]:
    text = completion.text
    if classification:
        blocks = _LABEL.split(text)
        head, blocks = blocks[0], blocks[1:]
        parsed = [_parse_output_first(b) for b in blocks]
        if not blocks and head.strip():
            parsed = [("", "", "no_class_label_marker")]
    else:
        # Instances are separated by "Example N" lines; a model that omits them still starts each one at a
        # line-start "Input:", so a block is split there too.
        blocks = [piece for b in _EXAMPLE.split(text) for piece in _NEXT_INPUT.split(b) if piece.strip()]
        parsed = [_parse_input_first(b) for b in blocks]
    if completion.finish_reason == "length" and parsed:
        # The last instance of a response cut off by max_tokens may be unfinished.
        last_input, last_output, _ = parsed[-1]
        parsed[-1] = (last_input, last_output, "truncated")
    return parsed


def judge_instances(parsed: list[Parsed], max_instances: int) -> list[tuple[str, str, str, str]]:
    """(input, output, verdict, reason) for each parsed instance of one task, in order."""
    verdicts: list[tuple[str, str, str, str]] = []
    outputs_by_input: dict[str, set[str]] = defaultdict(set)
    for input_text, output_text, problem in parsed:
        if not problem:
            outputs_by_input[input_text].add(output_text)
    seen: set[tuple[str, str]] = set()
    kept = 0
    for input_text, output_text, problem in parsed:
        keep, reason = (False, problem) if problem else check_instance(input_text, output_text)
        if keep and (input_text, output_text) in seen:
            keep, reason = False, "duplicate"
        elif keep and input_text and len(outputs_by_input[input_text]) > 1:
            keep, reason = False, "same_input_different_output"
        elif keep and kept >= max_instances:
            keep, reason = False, "over_instance_limit"
        seen.add((input_text, output_text))
        kept += keep
        verdicts.append((input_text, output_text, "kept" if keep else "dropped", reason))
    return verdicts


def prepare(config: Config, store: Store, report: Report = no_report) -> None:
    responses = store.instance_responses()
    rows = []
    for n, (instruction, request) in enumerate(responses):
        parsed = parse_instances(request.completion(), instruction.classification == "yes")
        for position, (input_text, output_text, verdict, reason) in enumerate(
            judge_instances(parsed, config.prepare.max_instances_per_task)
        ):
            rows.append((instruction.id, request.id, position, input_text, output_text, verdict, reason))
        report(n + 1, len(responses), "")
    store.replace_machine_instances(rows)
    kept = sum(1 for r in rows if r[5] == "kept")
    report(len(responses), len(responses), f"kept {kept} of {len(rows)} instances")
