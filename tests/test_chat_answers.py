"""Answers in the shapes real chat models write (GPT-4o-mini, Llama-3-Instruct, Qwen2.5-Instruct, Mistral, Gemma,
DeepSeek-R1 with its <think> block, small models like SmolLM), each with what a careful human would extract.

The shapes were written from what such models produce, independently of the parser: a failing case means the
parser and a human disagree about a realistic answer."""

from __future__ import annotations

import pytest

from selfinstruct.lm import Completion
from selfinstruct.stages.bootstrap import parse_instructions
from selfinstruct.stages.classify import parse_answer
from selfinstruct.stages.prepare import parse_instances


def lines(*parts: str) -> str:
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------------------------
# Bootstrap: the model was asked for 8 new tasks, one per line, numbered, with no introduction and no closing.
# ---------------------------------------------------------------------------------------------------------------

TASKS = [
    "Write a haiku about autumn rain.",
    "Summarize the plot of Romeo and Juliet in three sentences.",
    "Convert the given temperature from Celsius to Fahrenheit.",
    "Suggest three names for a coffee shop near a university.",
    "Explain why the sky appears blue during the day.",
    "Rewrite the following sentence in the passive voice.",
    "List five fruits that are high in vitamin C.",
    "Classify the given movie review as positive or negative.",
]

TITLED = [
    ("Recipe Scaling", "Double the quantities in the given recipe."),
    ("Email Reply", "Write a polite reply declining a meeting invitation."),
    ("Word Problem", "Solve a word problem about splitting a restaurant bill among friends."),
    ("Sentiment Analysis", "Classify the sentiment of the given tweet as positive, negative, or neutral."),
    ("Travel Planning", "Create a three-day itinerary for a weekend trip to Rome."),
    ("Grammar Check", "Correct the grammatical errors in the given paragraph."),
    ("Fun Facts", "Share an interesting fact about octopuses."),
    ("Definition", "Define the word serendipity in simple terms."),
]
TITLED_TASKS = [task for _, task in TITLED]


def numbered(tasks: list[str], marker: str = "{n}. ") -> list[str]:
    return [marker.format(n=n) + task for n, task in enumerate(tasks, 1)]


