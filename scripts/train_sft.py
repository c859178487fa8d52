"""The course's LoRA fine-tune of the pricer as a script, so that `accelerate launch` can run it in several processes.

    python scripts/train_sft.py --max-steps 6                                  # one process
    accelerate launch --multi_gpu --num_processes 2 scripts/train_sft.py --cpu   # two processes on one CPU (gloo)
    accelerate launch --config_file configs/accelerate/ddp_multi_gpu.yaml scripts/train_sft.py   # one per GPU

The same code runs in each process. Every process loads the model and the data; the trainer (through accelerate)
gives each one a different slice of every global batch, averages the gradients across processes after each backward
pass (data parallelism), and applies the same update everywhere, so all copies of the weights stay equal.

What stays fixed whatever the number of processes: the data (notebook 10's training file), the global batch
(`--global-batch-size` = processes x per-process batch x gradient accumulation), the number of optimizer steps and
the seeds. The run writes `summary.json` (its losses and timings) and, with `--report-to tensorboard`, TensorBoard
event files under `--logging-dir`. Notebook 12 launches it with one and with two processes and compares the losses.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default=None, help="course profile (default: $COURSE_PROFILE, else offline)")
    parser.add_argument("--max-steps", type=int, default=None, help="optimizer steps (default: the profile's ddp_max_steps)")
    parser.add_argument("--global-batch-size", type=int, default=None,
                        help="examples per optimizer step, over all processes (default: the profile's batch_size)")
    parser.add_argument("--per-device-batch-size", type=int, default=None,
                        help="examples per forward pass in each process (default: as large as the global batch allows); "
                             "the rest is made up by gradient accumulation")
    parser.add_argument("--learning-rate", type=float, default=None, help="default: the course's LoRA rate (2e-4)")
    parser.add_argument("--seed", type=int, default=None, help="default: the profile's seed")
    parser.add_argument("--output-dir", type=Path, default=None, help="default: <results>/<profile>/distributed/<N>proc")
    parser.add_argument("--logging-dir", type=Path, default=None, help="TensorBoard event files (default: <output-dir>/runs)")
    parser.add_argument("--report-to", default="none", help="'tensorboard' to write event files, 'none' for nothing")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per process: processes x threads should not exceed the cores")
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is present (gloo back end)")
    parser.add_argument("--dry-run", action="store_true", help="only report how many processes were started, then exit")
    return parser.parse_args(argv)


def batch_layout(global_batch: int, processes: int, per_device: int | None = None) -> tuple[int, int]:
    """(per-process batch, gradient-accumulation steps) whose product times `processes` is `global_batch`.

    The global batch is what the optimizer averages over; keeping it fixed is what makes runs with different
    process counts comparable. Raises when it cannot be split evenly.
    """
    if global_batch < 1 or processes < 1:
        raise ValueError(f"global batch {global_batch} and processes {processes} must be positive")
    if global_batch % processes:
        raise ValueError(f"a global batch of {global_batch} cannot be split evenly over {processes} processes")
    per_process = global_batch // processes
    per_device = per_device or per_process
    if per_process % per_device:
        raise ValueError(f"{per_process} examples per process is not a multiple of the per-device batch {per_device}")
    return per_device, per_process // per_device


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    # One thread per process by default: two processes on two cores, each with its own thread pool sized for
    # the whole machine, would fight over the cores. Set before torch starts its pools.
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)

    from accelerate import PartialState

    state = PartialState(cpu=args.cpu)
    if args.dry_run:
        line = (f"process {state.process_index} of {state.num_processes}: {state.distributed_type.value}, "
                f"back end {getattr(state, 'backend', None)}, device {state.device}\n")
        os.write(1, line.encode())  # one write per line: two processes share this stdout, and print() may split it
        return {"num_processes": state.num_processes}

    from peft import get_peft_model
    from trl import SFTTrainer

    from course_utils.core import config
    from course_utils.foundations import models
    from course_utils.pricing import data, finetune, qlora, training
    from course_utils.core.start import seed_everything

    profile = config.get_profile(args.profile)
    seed = profile.seed if args.seed is None else args.seed
    seed_everything(seed)  # the same seed in every process: the same LoRA initialisation everywhere
    steps = args.max_steps or profile.size("ddp_max_steps")
    global_batch = args.global_batch_size or profile.size("batch_size")
    per_device, accumulation = batch_layout(global_batch, state.num_processes, args.per_device_batch_size)
    output_dir = args.output_dir or profile.work_dir / "distributed" / f"{state.num_processes}proc"
    logging_dir = args.logging_dir or output_dir / "runs"

    # Notebook 10's training file. The main process writes it (and converts the model once) while the others wait.
    with state.main_process_first():
        splits = data.load_splits(profile)
        train_path, _ = finetune.write_course_files(splits, profile)
        train_dataset = training.conversational_dataset(train_path)
        tokenizer = training.ensure_chat_template(models.load_tokenizer("base_model", profile))
        # fp32 on the CPU; the trainer moves each process's copy to that process's device.
        model = models.load_causal_lm("base_model", profile, device="cpu", for_training=True)

    # Notebook 10's LoRA settings, without dropout: dropout draws different random masks in each process, so
    # with it the one- and two-process runs would differ by more than the order in which sums are added.
    model = get_peft_model(model, qlora.lora_config(profile, lora_dropout=0.0))
    # transformers 5 takes TensorBoard's folder from this variable (the `logging_dir` argument is gone).
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(logging_dir)
    if state.is_main_process:  # only the main process writes events; an earlier run's would mix into the plots
        shutil.rmtree(logging_dir, ignore_errors=True)
    cpu = args.cpu or models.pick_device() == "cpu"
    sft_args = training.sft_config(
        output_dir, profile, max_steps=steps,
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=accumulation,
        learning_rate=args.learning_rate or training.QLORA_LEARNING_RATE,
        save_strategy="no",  # a checkpoint per run is not the point here
        logging_steps=1, logging_first_step=True,  # every step's loss, to compare the runs step by step
        report_to=args.report_to,
        seed=seed, data_seed=seed,
        use_cpu=cpu, **({"bf16": False, "fp16": False} if cpu else {}),
        # gloo runs on CPUs; NCCL (the GPU default) needs GPUs. A single process has no back end to choose.
        ddp_backend="gloo" if cpu and state.num_processes > 1 else None,
        disable_tqdm=not state.is_main_process,  # one progress bar, not one per process
    )
    trainer = SFTTrainer(model=model, args=sft_args, train_dataset=train_dataset, processing_class=tokenizer)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started

    summary = {
        "num_processes": state.num_processes,
        "distributed_type": state.distributed_type.value,
        "backend": getattr(state, "backend", None),
        "per_device_batch_size": per_device,
        "gradient_accumulation_steps": accumulation,
        "global_batch_size": per_device * accumulation * state.num_processes,
        "max_steps": steps,
        "seed": seed,
        "threads_per_process": torch.get_num_threads(),
        "train_seconds": round(seconds, 2),
        "losses": [{"step": log["step"], "loss": log["loss"]} for log in trainer.state.log_history if "loss" in log],
        "logging_dir": str(logging_dir),
    }
    if state.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "summary.json").write_text(json.dumps(summary, indent=1))
        print(f"{state.num_processes} process(es), {steps} steps of {summary['global_batch_size']} examples in "
              f"{seconds:.1f} s; final loss {summary['losses'][-1]['loss']:.4f}; summary in {output_dir / 'summary.json'}")
    state.wait_for_everyone()
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
