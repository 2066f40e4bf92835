"""Does guidance steer the data? (issue: steer the data)

    .venv/bin/python benchmarks/steering.py                    # 200 instructions x {none, guided} x {completions, chat}
    .venv/bin/python benchmarks/steering.py --num-instructions 40 --api chat --keep runs/steering

The embedded model (SmolLM2-135M-Instruct), the project's seed tasks, the same run seed; the bootstrap stage only,
once without guidance and once with GUIDANCE. For each run: the accepted machine instructions, and the share of
them on the domain, measured by the word list DOMAIN_WORDS (a whole-word match, any case). With --sample N it
also prints N accepted instructions of each run (a seeded random sample), for reading by hand; the judgement of
those is written in docs/steering.md, not computed here.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import tempfile
import time
from pathlib import Path

from selfinstruct.pipeline import Run

GUIDANCE = "tasks that the customer-support assistant of a bakery receives"
# Words that place an instruction in a bakery's customer support. Ambiguous everyday words are left out on
# purpose: "order" (sort in ascending order), "customer" and "recipe" appear in generic tasks too.
DOMAIN_WORDS = (
    "bakery bakeries baker bakers bake baked bakes baking bread breads loaf loaves sourdough baguette baguettes "
    "cake cakes cupcake cupcakes cheesecake pastry pastries croissant croissants cookie cookies muffin muffins pie "
    "pies tart tarts donut donuts doughnut doughnuts bagel bagels brownie brownies scone scones dessert desserts "
    "flour dough frosting icing gluten allergy allergies allergen allergens allergic nut-free delivery deliveries "
    "pickup pick-up pre-order preorder catering"
).split()
_DOMAIN = re.compile(r"\b(?:" + "|".join(map(re.escape, DOMAIN_WORDS)) + r")\b", re.IGNORECASE)


def on_domain(text: str) -> bool:
    return bool(_DOMAIN.search(text))


def bootstrap(out: Path, api: str, guidance: str, num: int, seed: int) -> tuple[list[str], float]:
    settings = {"num_instructions": num, "seed": seed, "lm": {"api": api}, "bootstrap": {"guidance": guidance}}
    start = time.perf_counter()
    with Run.open(out, settings) as run:
        run.bootstrap()
        texts = [i.text for i in run.store.accepted("machine")]
    return texts, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-instructions", type=int, default=200)
    parser.add_argument("--api", choices=["completions", "chat"], action="append")
    parser.add_argument("--guidance", default=GUIDANCE)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--sample", type=int, default=0, help="print this many accepted instructions of each run")
    parser.add_argument("--keep", type=Path, default=None, help="keep the run directories here")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="steering-"))
    rows = []
    for api in args.api or ["completions", "chat"]:
        shares = {}
        for label, guidance in (("none", ""), ("guided", args.guidance)):
            texts, seconds = bootstrap(root / f"{api}-{label}", api, guidance, args.num_instructions, args.seed)
            hits = sum(map(on_domain, texts))
            shares[label] = hits / len(texts) if texts else 0.0
            rows.append((api, label, len(texts), hits, shares[label], seconds))
            if args.sample:
                print(f"\n## {api}, guidance {label}: {args.sample} of {len(texts)} accepted (seeded sample)")
                for text in random.Random(args.seed).sample(texts, min(args.sample, len(texts))):
                    print(f"- [{'x' if on_domain(text) else ' '}] {text}")
        rows.append((api, "guided / none", None, None, (shares["guided"], shares["none"]), None))
    print(f"\nguidance: {args.guidance!r}; {args.num_instructions} instructions per run, seed {args.seed}")
    print("| api | guidance | accepted | on domain (word list) | share | wall s |")
    print("|---|---|---:|---:|---:|---:|")
    for api, label, accepted, hits, share, seconds in rows:
        if accepted is None:
            guided, none = share
            ratio = f"{guided / none:.1f}x" if none else "from none" if guided else "none either way"
            print(f"| {api} | **{label}** | | | **{ratio}** | |")
        else:
            print(f"| {api} | {label} | {accepted} | {hits} | {share:.1%} | {seconds:.0f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
