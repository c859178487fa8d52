"""Training with TRL on the local model: the chat JSONL as a prompt-completion data set, the SFTConfig,
the run's statistics, and checkpoints a run can resume from.

Notebook 10 writes its SFTConfig out in its cells (tests/test_lessons_finetune.py checks
that it agrees with `sft_config`); the package's copy serves notebook 09's full fine-tune,
notebook 12 and the benchmarks. A checkpoint counts only when it was written to the end.
"""

from __future__ import annotations

import os
import resource
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..core import config
from .finetune import example_errors, read_jsonl

# LoRA adapters start at zero and tolerate a high rate; updating every weight needs less.
QLORA_LEARNING_RATE = 2e-4
FULL_LEARNING_RATE = 5e-5


# --- TRL: the same JSONL as a conversational prompt-completion data set ---------------------
def to_prompt_completion(example: dict) -> dict:
    """{"messages": [system, user, assistant]} -> {"prompt": [system, user], "completion": [assistant]}.

    TRL computes the loss on the completion only for prompt-completion data, whatever the
    chat template; `assistant_only_loss=True` would instead need `{% generation %}`
    markers in the template, which SmolLM2's does not have (see `assistant_mask_support`).
    """
    messages = example["messages"]
    if not messages or messages[-1].get("role") != "assistant":
        raise ValueError("each example must end with the assistant's answer")
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def conversational_dataset(path: str | os.PathLike):
    """A datasets.Dataset of prompt-completion conversations read from a chat JSONL."""
    from datasets import Dataset

    rows = read_jsonl(path)
    report = [(i, e) for i, row in enumerate(rows, 1) if (e := example_errors(row))]
    if report:
        line, errors = report[0]
        raise ValueError(f"{path}:{line}: {'; '.join(errors)} (run validate_jsonl for the full report)")
    return Dataset.from_list([to_prompt_completion(row) for row in rows])


def assistant_mask_support(tokenizer) -> str:
    """Whether TRL's assistant_only_loss can work with this chat template, in words."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    template = tokenizer.chat_template
    if isinstance(template, dict):
        template = template.get("default")
    if template and has_generation_markers(template):
        return "yes: the template marks assistant turns with {% generation %}"
    try:
        patched = get_training_chat_template(tokenizer)
    except ValueError:
        patched = None
    if patched:
        return "yes: TRL ships a training template with {% generation %} markers for this model family"
    return "no: the template has no {% generation %} markers and TRL has no patched version; use prompt-completion data"


PLAIN_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['content'] }}{% if not loop.last %}\n\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}\n\n{% endif %}"
)


def ensure_chat_template(tokenizer):
    """Base models (e.g. Llama-3.1-8B) may ship no chat template: give them a plain one."""
    if not tokenizer.chat_template:
        tokenizer.chat_template = PLAIN_CHAT_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


# --- run statistics -----------------------------------------------------------------------
def peak_memory_mb() -> float:
    """Peak GPU memory allocated on CUDA, else the process's peak resident memory (Linux/macOS)."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.max_memory_allocated() / 2**20
    except ImportError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if os.uname().sysname == "Darwin" else peak / 2**10


def _make_callbacks():
    from transformers import TrainerCallback

    class RunStats(TrainerCallback):
        """Wall time per optimizer step and the logged losses, for tables and plots."""

        def __init__(self):
            self.step_times: list[float] = []
            self.logs: list[dict] = []
            self._t0 = None

        def on_step_begin(self, args, state, control, **kwargs):
            self._t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if self._t0 is not None:
                self.step_times.append(time.perf_counter() - self._t0)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs:
                self.logs.append({"step": state.global_step, **logs})

    class StopAfter(TrainerCallback):
        """Ends training after `steps` optimizer steps: a stand-in for a crash or a closed laptop."""

        def __init__(self, steps: int):
            self.steps = steps

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= self.steps:
                control.should_training_stop = True
                control.should_save = True  # the checkpoint a real crash would have left behind
            return control

    return RunStats, StopAfter


@dataclass
class TrainResult:
    """What one training run measured; `table()` is what the notebooks display."""

    steps: int
    seconds: float
    step_times: list[float]
    tokens: int
    peak_memory_mb: float
    logs: list[dict]
    output_dir: Path
    trainer: object = None  # the SFTTrainer: it holds the model, its gradients and optimizer state

    def release(self) -> None:
        """Drop the trainer (and with it the model and optimizer state it holds) and free the memory."""
        import gc

        import torch

        self.trainer = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    @property
    def losses(self) -> list[tuple[int, float]]:
        return [(log["step"], log["loss"]) for log in self.logs if "loss" in log]

    def table(self) -> dict:
        return run_table(self)


