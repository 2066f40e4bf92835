"""Reading model answers whatever their shape: the few-shot plain text of a completion model, or the preambles,
markdown, bullets, headings, reasoning blocks and closing remarks of a chat model. One reader for both APIs.

- `strip_reasoning` drops `<think>…</think>` blocks.
- `list_items` reads the tasks of a bootstrap answer in chat form (numbered, bulleted, "Task 9:" headings,
  "9. **Title:** text", one per line), without its preamble and closing remark.
- `verdict` reads a yes/no classification answer: the first standalone verdict.
- `normalise_instances` rewrites an instance answer into the plain marker layout that stages/prepare.py parses
  (`**Input:**`, `- Output:`, `### Example 1`, `Label:` become `Input:`, `Output:`, `Example 1`, `Class label:`),
  without preambles, a restated "Task:" line or closing remarks.
"""

from __future__ import annotations

import json
import re
from typing import Any

_THINK = re.compile(r"<think(?:ing)?>.*?(?:</think(?:ing)?>|\Z)", re.IGNORECASE | re.DOTALL)
_EMPHASIS = re.compile(
    r"(\*\*|__)(.+?)\1|(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])|(?<![\w_])_(?![\s_])(.+?)(?<![\s_])_(?![\w_])"
)
_RULE = re.compile(r"^[ \t]*(?:-{3,}|\*{3,}|_{3,})[ \t]*$")  # a markdown horizontal rule
# Pictographs a model may use as bullets or decoration ("✍️ Write ...", "➡️ Input: ...").
_EMOJI = "\u2190-\u21ff\u2300-\u23ff\u2460-\u27bf\u2900-\u297f\u2b00-\u2bff\ufe0f\u200d\U0001f000-\U0001faff"
_DECORATION = re.compile(rf"^[ \t]*(?:>[ \t]*)*(?:#{{1,6}}[ \t]+)?(?:[-*+•][ \t]+)?(?:[{_EMOJI}]+[ \t]*)?")
# Chatter: what a chat model says around the data. Lines, once their markdown is gone, that start like this.
_CHATTER = re.compile(
    r"^(?:(?:sure|certainly|of course|absolutely|okay|ok|great|alright|glad to|happy to|as requested|"
    r"here (?:are|is|you go)|have fun|below (?:are|is)|the following (?:are|is)|these (?:are|tasks|examples|new)|"
    r"i (?:hope|have|'ve)|i've|hope (?:this|these|that)|let me know|feel free|enjoy|note that|"
    r"each (?:of these|task|example)|this (?:list|set) |i(?:'m| am) sorry|sorry|i can(?:not|'t)|as an ai)\b|notes?:)",
    re.IGNORECASE,
)
# A header line that names the list: "New tasks:", "**Examples:**".
_LIST_HEADER = re.compile(r"^(?:\w+[ \t]+){0,4}(?:tasks?|instructions?|examples?|ideas?)[ \t]*:$", re.IGNORECASE)


def json_value(text: str) -> Any:
    """The JSON object or array an answer holds: the whole answer, in a ``` fence, or after a short lead-in
    ("Here is the JSON:"); None when there is none."""
    body = strip_reasoning(text).strip()
    lines = body.splitlines()
    start = next((i for i, line in enumerate(lines[:3]) if line.lstrip().startswith(("{", "[", "```"))), None)
    if start is None:
        return None
    body = "\n".join(lines[start:]).strip()
    if body.startswith("```"):
        body = body.strip("`").strip()
        body = body.removeprefix("json").removeprefix("JSON").strip()
    if not body.startswith(("{", "[")):
        return None
    try:
        data, end = json.JSONDecoder().raw_decode(body)
    except ValueError:
        return None
    # The value must be the answer: only a closing fence or chatter may follow it.
    rest = body[end:].strip().strip("`").strip()
    if rest and not all(is_chatter(line) for line in rest.splitlines() if line.strip()):
        return None
    return data if isinstance(data, (dict, list)) else None


