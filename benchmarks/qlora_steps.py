"""How many QLoRA steps notebook 10 trains for, chosen on validation items.

Trains notebook 10's QLoRA run (the profile's data, LoRA and SFT settings) for --steps optimizer
steps, keeping a checkpoint every --every steps, then prices --items validation items with each
checkpoint's adapter the way notebook 11 does (offline: merged into the full-precision base; greedy
and probability-weighted readings). The items are validation items outside the ensemble's slice
(`data.baseline_val_set`); the evaluation set is never read.

    python benchmarks/qlora_steps.py [--profile offline] [--steps 90] [--every 10] [--items 100] [--out FILE]

Every checkpoint comes from one run whose cosine schedule spans --steps, so step N approximates
a run of N steps (whose rate would have decayed to zero by then): the table shows where the
validation error stops falling, and `qlora_max_steps` is set there. It prints a table and writes
it as JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="offline")
    parser.add_argument("--steps", type=int, default=90)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "qlora_steps.json")
    args = parser.parse_args(argv)

    import pandas as pd

    from course_utils.core import config
    from course_utils.foundations import models
    from course_utils.pricing import data, evaluation, finetune, qlora, specialist, training

    profile = config.get_profile(args.profile)
    splits = data.load_splits(profile)
    train_path, _ = finetune.write_course_files(splits, profile)
    dataset = training.conversational_dataset(train_path)
    tokenizer = training.ensure_chat_template(models.load_tokenizer("base_model", profile))
    val_items = data.baseline_val_set(profile)[: args.items]
    truths = [it.price for it in val_items]

    work = profile.work_dir / "benchmarks" / "qlora-steps"
    training.start_fresh(work)
    sft = training.sft_config(work, profile, quantized=True, max_steps=args.steps, save_steps=args.every, save_total_limit=None)
    run = training.train(qlora.load_qlora_model(profile), tokenizer, dataset, sft)
    losses = dict(run.losses)
    run.release()
    print(f"trained {run.steps} steps in {run.seconds:.0f} s", flush=True)

    rows = []
    base = models.load_causal_lm("base_model", profile)
    zero = specialist.predict(base, tokenizer, val_items, batch_size=profile.size("batch_size"), top_k=profile.size("price_top_k"), progress=False)
    del base
    checkpoints = sorted(work.glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[-1]))
    for step, folder in [(0, None)] + [(int(p.name.rsplit("-", 1)[-1]), p) for p in checkpoints]:
        started = time.perf_counter()
        if folder is None:
            predictions = zero
        else:
            model = qlora.load_finetuned(profile, adapter=folder)
            predictions = specialist.predict(model, tokenizer, val_items, batch_size=profile.size("batch_size"),
                                             top_k=profile.size("price_top_k"), progress=False)
            del model
        near = [loss for s, loss in losses.items() if s <= step]
        rows.append({
            "step": step,
            "train loss (last logged)": round(near[-1], 4) if near else None,
            "val rmsle greedy": round(evaluation.rmsle(truths, [p.greedy for p in predictions]), 4),
            "val rmsle weighted": round(evaluation.rmsle(truths, [p.weighted for p in predictions]), 4),
            "pricing s": round(time.perf_counter() - started, 1),
        })
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows).set_index("step")
    print(f"profile {profile.name}: {len(val_items)} validation items (data.baseline_val_set), one run of {args.steps} steps")
    print(table.to_string())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"profile": profile.name, "items": len(val_items), "steps": args.steps, "rows": rows,
                                    "seconds per step": run.table()["seconds per step"]}, indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
