"""Notebook 12 writes its lesson in cells (the preference-pair rule, the DPOConfig, the TensorBoard reader) and
launches scripts/train_sft.py with accelerate. These tests run those cells and the script's pieces."""

import importlib.util
import itertools
import random
import subprocess
import sys

import pytest

from course_utils.core import config
from course_utils.foundations import models
from course_utils.pricing import evaluation, finetune, qlora, training
from course_utils.pricing.items import Item
from course_utils.pricing.specialist import PricePrediction

from conftest import ROOT
from notebook_cells import cell_namespace

NOTEBOOK = "12_preference_tuning_and_distributed.ipynb"
SCRIPT = ROOT / "scripts" / "train_sft.py"
CONFIGS = ROOT / "configs" / "accelerate"


def pair_cell():
    return cell_namespace(NOTEBOOK, "def preference_pair(", evaluation=evaluation, finetune=finetune)


def prediction(*candidates):
    """A PricePrediction whose candidates are (price, weight), likeliest first as the pricer returns them."""
    ordered = tuple(sorted(candidates, key=lambda c: -c[1]))
    return PricePrediction(greedy=ordered[0][0], weighted=ordered[0][0], candidates=ordered)


ITEM = Item(id="x", title="Nike running shoes, size 9", categories=("Men", "Shoes"), price=40)


def test_the_pair_is_the_true_price_against_the_likeliest_miss():
    preference_pair = pair_cell()["preference_pair"]
    # $45 is a hit (within 20%); $90 and $400 miss; $90 is the likelier of the two misses
    chosen, rejected = preference_pair(ITEM, prediction((45, 0.5), (90, 0.3), (400, 0.2)))
    assert (chosen, rejected) == (40, 90)


def test_no_pair_when_every_candidate_hits():
    preference_pair = pair_cell()["preference_pair"]
    assert preference_pair(ITEM, prediction((40, 0.6), (44, 0.3), (36, 0.1))) is None


def test_the_chosen_answer_is_always_closer_to_the_true_price():
    """Whatever the model answers, the pair prefers the answer nearer the truth, and the rejected one is a miss."""
    preference_pair = pair_cell()["preference_pair"]
    rng = random.Random(0)
    built = 0
    for _ in range(500):
        truth = round(rng.uniform(2, 900), 2)
        item = Item(id="r", title="something", price=truth)
        weights = [rng.random() for _ in range(3)]
        pair = preference_pair(item, prediction(*[(float(rng.randint(1, 2000)), w) for w in weights]))
        if pair is None:
            continue
        built += 1
        chosen, rejected = pair
        assert abs(chosen - truth) < abs(rejected - truth)
        assert not evaluation.hits([truth], [rejected])[0]
    assert built > 400  # random candidates nearly always include a miss


def test_pair_rows_are_conversational_and_the_chosen_answer_is_notebook_10s_target():
    from trl.data_utils import is_conversational

    row = pair_cell()["pair_example"](ITEM, 40, 90)
    assert is_conversational(row)
    assert row["prompt"] == finetune.chat_messages(ITEM, with_answer=False)  # the prompt the specialist was trained on
    assert row["chosen"] == [{"role": "assistant", "content": finetune.answer(ITEM)}]  # exactly the SFT target
    assert row["rejected"] == [{"role": "assistant", "content": "Price is $90.00"}]