def json_object(text: str) -> dict[str, Any] | None:
    """The JSON object a structured-output answer holds (possibly in a ``` fence), or None."""
    data = json_value(text)
    return data if isinstance(data, dict) else None


def json_records(text: str, keys: tuple[str, ...]) -> list[Any] | None:
    """The list a JSON answer holds: the array itself, or the value of the first of `keys` the object has, or its
    only list; None when the answer is no such JSON."""
    data = json_value(text)
    if isinstance(data, dict):
        named = [data[k] for k in keys if isinstance(data.get(k), list)]
        lists = [v for v in data.values() if isinstance(v, list)]
        data = named[0] if named else lists[0] if len(lists) == 1 else None
    return data if isinstance(data, list) else None


def strip_reasoning(text: str) -> str:
    """The answer without its reasoning blocks (an unclosed one, cut off by max_tokens, runs to the end)."""
    return _THINK.sub("", text)


def plain(text: str) -> str:
    """Markdown emphasis removed: **bold**, __bold__, *italic* (not the * of a product or a bullet)."""
    previous = None
    while previous != text:
        previous, text = text, _EMPHASIS.sub(lambda m: m.group(2) or m.group(3) or m.group(4), text)
    return text


def is_chatter(line: str) -> bool:
    """A preamble, a list header or a closing remark, not data."""
    core = plain(_DECORATION.sub("", line)).strip().strip("*_").strip()
    return bool(_CHATTER.match(core) or _LIST_HEADER.match(core))


# --- bootstrap: the list of new tasks ---------------------------------------------------------------------------

# "1. ", "1) ", "(1) ", "1 - ", "I. ", "a) ", and "1.Write" (small models leave out the space; "3.5 cups" is no item).
_NUMBERED = re.compile(
    r"^[ \t]*(?:[-*+•][ \t]+)?(?:\*\*|__)?\(?(?:\d{1,3}(?:[.)](?:\*\*|__)?(?:[ \t]+|(?=[A-Za-z\"“]))|[ \t]*-[ \t]+)"
    r"|(?:[IVX]{1,4}|[ivx]{1,4})[.)][ \t]+|[a-zA-Z]\)[ \t]+)(.*)$"
)
_BULLET = re.compile(rf"^[ \t]*(?:[-*+•]|[{_EMOJI}]+)[ \t]+(.*)$")
_TASK_HEADING = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*|__)?[ \t]*(?:new[ \t]+)?(?:task|instruction|step)[ \t]*#?[ \t]*\d+[ \t]*[:.)—–-]?"
    r"[ \t]*(?:\*\*|__)?[ \t]*:?[ \t]*(.*)$",
    re.IGNORECASE,
)
# What follows the task, not the task: a label line under it ("Category: Writing", "*Why it's new:* ..."), and an
# explanation after a dash once the task has ended ("Explain X. — tests reasoning").
_NOTE_LINE = re.compile(r"^[ \t]*(?:[-*+•][ \t]+)?[(\[]?[A-Za-z][\w '’/-]{0,24}:[ \t]")
_TRAILING_NOTE = re.compile(
    r"(?<=[.?!\"”)])[ \t]+(?:[—–][ \t]+\S.*|\([A-Za-z][\w '’/-]{0,24}:[^()]*\))$"  # "... — why", "... (Category: X)"
)
# A label before the task itself: "Task: Write ...", "Instruction: Write ...".
_TASK_LABEL = re.compile(r"^(?:task|instruction|prompt)[ \t]*:[ \t]*(?=\S)", re.IGNORECASE)
_BOLD_TITLE = re.compile(r"^(?:\*\*|__)([^*_\n]{1,80}?)[ \t]*:?[ \t]*(?:\*\*|__)[ \t]*[:-]?[ \t]+(\S.*)$")
# "**The whole task, in bold.** A comment on it.": the bold sentence is the task.
_BOLD_TASK = re.compile(r"^(?:\*\*|__)([^*_\n]+?[.?!])(?:\*\*|__)[ \t]+\S")
# Tasks in tags: <instruction>...</instruction>, <task>...</task>.
_TAGGED = re.compile(r"<(instruction|task|prompt)>([^<]+)</\1>", re.IGNORECASE)


