"""Fine-tuning data and training: one chat-format JSONL, two back ends.

The same file of conversations (system, user, assistant-with-the-price) feeds
  * OpenAI's fine-tuning API (upload, create a job, poll it), when a key is set, and
  * TRL's SFTTrainer on the local model, as a conversational prompt-completion data
    set whose loss covers only the assistant's answer;
and `load_qlora_model` with `sft_config(quantized=True)` trains LoRA adapters on a 4-bit NF4
base model. Notebook 10 writes the same BitsAndBytesConfig, LoraConfig and SFTConfig out in its
cells (tests/test_lessons_finetune.py checks that they agree); the package's copies serve
notebook 09's full fine-tune, notebook 11's loaders and the benchmarks.

Every artefact (JSONL files, adapters) is written to a temporary path and moved into
place with `os.replace`, so an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ..core import config
from ..core.storage import atomic_write_dir, atomic_write_text, restore_dir
from .items import QUESTION, Item
from .prices import format_price

SYSTEM_PROMPT = "You estimate the prices of second-hand items. Reply only with the price."
ROLES = ("system", "user", "assistant")

# US dollars per million training tokens (OpenAI pricing page; check it before a real run).
TRAINING_PRICE_PER_M = {"gpt-4o-mini-2024-07-18": 3.00, "gpt-4.1-mini-2025-04-14": 5.00, "gpt-4.1-nano-2025-04-14": 1.50}
DEFAULT_OPENAI_BASE = "gpt-4o-mini-2024-07-18"

# LoRA adapters start at zero and tolerate a high rate; updating every weight needs less.
QLORA_LEARNING_RATE = 2e-4
FULL_LEARNING_RATE = 5e-5


# --- chat-format examples ----------------------------------------------------------------
def user_prompt(item: Item) -> str:
    """The question and the item: what the user turn of every pricing chat says."""
    return f"{QUESTION}\n\n{item.text}"


def answer(item: Item) -> str:
    """The assistant turn: the true price to the nearest dollar, in the canonical form."""
    return format_price(max(1, round(item.price)))


def chat_messages(item: Item, system: str = SYSTEM_PROMPT, with_answer: bool = True) -> list[dict]:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user_prompt(item)}]
    if with_answer:
        messages.append({"role": "assistant", "content": answer(item)})
    return messages


def write_jsonl(items: Iterable[Item], path: str | os.PathLike, system: str = SYSTEM_PROMPT) -> Path:
    """One {"messages": [...]} object per line, written atomically."""
    lines = [json.dumps({"messages": chat_messages(item, system)}, ensure_ascii=False) for item in items]
    if not lines:
        raise ValueError(f"no items to write to {path}")
    return atomic_write_text(Path(path), "\n".join(lines) + "\n")


def write_finetune_files(train: Sequence[Item], val: Sequence[Item], folder: str | os.PathLike) -> tuple[Path, Path]:
    """train.jsonl and validation.jsonl in `folder`."""
    folder = Path(folder)
    return write_jsonl(train, folder / "train.jsonl"), write_jsonl(val, folder / "validation.jsonl")


def course_finetune_items(splits, profile: config.Profile | None = None) -> tuple[list[Item], list[Item]]:
    """What notebooks 09 and 10 fine-tune on: the first `sft_train_items` training items, and a
    tenth as many validation items (at least 8) for the validation file."""
    profile = profile or config.get_profile()
    n_train = profile.size("sft_train_items")
    return list(splits.train[:n_train]), list(splits.val[: max(8, n_train // 10)])


def write_course_files(splits, profile: config.Profile | None = None) -> tuple[Path, Path]:
    """train.jsonl and validation.jsonl of `course_finetune_items`, in the profile's finetune folder."""
    profile = profile or config.get_profile()
    return write_finetune_files(*course_finetune_items(splits, profile), profile.work_dir / "finetune")


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
    return rows


# --- validation and token counts -----------------------------------------------------------
def o200k_encoding():
    """The GPT-4o tokenizer, from the quicktok-v1 package (tiktoken would download it)."""
    import quicktok

    return quicktok.get_encoding("o200k_base")


