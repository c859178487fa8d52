"""Run the course's GPU-only code paths on a CUDA machine, with a local model and no Hub.

The colab and gpu profiles differ from the offline one in branches that a CPU never takes:
4-bit NF4 loading (bitsandbytes), QLoRA with paged 8-bit AdamW and activation checkpointing,
bf16 or fp16 mixed precision, the 4-bit adapter reload of notebook 11, and peak GPU memory.
This script takes each of them, the way notebooks 09-11 call course_utils, on any CUDA GPU:

    python benchmarks/gpu_check.py --model DIR [--random-init] [--items FILE] [--precision auto fp16]

--model        a local transformers model folder (config and tokenizer; weights unless --random-init).
               Default: the offline SmolLM2, converted from its GGUF package.
--random-init  build fresh weights from the folder's config: for a GPU machine that the weights
               cannot reach. The mechanics are the same; the prices are not meaningful then.
--items        a JSON-lines file (optionally .gz) of listings (Item fields): "train" and "eval"
               under a "split" key. Default: the offline profile's splits.
--precision    auto: what the GPU supports (bf16 on Ampere and later); fp16: a T4's branch
               (no native bf16), on any GPU. Several may be given; each runs every phase.

It prints one table with a row per phase and precision, and writes it as JSON to --out.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def read_items(path: Path | None, n_train: int, n_eval: int):
    """(train, eval) listings from a JSON-lines file, or the offline profile's splits."""
    from course_utils.pricing.items import Item

    if path is None:
        from course_utils.core import config
        from course_utils.pricing import data

        offline = config.get_profile("offline")
        return data.load_splits(offline).train[:n_train], data.eval_set(offline)[:n_eval]
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    by_split = {"train": [], "eval": []}
    for row in rows:
        by_split.setdefault(row.pop("split"), []).append(Item(**row))
    if not by_split["train"] or not by_split["eval"]:
        raise ValueError(f"{path} needs rows with split 'train' and split 'eval'")
    return by_split["train"][:n_train], by_split["eval"][:n_eval]