def _item_start(line: str) -> str | None:
    """The text after a list marker, when the line starts an item. A heading's short title ("**Task 1: Recipe
    Scaling**", "### Task 2: Email Reply") is no task: the task is on the next line."""
    if match := _TASK_HEADING.match(line):
        rest = match.group(1).strip()
        title = rest.removesuffix("**").removesuffix("__").strip()
        headed = line.lstrip().startswith("#") or rest != title
        if headed and len(title.split()) <= 5 and not title.endswith((".", "?", "!")):
            return ""
        return rest
    for pattern in (_NUMBERED, _BULLET):
        if match := pattern.match(line):
            return match.group(1)
    return None


def _clean_item(text: str) -> str:
    if bold := _BOLD_TASK.match(text.strip()):
        text = bold.group(1)
    elif title := _BOLD_TITLE.match(text.strip()):  # "**Poem:** Write a poem about rain." -> the task, not its title
        text = title.group(2)
    text = _TASK_LABEL.sub("", plain(text).strip())
    text = _TRAILING_NOTE.sub("", text).strip()
    if len(text) > 1 and text[0] == text[-1] and text[0] in "\"'“”" or (text[:1], text[-1:]) == ("“", "”"):
        text = text[1:-1].strip()
    return text


def _record_text(record: Any) -> str:
    """A task in a JSON list: a string, or the instruction field of an object."""
    if isinstance(record, dict):
        for key in ("instruction", "task", "prompt", "text"):
            if isinstance(record.get(key), str):
                return record[key]
        return next((v for v in record.values() if isinstance(v, str)), "")
    return str(record)


def table_rows(lines: list[str]) -> list[list[str]] | None:
    """The cells of a table's rows, the header row first, when `lines` hold a markdown table or tab-separated
    rows (all with the same number of cells), else None."""
    rows = [line.strip() for line in lines if line.strip().startswith("|")]
    if len(rows) >= 3 and re.fullmatch(r"\|?[\s:|-]+\|?", rows[1]):
        return [[cell.strip() for cell in row.strip("|").split("|")] for row in [rows[0], *rows[2:]]]
    tabbed = [line.strip().split("\t") for line in lines if "\t" in line.strip()]
    if len(tabbed) >= 2 and len({len(row) for row in tabbed}) == 1:
        return [[cell.strip() for cell in row] for row in tabbed]
    return None


def _is_complete(task: list[str]) -> bool:
    """Whether the lines gathered so far make a task, rather than a title for the ones under it."""
    text = plain(" ".join(task)).strip()
    return text.endswith((".", "?", "!", '"', "”")) or len(text.split()) > 6