BOOTSTRAP_CASES = [
    pytest.param(lines(*numbered(TASKS)), TASKS, id="numbered_dot_bare"),
    pytest.param(lines(*numbered(TASKS, "{n}) ")), TASKS, id="numbered_paren"),
    pytest.param(
        lines("Sure! Here are eight new tasks:", "", *numbered(TASKS), "", "Let me know if you need more!"),
        TASKS,
        id="gpt_preamble_and_closing",
    ),
    pytest.param(
        lines(
            "Here are 8 new tasks:",
            "",
            *numbered(TASKS),
            "",
            "Let me know if you'd like me to generate more tasks or if you have any specific requests!",
        ),
        TASKS,
        id="llama_preamble_and_offer",
    ),
    pytest.param(
        lines(
            "Certainly! Below are eight new and diverse tasks:",
            "",
            *numbered(TASKS),
            "",
            "Feel free to ask if you need any modifications or additional tasks!",
        ),
        TASKS,
        id="qwen_certainly",
    ),
    pytest.param(
        lines(
            " Here are eight new tasks for you:",
            "",
            *numbered(TASKS),
            "",
            "These tasks cover a range of skills, from creative writing to basic science and arithmetic.",
        ),
        TASKS,
        id="mistral_leading_space_and_summary",
    ),
    pytest.param(
        lines("## New Tasks", "", *numbered(TASKS), "", "I hope these tasks are helpful!"),
        TASKS,
        id="gemma_markdown_title",
    ),
    pytest.param(
        lines("Here are 8 new tasks:", "", *numbered(TASKS, "- ")),
        TASKS,
        id="dash_bullets",
    ),
    pytest.param(lines(*numbered(TASKS, "* ")), TASKS, id="star_bullets"),
    pytest.param(
        lines("New tasks:", *numbered(TASKS, "• ")),
        TASKS,
        id="unicode_bullets",
    ),
    pytest.param(
        lines(*[line + "\n" for line in numbered(TASKS, "**Task {n}:** ")]),
        TASKS,
        id="bold_task_labels",
    ),
    pytest.param(lines(*numbered(TASKS, "Task {n}: ")), TASKS, id="plain_task_labels"),
    pytest.param(
        lines(*[f"### Task {n}\n{task}\n" for n, task in enumerate(TASKS, 1)]),
        TASKS,
        id="heading_task_then_line",
    ),
    pytest.param(
        lines(*[f"**Task {n}:**\n{task}\n" for n, task in enumerate(TASKS, 1)]),
        TASKS,
        id="bold_task_label_then_line",
    ),
    pytest.param(
        lines(
            "<think>",
            "Okay, the user wants me to come up with eight new tasks that are different from the examples.",
            "Let me brainstorm a few ideas:",
            "1. Maybe something about poetry.",
            "2. Something with a temperature conversion.",
            "3. A science explanation could work too.",
            "Alright, I think these are diverse enough. Let me write them out.",
            "</think>",
            "",
            *numbered(TASKS),
        ),
        TASKS,
        id="r1_think_block",
    ),
    pytest.param(
        lines(
            "<think>",
            "The user wants 8 tasks. - one about poetry, - one about fruit. OK.",
            "</think>",
            "",
            "Here are the tasks:",
            "",
            *numbered(TASKS, "- "),
        ),
        TASKS,
        id="r1_think_then_preamble_bullets",
    ),
    pytest.param(lines(*[line + "\n" for line in numbered(TASKS)]), TASKS, id="blank_lines_between"),
    pytest.param(
        lines(
            "1. Write a haiku about autumn rain.",
            "2. Write a short story about a robot who",
            "   learns to paint with watercolors.",
            "3. Convert the given temperature from Celsius to Fahrenheit.",
            "4. Suggest three names for a coffee shop near a university.",
        ),
        [
            "Write a haiku about autumn rain.",
            "Write a short story about a robot who learns to paint with watercolors.",
            "Convert the given temperature from Celsius to Fahrenheit.",
            "Suggest three names for a coffee shop near a university.",
        ],
        id="item_wrapped_indented",
    ),
    pytest.param(
        lines(
            "1. Write a haiku about autumn rain.",
            "2. Read the following paragraph and identify its main idea, then",
            "suggest a suitable title for it.",
            "3. Convert the given temperature from Celsius to Fahrenheit.",
        ),
        [
            "Write a haiku about autumn rain.",
            "Read the following paragraph and identify its main idea, then suggest a suitable title for it.",
            "Convert the given temperature from Celsius to Fahrenheit.",
        ],
        id="item_wrapped_unindented",
    ),
    pytest.param(
        lines(
            "**Writing Tasks**",
            *numbered(TASKS[:3]),
            "",
            "**Reasoning Tasks**",
            *numbered(TASKS[3:5]),
            "",
            "**Everyday Tasks**",
            *numbered(TASKS[5:]),
        ),
        TASKS,
        id="bold_category_headings_numbering_restarts",
    ),
    pytest.param(
        lines(
            "Here are eight new tasks, grouped by category:",
            "",
            "### Creative Writing",
            "1. " + TASKS[0],
            "2. " + TASKS[1],
            "",
            "### Science and Math",
            "3. " + TASKS[2],
            "4. " + TASKS[3],
            "5. " + TASKS[4],
            "",
            "### Language",
            "6. " + TASKS[5],
            "7. " + TASKS[6],
            "8. " + TASKS[7],
        ),
        TASKS,
        id="heading_sections_numbering_continues",
    ),
    pytest.param(
        lines("Here are eight new tasks:", "", *TASKS),
        TASKS,
        id="plain_lines_after_preamble",
    ),
    pytest.param(lines(*TASKS), TASKS, id="plain_lines_bare"),
    pytest.param(
        lines(*numbered(TASKS), "", "Note: These tasks vary in difficulty and cover several different domains."),
        TASKS,
        id="trailing_note",
    ),
    pytest.param(
        lines(
            *numbered(TASKS),
            "",
            "---",
            "",
            "*These tasks are designed to be diverse in both topic and format.*",
        ),
        TASKS,
        id="rule_then_italic_closing",
    ),
    pytest.param(
        lines(*[f"{n}. **{title}:** {task}" for n, (title, task) in enumerate(TITLED, 1)]),
        TITLED_TASKS,
        id="bold_title_colon_inside",
    ),
    pytest.param(
        lines(
            "Sure, here are eight new tasks:",
            "",
            *[f"{n}. **{title}**: {task}" for n, (title, task) in enumerate(TITLED, 1)],
        ),
        TITLED_TASKS,
        id="bold_title_colon_outside",
    ),
    pytest.param(
        lines(*[f"{n}. **{title}** - {task}" for n, (title, task) in enumerate(TITLED, 1)]),
        TITLED_TASKS,
        id="bold_title_dash",
    ),
    pytest.param(
        lines(*[f"**Task {n}: {title}**\n{task}\n" for n, (title, task) in enumerate(TITLED, 1)]),
        TITLED_TASKS,
        id="bold_titled_heading_then_line",
    ),
    pytest.param(
        lines(*[f"{n}. **{task}**" for n, task in enumerate(TASKS, 1)]),
        TASKS,
        id="whole_item_bold",
    ),
    pytest.param(
        lines(*[f'{n}. "{task}"' for n, task in enumerate(TASKS, 1)]),
        TASKS,
        id="quoted_items",
    ),
    pytest.param(
        lines(
            "1. Explain the difference between *affect* and *effect* with an example.",
            "2. Write a **short** poem about the _ocean_ at night.",
            "3. Describe the __main__ causes of the French Revolution.",
        ),
        [
            "Explain the difference between affect and effect with an example.",
            "Write a short poem about the ocean at night.",
            "Describe the main causes of the French Revolution.",
        ],
        id="inline_emphasis",
    ),
    pytest.param(
        lines(
            "1.  write   a haiku about  autumn rain.",
            "2. summarize the plot of Romeo and Juliet in three sentences.  ",
            "3.\tconvert the given temperature from Celsius to Fahrenheit.",
        ),
        TASKS[:3],
        id="lowercase_and_messy_spaces",
    ),
    pytest.param(lines(*numbered(TASKS, "**{n}.** ")), TASKS, id="bold_numbers"),
    pytest.param(lines(*numbered(TASKS, "{n}.")), TASKS, id="smollm_no_space_after_number"),
    pytest.param(
        lines(
            "1. Rewrite the sentence in the passive voice: The dog chased the ball.",
            "2. Answer the question: What is the capital of Australia?",
            "3. Sort the following numbers in ascending order: 42, 7, 19, 3.",
        ),
        [
            "Rewrite the sentence in the passive voice: The dog chased the ball.",
            "Answer the question: What is the capital of Australia?",
            "Sort the following numbers in ascending order: 42, 7, 19, 3.",
        ],
        id="colon_inside_task_is_not_a_title",
    ),
    pytest.param(lines("```", *numbered(TASKS), "```"), TASKS, id="list_in_code_fence"),
]


