"""Stage 4 (§2.3, §2.4): parse the instance responses, filter them, and keep the fine-tuning instances.

Preparing is a pure function of the stored responses: it rewrites every machine instance with its verdict,
so it can be re-run at any time (for example after changing the limits) without any LM call.

Parsing is at least as tolerant as the paper's `prepare_for_finetuning.py` (numbered markers, a block without
"Output:" kept as the output, text before "Output:" kept as the input, the input of a classification instance
under any field name) and stricter in one way: markers count only at the start of a line, so "Example" or
"input:" inside content never splits an instance, and every field is cut at the next marker line, so no marker
ends up inside the data. A last safety net drops any instance that still holds a marker line.
docs/paper-parity.md lists every rule next to the paper's.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict

from selfinstruct.config import Config
from selfinstruct.filters import check_instance
from selfinstruct.lmtypes import Completion
from selfinstruct.parsing import normalise_instances
from selfinstruct.stages import Report, no_report
from selfinstruct.store import Store

_FLAGS = re.IGNORECASE | re.MULTILINE
# "Example 2" alone on its line, "Example 2:" / "Example #2." followed by the instance on the same line, or
# "Example 2 Input: ...". "Example 3 of this is given below." is content, not a marker.
_EXAMPLE = re.compile(
    r"^[ \t]*Example[ \t]*(?:#?\d+[ \t]*(?:[:.)][ \t]*|$|(?=(?:Input|Output)[ \t]*\d*[ \t]*:))|[:.][ \t]*|$)", _FLAGS
)
_INPUT = re.compile(r"^[ \t]*Input[ \t]*\d*[ \t]*:", _FLAGS)
_OUTPUT = re.compile(r"^[ \t]*Output[ \t]*\d*[ \t]*:", _FLAGS)
_LABEL = re.compile(r"^[ \t]*Class[ \t]+label[ \t]*\d*[ \t]*:", _FLAGS)
# "Input: 2+2 Output: 4" on one line: an Output marker after the input, used only when no line starts with one.
_INLINE_OUTPUT = re.compile(r"(?<=\s)Output[ \t]*\d*[ \t]*:", re.IGNORECASE)
_INLINE_INPUT = re.compile(r"(?<=\s)Input[ \t]*\d*[ \t]*:", re.IGNORECASE)
# Where a field ends: the next line that starts another instance or another field.
_NEXT_MARKER = re.compile(
    r"^[ \t]*(?:Input[ \t]*\d*[ \t]*:|Output[ \t]*\d*[ \t]*:|Class[ \t]+label[ \t]*\d*[ \t]*:|Task[ \t]*:|"
    r"Example[ \t]*(?:#?\d+[ \t]*(?:[:.)]|$|(?=Input|Output))|[:.]|$))",
    _FLAGS,
)
# The safety net: any line that starts with a format marker, also behind markdown or a bullet ("**Output:**").
MARKER_LINE = re.compile(
    r"^[ \t>*_#-]*(?:Input|Output|Class[ \t]+label|Task|Example[ \t]*#?\d+)[ \t]*\d*[ \t]*[*_]*[ \t]*:", _FLAGS
)
# An input that says there is none is an empty input.
_NO_INPUT = re.compile(r"^\(?\s*(?:none|n/?a|no input|null|empty|-+)\s*\)?\.?$", re.IGNORECASE)

_FENCED = re.compile(r"^```[\w+#.-]*[ \t]*\n(.*?)\n[ \t]*```$", re.DOTALL)
_ARROW = re.compile(r"[ \t]*(?:→|->|=>|\|)$")

# (input, output, problem): problem is "" when the text parsed cleanly.
Parsed = tuple[str, str, str]


def _field(text: str) -> str:
    """A field's text up to the next marker line; a value that is one fenced code block is the code."""
    end = _NEXT_MARKER.search(text)
    return _unfenced((text[: end.start()] if end else text).strip())


def _unfenced(value: str) -> str:
    """A value that is one fenced code block is the code (a chat model's markdown, not data)."""
    fenced = _FENCED.match(value)
    return fenced.group(1) if fenced else value


def _input(text: str) -> str:
    text = _unfenced(_ARROW.sub("", text.strip()))  # "Input: 48, 18 → Output: 6" on one line
    return "" if _NO_INPUT.match(text) else text


def _parse_input_first(block: str, under_example: bool) -> Parsed:
    """One instance. Text under no marker is the output when an "Example N" heading introduced it (as the
    paper); elsewhere (chatter before the first marker, a response with no marker at all) it is no instance."""
    block = block.strip()
    out = _OUTPUT.search(block) or _INLINE_OUTPUT.search(block)
    inp = _INPUT.match(block)
    if out is None:
        if inp is not None:  # an input with no output: dropped as empty_output
            return _input(_field(block[inp.end() :])), "", ""
        return ("", _field(block), "") if under_example else ("", "", "no_output_marker")
    # Without an "Input:" marker, the text before "Output:" is the input (as the paper).
    before = block[inp.end() if inp and inp.end() <= out.start() else 0 : out.start()]
    return _input(before), _field(block[out.end() :]), ""