def example_errors(example: dict) -> list[str]:
    """What is wrong with one example: missing keys, unknown roles, bad order, empty content."""
    messages = example.get("messages") if isinstance(example, dict) else None
    if not isinstance(messages, list) or not messages:
        return ["no 'messages' list"]
    errors = []
    roles = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            errors.append(f"message {index} is not an object")
            continue
        role, content = message.get("role"), message.get("content")
        roles.append(role)
        if role not in ROLES:
            errors.append(f"message {index} has unknown role {role!r}")
        if not isinstance(content, str):
            errors.append(f"message {index} content is not text")
        elif not content.strip():
            errors.append(f"message {index} ({role}) has empty content")
        extra = set(message) - {"role", "content", "name", "weight"}
        if extra:
            errors.append(f"message {index} has unexpected keys {sorted(extra)}")
    turns = roles[1:] if roles and roles[0] == "system" else roles
    if "system" in turns:
        errors.append("a system message may only come first")
    expected = ["user", "assistant"] * (len(turns) // 2 + 1)
    if turns != expected[: len(turns)]:
        errors.append(f"roles must alternate user, assistant after an optional system; got {roles}")
    if not turns or turns[-1] != "assistant":
        errors.append("the last message must be the assistant's answer")
    return errors


def count_chat_tokens(messages: list[dict], encoding=None) -> int:
    """Tokens OpenAI bills for one chat: content tokens + 3 per message + 3 to prime the reply."""
    encoding = encoding or o200k_encoding()
    total = 3
    for message in messages:
        total += 3 + len(encoding.encode(message.get("content") or ""))
        if message.get("name"):
            total += 1 + len(encoding.encode(message["name"]))
    return total


@dataclass
class ValidationReport:
    path: Path
    examples: int
    errors: dict[int, list[str]]  # line number (1-based) -> problems
    tokens: list[int] = field(repr=False)
    max_tokens: int = 65_536  # OpenAI's per-example context limit for gpt-4o-mini fine-tuning

    @property
    def ok(self) -> bool:
        return not self.errors and not self.too_long

    @property
    def total_tokens(self) -> int:
        return sum(self.tokens)

    @property
    def too_long(self) -> list[int]:
        return [i + 1 for i, n in enumerate(self.tokens) if n > self.max_tokens]

    def summary(self) -> dict:
        tokens = sorted(self.tokens) or [0]
        return {
            "file": self.path.name,
            "examples": self.examples,
            "examples with errors": len(self.errors),
            "too long": len(self.too_long),
            "tokens total": self.total_tokens,
            "tokens min": tokens[0],
            "tokens median": tokens[len(tokens) // 2],
            "tokens max": tokens[-1],
        }


def validate_jsonl(path: str | os.PathLike, encoding=None, max_tokens: int = 65_536) -> ValidationReport:
    """Check every example's format and count its tokens with the o200k encoding."""
    path = Path(path)
    encoding = encoding or o200k_encoding()
    rows = read_jsonl(path)
    errors, tokens = {}, []
    for number, row in enumerate(rows, 1):
        problems = example_errors(row)
        if problems:
            errors[number] = problems
            tokens.append(0)
        else:
            tokens.append(count_chat_tokens(row["messages"], encoding))
    if not rows:
        errors[0] = ["the file has no examples"]
    return ValidationReport(path, len(rows), errors, tokens, max_tokens)


# --- the OpenAI fine-tuning API (only with OPENAI_API_KEY) ----------------------------------
PAID_OPT_IN = "COURSE_ALLOW_PAID"


def paid_jobs_allowed() -> bool:
    """True only when the learner said so: COURSE_ALLOW_PAID=1 (or yes/true) in the environment or `.env`.

    A key alone is not consent to a fine-tuning job, which is billed per training token: a key kept in `.env`
    for chat calls must not start one when a notebook is run top to bottom, in Jupyter Lab or anywhere else.
    """
    from ..core import secrets

    secrets.load_dotenv_once()
    return os.environ.get(PAID_OPT_IN, "").strip().lower() in {"1", "yes", "true"}


def openai_client():
    """An OpenAI client for fine-tuning jobs, or None (the notebooks then skip the job).

    None when no OPENAI_API_KEY is set, when COURSE_ALLOW_PAID is not set (`paid_jobs_allowed`),
    when COURSE_LLM=local asks for the local server only, or under the network guard (`make test`).
    """
    from ..core import secrets
    from ..chat.llm import choose_backend_kind
    from ..core.start import network_guard_requested

    secrets.load_dotenv_once()
    key = secrets.get_secret("OPENAI_API_KEY")
    if not key or not paid_jobs_allowed() or choose_backend_kind() == "local" or network_guard_requested():
        return None
    from openai import OpenAI

    return OpenAI(api_key=key)


_JOB_OVER = {"failed", "cancelled"}


def recorded_job(client, record_path, made_from: dict, show=print):
    """The job already started from these inputs, or None when a new one is needed.

    Every job is paid for, so a re-run of the notebook (or a poll that timed out) must not start a
    second one. The record (`record_job`) is reused while what the job was made from matches and the
    job has not failed or been cancelled. Delete the record to force a new job.
    """
    record_path = Path(record_path)
    try:
        record = json.loads(record_path.read_text(encoding="utf-8")) if record_path.is_file() else {}
    except json.JSONDecodeError:
        show(f"{record_path} is not valid JSON; a new job is needed")
        return None
    if record.get("made_from") != made_from or not record.get("job_id"):
        return None
    job = client.fine_tuning.jobs.retrieve(record["job_id"])
    if job.status in _JOB_OVER:
        show(f"the recorded job {job.id} ended {job.status}; a new one is needed")
        return None
    show(f"job {job.id} ({job.status}) was started for these files already; following it (delete {record_path} to start another)")
    return job


def record_job(record_path, job, made_from: dict) -> Path:
    """Write the job id and its inputs atomically, right after the job is created."""
    return atomic_write_text(Path(record_path), json.dumps({"job_id": job.id, "made_from": made_from}, indent=2))


def poll_openai_job(client, job_id: str, every: float = 30.0, timeout: float = 3600.0, show=print):
    """Print new events until the job succeeds, fails or is cancelled; returns the final job."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        events = client.fine_tuning.jobs.list_events(fine_tuning_job_id=job_id, limit=20).data
        for event in reversed(events):
            if event.id not in seen:
                seen.add(event.id)
                show(f"{event.created_at}  {event.level:<5} {event.message}")
        if job.status == "succeeded" or job.status in _JOB_OVER:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {job.status} after {timeout:.0f} s; poll again later")
        time.sleep(every)


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


# --- QLoRA ---------------------------------------------------------------------------------
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def lora_config(profile: config.Profile | None = None, **overrides):
    """LoRA: beside each target matrix W, train a low-rank update B @ A (rank r), scaled by alpha / r."""
    from peft import LoraConfig

    profile = profile or config.get_profile()
    settings = dict(
        r=profile.size("lora_r"),  # rank: the adapters' capacity (and size)
        lora_alpha=profile.size("lora_alpha"),  # scale of the update; alpha = 2r is a common choice
        lora_dropout=0.05,  # dropout on the adapter input, a little regularisation
        target_modules=list(LORA_TARGETS),  # every attention and MLP projection
        bias="none",
        task_type="CAUSAL_LM",
    )
    settings.update(overrides)
    return LoraConfig(**settings)


def load_qlora_model(profile: config.Profile | None = None, adapter: str | os.PathLike | None = None, trainable: bool = True):
    """The base model in 4-bit NF4 with double quantization, plus new (or saved) LoRA adapters."""
    from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training

    from ..foundations.models import load_causal_lm, pick_device

    profile = profile or config.get_profile()
    base = load_causal_lm("base_model", profile, quantization="4bit")
    if adapter is not None:
        return PeftModel.from_pretrained(base, str(adapter), is_trainable=trainable)
    # Casts norms to fp32 and makes the inputs require grads, so gradients reach the adapters.
    base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=pick_device() == "cuda")
    return get_peft_model(base, lora_config(profile))


def load_base(profile: config.Profile | None = None, quantized: bool | None = None):
    """The base model as `load_finetuned` loads it, minus the adapter.

    Same precision on both sides (4-bit on the GPU profiles, full precision offline), so
    notebook 11's base-versus-fine-tuned comparison measures the adapter, not the quantization.
    """
    from ..foundations.models import load_causal_lm

    profile = profile or config.get_profile()
    quantized = profile.load_in_4bit if quantized is None else quantized
    return load_causal_lm("base_model", profile, quantization="4bit" if quantized else None)


def load_finetuned(profile: config.Profile | None = None, adapter: str | os.PathLike | None = None, quantized: bool | None = None):
    """The base model with the saved adapter, for inference.

    quantized=None follows the profile: 4-bit on the GPU profiles (a 7B base needs it);
    offline, the adapter is merged into the full-precision base instead, because
    bitsandbytes' 4-bit matmuls on a CPU are ~3x slower than plain fp32 ones. The
    adapter learned on the NF4 weights; the merged fp32 model differs from the trained
    one by the (small) quantization error, which the notebook's scores include.
    """
    from peft import PeftModel

    profile = profile or config.get_profile()
    adapter = restore_dir(adapter or adapter_dir(profile))
    if not (adapter / "adapter_config.json").is_file():
        raise FileNotFoundError(f"no adapter at {adapter}; run notebook 10 (QLoRA) first to train and save it")
    check_adapter_base(adapter, profile)
    quantized = profile.load_in_4bit if quantized is None else quantized
    model = PeftModel.from_pretrained(load_base(profile, quantized), str(adapter))
    if not quantized:
        model = model.merge_and_unload()
    model.eval()
    return model


def check_adapter_base(adapter, profile: config.Profile | None = None) -> None:
    """Refuse an adapter trained on another Hub model than this profile's base model.

    LoRA matrices only fit the model they were trained on. The base can change between
    notebooks 10 and 11 when an HF token (which unlocks a larger gated model) is set in one
    session and not the other. Local paths (the offline models) are not compared: the same
    model sits in a different cache folder on another machine.
    """
    from ..foundations.models import model_location

    saved = json.loads((Path(adapter) / "adapter_config.json").read_text()).get("base_model_name_or_path")
    current = model_location("base_model", profile or config.get_profile())
    if saved and not Path(saved).is_absolute() and saved != current:
        raise ValueError(
            f"the adapter at {adapter} was trained on {saved}, but this profile's base model is {current}; "
            "set (or unset) HF_TOKEN as when notebook 10 ran, or train the adapter again"
        )


def adapter_dir(profile: config.Profile | None = None, name: str = "qlora-pricer") -> Path:
    profile = profile or config.get_profile()
    return profile.work_dir / "adapters" / name


def save_adapter(model, target: str | os.PathLike) -> Path:
    """Save only the LoRA weights, atomically: a temp folder, then os.replace over the old one."""
    return atomic_write_dir(target, lambda tmp: model.save_pretrained(str(tmp)))


HUB_REPO_ENV = "COURSE_HUB_REPO"


def push_adapter(model, repo_id: str | None = None, private: bool = True) -> str | None:
    """Push the adapter to a private Hub repo you name; returns its URL, or None when skipped.

    Opt-in: the repo comes from `repo_id` or $COURSE_HUB_REPO ("your-name/qlora-pricer"), so
    nothing is published to a name you did not choose. Skipped (None) without a repo, without
    HF_TOKEN, or in an offline profile.
    """
    from ..core import secrets

    repo_id = (repo_id or os.environ.get(HUB_REPO_ENV, "")).strip()
    token = secrets.get_secret("HF_TOKEN")
    if not repo_id or not token or config.get_profile().offline:
        return None
    owner, _, name = repo_id.partition("/")
    if not owner or not name or "/" in name:
        raise ValueError(f"Hub repo {repo_id!r} must look like 'your-name/qlora-pricer'")
    model.push_to_hub(repo_id, token=token, private=private)
    return f"https://huggingface.co/{repo_id}"


def interruption_step(profile: config.Profile | None = None) -> int:
    """Where notebook 10 stops its first run: about halfway, on a checkpoint boundary."""
    profile = profile or config.get_profile()
    save, total = profile.size("qlora_save_steps"), profile.size("qlora_max_steps")
    return max(save, (total // 2) // save * save)