def list_items(text: str) -> list[str]:
    """The tasks of a chat answer, in order. Items are lines that start with a number, a bullet or a "Task N:"
    heading (with the lines that continue them); an answer without such lines has one task per line. Preambles,
    list headers and closing remarks are left out, and so is what a model writes under a task: sub-bullets,
    "Category: ..." lines, an explanation after a dash. A JSON answer (an array, {"tasks": [...]}) and a markdown
    table (the longest cell of each row) are read as such."""
    records = json_records(text, ("tasks", "instructions"))
    if records is not None:
        return [item for record in records if (item := _clean_item(_record_text(record)))]
    tagged = _TAGGED.findall(strip_reasoning(text))
    if len(tagged) >= 2:
        return [item for _, task in tagged if (item := _clean_item(task))]
    lines = [line for line in strip_reasoning(text).splitlines() if not _FENCE.match(line)]
    if (rows := table_rows(lines)) is not None:
        return [item for row in rows[1:] if (item := _clean_item(max(row, key=len)))]
    if not any(_item_start(line) is not None for line in lines):
        return [item for line in lines if (item := _clean_item(line)) and not is_chatter(line)]
    items: list[tuple[str, bool]] = []  # (text, numbered: a numbered item is a task even if it opens like chatter)
    current: list[str] | None = None
    numbered = False
    indent = 0  # of the current item's line
    blank = closed = False
    for line in lines:
        start = _item_start(line)
        nested = len(line) - len(line.lstrip()) > indent + 1
        if start is not None and nested and current and _is_complete(current):
            closed = True  # a sub-bullet under a task: a note on it, not a task
        elif start is not None:
            if current and not nested:  # (a title with tasks under it is no task)
                items.append((" ".join(current), numbered))
            current, blank, closed = ([start] if start.strip() else []), False, False
            indent, numbered = len(line) - len(line.lstrip()), _NUMBERED.match(line) is not None
        elif not line.strip():
            blank = True
        elif current is not None and (not blank or not current) and not is_chatter(line):
            if current and _NOTE_LINE.match(plain(line)) and _is_complete(current):
                closed = True  # "Category: Writing", "Example input: ..." under a task
            elif not closed:
                current.append(line.strip())  # a continuation, or the text under a "Task 9:" heading
            blank = False
        else:  # text after a blank line that is not an item: a closing remark; or a preamble
            if current:
                items.append((" ".join(current), numbered))
            current = None
    if current:
        items.append((" ".join(current), numbered))
    return [item for raw, numbered in items if (item := _clean_item(raw)) and (numbered or not is_chatter(raw))]


# --- classify: yes or no ----------------------------------------------------------------------------------------

_VERDICTS = [
    (
        re.compile(
            r"(?:\bnot|n't|\bnever)\s+(?:be\s+)?(?:regarded\s+as\s+|considered\s+)?(?:a|an)?\s*classification\b"
        ),
        "no",
    ),
    (re.compile(r"\bnon-?classification\b"), "no"),
    (re.compile(r"(?:\b(?:is|be|as)|'s)\s+(?:a|an)\s+classification\b"), "yes"),
    (re.compile(r"\byes\b"), "yes"),
    (re.compile(r"\bno\b"), "no"),
]


# A verdict given as the answer ("So my answer is: Yes", "Is it a classification task? Yes", "Verdict: No"): it
# outranks a "no" that merely opens a sentence of the reasoning before it.
_STATED = re.compile(
    r"(?:\banswer|\bverdict|\bconclusion|\bclassification(?:[ \t]+task)?[ \t]*\?)(?:[ \t]+is)?[ \t]*[:=\-–—]?[ \t]*"
    r"(yes|no)\b(?![ \t]*(?:/|or\b))"  # not "Yes/No", "yes or no": the question restated
)


# A one-word verdict opening the answer: "Yep", "Nope.", "True", "Not really, ...".
_OPENING = re.compile(
    r"^\W*((?:absolutely|definitely|certainly)[ \t]+not|yep|yup|yeah|true|correct|affirmative|absolutely|definitely"
    r"|indeed|nope|nah|false|negative|not really|not quite)(?![ \t]+not\b)(?=[ \t]*(?:[.!,;:—–-]|$))"
)
_OPENING_NO = ("not", "nope", "nah", "false", "negative")


def _json_verdict(data: dict[str, Any]) -> str | None:
    """The verdict of a structured answer: {"answer": "Yes"}, or its one true/false field
    ({"is_classification": true})."""
    if isinstance(data.get("answer"), bool):
        return "yes" if data["answer"] else "no"
    if "answer" in data:
        return verdict(str(data["answer"]))
    flags = [v for v in data.values() if isinstance(v, bool)]
    return ("yes" if flags[0] else "no") if len(flags) == 1 else None