def random_model(source: Path, target: Path) -> Path:
    """A model with the source's architecture and tokenizer, and freshly initialised weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(source))
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(source).save_pretrained(target)
    return target


def check_profile(model_dir: Path, steps: int, batch_size: int):
    """The gpu profile with every model role pointed at the local folder, and short runs."""
    from course_utils.core import config, model_registry

    local = model_registry.ModelSource(hub_id=str(model_dir))
    gpu = config.get_profile("gpu")
    sizes = {**gpu.sizes, "qlora_max_steps": steps, "qlora_save_steps": max(1, steps // 4),
             "sft_max_steps": steps, "batch_size": batch_size}
    return replace(gpu, name="gpu-check", chat_model=local, base_model=local, sft_model=local,
                   sizes=sizes, hf_token_models={})


def mixed_precision(args) -> str:
    return "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"


def trainable_dtypes(model) -> str:
    """'float32 x 210': the dtypes of the trainable tensors (mixed precision needs fp32 ones)."""
    from collections import Counter

    counts = Counter(str(p.dtype).replace("torch.", "") for p in model.parameters() if p.requires_grad)
    return ", ".join(f"{dtype} x {n}" for dtype, n in sorted(counts.items()))


def run_phases(profile, train, eval_items, precision: str, out: Path) -> list[dict]:
    """QLoRA, then a full fine-tune; one row each, with the error where a phase fails."""
    from course_utils.foundations import models
    from course_utils.pricing import finetune, training

    native_bf16 = models.cuda_has_native_bf16
    if precision == "fp16":
        models.cuda_has_native_bf16 = lambda: False  # the branch a T4 takes
    try:
        work = out / precision
        train_path, _ = finetune.write_finetune_files(train, train[:8], work / "finetune")
        dataset = training.conversational_dataset(train_path)
        tokenizer = training.ensure_chat_template(models.load_tokenizer("base_model", profile))
        rows = []
        for phase, body in (("QLoRA 4-bit (10, 11)", qlora_phase), ("full fine-tune (09)", full_phase)):
            row = {"phase": phase, "precision": precision}
            try:
                row.update(body(profile, tokenizer, dataset, eval_items, work, precision))
            except Exception as exc:  # reported in the table: the point is to see every branch
                import traceback

                traceback.print_exc()
                row["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            rows.append(row)
        return rows
    finally:
        models.cuda_has_native_bf16 = native_bf16


def qlora_phase(profile, tokenizer, dataset, eval_items, work: Path, precision: str) -> dict:
    """Notebook 10's run (4-bit base, interrupted, resumed from its checkpoint), then notebook 11's 4-bit reload."""
    import torch

    from course_utils.pricing import evaluation, qlora, specialist, training

    torch.cuda.reset_peak_memory_stats()
    row = {}
    model = qlora.load_qlora_model(profile)
    args = training.sft_config(work / "checkpoints", profile, quantized=True)
    stop_at = qlora.interruption_step(profile)
    first = training.train(model, tokenizer, dataset, args, stop_after=stop_at)
    del model
    first.release()
    model = qlora.load_qlora_model(profile)
    second = training.train(model, tokenizer, dataset, args, resume=True)
    assert second.trainer.state.global_step == args.max_steps, "the resumed run did not reach max_steps"
    row["trainable dtypes"] = trainable_dtypes(second.trainer.model)  # as trained: TRL may have cast them
    adapter = qlora.save_adapter(model, work / "adapter")
    trained = specialist.predict(model, tokenizer, eval_items[:4], progress=False)
    del model
    second.release()
    # Notebook 11: the base and the adapter in 4-bit (the GPU profiles' load_in_4bit).
    tuned = qlora.load_finetuned(profile, adapter=adapter)
    reloaded = specialist.predict(tuned, tokenizer, eval_items[:4], progress=False)
    same = [a.greedy for a in trained] == [b.greedy for b in reloaded]
    predictions, timing = specialist.timed_predict(tuned, tokenizer, eval_items, batch_size=profile.size("batch_size"),
                                                   top_k=profile.size("price_top_k"), desc=f"4-bit specialist, {precision}")
    compute_dtype = str(tuned.get_base_model().config.quantization_config.bnb_4bit_compute_dtype)
    del tuned
    row.update({
        "mixed precision": mixed_precision(args),
        "optimizer": getattr(args.optim, "value", str(args.optim)), "4-bit compute dtype": compute_dtype.replace("torch.", ""),
        "steps": first.steps + second.steps, "resumed at": stop_at + 1,
        "s/step": round((sum(first.step_times[1:]) + sum(second.step_times[1:])) / max(1, len(first.step_times) + len(second.step_times) - 2), 3),
        "first loss": round(first.losses[0][1], 3), "last loss": round(second.losses[-1][1], 3),
        "peak GPU MB": round(max(first.peak_memory_mb, second.peak_memory_mb)),
        "adapter reload same": same,
        "items/s": round(1000 / timing["ms_per_item"], 1),
        "rmsle (weighted)": round(evaluation.rmsle([it.price for it in eval_items], [p.weighted for p in predictions]), 3),
    })
    return row


def full_phase(profile, tokenizer, dataset, eval_items, work: Path, precision: str) -> dict:
    """Notebook 09's full fine-tune: fp32 weights, mixed-precision compute, AdamW."""
    import torch

    from course_utils.foundations import models
    from course_utils.pricing import evaluation, specialist, training

    torch.cuda.reset_peak_memory_stats()
    row = {}
    model = models.load_causal_lm("sft_model", profile, for_training=True)
    args = training.sft_config(work / "sft", profile)
    run = training.train(model, tokenizer, dataset, args)
    row["trainable dtypes"] = trainable_dtypes(run.trainer.model)
    model.eval()
    predictions, timing = specialist.timed_predict(model, tokenizer, eval_items, batch_size=profile.size("batch_size"),
                                                   top_k=1, desc=f"full fine-tune, {precision}")
    row.update({
        "mixed precision": mixed_precision(args),
        "optimizer": getattr(args.optim, "value", str(args.optim)), "steps": run.steps,
        "s/step": run.table()["seconds per step"],
        "first loss": round(run.losses[0][1], 3), "last loss": round(run.losses[-1][1], 3),
        "peak GPU MB": round(run.peak_memory_mb),
        "items/s": round(1000 / timing["ms_per_item"], 1),
        "rmsle (greedy)": round(evaluation.rmsle([it.price for it in eval_items], [p.greedy for p in predictions]), 3),
    })
    del model
    run.release()
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a local transformers model folder (default: the converted offline SmolLM2)")
    parser.add_argument("--random-init", action="store_true", help="fresh weights from the folder's config")
    parser.add_argument("--items", type=Path, help="JSON lines of listings with a 'split' of train or eval")
    parser.add_argument("--precision", nargs="+", choices=["auto", "fp16"], default=["auto"])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--train-items", type=int, default=2000)
    parser.add_argument("--eval-items", type=int, default=200)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "gpu-check")
    opts = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here; this check only runs the GPU branches", file=sys.stderr)
        return 2
    os.environ.setdefault("COURSE_RESULTS", str(opts.out / "results"))
    from course_utils.foundations import models

    model_dir = opts.model or models.converted_gguf_dir(models.config.get_profile("offline").base_model)
    if opts.random_init:
        model_dir = random_model(model_dir, opts.out / "random-model")
    profile = check_profile(model_dir, opts.steps, opts.batch_size)
    train, eval_items = read_items(opts.items, opts.train_items, opts.eval_items)
    print(f"gpu_check: {torch.cuda.get_device_name(0)} (capability {'.'.join(map(str, torch.cuda.get_device_capability()))}), "
          f"torch {torch.__version__}, bitsandbytes {models.bitsandbytes_status()}; model {model_dir}"
          f"{' (random weights)' if opts.random_init else ''}; {len(train)} training and {len(eval_items)} evaluation listings")
    rows = []
    for precision in opts.precision:
        started = time.perf_counter()
        rows += run_phases(profile, train, eval_items, precision, opts.out)
        print(f"gpu_check: {precision} phases took {time.perf_counter() - started:.0f} s")

    import pandas as pd

    table = pd.DataFrame(rows).set_index(["phase", "precision"])
    print(table.T.to_string())
    opts.out.mkdir(parents=True, exist_ok=True)
    (opts.out / "gpu_check.json").write_text(json.dumps({"device": torch.cuda.get_device_name(0), "rows": rows}, indent=2, default=str))
    failed = [f"{r['phase']} ({r['precision']})" for r in rows if "error" in r]
    if failed:
        print(f"gpu_check: FAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