def _parse_output_first(block: str) -> Parsed:
    """A "Class label:" block: the label is the rest of its line; the input follows, after "Input:" or under any
    field name of the task's own ("Sentence: I love it." stays as it is, as in the paper)."""
    label, _, rest = block.strip(" \t").partition("\n")
    if inline := _INLINE_INPUT.search(label):  # "Class label: Positive Input: I love it."
        label, rest = label[: inline.start()], label[inline.end() :]
    elif inp := _INPUT.match(rest.lstrip("\n")):
        rest = rest.lstrip("\n")[inp.end() :]
    return _input(_field(rest)), _ARROW.sub("", label.strip()), ""


def _example_blocks(text: str) -> list[tuple[str, bool]]:
    """(block, under an "Example N" heading): split at the headings, and inside each piece at every further
    line-start "Input:" (a model that omits the Example lines still starts each instance with one)."""
    blocks = []
    for number, piece in enumerate(_EXAMPLE.split(text)):
        starts = [m.start() for m in _INPUT.finditer(piece) if piece[: m.start()].strip()]
        bounds = [0, *starts, len(piece)]
        for a, b in zip(bounds, bounds[1:], strict=False):
            if piece[a:b].strip():
                blocks.append((piece[a:b], number > 0))
    return blocks


def parse_instances(completion: Completion, classification: bool) -> list[Parsed]:
    # Either API: a chat model's markdown, preamble and closing remarks become the plain few-shot layout first.
    text = normalise_instances(completion.text, classification)
    if classification:
        blocks = _LABEL.split(text)
        head, blocks = blocks[0], blocks[1:]
        parsed = [_parse_output_first(b) for b in blocks]
        if not blocks and head.strip():
            parsed = [("", "", "no_class_label_marker")]
    else:
        parsed = [_parse_input_first(b, heading) for b, heading in _example_blocks(text)]
    if completion.finish_reason == "length" and parsed:
        # The last instance of a response cut off by max_tokens may be unfinished.
        last_input, last_output, _ = parsed[-1]
        parsed[-1] = (last_input, last_output, "truncated")
    # The safety net: whatever shape slipped through, no format marker enters the data.
    return [
        (i, o, "marker_in_text")
        if not problem and (MARKER_LINE.search(i) or MARKER_LINE.search(o))
        else (i, o, problem)
        for i, o, problem in parsed
    ]


def judge_instances(
    parsed: list[Parsed], max_instances: int, rng: random.Random | None = None, conflicts: str = "task"
) -> list[tuple[str, str, str, str]]:
    """(input, output, verdict, reason) for each parsed instance of one task, in order.

    As the paper: validity first (a parse problem, then filters.check_instance); then conflicts among the valid
    instances: the same non-empty input with different outputs drops the whole task (`conflicts = "task"`) or
    only those instances ("pair"); then exact duplicates after the first; then, over `max_instances`, a random
    sample (seeded by the caller) is kept.
    """
    verdicts: list[tuple[bool, str]] = [
        (False, problem) if problem else check_instance(i, o) for i, o, problem in parsed
    ]
    outputs_by_input: dict[str, set[str]] = defaultdict(set)
    for (input_text, output_text, _), (valid, _) in zip(parsed, verdicts, strict=True):
        if valid and input_text:
            outputs_by_input[input_text].add(output_text)
    conflicting = {i for i, outputs in outputs_by_input.items() if len(outputs) > 1}
    seen: set[tuple[str, str]] = set()
    for n, ((input_text, output_text, _), (valid, _)) in enumerate(zip(parsed, verdicts, strict=True)):
        if not valid:
            continue
        if input_text in conflicting:
            verdicts[n] = (False, "same_input_different_output")
        elif conflicting and conflicts == "task":
            verdicts[n] = (False, "task_has_conflicting_instances")
        elif (input_text, output_text) in seen:
            verdicts[n] = (False, "duplicate")
        seen.add((input_text, output_text))
    kept = [n for n, (valid, _) in enumerate(verdicts) if valid]
    if len(kept) > max_instances:
        chosen = set((rng or random.Random(0)).sample(kept, max_instances))
        for n in kept:
            if n not in chosen:
                verdicts[n] = (False, "over_instance_limit")
    return [
        (i, o, "kept" if valid else "dropped", reason)
        for (i, o, _), (valid, reason) in zip(parsed, verdicts, strict=True)
    ]


def prepare(config: Config, store: Store, report: Report = no_report) -> None:
    responses = store.instance_responses()
    cfg = config.prepare
    rows = []
    for n, (instruction, request) in enumerate(responses):
        parsed = parse_instances(request.completion(), instruction.classification == "yes")
        # The sample over the limit depends only on the run seed and the task, not on the order of the run.
        rng = random.Random(f"{config.seed}:prepare:{instruction.id}")
        for position, (input_text, output_text, verdict, reason) in enumerate(
            judge_instances(parsed, cfg.max_instances_per_task, rng, cfg.conflicts)
        ):
            rows.append((instruction.id, request.id, position, input_text, output_text, verdict, reason))
        report(n + 1, len(responses), "")
    store.replace_machine_instances(rows)
    kept = sum(1 for r in rows if r[5] == "kept")
    report(len(responses), len(responses), f"kept {kept} of {len(rows)} instances")