def verdict(text: str) -> str | None:
    """'yes' or 'no': the verdict the answer states ("Yes", "**Answer:** No", "This is not a classification
    task.", "Based on the examples, yes.", reasoning then "So my answer is: Yes"); None when there is none, or when
    it opens with both ("Yes/No"). A verdict stated as the answer wins; otherwise the first one."""
    data = json_object(text)
    if data is not None:
        return _json_verdict(data)
    answer = plain(strip_reasoning(text)).lower()
    stated = _STATED.findall(answer)
    if stated:
        return stated[-1]
    if opening := _OPENING.match(answer.strip()):
        word = opening.group(1)
        return "no" if word.startswith(_OPENING_NO) or word.endswith(" not") else "yes"
    found = sorted((m.start(), label) for pattern, label in _VERDICTS for m in pattern.finditer(answer))
    if not found:
        return None
    first_at, first = found[0]
    other = next(((at, label) for at, label in found if label != first), None)
    if other is not None and other[0] - first_at <= 8:  # "yes/no", "yes or no": no answer
        return None
    return first


# --- instances: back to the plain marker layout -----------------------------------------------------------------

_FIELD = re.compile(
    r"^(?:\d{1,2}[.)][ \t]+)?(?:\*\*|__|\*)?[ \t]*"
    r"(?P<name>input|output|class[ \t]+label|label|class)(?P<number>[ \t]*\d*)"
    # The emphasis that closes a marker ("**Input:**") follows the colon at once; "Input: **x**" is a bold value.
    r"[ \t]*(?:\*\*|__|\*)?[ \t]*:(?:\*\*|__|\*)?[ \t]*(?P<rest>.*)$",
    re.IGNORECASE,
)
_EXAMPLE = re.compile(
    r"^(?P<head>(?:\*\*|__|\*)?[ \t]*example[ \t]*#?[ \t]*(?P<number>\d*)[ \t]*[:.)]?[ \t]*(?:\*\*|__|\*)?[ \t]*[:.)]?)"
    r"[ \t]*(?P<rest>.*)$",
    re.IGNORECASE,
)
_TASK_LINE = re.compile(r"^(?:\*\*|__)?task[ \t]*(?:\*\*|__)?[ \t]*:", re.IGNORECASE)
_WRAPPED = re.compile(r"^(\*\*|__|`)(.+)\1$")
_FIELD_NAMES = {"input": "Input", "output": "Output", "label": "Class label", "class label": "Class label"}
# Field names only a classification answer uses as markers ("### Class: Sports", "Label: Spam"). An input under the
# task's own field name ("Text: ...", "Sentence: ...") stays as written, as in the paper (docs/paper-parity.md, Q2).
_CLASSIFICATION_NAMES = {"label": "Class label", "class": "Class label"}
# A second marker on the same line, after a separator: "Input: 48, 18 → Output: 6", "Label: A | Input: ...".
_SECOND_MARKER = re.compile(
    r"[ \t]*(?:→|->|=>|\||;|—|–)[ \t]*(?=(?:\*\*|__)?(?:input|output|class[ \t]+label|label)[ \t]*(?:\*\*|__)?:)",
    re.IGNORECASE,
)
# A line that comments on an instance rather than being part of it: "Explanation: ...", "(Reason: ...)".
_ASIDE = re.compile(
    r"^[ \t]*(?:\(?(?:\*\*|__)?(?:explanation|reason|reasoning|rationale|why)[ \t]*(?:\*\*|__)?:|\(notes?[ \t]*:)", re.I
)
_BARE_NUMBER = re.compile(r"^[ \t]*(?:\*\*|__)?\(?(\d{1,2})[.)](?:\*\*|__)?[ \t]*$")
_FENCE = re.compile(r"^[ \t]*```")
# Columns of an instance table, by header.
_COLUMNS = {
    "input": ("input", "text", "sentence", "question", "query", "prompt", "message", "sample input", "example input"),
    "output": ("output", "answer", "response", "result", "completion", "expected output", "sample output"),
    "label": ("class label", "label", "class", "category"),
}
# Other names a chat model gives the two fields when it uses neither "Input" nor "Output" ("Q:" / "A:").
_OTHER_FIELD = re.compile(
    r"^[ \t]*(?:\d{1,2}[.)][ \t]+)?(?:\*\*|__)?(?P<name>q|question|prompt|user|sample input|example input|"
    r"a|answer|response|assistant|completion|expected output|sample output|example output)[ \t]*(?:\*\*|__)?:"
    r"(?:\*\*|__)?[ \t]*(?P<rest>.*)$",
    re.IGNORECASE,
)
_OTHER_INPUTS = ("q", "question", "prompt", "user", "sample input", "example input")
# A field name in bold on its own line, the value below it ("**Input**").
_BARE_FIELD = re.compile(r"^[ \t]*(?:\*\*|__)(input|output|class label)(?:\*\*|__)[ \t]*:?[ \t]*$", re.IGNORECASE)
# A field name of the task's own in bold ("**Text:** ..."): the name stays, the markdown goes.
_BOLD_NAME = re.compile(r"^([ \t]*)(?:\*\*|__)([A-Za-z][\w ]{0,24}:)(?:\*\*|__)")
# Classification answers without markers: "[Positive] I love it.", or a heading per label with its inputs below.
_BRACKETED = re.compile(r"^[ \t]*(?:[-*+•][ \t]+)?\[([^\]\n]{1,40})\][ \t]+(\S.*)$")
_LABEL_HEADING = re.compile(r"^[ \t]*(?:#{1,6}[ \t]+(.+?)|(?:\*\*|__)(.+?)(?:\*\*|__)[ \t]*:?)[ \t]*$")
_CATEGORY = re.compile(r"^[ \t]*(?:\*\*|__)?category(?:\*\*|__)?[ \t]*:(?:\*\*|__)?", re.IGNORECASE)


