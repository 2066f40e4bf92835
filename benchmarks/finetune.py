"""Benchmark: `selfinstruct finetune` speed and memory on the real SmolLM2-135M (the embedded GGUF).

    .venv/bin/python benchmarks/finetune.py                        # 64 examples, LoRA/full fp32, LoRA bf16
    .venv/bin/python benchmarks/finetune.py --examples 200 --threads 1

Training data: the shortest examples of the project's own 175 seed tasks (one instance each), repeated when more
are asked for, in the Alpaca format. Each variant runs as its own `selfinstruct finetune` process (so its peak
RSS is its own), batch 8, one epoch, and the table is read from each run's finetune.json. "bf16" rows only when
the CPU has bf16 instructions. Timings on a 2-core machine mean little while other processes use the cores:
the script prints the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from itertools import cycle, islice
from pathlib import Path
from typing import Any

from selfinstruct.finetune import bf16_supported
from selfinstruct.seeds import load_seed_tasks


def seed_examples(n: int) -> list[dict[str, str]]:
    rows = [
        {"instruction": task.instruction, "input": inst.input, "output": inst.output}
        for task in load_seed_tasks(None)
        for inst in task.instances
    ]
    rows.sort(key=lambda r: len(r["instruction"]) + len(r["input"]) + len(r["output"]))
    return list(islice(cycle(rows), n))


def run_variant(data: Path, out: Path, method: str, bf16: bool, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, "-m", "selfinstruct.cli", "finetune", str(data), "--output", str(out)]
    command += ["--method", method, "--bf16" if bf16 else "--no-bf16", "--epochs", "1"]
    command += ["--batch-size", str(args.batch_size), "--max-length", str(args.max_length)]
    command += ["--base-model", args.model] if args.model else []
    command += ["--threads", str(args.threads)] if args.threads else []
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)  # progress stays on stderr
    return json.loads((out / "finetune.json").read_text())


def row(name: str, info: dict[str, Any]) -> str:
    return (
        f"| {name} | {info['examples']} | {info['mean_tokens']:.0f} | {info['load_seconds']:.1f} | "
        f"{info['train_seconds']:.1f} | {info['examples_per_second']:.2f} | {info['peak_rss_mb'] / 1024:.1f} GB | "
        f"{info['final_loss']:.3f} | {info['total_seconds']:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: every core)")
    parser.add_argument("--model", default=None, help="model directory or .gguf (default: the embedded SmolLM2)")
    parser.add_argument("--variants", default="lora,full,lora-bf16", help="comma-separated: lora, full, *-bf16")
    args = parser.parse_args()

    has_bf16 = bf16_supported()
    variants = [v for v in args.variants.split(",") if has_bf16 or not v.endswith("-bf16")]
    print(f"{os.cpu_count()} cores, bf16 instructions: {has_bf16}, load average {os.getloadavg()[0]:.2f}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="selfinstruct-bench-") as tmp:
        data = Path(tmp) / "alpaca_data.json"
        data.write_text(json.dumps(seed_examples(args.examples)))
        for variant in variants:
            method, _, precision = variant.partition("-")
            info = run_variant(data, Path(tmp) / variant, method, precision == "bf16", args)
            rows.append(row(f"{method} {precision or 'fp32'}", info))
            print(rows[-1], flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}\n")
    print("| variant | examples | tokens/example | load s | train s | examples/s | peak RSS | final loss | total s |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