@pytest.mark.parametrize(("text", "expected"), BOOTSTRAP_CASES)
def test_bootstrap_answer(text: str, expected: list[str]) -> None:
    parsed = parse_instructions(Completion(text, "stop", 0, 0), chat=True)
    assert [item for item, problem in parsed if problem == ""] == expected


# ---------------------------------------------------------------------------------------------------------------
# Classify: is the task a classification task? Asked to answer Yes or No.
# ---------------------------------------------------------------------------------------------------------------

CLASSIFY_CASES = [
    pytest.param("Yes", "yes", id="bare_yes"),
    pytest.param("No.", "no", id="bare_no_period"),
    pytest.param("YES", "yes", id="upper_yes"),
    pytest.param("yes.", "yes", id="lower_yes_period"),
    pytest.param("**Answer:** Yes", "yes", id="bold_answer_label"),
    pytest.param("Answer: no", "no", id="answer_label_lower"),
    pytest.param("Answer: **No**", "no", id="answer_label_bold_value"),
    pytest.param("The answer is: Yes", "yes", id="the_answer_is"),
    pytest.param("Classification task: Yes", "yes", id="field_style"),
    pytest.param(
        "This is a classification task because the output is one of a fixed set of labels.",
        "yes",
        id="sentence_is_classification",
    ),
    pytest.param("This is not a classification task; it asks for free-form text.", "no", id="sentence_not"),
    pytest.param("It is not a classification task.", "no", id="it_is_not"),
    pytest.param("This task isn't a classification task.", "no", id="isnt_contraction"),
    pytest.param("That's not a classification task.", "no", id="thats_not"),
    pytest.param("It's a classification task.", "yes", id="its_a"),
    pytest.param("Not a classification task.", "no", id="not_a_fragment"),
    pytest.param("The task is a classification task, as it involves choosing a category.", "yes", id="the_task_is_a"),
    pytest.param("No, it isn't.", "no", id="no_it_isnt"),
    pytest.param("Yes - the output is one of three labels.", "yes", id="yes_dash_reason"),
    pytest.param(
        'Yes, this is a classification task: the output is either "spam" or "not spam".',
        "yes",
        id="yes_then_label_containing_not",
    ),
    pytest.param(
        "No — although the task mentions categories, the expected output is a full explanation.",
        "no",
        id="no_em_dash_reason",
    ),
    pytest.param(
        lines(
            "<think>",
            "The task asks to write a poem about the sea. Is it classification? At first glance maybe yes, but",
            "the output is free text, not one label from a set.",
            "</think>",
            "",
            "No",
        ),
        "no",
        id="r1_think_then_no",
    ),
    pytest.param(
        lines(
            "<think>",
            "Detecting whether an email is spam... the output is not free text, it is a label.",
            "</think>",
            "",
            "**Yes**",
        ),
        "yes",
        id="r1_think_then_bold_yes",
    ),
    pytest.param("Based on the examples, yes.", "yes", id="based_on_examples"),
    pytest.param(
        lines(
            "**Yes**",
            "",
            "This task requires the model to sort the email into one of two categories: spam or not spam.",
        ),
        "yes",
        id="gemma_bold_yes_then_explanation",
    ),
    pytest.param(
        lines("**No**", "", "The task requires generating a paragraph, which is open-ended."),
        "no",
        id="bold_no_then_explanation",
    ),
    pytest.param(
        lines("Yes.", "", "Explanation: The output is one of the labels positive, negative, or neutral."),
        "yes",
        id="yes_then_explanation_block",
    ),
    pytest.param(
        lines("No", "", "This task asks the model to write a poem, so there's no fixed set of labels."),
        "no",
        id="no_then_explanation_with_no_word",
    ),
    pytest.param(
        "No, this is not a classification task. The output is an open-ended essay.", "no", id="no_comma_sentence"
    ),
    pytest.param("The task is not classification, so the answer is No.", "no", id="reasoned_no"),
    pytest.param("Is it a classification task? Yes.", "yes", id="restated_question_then_yes"),
    pytest.param("Definitely yes.", "yes", id="definitely_yes"),
    pytest.param("Yes/No", None, id="both_slash"),
    pytest.param("Yes / No", None, id="both_spaced_slash"),
    pytest.param("I'm not sure.", None, id="unsure"),
    pytest.param("", None, id="empty"),
]


