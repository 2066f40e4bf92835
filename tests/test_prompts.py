"""Steering the data: prompt files the user owns, guidance, and the exact next request (`prompts --show`)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ScriptedLM

from selfinstruct.chatshapes import intended
from selfinstruct.cli import cli
from selfinstruct.devserver import DevServer, ServerConfig
from selfinstruct.lmtypes import Completion
from selfinstruct.pipeline import Run, RunError
from selfinstruct.preview import preview
from selfinstruct.records import InputError
from selfinstruct.stages import bootstrap, classify, instances
from selfinstruct.stages.prepare import parse_instances
from selfinstruct.stages.prompts import SPECS, default_text, load
from selfinstruct.store import DB_NAME

GUIDANCE = "tasks that the customer-support assistant of a bakery receives"

# A rewritten instance prompt (completions API), with its own header and examples in the stage's layout.
TEACHER = """# my prompt: examples written as a patient teacher would
Write worked examples for each task below, as a patient teacher would, with an input when the task needs one.
Keep them short: {guidance}

Task: Add the two numbers.
Example 1
Input: 2 and 3
Output: 2 + 3 = 5.
Example 2
Input: 10 and 7
Output: 10 + 7 = 17.

Task: Name a color of the rainbow.
Output: Green.
"""


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def prompt_dir(tmp_path: Path, **files: str) -> Path:
    folder = tmp_path / "prompts"
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    return folder


# --- the files ----------------------------------------------------------------------------------


def test_output_writes_every_default_file_with_a_header_and_reads_back_as_the_defaults(tmp_path: Path) -> None:
    code, output = invoke("prompts", "--output", str(tmp_path / "mine"))
    assert code == 0, output
    written = sorted(p.name for p in (tmp_path / "mine").iterdir())
    assert written == sorted(SPECS)
    chat = (tmp_path / "mine" / "chat_classify.txt").read_text()
    assert chat.startswith("# chat_classify.txt: ") and "[user] placeholders: {instruction}" in chat
    boot = (tmp_path / "mine" / "bootstrap.txt").read_text()
    assert "{guidance} (optional)" in boot and "{tasks}: the in-context tasks" in boot
    # Comments aside, the files are the defaults: the same prompts, the same hash.
    assert load(tmp_path / "mine").files == load().files
    assert load(tmp_path / "mine").hash == load().hash
    # Never over a user's files: nothing is written when one exists.
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "classify.txt").write_text("mine")
    code, output = invoke("prompts", "--output", str(tmp_path / "other"))
    assert code == 2 and "classify.txt: exists; nothing was written" in output
    assert [p.name for p in (tmp_path / "other").iterdir()] == ["classify.txt"]


def test_a_directory_replaces_only_its_files(tmp_path: Path) -> None:
    prompts = load(prompt_dir(tmp_path, instances_generation=TEACHER))
    assert set(prompts.replaced) == {"instances_generation.txt"}
    assert prompts.files["classify.txt"] == load().files["classify.txt"]
    assert prompts.hash != load().hash
    prompt = instances.encoder(prompts, chat=False, classification=False)("Sort the list.")
    assert prompt.startswith("Write worked examples for each task below") and prompt.endswith("Task: Sort the list.\n")
    assert "Keep them short" not in prompt  # its {guidance} line is left out without guidance
    # The chat variant shows the same (new) examples as turns.
    messages = instances.encoder(prompts, chat=True, classification=False)("Sort the list.")
    assert messages[2] == {
        "role": "assistant",
        "content": "Example 1\nInput: 2 and 3\nOutput: 2 + 3 = 5.\nExample 2\nInput: 10 and 7\nOutput: 10 + 7 = 17.",
    }


def test_placeholders_braces_and_guidance_lines(tmp_path: Path) -> None:
    text = default_text("chat_classify.txt").replace("Task: {instruction}", "Task {{id}}: {instruction} {{json}}")
    prompts = load(prompt_dir(tmp_path, chat_classify=text))
    user = classify.encoder(prompts, chat=True)("Is {x} a {{y}}?")[-1]["content"]
    kept = default_text("instances_generation.txt").replace("\n\n", "\nLiteral {{guidance}} stays.\n\n", 1)
    assert "Literal {guidance} stays." in instances.encoder(
        load(prompt_dir(tmp_path, instances_generation=kept)), False, False
    )("Do it.")
    assert user.startswith("Task {id}: Is {x} a {{y}}? {json}")  # literal braces; the instruction is not re-read
    # Guidance fills its lines, on one line, in both APIs; without it the lines are gone.
    defaults = load()
    guided = bootstrap.encoder(defaults, chat=False, guidance=f"  {GUIDANCE}\n ")(["A.", "B."])
    assert guided.endswith(f"2. B.\nNow come up with more tasks, all of them {GUIDANCE}:\n3.")
    assert bootstrap.encoder(defaults, chat=False)(["A.", "B."]) == "Come up with a series of tasks:\n1. A.\n2. B.\n3."
    chat = bootstrap.encoder(defaults, chat=True, guidance=GUIDANCE)(["A."])
    assert GUIDANCE in chat[-1]["content"]
    assert GUIDANCE not in json.dumps(bootstrap.encoder(defaults, chat=True)(["A."]))
    for api in (False, True):
        assert GUIDANCE in json.dumps(instances.encoder(defaults, api, True, GUIDANCE)("Label it."))


BROKEN = [
    (
        "chat_classify",
        "[system]\nDecide.\n[user]\nTask: {instruction} ({task_id})\n[repair]\nYes or No.\n",
        4,
        "unknown placeholder {task_id} in [user]",
    ),
    (
        "chat_classify",
        "[system]\nDecide.\n[user]\nTask: the task\n[repair]\nYes or No.\n",
        4,
        "placeholder {instruction} missing in [user]",
    ),
    (
        "chat_classify",
        "# a comment\n[system]\nDecide.\n[usr]\nTask: {instruction}\n[repair]\nNo.\n",
        4,
        "unknown section [usr]",
    ),
    ("chat_classify", "[system]\nDecide.\n[user]\nTask: {instruction}\n", 4, "no [repair] section"),
    ("chat_classify", "Decide.\n[system]\nDecide.\n", 1, "text before the first section"),
    ("chat_classify", "[system]\nA\n[system]\nB\n[user]\n{instruction}\n[repair]\nC\n", 3, "appears twice"),
    (
        "chat_bootstrap",
        "[system]\nWrite.\n[user]\n{tasks}\n[user_classification]\n\n[repair]\nAgain.\n",
        6,
        "[user_classification] is empty",
    ),
    (
        "bootstrap",
        "[prompt]\nCome up with tasks:\n{tasks}\n[prompt_classification]\nMore: {guidance} {count}\n",
        5,
        "unknown placeholder {count}",
    ),
    ("classify", "Classify.\n\nTask: Say hello.\nIs it classification? Maybe\n", 4, "then Yes or No"),
    (
        "classify",
        "Classify.\n\nTask: A.\nIs it classification? No\n\nTask: B.\nClassification? Yes\n",
        7,
        "the example asks 'Classification?', the first one 'Is it classification?'",
    ),
    ("classify", "Classify these tasks, please.\n", 1, "no example"),
    (
        "instances_generation",
        "Examples.\n\nTask: Add.\nExample 1\nInput: 2 and 3\nOutput: 5\n\nTask: Be kind.\n"
        "Sure, here is a kind sentence for you.\n",
        9,
        "does not parse as instances",
    ),
    (
        "instances_classification",
        "Label.\n\nTask: Even or odd?\nInput: 4\nOutput: even\n",
        4,
        "'Class label:' and 'Input:' lines expected",
    ),
]


@pytest.mark.parametrize(("name", "text", "line", "message"), BROKEN, ids=[b[3] for b in BROKEN])
def test_a_broken_file_names_its_line_and_the_problem(
    tmp_path: Path, name: str, text: str, line: int, message: str
) -> None:
    folder = prompt_dir(tmp_path, **{name: text})
    with pytest.raises(InputError) as error:
        load(folder)
    assert str(error.value).startswith(f"{folder / (name + '.txt')}:{line}: ")
    assert message in str(error.value)


def test_a_directory_that_is_not_one_or_holds_an_unknown_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="the prompts directory does not exist"):
        load(tmp_path / "missing")
    folder = prompt_dir(tmp_path, bootstrp="Come up with {tasks}")
    with pytest.raises(InputError, match=r"bootstrp.txt: not a prompt file this version reads; the files are"):
        load(folder)


# --- end to end ---------------------------------------------------------------------------------


def test_a_rewritten_stage_prompt_works_end_to_end_over_http(tmp_path: Path) -> None:
    folder = prompt_dir(tmp_path, instances_generation=TEACHER)
    out = tmp_path / "run"
    with DevServer(ServerConfig()) as server:
        code, output = invoke(
            "run", "--out", str(out), "--num-instructions", "6", "--backend", "openai", "--model", "m",
            "--base-url", server.base_url, "--prompts", str(folder), "--guidance", GUIDANCE,
        )  # fmt: skip
        assert code == 0, output
        prompts = [body["prompt"] for _, body in server.received]
    generation = [p for p in prompts if p.startswith("Write worked examples")]
    assert generation and all(p.endswith("\n") and "\nTask: " in p for p in generation)
    assert all("Keep them short" not in p for p in generation)  # instances.guidance is not set
    boot = [p for p in prompts if p.startswith("Come up with a series of tasks:")]
    assert boot and all(f"all of them {GUIDANCE}:" in p for p in boot)
    assert any(p.endswith("Is it classification?") for p in prompts)  # the other stages: the defaults
    with Run.open(out) as run:
        assert run.config.prompts.dir == str(folder.resolve())
        assert run.config.prompts.hash == load(folder).hash
        assert run.summary()["instances_kept"] > 0
    card = (out / "export" / "README.md").read_text()
    assert f"Prompt files: the package's, with the files of {folder.resolve()}" in card
    assert f"Guidance (bootstrap): {GUIDANCE}" in card
    code, output = invoke("report", str(out))
    assert code == 0 and "Guidance (bootstrap)" in (out / "report.html").read_text()


def test_a_broken_prompt_file_stops_the_run_before_any_request_or_file(tmp_path: Path) -> None:
    folder = prompt_dir(tmp_path, chat_instances_generation=default_text("chat_instances_generation.txt").replace(
        "Task: {instruction}", "Task: {instruction}\nFor: {audience}"))  # fmt: skip
    line = 1 + default_text("chat_instances_generation.txt").split("\n").index("Task: {instruction}") + 1
    out = tmp_path / "run"
    with DevServer(ServerConfig()) as server:
        code, output = invoke(
            "run", "--out", str(out), "--backend", "openai", "--model", "m", "--base-url", server.base_url,
            "--prompts", str(folder),
        )  # fmt: skip
        assert not server.received
    assert code == 2
    assert f"{folder / 'chat_instances_generation.txt'}:{line}: unknown placeholder {{audience}} in [user]" in output
    assert not out.exists()


def test_a_resume_with_other_prompts_or_guidance_is_refused(tmp_path: Path) -> None:
    folder = prompt_dir(tmp_path, instances_generation=TEACHER)
    settings = {"num_instructions": 3, "prompts": {"dir": str(folder)}}
    with Run.open(tmp_path / "run", settings, lm=ScriptedLM()) as run:
        run.bootstrap()
    (folder / "instances_generation.txt").write_text(TEACHER.replace("patient", "strict"))
    with pytest.raises(RunError, match=r"prompts\.hash: .*\(the prompt files differ from those the run was made"):
        Run.open(tmp_path / "run", lm=ScriptedLM())
    with pytest.raises(RunError, match=r"bootstrap\.guidance: '' -> 'bakery tasks'"):
        Run.open(tmp_path / "run", {"bootstrap": {"guidance": "bakery tasks"}}, lm=ScriptedLM())
    code, output = invoke("bootstrap", "--out", str(tmp_path / "run"), "--num-instructions", "4")
    assert code == 2 and "--allow-config-change" in output
    with Run.open(tmp_path / "run", allow_config_change=True, lm=ScriptedLM()) as run:
        assert run.config.prompts.hash == load(folder).hash  # the new files, now stored
    # The same files elsewhere: only where they are changed, which a resume may.
    moved = tmp_path / "moved"
    folder.rename(moved)
    with Run.open(tmp_path / "run", {"prompts": {"dir": str(moved)}}, lm=ScriptedLM()) as run:
        assert run.config.prompts.dir == str(moved.resolve())


def test_a_run_made_before_prompt_files_resumes(tmp_path: Path) -> None:
    with Run.open(tmp_path, {"num_instructions": 2}, lm=ScriptedLM()) as run:
        run.bootstrap()
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        (text,) = db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()
        old = json.loads(text)
        del old["prompts"], old["bootstrap"]["guidance"], old["instances"]["guidance"]
        db.execute("UPDATE meta SET value = ? WHERE key = 'config'", (json.dumps(old),))
    with Run.open(tmp_path, lm=ScriptedLM()) as run:
        assert run.config.prompts.hash == load().hash


# --- prompts --show -----------------------------------------------------------------------------


def test_show_for_a_new_run_sends_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "new"
    code, output = invoke("prompts", "--show", "bootstrap", "--out", str(out), "--guidance", GUIDANCE)
    assert code == 0, output
    assert "The next bootstrap request (not sent)" in output and "8 seed tasks and 0 machine-written" in output
    assert f"all of them {GUIDANCE}:\n9." in output and '"temperature": 0.7' in output
    assert not out.exists()
    code, output = invoke("prompts", "--show", "classify", "--out", str(out), "--api", "chat", "--json")
    shown = json.loads(output)
    assert shown["api"] == "chat" and shown["messages"][0]["role"] == "system"
    assert "shown for the first seed task" in shown["notes"][0]
    assert shown["sampling"]["max_tokens"] == 48
    code, output = invoke("prompts", "--show", "instances", "--out", str(out), "--prompts", str(tmp_path / "none"))
    assert code == 2 and "the prompts directory does not exist" in output
    assert not out.exists()
    code, output = invoke("prompts", "--out", str(out))
    assert code == 2 and "give either --output DIR" in output


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_show_is_exactly_the_next_request_of_each_stage(tmp_path: Path, api: str) -> None:
    """What --show prints is what the run sends next: the first request of each stage after it, compared whole."""
    with DevServer(ServerConfig()) as server:
        lm = {"backend": "openai", "model": "m", "base_url": server.base_url, "api": api, "concurrency": 1}
        settings = {"num_instructions": 5, "lm": lm, "bootstrap": {"guidance": GUIDANCE}}
        with Run.open(tmp_path, settings) as run:
            run.bootstrap()
            more = {"num_instructions": len(run.store.accepted("machine")) + 1}  # one more bootstrap request
        before = (tmp_path / DB_NAME).read_bytes()
        shown = {stage: preview(tmp_path, stage, more) for stage in ("bootstrap", "classify")}
        assert (tmp_path / DB_NAME).read_bytes() == before  # nothing written
        assert len(shown["bootstrap"].in_context) == 8 and GUIDANCE in json.dumps(shown["bootstrap"].prompt)
        for stage in ("bootstrap", "classify", "instances"):
            if stage == "instances":
                shown[stage] = preview(tmp_path, stage)
            sent = len(server.received)
            with Run.open(tmp_path, more) as run:
                getattr(run, stage)()
            body = server.received[sent][1]
            assert body.get("messages", body.get("prompt")) == shown[stage].prompt, stage
            assert {k: body[k] for k in ("temperature", "top_p", "max_tokens")} == {
                k: shown[stage].sampling[k] for k in ("temperature", "top_p", "max_tokens")
            }
    assert shown["classify"].instruction is not None and shown["instances"].instruction is not None


def test_prompt_files_edited_while_a_run_is_open_are_refused_before_sending(tmp_path: Path) -> None:
    folder = prompt_dir(tmp_path, instances_generation=TEACHER)
    lm = ScriptedLM()
    with Run.open(tmp_path / "run", {"num_instructions": 3, "prompts": {"dir": str(folder)}}, lm=lm) as run:
        (folder / "instances_generation.txt").write_text(TEACHER.replace("patient", "strict"))
        with pytest.raises(InputError, match="the prompt files changed while the run was open"):
            run.bootstrap()
    assert not lm.calls


def test_guided_chat_prompts_recover_every_answer_shape(tmp_path: Path) -> None:
    """Guidance changes the prompts, not what the parsers read: against the dev server's chat answer shapes
    (preambles, markdown, bullets, headings, verdicts in a sentence...), every intended task and instance of every
    response is recovered, with guidance in the bootstrap and the instance prompts."""
    with DevServer(ServerConfig()) as server:
        lm = {"backend": "openai", "api": "chat", "model": "m", "base_url": server.base_url}
        guidance = {"bootstrap": {"guidance": GUIDANCE}, "instances": {"guidance": "inputs a bakery's customers write"}}
        with Run.open(tmp_path, {"num_instructions": 40, "lm": lm, **guidance}) as run:
            run.run_all()
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        candidates: dict[int, set[str]] = {}
        for request_id, text in db.execute("SELECT request_id, text FROM instructions WHERE origin = 'machine'"):
            candidates.setdefault(request_id, set()).add(text)
        requests = db.execute("SELECT id, stage, messages, params, text FROM requests WHERE status = 'ok'").fetchall()
    shapes, checked = set(), 0
    for request_id, stage, messages, params, text in requests:
        messages = json.loads(messages)
        if stage == "bootstrap":
            assert GUIDANCE in messages[1]["content"]
        plan = intended(messages, json.loads(params)["seed"])
        if plan is None or plan.stage == "classify":
            continue
        shapes.add((plan.stage, plan.shape))
        if plan.stage == "bootstrap":
            assert set(plan.items) <= candidates[request_id], (plan.shape, text)
        else:
            clf = plan.stage == "instances_classification"
            parsed = {(i, o) for i, o, problem in parse_instances(Completion(text, "stop", 0, 0), clf) if not problem}
            assert {(i, label) if clf else (label, i) for label, i in plan.items} <= parsed, (plan.shape, text)
        checked += 1
    assert checked > 40 and len(shapes) >= 15


def test_an_empty_prompts_dir_means_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("not a prompt file")  # would be an error if the current directory were read
    assert load("").hash == load().hash
    with Run.open(tmp_path / "run", {"prompts": {"dir": ""}}, lm=ScriptedLM()) as run:
        assert run.config.prompts.dir is None and run.config.prompts.hash == load().hash
