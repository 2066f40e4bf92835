"""Configuration: the paper's defaults, TOML overrides and the errors for bad files and values."""

from __future__ import annotations

import dataclasses
import json

import pytest

from selfinstruct.config import Config, ConfigError, Sampling, flatten, from_dict, load_toml


def write(tmp_path, text: str):
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(tmp_path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_toml(path)
    message = str(info.value)
    assert str(path) in message
    return message


# --- defaults: the paper's values (appendix A.1/A.2) --------------------------------------------


def test_bootstrap_defaults_are_the_papers():
    cfg = Config().bootstrap
    assert cfg.sampling == Sampling(
        temperature=0.7,
        top_p=0.5,
        max_tokens=1024,
        frequency_penalty=0.0,
        presence_penalty=2.0,
        stop=("\n\n", "\n16", "16.", "16 ."),
    )
    assert cfg.similarity_threshold == 0.7
    assert (cfg.num_prompt_instructions, cfg.num_machine_instructions) == (8, 2)


def test_classify_defaults_are_the_papers():
    sampling = Config().classify.sampling
    assert sampling.temperature == 0
    assert sampling.max_tokens == 3
    assert sampling.stop == ("\n", "Task")


def test_instances_defaults_are_the_papers():
    sampling = Config().instances.sampling
    assert (sampling.temperature, sampling.top_p) == (0, 0)
    assert sampling.presence_penalty == 1.5
    assert sampling.frequency_penalty == 0
    assert sampling.max_tokens == 300
    assert sampling.stop == ("Example 6", "Task:")


def test_defaults_validate_and_round_trip_through_json():
    config = Config()
    assert config.validate() is config
    assert from_dict({}) == config
    assert json.loads(config.to_json())["bootstrap"]["sampling"]["stop"] == ["\n\n", "\n16", "16.", "16 ."]


# --- TOML overrides -----------------------------------------------------------------------------


def test_toml_overrides_nested_values_and_keeps_the_rest(tmp_path):
    path = write(
        tmp_path,
        """
num_instructions = 200
seed_tasks = "my_seeds.jsonl"

[lm]
backend = "openai"
model = "gpt-4o-mini"
threads = 4

[bootstrap]
similarity_threshold = 0.5

[bootstrap.sampling]
temperature = 1      # an integer where a float is expected is fine
stop = ["\\n\\n", "END"]
""",
    )
    config = load_toml(path)
    assert config.num_instructions == 200
    assert config.seed_tasks == "my_seeds.jsonl"
    assert (config.lm.backend, config.lm.model, config.lm.threads) == ("openai", "gpt-4o-mini", 4)
    assert config.bootstrap.similarity_threshold == 0.5
    assert config.bootstrap.sampling.temperature == 1.0
    assert isinstance(config.bootstrap.sampling.temperature, float)
    assert config.bootstrap.sampling.stop == ("\n\n", "END")
    # Untouched values keep their defaults, including siblings inside an overridden table.
    default = Config()
    assert config.bootstrap.sampling.top_p == default.bootstrap.sampling.top_p == 0.5
    assert config.bootstrap.sampling.max_tokens == 1024
    assert config.bootstrap.num_prompt_instructions == 8
    assert config.classify == default.classify
    assert config.instances == default.instances
    assert config.lm.api == "completions"


def test_toml_overrides_apply_on_top_of_a_base(tmp_path):
    base = dataclasses.replace(Config(), num_instructions=7)
    config = load_toml(write(tmp_path, "seed = 1\n"), base)
    assert (config.num_instructions, config.seed) == (7, 1)


def test_unknown_key_names_the_dotted_key(tmp_path):
    message = config_error(tmp_path, "[bootstrap.sampling]\ntemprature = 0.9\n")
    assert "unknown key 'bootstrap.sampling.temprature'" in message
    assert "bootstrap.sampling.temperature" in message  # the known keys are listed


def test_unknown_top_level_key(tmp_path):
    message = config_error(tmp_path, "num_instruction = 5\n")
    assert "unknown key 'num_instruction'" in message


@pytest.mark.parametrize(
    "text, key, expected",
    [
        ('num_instructions = "10"', "num_instructions", "expected an integer"),
        ("num_instructions = true", "num_instructions", "expected an integer"),
        ("num_instructions = 2.5", "num_instructions", "expected an integer"),
        ("[bootstrap.sampling]\nstop = 5", "bootstrap.sampling.stop", "expected a list of strings"),
        ("[bootstrap.sampling]\nstop = [1, 2]", "bootstrap.sampling.stop", "expected a list of strings"),
        ('[classify.sampling]\ntemperature = "hot"', "classify.sampling.temperature", "expected a number"),
        ("[classify.sampling]\ntemperature = false", "classify.sampling.temperature", "expected a number"),
        ("[prepare]\ninclude_seed_tasks = 1", "prepare.include_seed_tasks", "expected true or false"),
        ("[lm]\nmodel = 3", "lm.model", "expected a string"),
        ("bootstrap = 5", "bootstrap", "expected a table of settings"),
    ],
)
def test_wrong_type_names_the_key(tmp_path, text, key, expected):
    message = config_error(tmp_path, text + "\n")
    assert f"{key}: {expected}" in message


def test_invalid_toml_names_the_file(tmp_path):
    message = config_error(tmp_path, "num_instructions = \n[bootstrap\n")
    assert "not valid TOML" in message


def test_missing_file(tmp_path):
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match="config file: .*absent.toml: file not found") as info:
        load_toml(path)
    assert str(path) in str(info.value)