@pytest.mark.parametrize(("text", "expected"), CLASSIFY_CASES)
def test_classify_answer(text: str, expected: str | None) -> None:
    assert parse_answer(text) == expected


# ---------------------------------------------------------------------------------------------------------------
# Instances: "Example N / Input: / Output:" for other tasks, "Class label: / Input:" for classification tasks.
# ---------------------------------------------------------------------------------------------------------------

HAIKU_1 = lines("Crimson leaves falling", "Whispers of the autumn wind", "The year lets go now")
HAIKU_2 = lines("Rain taps on the roof", "A kettle hums in the dark", "Nobody is home")
COOKIES = lines(
    "1. Preheat the oven to 180 degrees.",
    "2. Cream the butter and sugar.",
    "3. Fold in the flour and chocolate chips.",
    "4. Bake for 12 minutes.",
)
PANCAKES = lines("1. Whisk the eggs, milk, and flour.", "2. Heat a buttered pan.", "3. Cook each side until golden.")
LIMERICK = lines(
    "There once was a cat from Peru",
    "Who dreamed he was eating a shoe",
    "He woke with a fright",
    "In the middle of the night",
    "And found that his dream had come true",
)
EMAIL = lines("Dear team,", "The weekly meeting is moved to Friday at 3 pm.", "Best, Anna")