def run_table(*parts: TrainResult) -> dict:
    """What a run measured, as one row; several parts (a run interrupted and resumed) add up.

    Each part's first step includes warm-up work, so it is left out of the seconds per step.
    """
    if not parts:
        raise ValueError("no training runs to summarise")
    steady = [t for part in parts for t in (part.step_times[1:] or part.step_times)]
    seconds = sum(part.seconds for part in parts)
    tokens = sum(part.tokens for part in parts)
    losses = [loss for part in parts for loss in part.losses]
    return {
        "steps": sum(part.steps for part in parts),
        "wall time (s)": round(seconds, 1),
        "seconds per step": round(sum(steady) / len(steady), 2) if steady else float("nan"),
        "tokens trained": tokens,
        "tokens per second": round(tokens / seconds, 1) if seconds else float("nan"),
        "peak memory (MB)": round(max(part.peak_memory_mb for part in parts)),
        "final loss": round(losses[-1][1], 4) if losses else float("nan"),
    }


def _device_flags() -> dict:
    """Mixed precision by device: bf16 on Ampere+, fp16 on a T4 (no bf16 there), fp32 on CPU."""
    from ..foundations.models import cuda_has_native_bf16, pick_device

    if pick_device() != "cuda":
        return {"bf16": False, "fp16": False, "use_cpu": pick_device() == "cpu"}
    bf16 = cuda_has_native_bf16()
    return {"bf16": bf16, "fp16": not bf16}


def _checkpointing_field(config_class) -> str:
    """transformers 5.x renamed gradient_checkpointing to activation_checkpointing."""
    fields = getattr(config_class, "__dataclass_fields__", {})
    return "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"


def sft_config(output_dir, profile: config.Profile | None = None, max_steps: int | None = None, quantized: bool = False, **overrides):
    """An SFTConfig whose every setting is explained; `overrides` replace any of them.

    quantized=True gives the QLoRA choices: a higher learning rate (only the small
    adapters learn) and, on CUDA, paged AdamW, whose optimizer state can spill to CPU
    memory instead of crashing with out-of-memory on a small GPU.
    """
    from trl import SFTConfig

    from ..foundations.models import pick_device

    profile = profile or config.get_profile()
    steps = max_steps or profile.size("qlora_max_steps" if quantized else "sft_max_steps")
    cuda = pick_device() == "cuda"
    settings = dict(
        output_dir=str(output_dir),
        # How long: max_steps optimizer steps (it overrides num_train_epochs when > 0).
        max_steps=steps,
        num_train_epochs=1,
        # How much per step: batch_size examples per forward pass; gradient accumulation
        # adds up several passes before one update (effective batch = the product).
        per_device_train_batch_size=profile.size("batch_size"),
        gradient_accumulation_steps=1,
        # How far each update moves: LoRA adapters start at zero and tolerate a high rate;
        # full fine-tuning of every weight needs a ~10x smaller one.
        learning_rate=QLORA_LEARNING_RATE if quantized else FULL_LEARNING_RATE,
        # A short linear warm-up (a fraction < 1 means "of all steps") avoids big early
        # updates from an untrained head; cosine then decays the rate to zero at the end.
        warmup_steps=0.05,
        lr_scheduler_type="cosine",
        weight_decay=0.0,
        max_grad_norm=1.0,  # clip gradients: one odd batch cannot wreck the weights
        optim=("paged_adamw_8bit" if quantized else "adamw_torch") if cuda else "adamw_torch",
        # The longest sequence kept; longer ones are cut from the right, which would cut
        # the answer, so it is set well above the capped prompt length.
        max_length=profile.size("max_tokens_prompt") + 96,
        completion_only_loss=True,  # loss on the assistant's price only, never on the prompt
        packing=False,  # one example per row, so the mask above stays exact
        # Checkpoints: every save_steps steps, keeping the last two, so training resumes.
        # (A full fine-tune's checkpoint holds every weight and optimizer state: off by default.)
        save_strategy="steps" if quantized else "no",
        save_steps=profile.size("qlora_save_steps"),
        save_total_limit=2,
        logging_steps=max(1, steps // 20),
        logging_first_step=True,
        eval_strategy="no",
        report_to="none",
        seed=profile.seed,
        data_seed=profile.seed,
        dataloader_num_workers=0,
        # Recompute activations in the backward pass to save GPU memory (slower; off on CPU).
        **{_checkpointing_field(SFTConfig): cuda},
        **_device_flags(),
    )
    settings.update(overrides)
    return SFTConfig(**settings)


def use_tqdm_progress(trainer) -> None:
    """Swap Jupyter's HTML progress bar for tqdm's: the HTML one crashes (transformers 5.x)
    when a run ends early, right after its first step, as the interrupted run of notebook 10 does."""
    from transformers.trainer_callback import ProgressCallback

    try:
        from transformers.utils.notebook import NotebookProgressCallback
    except ImportError:
        return
    if trainer.pop_callback(NotebookProgressCallback) is not None:
        trainer.add_callback(ProgressCallback)


def train(model, tokenizer, train_dataset, args, resume: bool | str = False, stop_after: int | None = None) -> TrainResult:
    """Run SFTTrainer; `resume=True` continues from the newest checkpoint in args.output_dir."""
    from trl import SFTTrainer

    RunStats, StopAfter = _make_callbacks()
    stats = RunStats()
    callbacks = [stats] + ([StopAfter(stop_after)] if stop_after else [])
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_dataset, processing_class=tokenizer, callbacks=callbacks)
    if not args.bf16:
        trainable_to_fp32(trainer.model)
    use_tqdm_progress(trainer)
    checkpoint = None
    if resume:
        checkpoint = resume if isinstance(resume, str) else last_checkpoint(args.output_dir)
        if checkpoint is None:
            raise FileNotFoundError(f"resume requested but {args.output_dir} holds no checkpoint-N folder")
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.perf_counter() - started
    # Tokens this trainer fed the model (prompt and answer, no padding); TRL keeps the count.
    tokens = int(getattr(trainer, "_total_train_tokens", 0) or max((log.get("num_tokens", 0) for log in stats.logs), default=0))
    steps_done = trainer.state.global_step - (int(Path(checkpoint).name.split("-")[-1]) if checkpoint else 0)
    return TrainResult(steps_done, seconds, stats.step_times, tokens, peak_memory_mb(), stats.logs, Path(args.output_dir), trainer)


