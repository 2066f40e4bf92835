"""The prompt files a run sends: the package's defaults (selfinstruct/prompts/), any subset of them replaced by
the files of a directory the user owns ([prompts] dir, --prompts DIR), all checked before anything is sent or
written. `selfinstruct prompts --output DIR` writes the defaults, each with a header naming its placeholders.

The format, in full:
- `{name}` is a placeholder, filled when a request is built; `{{` and `}}` are literal braces.
- A line holding `{guidance}` is left out when no guidance is set, so that without guidance every prompt is
  exactly the default (the paper's, for the completion prompts).
- Lines at the top of a file that start with "#" are comments.
- Chat files and bootstrap.txt have sections, each opened by a line "[name]". The completion files of the other
  stages are few-shot texts: a header, then examples, each a block opening with "Task:" and holding the answer in
  the stage's layout. The chat prompts show the same examples as user/assistant turns, so both APIs see one set.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from selfinstruct.config import Config
from selfinstruct.files import atomic_write
from selfinstruct.records import InputError, read_text

PLACEHOLDERS = {
    "tasks": "the in-context tasks, one per line, numbered from 1",
    "count": "how many tasks the prompt shows",
    "instruction": "the task the request is about",
    "guidance": "the run's guidance ([bootstrap] guidance or [instances] guidance, --guidance); a line holding it "
    "is left out when none is set",
}


@dataclass(frozen=True)
class Section:
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()


@dataclass(frozen=True)
class FileSpec:
    purpose: str
    sections: dict[str, Section]  # for a few-shot text, one section named TEXT
    examples: str | None = None  # few-shot texts: how their examples' answers must parse ("classify", "instances...")


TEXT = "text"
_CHAT_INSTANCES = {
    "system": Section(optional=("guidance",)),
    "user": Section(required=("instruction",), optional=("guidance",)),
    "repair": Section(),
}
SPECS: dict[str, FileSpec] = {
    "bootstrap.txt": FileSpec(
        "Stage 1, bootstrap, completions API: the list the model continues; a request is the section, then the "
        "next number of the list ('9.') on a line of its own. [prompt_classification] is used with "
        "bootstrap.classification_seeds_only.",
        {
            "prompt": Section(("tasks",), ("guidance",)),
            "prompt_classification": Section(("tasks",), ("guidance",)),
        },
    ),
    "chat_bootstrap.txt": FileSpec(
        "Stage 1, bootstrap, chat API. [user_classification] is used with bootstrap.classification_seeds_only; "
        "[repair] is the one follow-up turn after an answer with no task in it.",
        {
            "system": Section(optional=("guidance",)),
            "user": Section(("tasks",), ("count", "guidance")),
            "user_classification": Section(("tasks",), ("count", "guidance")),
            "repair": Section(),
        },
    ),
    "classify.txt": FileSpec(
        "Stage 2, classify, completions API: a header, then examples: 'Task: ...' and a line with the question "
        "and its answer (Yes or No) after the question mark. A request is the text, 'Task: <instruction>' and "
        "the examples' question.",
        {TEXT: Section()},
        examples="classify",
    ),
    "chat_classify.txt": FileSpec(
        "Stage 2, classify, chat API; the examples of classify.txt become the conversation's turns.",
        {"system": Section(), "user": Section(("instruction",)), "repair": Section()},
    ),
    "instances_classification.txt": FileSpec(
        "Stage 3, instances of classification tasks, completions API: examples 'Task: ...' followed by "
        "'Class label:' / 'Input:' lines. A request is the text, then 'Task: <instruction>'.",
        {TEXT: Section(optional=("guidance",))},
        examples="instances_classification",
    ),
    "instances_generation.txt": FileSpec(
        "Stage 3, instances of other tasks, completions API: examples 'Task: ...' followed by 'Input:' / "
        "'Output:' lines (or 'Example N' blocks of them). A request is the text, then 'Task: <instruction>'.",
        {TEXT: Section(optional=("guidance",))},
        examples="instances_generation",
    ),
    "chat_instances_classification.txt": FileSpec(
        "Stage 3, instances of classification tasks, chat API; the examples of instances_classification.txt "
        "become the conversation's turns.",
        _CHAT_INSTANCES,
    ),
    "chat_instances_generation.txt": FileSpec(
        "Stage 3, instances of other tasks, chat API; the examples of instances_generation.txt become the "
        "conversation's turns.",
        _CHAT_INSTANCES,
    ),
}

_SECTION = re.compile(r"^\[(\w+)\][ \t]*$")
_TOKEN = re.compile(r"\{\{|\}\}|\{(\w+)\}")


@dataclass
class Prompts:
    """Every prompt file of a run, checked: file name -> section -> template text."""

    files: dict[str, dict[str, str]]
    replaced: dict[str, Path] = field(default_factory=dict)  # the files read from the user's directory
    hash: str = ""

    def fill(self, name: str, section: str = TEXT, guidance: str = "", **values: str) -> str:
        """The section with its placeholders filled; the lines holding {guidance} dropped when there is none."""
        template = self.files[name][section]
        if not guidance.strip():
            template = "\n".join(line for line in template.split("\n") if not _holds(line, "guidance"))
        values["guidance"] = " ".join(guidance.split())
        return _TOKEN.sub(lambda m: values[m[1]] if m[1] else m[0][0], template)

    def examples(self, name: str) -> tuple[tuple[str, str], ...]:
        """The (task, answer) examples of a few-shot file: each block "Task: ...\\n<answer>"."""
        return _examples(self.fill(name))


def _holds(line: str, placeholder: str) -> bool:
    return any(m[1] == placeholder for m in _TOKEN.finditer(line))


def _examples(text: str) -> tuple[tuple[str, str], ...]:
    examples = []
    for block in re.split(r"\n\s*\n(?=Task:)", text):
        if block.startswith("Task:"):
            task, _, answer = block.partition("\n")
            examples.append((task.removeprefix("Task:").strip(), answer.strip()))
    return tuple(examples)


def classify_question(prompts: Prompts) -> str:
    """The question the classify examples ask after each task ("Is it classification?"): a request asks it too."""
    return prompts.examples("classify.txt")[0][1].rsplit("?", 1)[0] + "?"


def default_text(name: str) -> str:
    return resources.files("selfinstruct").joinpath("prompts", name).read_text(encoding="utf-8")


def header(name: str) -> str:
    """The comment block `selfinstruct prompts --output` writes at the top of a file."""
    spec = SPECS[name]
    lines = [f"# {name}: {spec.purpose}"]
    for section, allowed in spec.sections.items():
        where = "" if section == TEXT else f"[{section}] "
        names = [f"{{{p}}}" for p in allowed.required] + [f"{{{p}}} (optional)" for p in allowed.optional]
        lines.append(f"# {where}placeholders: {', '.join(names) or 'none'}")
    used = {p for s in spec.sections.values() for p in (*s.required, *s.optional)}
    lines += [f"#   {{{p}}}: {PLACEHOLDERS[p]}" for p in PLACEHOLDERS if p in used]
    lines.append("# Write {{ and }} for literal braces. Lines at the top starting with # are comments.")
    return "\n".join(lines) + "\n"


def load(directory: str | Path | None = None) -> Prompts:
    """The package's prompt files, with those in `directory` (if any) in their place; InputError naming the file
    and line of the first problem."""
    texts = {name: (default_text(name), None) for name in SPECS}
    replaced: dict[str, Path] = {}
    if directory:  # None or "": the defaults
        folder = Path(directory)
        if not folder.is_dir():
            raise InputError(
                f"{folder}: the prompts directory does not exist (write the defaults there with `selfinstruct "
                "prompts --output DIR`, then edit them)"
            )
        for path in sorted(folder.glob("*.txt")):
            if path.name not in SPECS:
                raise InputError(
                    f"{path}: not a prompt file this version reads; the files are {', '.join(SPECS)} (rename it, "
                    "or move it out of the directory)"
                )
            texts[path.name] = (read_text(path), path)
            replaced[path.name] = path
    files = {name: _parse(name, text, path) for name, (text, path) in texts.items()}
    digest = hashlib.sha256()
    for name in sorted(files):
        for section, template in sorted(files[name].items()):
            digest.update(f"{name}\0{section}\0{template}\0".encode())
    return Prompts(files, replaced, digest.hexdigest()[:16])


def _parse(name: str, text: str, path: Path | None) -> dict[str, str]:
    """Sections of one file, each checked against its spec."""
    where = str(path) if path else f"selfinstruct/prompts/{name}"
    spec = SPECS[name]
    lines = text.replace("\r\n", "\n").split("\n")
    start = 0
    while start < len(lines) and lines[start].startswith("#"):
        start += 1
    sections: dict[str, tuple[int, list[str]]] = {}  # name -> (line number of its first line, lines)
    if TEXT in spec.sections:
        sections[TEXT] = (start + 1, lines[start:])
    else:
        current = None
        for number, line in enumerate(lines[start:], start + 1):
            if match := _SECTION.match(line):
                current = match[1]
                if current not in spec.sections:
                    raise InputError(
                        f"{where}:{number}: unknown section [{current}]; {name} has "
                        f"{', '.join(f'[{s}]' for s in spec.sections)}"
                    )
                if current in sections:
                    raise InputError(f"{where}:{number}: section [{current}] appears twice")
                sections[current] = (number + 1, [])
            elif current is not None:
                sections[current][1].append(line)
            elif line.strip():
                raise InputError(
                    f"{where}:{number}: text before the first section; open one with a line such as "
                    f"[{next(iter(spec.sections))}]"
                )
        missing = [s for s in spec.sections if s not in sections]
        if missing:
            raise InputError(
                f"{where}:{len(text.rstrip().splitlines())}: no {', '.join(f'[{s}]' for s in missing)} section; "
                f"{name} needs {', '.join(f'[{s}]' for s in spec.sections)}"
            )
    out = {}
    for section, (first, body) in sections.items():
        template = "\n".join(body).strip()
        if not template:
            empty = "the file is empty" if section == TEXT else f"[{section}] is empty"
            raise InputError(f"{where}:{first}: {empty}")
        _check_placeholders(where, name, section, first, body, spec.sections[section])
        # A few-shot text is a prefix: a request appends "Task: ...", after a blank line whatever the file ends with.
        out[section] = template + "\n\n" if section == TEXT else template
    if spec.examples:
        first, body = sections[TEXT]
        _check_examples(where, name, "\n".join(body), spec.examples, first)
    return out


def _check_placeholders(where: str, name: str, section: str, first: int, body: list[str], allowed: Section) -> None:
    label = "" if section == TEXT else f" in [{section}]"
    takes = [*allowed.required, *allowed.optional]
    found = set()
    for number, line in enumerate(body, first):
        for match in _TOKEN.finditer(line):
            if match[1] is None:
                continue
            if match[1] not in takes:
                hint = f"it takes {', '.join(f'{{{p}}}' for p in takes)}" if takes else "it takes no placeholder"
                raise InputError(
                    f"{where}:{number}: unknown placeholder {{{match[1]}}}{label} of {name}; {hint} (write {{{{ and "
                    "}} for literal braces)"
                )
            found.add(match[1])
    for placeholder in allowed.required:
        if placeholder not in found:
            raise InputError(
                f"{where}:{first}: placeholder {{{placeholder}}} missing{label} of {name}; it is "
                f"{PLACEHOLDERS[placeholder]}"
            )


def _check_examples(where: str, name: str, text: str, kind: str, first: int) -> None:
    """Each example's answer must parse with the parser of its stage, or the model would learn a layout that
    the run then cannot read. `text` is the section as written, `first` the line number of its first line."""
    from selfinstruct.lmtypes import Completion
    from selfinstruct.parsing import verdict
    from selfinstruct.stages.prepare import parse_instances

    plain = _TOKEN.sub(lambda m: m[0] if m[1] else m[0][0], text)
    starts = [m.end() - len("Task:") for m in re.finditer(r"(?:\A|\n\s*\n)Task:", plain)]
    examples = _examples(plain)
    if not examples:
        raise InputError(f"{where}:{first}: no example; {name} needs examples, each a block opening with 'Task:'")
    questions = set()
    for (task, answer), start in zip(examples, starts, strict=True):
        number = first + plain[:start].count("\n") + 1  # the answer's first line
        if kind == "classify":
            question, mark, label = answer.rpartition("?")
            if not mark or verdict(label) is None:
                raise InputError(
                    f"{where}:{number}: the answer {answer!r} to the example task {task!r} needs a question ending "
                    "in '?' and then Yes or No"
                )
            question = question.strip() + "?"
            if questions and question not in questions:
                raise InputError(
                    f"{where}:{number}: the example asks {question!r}, the first one {next(iter(questions))!r}; a "
                    "request asks the examples' question, so they must all ask the same one"
                )
            questions.add(question)
            continue
        classification = kind == "instances_classification"
        if not any(not problem for _, _, problem in parse_instances(Completion(answer, "stop", 0, 0), classification)):
            layout = "'Class label:' and 'Input:' lines" if classification else "'Input:' and 'Output:' lines"
            raise InputError(
                f"{where}:{number}: the answer to the example task {task!r} does not parse as instances ({layout} "
                f"expected): {answer[:80]!r}"
            )


def write_defaults(directory: str | Path) -> list[Path]:
    """Every default prompt file, with its header, into `directory`, for the user to edit. Nothing is written
    when any of them exists there already."""
    folder = Path(directory)
    targets = {name: folder / name for name in SPECS}
    if existing := [path for path in targets.values() if path.exists()]:
        raise InputError(
            f"{existing[0]}: exists; nothing was written (choose another directory, or move the prompt files there "
            "out of the way first)"
        )
    for name, path in targets.items():
        atomic_write(path, f"{header(name)}\n{default_text(name)}")
    return list(targets.values())


def for_run(config: Config) -> Prompts:
    """The prompt files of a run, as the run was opened with them: files edited since then (their hash is in the
    config) would send prompts other than those the run directory records, so that is an error."""
    prompts = load(config.prompts.dir)
    if config.prompts.hash and prompts.hash != config.prompts.hash:
        where = config.prompts.dir or "the package's prompt files"
        raise InputError(
            f"{where}: the prompt files changed while the run was open (hash {config.prompts.hash}, now "
            f"{prompts.hash}); nothing was sent with them. Run the command again (a resume with other prompt files "
            "needs --allow-config-change)"
        )
    return prompts
