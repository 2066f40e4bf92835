"""One test per row of docs/paper-parity.md: each parsing and filtering rule of the paper's four scripts, and
what selfinstruct does. The fixture texts are this project's own. A test named test_<ROW>_... pins row <ROW>;
the last tests check that the table, these tests and the README's "Where we differ" list agree."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from selfinstruct.config import ClassifyConfig, Config, InstancesConfig, from_dict
from selfinstruct.export import (
    PAPER_TEMPLATES_WITH_INPUT,
    PAPER_TEMPLATES_WITHOUT_INPUT,
    finetuning_records,
    paper_finetuning_records,
)
from selfinstruct.filters import check_instruction, instruction_filters
from selfinstruct.lm import Completion
from selfinstruct.stages import bootstrap, classify, instances
from selfinstruct.stages.bootstrap import clean_instruction, parse_instructions, sample_prompt_instructions
from selfinstruct.stages.classify import parse_answer
from selfinstruct.stages.prepare import judge_instances, parse_instances
from selfinstruct.stages.prompts import load as load_prompts

ROOT = Path(__file__).resolve().parent.parent
FILTERS = instruction_filters(4, 150)
PROMPTS = load_prompts()


def encode_prompt(instructions: list[str], classification: bool = False) -> str:
    return bootstrap.encoder(PROMPTS, chat=False, classification=classification)(instructions)


def completion(text: str, finish_reason: str = "stop") -> Completion:
    return Completion(text, finish_reason, 0, 0)


def gen(text: str, finish_reason: str = "stop") -> list[tuple[str, str, str]]:
    return parse_instances(completion(text, finish_reason), classification=False)


def clf(text: str, finish_reason: str = "stop") -> list[tuple[str, str, str]]:
    return parse_instances(completion(text, finish_reason), classification=True)


def verdicts(parsed: list[tuple[str, str, str]], limit: int = 5, conflicts: str = "task") -> list[tuple[str, str]]:
    return [(v, r) for *_, v, r in judge_instances(parsed, limit, random.Random(0), conflicts)]


# --- B: bootstrap -------------------------------------------------------------------------------


def test_B1_prompt_lists_eight_numbered_instructions_and_opens_the_ninth():
    prompt = encode_prompt([f"Task  number\n{i}:" for i in range(1, 9)])
    assert prompt.startswith("Come up with a series of tasks:\n1. Task number 1\n")
    assert prompt.endswith("\n8. Task number 8\n9.")


def test_B2_sample_is_two_machine_and_six_seed_instructions_shuffled():
    seeds, machine = [f"s{i}" for i in range(20)], [f"m{i}" for i in range(5)]
    shown = sample_prompt_instructions(random.Random(3), seeds, machine)
    assert len(shown) == 8 and sum(s in machine for s in shown) == 2


def test_B3_classification_seeds_only_header():
    assert encode_prompt(["Tell whether the number is odd."], classification=True).startswith(
        "Come up with a series of classification tasks. Try to specify the possible output labels when possible.\n"
    )


def test_B4_bootstrap_sampling_is_the_papers():
    s = Config().bootstrap.sampling
    assert (s.temperature, s.top_p, s.max_tokens, s.frequency_penalty, s.presence_penalty) == (0.7, 0.5, 1024, 0, 2)
    assert s.stop == ("\n\n", "\n16", "16.", "16 .")


def test_B5_items_split_at_a_number_and_a_dot_at_line_start():
    items = parse_instructions(completion(" Name three rivers.\n10. Add 2. to 3\n11.\nSort the list below."))
    assert [t for t, _ in items] == ["Name three rivers.", "Add 2. to 3", "Sort the list below."]


def test_B6_a_cut_off_response_keeps_its_complete_items_and_records_the_last_as_truncated():
    items = parse_instructions(completion(" Name three rivers.\n10. Write a haiku about the se", "length"))
    assert items == [("Name three rivers.", ""), ("Write a haiku about the se", "truncated")]


def test_B7_whitespace_is_collapsed():
    assert clean_instruction("  Translate   the\n\tsentence ") == "Translate the sentence"


def test_B8_only_the_first_letter_is_upper_cased():
    assert clean_instruction("explain how NASA names its rovers") == "Explain how NASA names its rovers"


@pytest.mark.parametrize("text, keep", [("Name three rivers", False), ("Name three long rivers", True)])
def test_B9_at_least_four_and_at_most_150_words(text, keep):
    assert check_instruction(text, FILTERS)[0] is keep
    assert check_instruction("word " * 151, FILTERS) == (False, "too_long (151 words > 150)")


@pytest.mark.parametrize("text", ["Describe the IMAGE in detail.", "Go to the website and order a pizza."])
def test_B10_blocked_keywords_whole_words_any_case(text):
    assert check_instruction(text, FILTERS)[1].startswith("keyword")
    assert check_instruction("Explain what mapping a network means.", FILTERS)[0]


@pytest.mark.parametrize("text", ["Write a program that sorts numbers.", "Write A Program that sorts numbers."])
def test_B11_write_a_program_in_any_case(text):
    assert check_instruction(text, FILTERS) == (False, "starts_with_write_a_program")


def test_B12_leading_punctuation():
    assert check_instruction('"Quote the first line of the poem.', FILTERS) == (False, "starts_with_punctuation")


def test_B13_leading_non_ascii():
    assert check_instruction("Écris un poème sur la mer.", FILTERS) == (False, "starts_with_non_ascii")


def test_B14_novelty_threshold_is_strictly_greater_than_0_7():
    from selfinstruct.similarity import SimilarityIndex

    index = SimilarityIndex(["write a short poem about the sea at night"], 0.7, "rouge")
    assert index.find_similar("write a short poem about the sea at dawn").nearest is not None
    assert index.find_similar("describe the main causes of inflation").nearest is None


def test_B15_most_similar_keeps_the_ten_nearest_and_averages_them(tmp_path):
    import json

    from conftest import ScriptedLM

    from selfinstruct.pipeline import Run

    with Run.open(tmp_path / "run", {"num_instructions": 5}, lm=ScriptedLM()) as run:
        run.bootstrap()
        rows = run.store.machine_instruction_rows()
    assert rows
    for row in rows:
        scores = [score for _, score in json.loads(row["neighbours"])]
        assert len(scores) == 10 and scores == sorted(scores, reverse=True)
        assert row["mean_rouge"] == pytest.approx(sum(scores) / 10)  # the 10 nearest, not the whole pool


def test_B16_a_context_error_is_retried_once_with_the_max_tokens_that_fit(tmp_path):
    from conftest import ScriptedLM

    from selfinstruct.lm import BackendError
    from selfinstruct.pipeline import Run

    asked: list[int] = []

    class TightContext(ScriptedLM):
        async def complete(self, prompt, sampling, seed):
            asked.append(sampling.max_tokens)
            if sampling.max_tokens > 921:  # "maximum context length is 4097 tokens ... (3176 in your prompt"
                raise BackendError("context length exceeded", rejected=True, context_overflow=True, fits=921)
            return await super().complete(prompt, sampling, seed)

    with Run.open(tmp_path / "run", {"num_instructions": 2}, lm=TightContext()) as run:
        run.bootstrap()
        assert len(run.store.accepted("machine")) >= 2
    assert asked[:2] == [1024, 921]


def test_B17_markdown_and_chatter_are_no_part_of_an_item():
    items = parse_instructions(
        completion(" **Name three rivers in Asia.**\n10. I hope these help!\n11. Sort the list.")
    )
    assert items == [("Name three rivers in Asia.", ""), ("Sort the list.", "")]
    chat = "Sure! Here are more tasks:\n\n- *Name* three rivers in Asia.\n- Sort the given list.\n\nEnjoy!"
    assert [t for t, _ in parse_instructions(completion(chat), chat=True)] == [
        "Name three rivers in Asia.",
        "Sort the given list.",
    ]


# --- C: classify --------------------------------------------------------------------------------


def test_C1_classify_prompt_ends_with_the_task_and_the_question():
    prefix = PROMPTS.fill("classify.txt")
    assert (
        classify.encoder(PROMPTS, chat=False)(" Sort the list. ")
        == f"{prefix}Task: Sort the list.\nIs it classification?"
    )


def test_C2_classify_sampling_is_the_papers():
    s = ClassifyConfig().sampling
    assert (s.temperature, s.top_p, s.max_tokens, s.stop) == (0.0, 0.0, 3, ("\n", "Task"))


@pytest.mark.parametrize(
    "text, label",
    [(" Yes", "yes"), ("yes.", "yes"), (" No", "no"), ("NO", "no"), ("Yes/No", None), ("Maybe", None), ("", None)],
)
def test_C3_yes_or_no_in_any_case_and_nothing_else(text, label):
    assert parse_answer(text) == label


def test_C4_an_unparseable_answer_is_retried_then_unknown(tmp_path):
    from conftest import ScriptedLM

    from selfinstruct.pipeline import Run

    lm = ScriptedLM(classify_answer=" Perhaps")
    with Run.open(tmp_path / "run", {"num_instructions": 3}, lm=lm) as run:
        run.bootstrap()
        run.classify()
        machine = run.store.accepted("machine")
        assert machine and {i.classification for i in machine} == {"unknown"}
        asked = sum(n for (prompt, _), n in lm.calls.items() if prompt.endswith("Is it classification?"))
        assert asked == 3 * len(machine)  # classify.max_attempts, then unknown (never "No")


# --- I: instance generation ---------------------------------------------------------------------


def test_I1_instance_prompt_ends_with_the_task_line():
    prefix = PROMPTS.fill("instances_generation.txt")
    assert instances.encoder(PROMPTS, False, False)("Sort the list. ") == f"{prefix}Task: Sort the list.\n"


def test_I2_instance_sampling_is_the_papers():
    s = InstancesConfig().sampling
    assert (s.temperature, s.top_p, s.presence_penalty, s.max_tokens) == (0.0, 0.0, 1.5, 300)
    assert s.stop == ("Example 6", "Task:")


# --- P: parsing input-first instances -----------------------------------------------------------


def test_P1_example_headings_at_line_start_only():
    text = (
        "Example 1\nInput: a\nOutput: For example, this.\nExample 3 of these is below.\nExample 2:\nInput: b\nOutput: c"
    )
    assert gen(text) == [("a", "For example, this.\nExample 3 of these is below.", ""), ("b", "c", "")]


def test_P2_heading_and_input_on_one_line():
    assert gen("Example 1: Input: 2+2\nOutput: 4\nExample 2: Input: 3+3\nOutput: 6") == [
        ("2+2", "4", ""),
        ("3+3", "6", ""),
    ]


def test_P3_numbered_markers():
    assert gen("Input 1: a cat\nOutput 1: un chat\nInput 2: a dog\nOutput 2: un chien") == [
        ("a cat", "un chat", ""),
        ("a dog", "un chien", ""),
    ]


def test_P4_an_output_ends_at_the_next_marker():
    assert gen("Input: Recipe\nOutput: Recipe card\nOutput: Recipe") == [("Recipe", "Recipe card", "")]
    assert gen("Output: Success\nTask: Something else") == [("", "Success", "")]


def test_P5_text_before_output_without_input_marker_is_the_input():
    assert gen("Example 1\nThe weather is nice.\nOutput: Le temps est beau.") == [
        ("The weather is nice.", "Le temps est beau.", "")
    ]


def test_P6_a_block_without_output_marker_under_an_example_heading_is_the_output():
    assert gen("Example 1\nRoses are red,\nviolets are blue.\nExample 2\nThe sea is wide.") == [
        ("", "Roses are red,\nviolets are blue.", ""),
        ("", "The sea is wide.", ""),
    ]
    assert gen("Just some words with no marker at all.") == [("", "", "no_output_marker")]


def test_P7_an_input_without_output_is_dropped():
    assert verdicts(gen("Input: only an input")) == [("dropped", "empty_output")]


def test_P8_several_pairs_without_example_headings():
    assert gen("Input: a\nOutput: b\nInput: c\nOutput: d") == [("a", "b", ""), ("c", "d", "")]


@pytest.mark.parametrize("none", ["None", "N/A", "none.", "(none)", "No input", "-"])
def test_P9_an_input_that_says_none_is_empty(none):
    assert gen(f"Input: {none}\nOutput: A haiku about rain.") == [("", "A haiku about rain.", "")]


def test_P10_markers_inside_content_do_not_split():
    text = "Input: Explain the word input: what is it?\nOutput: The Output: field of a form holds results."
    assert gen(text) == [("Explain the word input: what is it?", "The Output: field of a form holds results.", "")]
    assert gen("Input: 2+2 Output: 4") == [("2+2", "4", "")]  # one line: the marker inside the line counts


def test_P11_markers_in_any_case():
    assert gen("INPUT: a\noutput: b") == [("a", "b", "")]


def test_P12_the_last_instance_of_a_cut_off_response_is_dropped():
    parsed = gen("Input: a\nOutput: b\nInput: c\nOutput: d is cu", "length")
    assert verdicts(parsed) == [("kept", ""), ("dropped", "truncated")]


def test_P13_safety_net_drops_any_instance_with_a_marker_line():
    assert gen("Input: a\nTask: b\nOutput: c") == [("a\nTask: b", "c", "marker_in_text")]
    assert gen("Input: Input: hello\nOutput: hi") == [("Input: hello", "hi", "marker_in_text")]


def test_P14_decorated_markers_are_markers():
    text = "Sure, here you go:\n\n### Example 1\n- **Input:** 2+2\n- **Output:** **4**\n\n---\n\nHope this helps!"
    assert gen(text) == [("2+2", "4", "")]
    assert clf("Task: Spam or not?\n**Label:** Spam\n**Input:** Win now") == [("Win now", "Spam", "")]


# --- Q: parsing classification (output-first) instances -----------------------------------------


def test_Q1_class_label_markers_at_line_start_any_case_numbered():
    assert clf("class label: Spam\nInput: Win now\nClass Label 2: Not spam\nInput: Lunch?") == [
        ("Win now", "Spam", ""),
        ("Lunch?", "Not spam", ""),
    ]


def test_Q2_the_input_under_the_tasks_own_field_name_stays_as_written():
    assert clf("Class label: Positive\nSentence: I love it.\nClass label: Negative\nSentence: I hate it.") == [
        ("Sentence: I love it.", "Positive", ""),
        ("Sentence: I hate it.", "Negative", ""),
    ]


def test_Q3_the_input_marker_is_removed():
    assert clf("Class label: Even\nInput: 48") == [("48", "Even", "")]


def test_Q4_no_class_label_no_instance():
    assert clf("Input: 48\nOutput: Even") == [("", "", "no_class_label_marker")]


def test_Q5_label_and_input_on_one_line():
    assert clf("Class label: Odd Input: 127") == [("127", "Odd", "")]


def test_Q6_the_last_label_of_a_cut_off_response_is_dropped():
    assert verdicts(clf("Class label: Yes\nInput: x\nClass label: No\nInput: y i", "length")) == [
        ("kept", ""),
        ("dropped", "truncated"),
    ]


# --- F: instance filters ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "instance, reason",
    [
        (("a", "", ""), "empty_output"),
        (("same", "same", ""), "input_equals_output"),
        (("Options:", "b", ""), "input_ends_with_colon"),
        (("a", "The steps are:", ""), "output_ends_with_colon"),
    ],
)
def test_F1_invalid_instances(instance, reason):
    assert verdicts([instance]) == [("dropped", reason)]


def test_F2_validity_before_conflicts():
    assert verdicts([("x", "foo", ""), ("x", "", "")]) == [("kept", ""), ("dropped", "empty_output")]


def test_F3_a_conflict_drops_the_whole_task():
    parsed = [("q", "yes", ""), ("r", "ok", ""), ("q", "no", ""), ("", "free 1", ""), ("", "free 2", "")]
    assert verdicts(parsed) == [
        ("dropped", "same_input_different_output"),
        ("dropped", "task_has_conflicting_instances"),
        ("dropped", "same_input_different_output"),
        ("dropped", "task_has_conflicting_instances"),
        ("dropped", "task_has_conflicting_instances"),
    ]
    assert verdicts(parsed, conflicts="pair") == [
        ("dropped", "same_input_different_output"),
        ("kept", ""),
        ("dropped", "same_input_different_output"),
        ("kept", ""),  # empty inputs never conflict
        ("kept", ""),
    ]


def test_F4_exact_duplicates_after_the_first():
    assert verdicts([("a", "1", ""), ("a", "1", ""), ("b", "2", "")]) == [
        ("kept", ""),
        ("dropped", "duplicate"),
        ("kept", ""),
    ]


def test_F5_over_the_limit_a_seeded_random_sample_is_kept():
    parsed = [(f"in {i}", f"out {i}", "") for i in range(8)]
    kept_sets = set()
    for seed in range(20):
        result = judge_instances(parsed, 5, random.Random(seed))
        kept = tuple(i for i, (*_, v, _) in enumerate(result) if v == "kept")
        assert len(kept) == 5
        assert {r for *_, v, r in result if v == "dropped"} == {"over_instance_limit"}
        kept_sets.add(kept)
        assert judge_instances(parsed, 5, random.Random(seed)) == result  # seeded
    assert len(kept_sets) > 1 and kept_sets != {(0, 1, 2, 3, 4)}


# --- E: fine-tuning encoding --------------------------------------------------------------------

ROWS = [
    {"instruction": f"Instruction {i}", "input": "Sentence: I love it." if i % 2 else "", "output": f"out {i}"}
    for i in range(200)
]


def test_E1_a_random_template_per_instance():
    records = paper_finetuning_records(ROWS, 42)
    with_input = {p.format(i="I", x="X", y="Y") for p, _ in PAPER_TEMPLATES_WITH_INPUT}
    assert len(PAPER_TEMPLATES_WITH_INPUT) == 7 and len(PAPER_TEMPLATES_WITHOUT_INPUT) == 6
    shapes = {re.sub(r"Instruction \d+", "I", r["prompt"]).replace("I love it.", "X") for r in records}
    assert len(shapes) > 8  # many templates in use
    assert shapes & with_input


def test_E2_half_the_inputs_lose_their_single_field_name():
    records = paper_finetuning_records(ROWS, 42)
    with_name = sum("Sentence: I love it." in r["prompt"] for r in records)
    without = sum("I love it." in r["prompt"] and "Sentence:" not in r["prompt"] for r in records)
    assert with_name + without == 100 and 30 < without < 70


def test_E3_half_the_time_blank_lines_in_an_input_become_line_breaks():
    rows = [{"instruction": f"I{i}", "input": "Line one\n\nLine two", "output": "o"} for i in range(100)]
    records = paper_finetuning_records(rows, 1)
    assert 30 < sum("Line one\nLine two" in r["prompt"] for r in records) < 70


def test_E4_duplicate_prompt_completion_pairs_are_removed():
    rows = [{"instruction": "Same task", "input": "", "output": "same"}] * 50
    records = paper_finetuning_records(rows, 7)
    assert len(records) == len({(r["prompt"], r["completion"]) for r in records}) <= 6


def test_E5_shuffled_and_seeded():
    first, again, other = (paper_finetuning_records(ROWS, s) for s in (42, 42, 43))
    assert first == again and first != other
    order = [int(re.search(r"Instruction (\d+)", r["prompt"]).group(1)) for r in first]
    assert order != sorted(order)


def test_E6_the_fixed_template_stays_available():
    records = finetuning_records(ROWS[:2], "fixed", 42)
    assert records[1] == {
        "prompt": "Instruction 1\n\nInput: Sentence: I love it.\n\nOutput:",
        "completion": " out 1<|endoftext|>",
    }


def test_E7_completions_end_with_endoftext():
    assert all(r["completion"].endswith("<|endoftext|>") for r in paper_finetuning_records(ROWS, 3))


def test_E8_seed_tasks_included_by_default():
    assert Config().prepare.include_seed_tasks is True
    assert from_dict({"prepare": {"include_seed_tasks": False}}).prepare.include_seed_tasks is False


# --- the table, the tests and the README agree --------------------------------------------------

_ROW = re.compile(r"^\| \*\*([A-Z]\d+)\*\* \|.*\| (same|different)\b", re.MULTILINE)


def table_rows() -> dict[str, str]:
    return dict(_ROW.findall((ROOT / "docs" / "paper-parity.md").read_text(encoding="utf-8")))


def test_every_row_has_its_test_and_every_test_its_row():
    rows = table_rows()
    tested = {name.split("_")[1] for name in globals() if re.match(r"test_[A-Z]\d+_", name)}
    assert rows and set(rows) == tested


def test_readme_lists_exactly_the_rows_marked_different():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Where we differ from the paper's code", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    listed = set(re.findall(r"^- \*\*([A-Z]\d+)\*\*", section, re.MULTILINE))
    assert listed == {row for row, verdict in table_rows().items() if verdict == "different"}