def trainable_to_fp32(model) -> int:
    """Cast the trainable weights to fp32 (the frozen 4-bit ones stay); returns how many were cast.

    TRL's SFTTrainer casts a 4-bit model's LoRA adapters to bf16, the QLoRA paper's choice for
    bf16 training. The other two branches need fp32 adapters: fp16 mixed precision (a T4), whose
    gradient scaler refuses bf16 gradients, and fp32 training on a CPU, where bf16 weights would
    round AdamW's small updates away.
    """
    import torch

    cast = 0
    for param in model.parameters():
        if param.requires_grad and param.dtype in (torch.bfloat16, torch.float16):
            param.data = param.data.float()
            cast += 1
    return cast


def start_fresh(output_dir, show=print) -> Path:
    """Make `output_dir` empty for a new run without deleting an earlier run's checkpoints.

    A folder that already holds checkpoints (a run cut off by a Colab disconnect, say) is
    moved to `<name>-previous`, replacing an older one there, and the message says how to
    resume from it: `train(..., resume=last_checkpoint(that folder))`.
    """
    output_dir = Path(output_dir)
    if output_dir.is_dir() and any(output_dir.glob("checkpoint-*")):
        previous = output_dir.with_name(f"{output_dir.name}-previous")
        shutil.rmtree(previous, ignore_errors=True)
        os.replace(output_dir, previous)
        show(f"the earlier run's checkpoints were moved to {previous}; resume from them with "
             f"finetune.train(..., resume=finetune.last_checkpoint({str(previous)!r}))")
    elif output_dir.is_dir():
        shutil.rmtree(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    return output_dir


_WEIGHT_FILES = ("adapter_model.safetensors", "model.safetensors", "adapter_model.bin", "pytorch_model.bin")


def checkpoint_complete(folder) -> bool:
    """Whether a checkpoint-N folder was written to the end: the trainer writes its state file last."""
    folder = Path(folder)
    return (folder / "trainer_state.json").is_file() and any((folder / name).is_file() for name in _WEIGHT_FILES)


def last_checkpoint(output_dir, show=print) -> str | None:
    """The newest complete checkpoint-N folder in output_dir, or None.

    A run killed while saving leaves a checkpoint folder without its state file; resuming
    from it fails deep inside the trainer. Such folders are skipped (and named), so the run
    resumes from the previous, complete one.
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    numbered = []
    for folder in output_dir.glob("checkpoint-*"):
        step = folder.name.rsplit("-", 1)[-1]
        if folder.is_dir() and step.isdigit():
            numbered.append((int(step), folder))
    for _, folder in sorted(numbered, reverse=True):
        if checkpoint_complete(folder):
            return str(folder)
        show(f"skipping {folder.name}: it was not written to the end (no trainer_state.json or weights)")
    return None