def _marker_line(line: str, classification: bool) -> str | None:
    """The line in plain marker form when it is a (decorated) marker line, else None."""
    core = _DECORATION.sub("", line)
    if example := _EXAMPLE.match(core):
        rest = example.group("rest")
        # "Example 2", "**Example 2:**", "Example 2: Input: ..." are headings; "Example 3 of these" is content.
        if rest.strip() and not re.search(r"[:.)]", example.group("head")) and not _FIELD.match(rest):
            return None
        if not example.group("number") and rest.strip() and not re.search(r"[:.]", example.group("head")):
            return None
        heading = f"Example {example.group('number')}".rstrip()
        return f"{heading}: {rest.strip()}" if rest.strip() else heading
    if bare := _BARE_FIELD.match(core):
        return f"{_FIELD_NAMES[' '.join(bare.group(1).lower().split())]}:"
    field = _FIELD.match(core)
    if field is None:
        return None
    name = " ".join(field.group("name").lower().split())
    if name in _CLASSIFICATION_NAMES:
        if not classification:
            return None
        name = _CLASSIFICATION_NAMES[name].lower()
    rest = field.group("rest").strip()
    if wrapped := _WRAPPED.match(rest):
        rest = wrapped.group(2).strip()
    number = field.group("number").strip()
    marker = f"{_FIELD_NAMES[name]}{' ' + number if number else ''}: {rest}".rstrip()
    first, *second = _SECOND_MARKER.split(marker, maxsplit=1)
    if second and (other := _marker_line(second[0], classification)) is not None:
        return f"{first.rstrip()}\n{other}"
    return marker


