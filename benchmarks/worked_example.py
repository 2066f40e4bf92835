"""The whole loop on this machine: generate data with the embedded model, fine-tune the base model on it,
evaluate base vs fine-tuned on the project's evaluation set, and print the table for docs/worked-example.md.

    .venv/bin/python benchmarks/worked_example.py --workdir runs/example       # about 20-30 minutes on 2 cores
    .venv/bin/python benchmarks/worked_example.py --num-instructions 30 --epochs 1   # a quick look

Every step is the real CLI in a subprocess. Both models are evaluated through the transformers backend (the
base from its GGUF file, de-quantised; the fine-tuned one from its merged directory), so the comparison is not
confounded by llama.cpp's quantised arithmetic. The judge is the embedded model itself: a 135M-parameter judge is
a weak one, and the table says so.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from selfinstruct.lm.weights import default_model_path


def step(name: str, args: list[str], times: dict[str, float]) -> None:
    print(f"\n== {name}: selfinstruct {' '.join(args)}", flush=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "selfinstruct.cli", *args], check=True)
    times[name] = time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="runs/example")
    parser.add_argument("--num-instructions", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--method", default="lora", choices=["lora", "full"])
    args = parser.parse_args()
    work = Path(args.workdir)
    data, tuned, evaluation = work / "data", work / "finetuned", work / "evaluation"
    base = str(default_model_path())
    times: dict[str, float] = {}

    step("generate", ["run", "--out", str(data), "--num-instructions", str(args.num_instructions)], times)
    step(
        "fine-tune",
        ["finetune", str(data), "--base-model", base, "--output", str(tuned), "--method", args.method,
         "--epochs", str(args.epochs), "--overwrite"],
        times,
    )  # fmt: skip
    step(
        "evaluate",
        ["evaluate", "--backend", "transformers", "--model", base, "--model", str(tuned / "merged"),
         "--out", str(evaluation), "--judge", "llamacpp"],
        times,
    )  # fmt: skip

    records = json.loads((data / "export" / "alpaca_data.json").read_text())
    trained = json.loads((tuned / "finetune.json").read_text())
    scores = json.loads((evaluation / "scores.json").read_text())
    print("\n| step | time | result |\n|---|---:|---|")
    generated = f"{len(records)} training records"
    print(f"| generate ({args.num_instructions} instructions) | {times['generate']:.0f} s | {generated} |")
    print(
        f"| fine-tune ({args.method}, {args.epochs} epochs) | {times['fine-tune']:.0f} s | "
        f"{trained['examples']} examples, final loss {trained['final_loss']:.3f} |"
    )
    print(f"| evaluate (2 models x 50 tasks, judged) | {times['evaluate']:.0f} s | scores below |")
    print("\n| model | ROUGE-L | A | B | C | D | unparsed | A+B |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, m in scores["models"].items():
        j = m["judge"]
        print(
            f"| {label} | {m['rougeL']:.4f} | {j['A']} | {j['B']} | {j['C']} | {j['D']} | {j['unparsed']} | "
            f"{j['A+B %']:.0f}% |"
        )
    c = scores["comparison"]
    print(
        f"\n{c['second']} vs {c['first']} per item (ROUGE-L): {c['wins']} wins, {c['ties']} ties, {c['losses']} losses"
    )


if __name__ == "__main__":
    main()