INSTANCE_CASES = [
    pytest.param(
        lines(
            "Example 1",
            "Input: The cat sat on the mat.",
            "Output: Le chat était assis sur le tapis.",
            "",
            "Example 2",
            "Input: I like apples.",
            "Output: J'aime les pommes.",
        ),
        False,
        [("The cat sat on the mat.", "Le chat était assis sur le tapis."), ("I like apples.", "J'aime les pommes.")],
        id="paper_layout",
    ),
    pytest.param(
        lines(
            "**Example 1**",
            "**Input:** What is 12 times 8?",
            "**Output:** 96",
            "",
            "**Example 2**",
            "**Input:** What is 15 plus 27?",
            "**Output:** 42",
        ),
        False,
        [("What is 12 times 8?", "96"), ("What is 15 plus 27?", "42")],
        id="bold_markers_colon_inside",
    ),
    pytest.param(
        lines(
            "Example 1:",
            "**Input**: The quick brown fox jumps over the lazy dog.",
            "**Output**: 9",
            "",
            "Example 2:",
            "**Input**: Hello world",
            "**Output**: 2",
        ),
        False,
        [("The quick brown fox jumps over the lazy dog.", "9"), ("Hello world", "2")],
        id="bold_markers_colon_outside",
    ),
    pytest.param(
        lines(
            "### Example 1",
            "**Input:** apple, banana, cherry",
            "**Output:** cherry, banana, apple",
            "",
            "### Example 2",
            "**Input:** red, green, blue",
            "**Output:** blue, green, red",
        ),
        False,
        [("apple, banana, cherry", "cherry, banana, apple"), ("red, green, blue", "blue, green, red")],
        id="markdown_heading_examples",
    ),
    pytest.param(
        lines(
            "**Example 1:**",
            "Input: She don't like coffee.",
            "Output: She doesn't like coffee.",
            "",
            "**Example 2:**",
            "Input: Me and him went to the store.",
            "Output: He and I went to the store.",
        ),
        False,
        [
            ("She don't like coffee.", "She doesn't like coffee."),
            ("Me and him went to the store.", "He and I went to the store."),
        ],
        id="bold_example_colon_headings",
    ),
    pytest.param(
        lines(
            "Here are some examples:",
            "",
            "Example 1",
            "Input: 25 degrees Celsius",
            "Output: 77 degrees Fahrenheit",
            "",
            "Example 2",
            "Input: 100 degrees Celsius",
            "Output: 212 degrees Fahrenheit",
            "",
            "I hope this helps!",
        ),
        False,
        [("25 degrees Celsius", "77 degrees Fahrenheit"), ("100 degrees Celsius", "212 degrees Fahrenheit")],
        id="preamble_and_closing",
    ),
    pytest.param(
        lines("Example 1", "Output: " + HAIKU_1, "", "Example 2", "Output: " + HAIKU_2),
        False,
        [("", HAIKU_1), ("", HAIKU_2)],
        id="no_input_multiline_output",
    ),
    pytest.param(
        lines(
            "Example 1",
            "Input: None",
            "Output: Why did the scarecrow win an award? Because he was outstanding in his field.",
            "",
            "Example 2",
            "Input: N/A",
            "Output: What do you call a fake noodle? An impasta.",
        ),
        False,
        [
            ("", "Why did the scarecrow win an award? Because he was outstanding in his field."),
            ("", "What do you call a fake noodle? An impasta."),
        ],
        id="input_none_and_na",
    ),
    pytest.param(
        lines(
            "Example 1",
            "- Input: The meeting starts at 10 am.",
            "- Output: La reunión empieza a las 10 de la mañana.",
            "",
            "Example 2",
            "- Input: Where is the library?",
            "- Output: ¿Dónde está la biblioteca?",
        ),
        False,
        [
            ("The meeting starts at 10 am.", "La reunión empieza a las 10 de la mañana."),
            ("Where is the library?", "¿Dónde está la biblioteca?"),
        ],
        id="bulleted_markers",
    ),
    pytest.param(
        lines(
            "Task: Convert the given temperature from Celsius to Fahrenheit.",
            "",
            "Example 1",
            "Input: 0°C",
            "Output: 32°F",
            "",
            "Example 2",
            "Input: 37°C",
            "Output: 98.6°F",
        ),
        False,
        [("0°C", "32°F"), ("37°C", "98.6°F")],
        id="restated_task_line",
    ),
    pytest.param(
        lines(
            "Example 1",
            "Input: I absolutely loved this movie!",
            "Output: **Positive**",
            "",
            "Example 2",
            "Input: The plot was slow and boring.",
            "Output: **Negative**",
        ),
        False,
        [("I absolutely loved this movie!", "Positive"), ("The plot was slow and boring.", "Negative")],
        id="bold_whole_values",
    ),
    pytest.param(
        lines(
            "Example 1",
            "Input: Chocolate chip cookies",
            "Output:",
            COOKIES,
            "",
            "Example 2",
            "Input: Pancakes",
            "Output:",
            PANCAKES,
        ),
        False,
        [("Chocolate chip cookies", COOKIES), ("Pancakes", PANCAKES)],
        id="numbered_list_output_on_next_lines",
    ),
    pytest.param(
        lines(
            "Input: The sun rises in the east.",
            "Output: True",
            "",
            "Input: Spiders have six legs.",
            "Output: False",
        ),
        False,
        [("The sun rises in the east.", "True"), ("Spiders have six legs.", "False")],
        id="no_example_headings",
    ),
    pytest.param(
        lines(
            "<think>",
            "The user wants examples for sorting numbers. Example 1: Input: 3, 1, 2 Output: 1, 2, 3. Fine.",
            "Output: maybe also a case with negative numbers.",
            "</think>",
            "",
            "Example 1",
            "Input: 5, 3, 9, 1",
            "Output: 1, 3, 5, 9",
            "",
            "Example 2",
            "Input: -2, 8, 0",
            "Output: -2, 0, 8",
        ),
        False,
        [("5, 3, 9, 1", "1, 3, 5, 9"), ("-2, 8, 0", "-2, 0, 8")],
        id="r1_think_block",
    ),
    pytest.param(
        lines(
            "Example 1",
            "Input:",
            EMAIL,
            "Output: The weekly meeting has been rescheduled to Friday at 3 pm.",
        ),
        False,
        [(EMAIL, "The weekly meeting has been rescheduled to Friday at 3 pm.")],
        id="multiline_input_on_next_lines",
    ),
    pytest.param(
        lines(
            "### Example 1",
            "**Input:** The Great Wall of China",
            "**Output:** Asia",
            "",
            "---",
            "",
            "### Example 2",
            "**Input:** The Eiffel Tower",
            "**Output:** Europe",
            "",
            "---",
            "",
            "Let me know if you'd like more examples!",
        ),
        False,
        [("The Great Wall of China", "Asia"), ("The Eiffel Tower", "Europe")],
        id="gpt_horizontal_rules_and_offer",
    ),
    pytest.param(
        lines(
            "Example 1",
            "Output:",
            LIMERICK,
            "",
            "These examples show the classic AABBA rhyme scheme of a limerick.",
        ),
        False,
        [("", LIMERICK)],
        id="closing_after_multiline_output",
    ),
    pytest.param(
        lines(
            "Sure! Here are 3 examples for this task:",
            "",
            "**Example 1**",
            "- **Input:** 48 and 18",
            "- **Output:** 6",
            "",
            "**Example 2**",
            "- **Input:** 17 and 5",
            "- **Output:** 1",
            "",
            "**Example 3**",
            "- **Input:** 100 and 75",
            "- **Output:** 25",
        ),
        False,
        [("48 and 18", "6"), ("17 and 5", "1"), ("100 and 75", "25")],
        id="bold_bulleted_markers_with_preamble",
    ),
    pytest.param(
        lines(
            "Class label: Positive",
            "Input: I love this phone, the camera is amazing.",
            "",
            "Class label: Negative",
            "Input: The battery died after one day.",
            "",
            "Class label: Neutral",
            "Input: The phone comes in black and white.",
        ),
        True,
        [
            ("I love this phone, the camera is amazing.", "Positive"),
            ("The battery died after one day.", "Negative"),
            ("The phone comes in black and white.", "Neutral"),
        ],
        id="cls_paper_layout",
    ),
    pytest.param(
        lines(
            "**Class label:** Spam",
            "**Input:** Congratulations! You've won a free cruise. Click here to claim your prize.",
            "",
            "**Class label:** Not spam",
            "**Input:** Hi Sam, are we still on for lunch tomorrow?",
        ),
        True,
        [
            ("Congratulations! You've won a free cruise. Click here to claim your prize.", "Spam"),
            ("Hi Sam, are we still on for lunch tomorrow?", "Not spam"),
        ],
        id="cls_bold_markers",
    ),
    pytest.param(
        lines(
            "Label: True",
            "Input: The Earth orbits the Sun.",
            "",
            "Label: False",
            "Input: The Moon is made of cheese.",
        ),
        True,
        [("The Earth orbits the Sun.", "True"), ("The Moon is made of cheese.", "False")],
        id="cls_label_alias",
    ),
    pytest.param(
        lines(
            "Here are some examples for each class:",
            "",
            "Class label: Sports",
            "Input: The Lakers won their third game in a row last night.",
            "",
            "Class label: Politics",
            "Input: The senate passed the new budget bill on Tuesday.",
            "",
            "I hope this helps!",
        ),
        True,
        [
            ("The Lakers won their third game in a row last night.", "Sports"),
            ("The senate passed the new budget bill on Tuesday.", "Politics"),
        ],
        id="cls_preamble_and_closing",
    ),
    pytest.param(
        lines(
            "Class label: **Positive**",
            "Input: What a wonderful day at the beach!",
            "",
            "Class label: **Negative**",
            "Input: The service at this restaurant was terrible.",
        ),
        True,
        [
            ("What a wonderful day at the beach!", "Positive"),
            ("The service at this restaurant was terrible.", "Negative"),
        ],
        id="cls_bold_label_values",
    ),
    pytest.param(
        lines(
            "### Example 1",
            "Class label: Even",
            "Input: 42",
            "",
            "### Example 2",
            "Class label: Odd",
            "Input: 17",
        ),
        True,
        [("42", "Even"), ("17", "Odd")],
        id="cls_heading_examples",
    ),
    pytest.param(
        lines(
            "- Class label: Formal",
            "- Input: I would be grateful if you could send me the report by Friday.",
            "",
            "- Class label: Informal",
            "- Input: Hey, can you send me that report?",
        ),
        True,
        [
            ("I would be grateful if you could send me the report by Friday.", "Formal"),
            ("Hey, can you send me that report?", "Informal"),
        ],
        id="cls_bulleted_markers",
    ),
    pytest.param(
        lines(
            "<think>",
            "The labels are Yes and No. Class label: Yes Input: something that is a question. OK, let me write.",
            "</think>",
            "",
            "Class label: Yes",
            "Input: Is it going to rain tomorrow?",
            "",
            "Class label: No",
            "Input: It is going to rain tomorrow.",
        ),
        True,
        [("Is it going to rain tomorrow?", "Yes"), ("It is going to rain tomorrow.", "No")],
        id="cls_r1_think_block",
    ),
    pytest.param(
        lines(
            "Task: Classify the animal as a mammal, bird, or fish.",
            "",
            "Class label: Mammal",
            "Input: Dolphin",
            "",
            "Class label: Bird",
            "Input: Penguin",
            "",
            "Class label: Fish",
            "Input: Salmon",
        ),
        True,
        [("Dolphin", "Mammal"), ("Penguin", "Bird"), ("Salmon", "Fish")],
        id="cls_restated_task_line",
    ),
    pytest.param(
        lines(
            "Class label: Spam",
            "Input: URGENT: Your account has been suspended.",
            "Verify your details at the link below within 24 hours.",
            "",
            "Class label: Not spam",
            "Input: Your package was delivered to the front desk this morning.",
        ),
        True,
        [
            (
                "URGENT: Your account has been suspended.\nVerify your details at the link below within 24 hours.",
                "Spam",
            ),
            ("Your package was delivered to the front desk this morning.", "Not spam"),
        ],
        id="cls_multiline_input",
    ),
    pytest.param(
        lines(
            "**Example 1:**",
            "**Class label:** Question",
            "**Input:** Where is the nearest train station?",
            "",
            "**Example 2:**",
            "**Class label:** Statement",
            "**Input:** The train station is two blocks away.",
        ),
        True,
        [("Where is the nearest train station?", "Question"), ("The train station is two blocks away.", "Statement")],
        id="cls_bold_example_headings_and_markers",
    ),
    pytest.param(
        lines(
            "## Examples",
            "",
            "**Class label:** Fruit",
            "**Input:** Mango",
            "",
            "**Class label:** Vegetable",
            "**Input:** Carrot",
            "",
            "Let me know if you'd like more examples!",
        ),
        True,
        [("Mango", "Fruit"), ("Carrot", "Vegetable")],
        id="cls_gemma_title_and_offer",
    ),
]


@pytest.mark.parametrize(("text", "classification", "expected"), INSTANCE_CASES)
def test_instances_answer(text: str, classification: bool, expected: list[tuple[str, str]]) -> None:
    parsed = parse_instances(Completion(text, "stop", 0, 0), classification)
    assert [(i, o) for i, o, problem in parsed if problem == ""] == expected