def _drop_trailing_chatter(lines: list[str]) -> None:
    """Remove the paragraphs of chatter at the end of `lines` ("I hope these help!", "Here is another one:")."""
    while True:
        end = len(lines)
        while end and not lines[end - 1].strip():
            end -= 1
        start = end
        while start and lines[start - 1].strip():
            start -= 1
        paragraph = lines[start:end]
        after_code = (  # prose after the code block that ends the last instance: a closing remark
            start > 1
            and not lines[start - 1].strip()
            and _FENCE.match(lines[start - 2])
            and not any(_FENCE.match(line) or _PLAIN_MARKER.match(line) for line in paragraph)
        )
        if start == 0 or end == 0 or not (after_code or all(is_chatter(line) for line in paragraph)):
            return
        del lines[start:]


def _fields(record: dict[str, Any]) -> dict[str, str]:
    """A JSON instance's fields under the names input, output, label (whatever a model called them)."""
    named = {" ".join(str(k).lower().replace("_", " ").split()): v for k, v in record.items()}
    fields = {}
    for field, names in _COLUMNS.items():
        value = next((named[n] for n in names if n in named), None)
        if value is not None:
            fields[field] = str(value)
    return fields


def _example_lines(number: int, example: Any, classification: bool) -> str:
    if not isinstance(example, dict):
        return ""
    values = _fields(example)
    values["label"] = " ".join(values.get("label", "").split("\n"))
    given = f"\nInput: {values['input']}" if values.get("input", "").strip() else ""
    if classification:
        return f"Class label: {values.get('label', '')}{given}"
    return f"Example {number}{given}\nOutput: {values.get('output', '')}"


def _table_examples(rows: list[list[str]], classification: bool) -> list[dict[str, str]] | None:
    """The instances of a markdown table whose header names its columns (Input, Output, Class label...)."""
    header = [" ".join(plain(cell).lower().split()) for cell in rows[0]]
    columns = {}
    for field, names in _COLUMNS.items():
        found = next((i for i, cell in enumerate(header) if cell in names), None)
        if found is not None:
            columns[field] = found
    wanted = "label" if classification else "output"
    if wanted in columns and "input" not in columns and len(header) == 2:  # "Label | Message": the other column
        columns["input"] = 1 - columns[wanted]
    if wanted not in columns:
        return None
    return [
        {field: plain(row[i]).strip() for field, i in columns.items() if i < len(row)}
        for row in rows[1:]
        if any(cell.strip() for cell in row)
    ]


def _unmarked(lines: list[str], markers: list[str | None], classification: bool) -> list[str] | None:
    """An answer with no marker line in the plain layout (`markers`: each line's, from `_marker_line`), when its
    fields go by other names ("Q:"/"A:", "Prompt:"/"Response:") or, for classification, its labels come in brackets
    or as headings; else None."""
    if any(not (marker or "Example").startswith("Example") for marker in markers):
        return None  # a field marker: the plain layout (an "Example N" heading alone is none)
    content = [line for line in lines if line.strip() and not is_chatter(line)]
    if not classification:
        fields = [_OTHER_FIELD.match(line) for line in lines]
        names = {m.group("name").lower() in _OTHER_INPUTS for m in fields if m}
        if names != {True, False}:
            return None
        return [
            (f"{'Input' if m.group('name').lower() in _OTHER_INPUTS else 'Output'}: {m.group('rest')}" if m else line)
            for line, m in zip(lines, fields, strict=True)
        ]
    if any(_CATEGORY.match(line) for line in content):  # "Category: Sports" where "Class label:" would be
        return [_CATEGORY.sub("Class label:", line) for line in lines]
    if len(content) >= 2 and all(_BRACKETED.match(line) for line in content):
        return [f"Class label: {m[1]}\nInput: {m[2]}" for line in content if (m := _BRACKETED.match(line))]
    out, label = [], None
    for line in content:
        if heading := _LABEL_HEADING.match(line):
            label = plain(heading.group(1) or heading.group(2)).strip().rstrip(":")
        elif (item := _BULLET.match(line)) and item.group(1).strip() and label:
            out.append(f"Class label: {label}\nInput: {item.group(1).strip()}")
        else:
            return None
    return out or None


