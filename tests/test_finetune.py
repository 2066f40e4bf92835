"""`selfinstruct finetune` on a tiny random Llama built in-process: the real TRL/PEFT code, in seconds.

Skipped when the optional extra is not installed (pip install 'selfinstruct[finetune]').
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")
pytest.importorskip("peft")
torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402
from conftest import TINY_WORDS, ScriptedLM, save_tiny_llama  # noqa: E402

from selfinstruct.cli import cli  # noqa: E402
from selfinstruct.export import FORMATS, finetuning_record  # noqa: E402
from selfinstruct.finetune import Settings, build_trainer, training_rows  # noqa: E402
from selfinstruct.lm.transformers import load_model  # noqa: E402
from selfinstruct.pipeline import Run  # noqa: E402
from selfinstruct.training_data import Example, load_examples, paper_prompt, read_data  # noqa: E402

CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }} {{ m['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}assistant{% endif %}"
)


def _examples(n: int = 16) -> list[dict[str, str]]:
    words = TINY_WORDS
    return [
        {
            "instruction": " ".join(words[i : i + 4]),
            "input": " ".join(words[i + 20 : i + 22]) if i % 2 else "",
            "output": " ".join(words[i + 40 : i + 40 + 1 + i % 3]),
        }
        for i in range(n)
    ]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # A tiny model gains nothing from threads, and OpenMP threads that wait for a busy core cost 10-30x.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny-llama")
    save_tiny_llama(path)
    return path


@pytest.fixture(scope="module")
def tiny_chat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny-llama-chat")
    save_tiny_llama(path, chat_template=CHAT_TEMPLATE)
    return path


@pytest.fixture
def alpaca(tmp_path: Path) -> Path:
    path = tmp_path / "alpaca_data.json"
    path.write_text(json.dumps(_examples()))
    return path


def _finetune(data: Path, model: Path, out: Path, *extra: str) -> tuple[int, str]:
    args = ["finetune", str(data), "--base-model", str(model), "--output", str(out), "--epochs", "1"]
    result = CliRunner().invoke(cli, [*args, "--batch-size", "4", *extra])
    return result.exit_code, result.output


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in load_model(model_dir)[1].state_dict().items()}


def _greedy(model, tokenizer, prompt: str, tokens: int = 8) -> list[int]:
    ids = tokenizer(prompt, return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=tokens, do_sample=False, pad_token_id=0)
    return out[0, ids["input_ids"].shape[1] :].tolist()


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")  # PEFT 0.21 on transformers 5
def test_lora_trains_saves_adapter_and_merged_model(alpaca: Path, tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "ft"
    code, output = _finetune(alpaca, tiny, out, "--method", "lora")
    assert code == 0, output
    assert "16 examples x 1 epochs" in output

    info = json.loads((out / "finetune.json").read_text())
    assert (info["examples"], info["steps"], info["data_format"]) == (16, 4, "alpaca")
    assert info["settings"]["method"] == "lora" and info["settings"]["learning_rate"] == 2e-4
    assert info["settings"]["lora_r"] == 16 and info["settings"]["prompt_format"] == "paper"
    assert info["examples_per_second"] > 0 and info["train_seconds"] > 0 and info["peak_rss_mb"] > 0
    assert math.isfinite(info["final_loss"]) and math.isfinite(info["mean_loss"])
    assert info["sample"]["prompt"] == paper_prompt(_examples()[0]["instruction"], "")
    assert info["sample"]["completion"].split()  # the saved model generated something
    assert info["adapter_dir"] == str(out / "adapter") and (out / "adapter" / "adapter_config.json").is_file()
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temporary directory left behind

    # LoRA changed the weights, and base + adapter computes what the merged model computes.
    base, merged = _weights(tiny), _weights(out / "merged")
    assert any(not torch.equal(base[k], merged[k]) for k in base)
    from peft import PeftModel

    tokenizer, model = load_model(out / "merged")
    with_adapter = PeftModel.from_pretrained(load_model(tiny)[1], str(out / "adapter")).eval()
    ids = tokenizer(info["sample"]["prompt"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, with_adapter(ids).logits, atol=1e-4, rtol=1e-4)
    again = tokenizer.decode(_greedy(model, tokenizer, info["sample"]["prompt"], 24), skip_special_tokens=True)
    assert again == info["sample"]["completion"]


def test_full_fine_tuning_saves_only_the_merged_model(alpaca: Path, tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "ft"
    code, output = _finetune(alpaca, tiny, out, "--method", "full", "--no-bf16", "--threads", "1")
    assert code == 0, output
    assert sorted(p.name for p in out.iterdir()) == ["finetune.json", "merged"]
    info = json.loads((out / "finetune.json").read_text())
    assert info["adapter_dir"] is None
    assert info["settings"]["learning_rate"] == 2e-5 and info["settings"]["bf16"] is False
    assert info["settings"]["threads"] == 1
    base, tuned = _weights(tiny), _weights(out / "merged")
    assert set(base) == set(tuned)
    assert all(not torch.equal(base[k], tuned[k]) for k in base if k.endswith("q_proj.weight"))


def test_the_loss_covers_the_completion_and_eos_only(tiny: Path, tiny_chat: Path, tmp_path: Path) -> None:
    examples = [Example(**row) for row in _examples(6)]
    for model_dir, prompt_format in ((tiny, "paper"), (tiny_chat, "chat")):
        tokenizer, model = load_model(model_dir)
        trainer = build_trainer(model, tokenizer, examples, Settings(prompt_format=prompt_format), tmp_path / "w")
        rows = trainer.train_dataset
        assert len(rows) == len(examples)
        for example, ids, labels in zip(examples, rows["input_ids"], rows["labels"], strict=True):
            if prompt_format == "paper":
                prompt = tokenizer(paper_prompt(example.instruction, example.input))["input_ids"]
                completion = tokenizer(" " + example.output)["input_ids"] + [tokenizer.eos_token_id]
            else:
                user = [{"role": "user", "content": example.instruction + f"\n\n{example.input}" * bool(example.input)}]
                prompt = tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=True)["input_ids"]
                completion = tokenizer(f" {example.output} </s> ")["input_ids"]
            assert ids == prompt + completion
            assert labels == [-100] * len(prompt) + completion


def test_every_export_format_loads_the_same_examples(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with Run.open(run_dir, {"num_instructions": 3}, lm=ScriptedLM()) as run:
        run.run_all()
        run.export(tmp_path / "export", formats=FORMATS)
    export = tmp_path / "export"

    alpaca = load_examples(export / "alpaca_data.json")
    assert len(alpaca) > 175  # the seed tasks and the machine-written ones
    assert alpaca == [Example(**row) for row in json.loads((export / "alpaca_data.json").read_text())]
    assert read_data(run_dir) == ("run", alpaca)
    assert read_data(export / "hf_dataset") == ("hf", alpaca)
    # The paper's encoding (the default): records in the marked layout decode to their fields, the others (the
    # paper's other templates) are trained on exactly as written.
    kind, paper = read_data(export / "finetuning_data.jsonl")
    inputs = {(e.instruction, e.output): e.input for e in alpaca}
    decoded = [e for e in paper if e.prompt is None]
    assert kind == "paper" and decoded and all((e.instruction, e.output) in inputs for e in decoded)
    # ...with the input as written, or loosened as the paper does half the time (a field name cut off, blank lines)
    assert all(e.input.replace("\n", "") in inputs[e.instruction, e.output].replace("\n", "") for e in decoded)
    verbatim = [e for e in paper if e.prompt is not None]
    assert verbatim and training_rows(verbatim, "paper", None) == [
        {"prompt": e.prompt, "completion": e.completion} for e in verbatim
    ]
    # The fixed template gives back every example.
    with Run.open(run_dir, {"prepare": {"finetuning_template": "fixed"}}) as run:
        run.export(tmp_path / "fixed", formats=("paper",))
    assert read_data(tmp_path / "fixed" / "finetuning_data.jsonl") == ("paper", alpaca)
    # The chat export joins instruction and input into the user message: that becomes the instruction.
    joined = [Example(e.instruction + (f"\n\n{e.input}" if e.input else ""), "", e.output) for e in alpaca]
    assert read_data(export / "openai_chat.jsonl") == ("openai-chat", joined)
    # The prompt the evaluation side uses is the export's template.
    e = next(e for e in alpaca if e.input)
    assert paper_prompt(e.instruction, e.input) == finetuning_record(e.instruction, e.input, e.output)["prompt"]
    assert paper_prompt(e.instruction, e.input).endswith(f"\n\nInput: {e.input}\n\nOutput:")


def test_a_run_directory_trains(tmp_path: Path, tiny: Path) -> None:
    run_dir = tmp_path / "run"
    with Run.open(run_dir, {"num_instructions": 3}, lm=ScriptedLM()) as run:
        run.run_all()
    code, output = _finetune(run_dir, tiny, tmp_path / "ft", "--max-length", "16", "--batch-size", "64")
    assert code == 0, output
    info = json.loads((tmp_path / "ft" / "finetune.json").read_text())
    assert info["data_format"] == "run" and info["examples"] == len(load_examples(run_dir / "export/alpaca_data.json"))
    assert info["at_max_length"] > 0 and "reached --max-length 16" in output
    assert 0 < info["mean_tokens"] <= 16


def test_chat_format_uses_the_template_and_refuses_without_one(
    alpaca: Path, tiny: Path, tiny_chat: Path, tmp_path: Path
) -> None:
    code, output = _finetune(alpaca, tiny_chat, tmp_path / "chat", "--format", "chat")
    assert code == 0, output
    info = json.loads((tmp_path / "chat" / "finetune.json").read_text())
    assert info["sample"]["prompt"] == f"user {_examples()[0]['instruction']} </s> assistant"

    code, output = _finetune(alpaca, tiny, tmp_path / "none", "--format", "chat")
    assert code == 2
    assert "no chat template; use --format paper" in output
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize(
    ("name", "text", "where", "why"),
    [
        ("bad.jsonl", '{"prompt": "a\\n\\nOutput:", "completion": " b"}\n\n{"prompt": oops}\n', ":3:", "invalid JSON"),
        ("bad.json", json.dumps([{"instruction": "a", "output": "b"}, {"instruction": "c"}]), ": item 2:", "'output'"),
        ("bad.jsonl", '{"messages": [{"role": "user", "content": "a"}]}\n', ":1:", "one user message then one"),
        ("bad.jsonl", '{"prompt": "a", "completion": " "}\n', ":1:", "an empty prompt or completion"),
        ("bad.jsonl", '{"instruction": "a", "output": "b"}\n{"text": "c"}\n', ":2:", "not a fine-tuning example"),
        ("bad.jsonl", '{"instruction": "a", "output": "b"}\n{"prompt": "c", "completion": "d"}\n', ":2:", "one format"),
        ("empty.jsonl", "\n", ":", "no examples"),
    ],
)
def test_a_malformed_file_names_file_and_line_and_writes_nothing(
    tmp_path: Path, tiny: Path, name: str, text: str, where: str, why: str
) -> None:
    data = tmp_path / name
    data.write_text(text)
    code, output = _finetune(data, tiny, tmp_path / "ft")
    assert code == 2
    assert output.startswith(f"error: {data}{where}") and why in output
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_an_existing_output_is_refused_unless_overwrite(alpaca: Path, tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "ft"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, output = _finetune(alpaca, tiny, out)
    assert code == 2 and "--overwrite" in output
    assert [p.name for p in out.iterdir()] == ["keep.txt"]

    code, output = _finetune(alpaca, tmp_path, tmp_path, "--overwrite")  # would delete the data itself
    assert code == 2 and "which this run reads" in output and alpaca.exists()

    code, output = _finetune(alpaca, tiny, out, "--overwrite", "--max-length", "12")
    assert code == 0, output
    assert sorted(p.name for p in out.iterdir()) == ["adapter", "finetune.json", "merged"]


def test_without_the_extra_the_error_says_what_to_install(
    alpaca: Path, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "trl", None)  # makes `import trl` fail as if it were not installed
    code, output = _finetune(alpaca, tiny, tmp_path / "ft")
    assert code == 2
    assert "pip install 'selfinstruct[finetune]'" in output and "trl" in output
    assert not (tmp_path / "ft").exists()