def test_out_of_range_value_in_toml_names_the_file(tmp_path):
    message = config_error(tmp_path, "num_instructions = 0\n")
    assert "num_instructions must be at least 1" in message


# --- validate() ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values, message",
    [
        ({"num_instructions": 0}, "num_instructions must be at least 1"),
        ({"num_instructions": -3}, "num_instructions must be at least 1"),
        ({"bootstrap": {"similarity_threshold": 1.5}}, "bootstrap.similarity_threshold must be between 0 and 1"),
        ({"bootstrap": {"similarity_threshold": -0.1}}, "bootstrap.similarity_threshold must be between 0 and 1"),
        ({"bootstrap": {"similarity_threshold": 1}}, "at 1 an exact copy would pass the novelty filter"),
        ({"bootstrap": {"similarity_threshold": 0}}, "bootstrap.similarity_threshold must be between 0 and 1"),
        ({"bootstrap": {"max_barren_requests": 0}}, "bootstrap.max_barren_requests must be at least 1"),
        ({"prepare": {"conflicts": "none"}}, "prepare.conflicts must be 'task' or 'pair'"),
        ({"prepare": {"finetuning_template": "alpaca"}}, "prepare.finetuning_template must be 'paper' or 'fixed'"),
        (
            {"lm": {"backend": "openai"}, "instances": {"sampling": {"stop": ["a", "b", "c", "d", "e"]}}},
            "instances.sampling.stop has 5 stop sequences; OpenAI-compatible endpoints accept at most 4",
        ),
        ({"bootstrap": {"num_machine_instructions": 9}}, "bootstrap.num_machine_instructions must be between"),
        ({"bootstrap": {"min_words": 200}}, "bootstrap.min_words must be >= 1"),
        ({"lm": {"backend": "vllm"}}, "lm.backend must be"),
        ({"lm": {"weights": "q4_0"}}, "lm.weights must be one of auto, original, q8_0, f16, bf16"),
        ({"bootstrap": {"samples_per_prompt": 0}}, "bootstrap.samples_per_prompt must be >= 1"),
        ({"instances": {"sampling": {"top_p": 1.5}}}, "instances.sampling.top_p must be in [0, 1]"),
        ({"classify": {"sampling": {"max_tokens": 0}}}, "classify.sampling.max_tokens must be at least 1"),
        ({"bootstrap": {"sampling": {"temperature": float("nan")}}}, "bootstrap.sampling.temperature"),
    ],
)
def test_validate_rejects_out_of_range_values(values, message):
    with pytest.raises(ConfigError) as info:
        from_dict(values)
    assert message in str(info.value)


def test_validate_on_a_constructed_config():
    with pytest.raises(ConfigError, match="num_instructions must be at least 1"):
        dataclasses.replace(Config(), num_instructions=0).validate()
    edge = dataclasses.replace(Config(), num_instructions=1)
    assert edge.validate() is edge


def test_similarity_threshold_just_inside_its_bounds():
    assert from_dict({"bootstrap": {"similarity_threshold": 0.01}}).bootstrap.similarity_threshold == 0.01
    assert from_dict({"bootstrap": {"similarity_threshold": 0.99}}).bootstrap.similarity_threshold == 0.99


def test_more_stop_sequences_are_fine_in_process():
    stops = {"instances": {"sampling": {"stop": ["a", "b", "c", "d", "e"]}}}
    assert len(from_dict(stops).instances.sampling.stop) == 5  # llamacpp (the default) has no limit


# --- flatten() ----------------------------------------------------------------------------------


def test_flatten_dots_nested_keys_and_lists_tuples():
    assert flatten({"a": {"b": 1, "c": {"d": ("x", "y")}}, "e": None}) == {"a.b": 1, "a.c.d": ["x", "y"], "e": None}
    assert flatten({}) == {}


def test_flatten_names_the_keys_that_differ():
    default = flatten(Config().to_dict())
    changed = flatten(from_dict({"bootstrap": {"sampling": {"top_p": 0.9}}, "seed": 7}).to_dict())
    assert default.keys() == changed.keys()
    assert "bootstrap.sampling.stop" in default
    assert default["bootstrap.sampling.stop"] == ["\n\n", "\n16", "16.", "16 ."]
    assert {k for k in default if default[k] != changed[k]} == {"bootstrap.sampling.top_p", "seed"}