def _labels_first(lines: list[str]) -> list[str]:
    """Classification lines in the plain layout with each input preceded by its label: an answer that gives each
    input first ("Input: ...", then "Class label: ...") is turned around, and several inputs under one label each
    get it."""
    fields = [m.group(1) if (m := _INPUT_OR_LABEL.match(line)) else None for line in lines]
    present = [field for field in fields if field]
    if "Input" not in present or "Class label" not in present:
        return lines
    out: list[str] = []
    if present.index("Input") < present.index("Class label"):
        start = None  # where the current instance's input starts in `out`
        for line, field in zip(lines, fields, strict=True):
            if field == "Input":
                start = len(out)
            elif field == "Class label" and start is not None:
                out.insert(start, line)
                start = None
                continue
            out.append(line)
        return out
    label = previous = None
    for line, field in zip(lines, fields, strict=True):
        if field == "Input" and previous == "Input" and label is not None:
            out.append(label)
        label = line if field == "Class label" else label
        previous = field or previous
        out.append(line)
    return out


_INPUT_OR_LABEL = re.compile(r"^(Input|Class label)(?: \d+)?:")  # in the plain layout ("Class label 2:" too)
_PLAIN_MARKER = re.compile(r"^(?:Input|Output|Class label)(?: \d+)?:|^Example(?: \d+)?(?::|$)")


def normalise_instances(text: str, classification: bool) -> str:
    """An instance answer in the plain layout of the few-shot prompts. A completion model's answer in that layout
    comes out unchanged; a chat model's loses its reasoning, preamble, restated task, markdown around the markers,
    asides ("Explanation: ...") and closing remarks. A JSON answer (an array of instances, {"examples": [...]}) and
    a markdown table with named columns are written out in that layout."""
    records = json_records(text, ("examples", "instances"))
    if records is not None:
        return "\n".join(_example_lines(n, e, classification) for n, e in enumerate(records, 1))
    lines = strip_reasoning(text).splitlines()
    if (rows := table_rows(lines)) is not None and (examples := _table_examples(rows, classification)):
        return "\n".join(_example_lines(n, e, classification) for n, e in enumerate(examples, 1))
    if lines and lines[0].strip().startswith("```") and lines[-1].strip() == "```":  # the whole answer fenced
        lines = lines[1:-1]
    markers = [_marker_line(line, classification) for line in lines]
    if (renamed := _unmarked(lines, markers, classification)) is not None:
        lines, markers = renamed, [_marker_line(line, classification) for line in renamed]
    out: list[str] = []
    seen_marker = aside = False
    for i, (line, marker) in enumerate(zip(lines, markers, strict=True)):
        if marker is None and (number := _BARE_NUMBER.match(line)):
            following = next((m for x, m in zip(lines[i + 1 :], markers[i + 1 :], strict=True) if x.strip()), None)
            if following is not None:  # "1." alone above an instance's fields
                marker = f"Example {number.group(1)}"
        if marker is not None:
            _drop_trailing_chatter(out)  # "Here is another example:" between two instances
            out.append(marker)
            seen_marker, aside = True, False
        elif seen_marker and (aside or _ASIDE.match(plain(line))):
            aside = True  # an explanation of the instance, up to the next marker
        elif not seen_marker and (is_chatter(line) or _TASK_LINE.match(_DECORATION.sub("", line))):
            continue  # a preamble, or the task restated, before the first instance
        elif _RULE.match(line):
            continue  # a markdown rule between two instances
        else:
            out.append(_BOLD_NAME.sub(r"\1\2", line))
    _drop_trailing_chatter(out)
    if classification:
        out = _labels_first(out)
    return "\n".join(out).strip("\n")