@pytest.mark.parametrize("name", ["ci", "offline"])
def test_dpo_config_cell(name, tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_RESULTS", str(tmp_path))
    profile = config.get_profile(name)
    cell = cell_namespace(NOTEBOOK, "dpo_args = DPOConfig(", profile=profile, batch_size=profile.size("batch_size"),
                          models=models, finetune=finetune, training=training, qlora=qlora)
    args = cell["dpo_args"]
    assert args.beta == 0.1 and args.loss_type == ["sigmoid"]
    assert args.max_steps == profile.size("dpo_max_steps")
    assert args.per_device_train_batch_size == args.per_device_eval_batch_size == profile.size("dpo_batch_size")
    assert args.learning_rate < training.QLORA_LEARNING_RATE  # re-ranking answers, not relearning them
    assert args.report_to == ["tensorboard"]
    assert args.max_length == profile.size("max_tokens_prompt") + 96  # as notebook 10, so the answer is never cut
    if models.pick_device() == "cpu":  # TRL defaults to bf16 and gradient checkpointing; neither belongs on a CPU
        assert not args.bf16 and not args.gradient_checkpointing and args.use_cpu
    assert cell["dpo_lora"].to_dict() == qlora.lora_config(profile).to_dict()


# --- scripts/train_sft.py -----------------------------------------------------------------------------------------
def load_script():
    spec = importlib.util.spec_from_file_location("train_sft", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_arguments():
    script = load_script()
    args = script.parse_args([])
    assert args.threads == 1 and args.report_to == "none" and not args.cpu and args.max_steps is None
    args = script.parse_args(["--max-steps", "6", "--global-batch-size", "4", "--per-device-batch-size", "2", "--cpu",
                              "--report-to", "tensorboard", "--output-dir", "out"])
    assert (args.max_steps, args.global_batch_size, args.per_device_batch_size, args.cpu, args.report_to) == (6, 4, 2, True, "tensorboard")
    assert str(args.output_dir) == "out"


LAYOUTS = [(g, p, d) for g, p, d in itertools.product([4, 8, 16], [1, 2, 4], [None, 1, 2]) if not d or (g // p) % d == 0]


@pytest.mark.parametrize("global_batch, processes, per_device", LAYOUTS)
def test_batch_layout_keeps_the_global_batch(global_batch, processes, per_device):
    per_device_batch, accumulation = load_script().batch_layout(global_batch, processes, per_device)
    assert per_device_batch * accumulation * processes == global_batch
    assert per_device_batch == (per_device or global_batch // processes)


def test_batch_layout_refuses_uneven_splits():
    layout = load_script().batch_layout
    with pytest.raises(ValueError, match="evenly"):
        layout(6, 4)
    with pytest.raises(ValueError, match="multiple"):
        layout(8, 2, 3)


def test_profiles_size_the_runs():
    for name in config.PROFILES:
        profile = config.get_profile(name)
        for key in ("dpo_pair_items", "dpo_max_steps", "ddp_max_steps"):
            assert profile.size(key) > 0
        assert profile.size("batch_size") % 2 == 0, "the two-process run splits the global batch in halves"
    ci = config.get_profile("ci")
    assert ci.size("sft_train_items") + ci.size("dpo_pair_items") <= ci.size("items_total") - ci.size("test_items") - ci.size("val_items")


@pytest.mark.slow
@pytest.mark.parametrize("flags, expected", [(["--cpu", "--num_processes", "2"], 1), (["--multi_gpu", "--num_processes", "2", "--main_process_port", "0"], 2)])
def test_how_many_processes_accelerate_starts(flags, expected):
    """The notebook's warning: without MPI, `--cpu --num_processes 2` starts one process; `--multi_gpu` starts two."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no",
               "--dynamo_backend", "no", *flags, str(SCRIPT), "--cpu", "--dry-run"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("process ")]
    assert len(lines) == expected and all(f"of {expected}:" in line for line in lines), done.stdout


# --- the accelerate configs -----------------------------------------------------------------------------------------
def test_accelerate_configs_load_and_cover_each_strategy_on_one_and_several_machines():
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    seen = set()
    for path in sorted(CONFIGS.glob("*.yaml")):
        cfg = load_config_from_file(str(path))
        assert cfg.num_processes % cfg.num_machines == 0, path.name
        assert not cfg.use_cpu, path.name
        if cfg.num_machines > 1:
            assert cfg.main_process_ip and cfg.main_process_port and cfg.machine_rank == 0, path.name
        if cfg.distributed_type == DistributedType.FSDP:
            assert cfg.fsdp_config["fsdp_version"] == 2
        if cfg.distributed_type == DistributedType.DEEPSPEED:
            assert cfg.deepspeed_config["zero_stage"] in (1, 2, 3)
        seen.add((cfg.distributed_type, cfg.num_machines > 1))
    for strategy in (DistributedType.MULTI_GPU, DistributedType.FSDP, DistributedType.DEEPSPEED):
        assert {(strategy, False), (strategy, True)} <= seen, f"{strategy}: a config for one machine and for several"


# --- TensorBoard ----------------------------------------------------------------------------------------------------
def test_read_scalars_cell_reads_back_what_a_writer_wrote(tmp_path):
    import pandas as pd
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(tmp_path / "run"))
    for step, value in [(1, 0.69), (2, 0.5), (3, 0.25)]:
        writer.add_scalar("train/loss", value, step)
    writer.add_scalar("eval/rewards/margins", 1.5, 3)
    writer.close()
    read_scalars = cell_namespace(NOTEBOOK, "def read_scalars(", pd=pd)["read_scalars"]
    scalars = read_scalars(tmp_path / "run")
    assert set(scalars) == {"train/loss", "eval/rewards/margins"}
    assert scalars["train/loss"].to_dict() == pytest.approx({1: 0.69, 2: 0.5, 3: 0.25})
