"""Fine-tuning data and training: one chat-format JSONL, two back ends.

The same file of conversations (system, user, assistant-with-the-price) feeds
  * OpenAI's fine-tuning API (upload, create a job, poll it), when a key is set, and
  * TRL's SFTTrainer on the local model, as a conversational prompt-completion data
    set whose loss covers only the assistant's answer;
and `qlora_*` trains LoRA adapters on a 4-bit NF4 base model (notebook 09).

Every artefact (JSONL files, adapters) is written to a temporary path and moved into
place with `os.replace`, so an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import json
import math
import os
import resource
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from . import config
from .items import QUESTION, Item
from .prices import format_price

SYSTEM_PROMPT = "You estimate the prices of second-hand items. Reply only with the price."
ROLES = ("system", "user", "assistant")

# US dollars per million training tokens (OpenAI pricing page; check it before a real run).
TRAINING_PRICE_PER_M = {"gpt-4o-mini-2024-07-18": 3.00, "gpt-4.1-mini-2025-04-14": 5.00, "gpt-4.1-nano-2025-04-14": 1.50}
DEFAULT_OPENAI_BASE = "gpt-4o-mini-2024-07-18"


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


def _atomic_write_text(path: Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_jsonl(items: Iterable[Item], path: str | os.PathLike, system: str = SYSTEM_PROMPT) -> Path:
    """One {"messages": [...]} object per line, written atomically."""
    lines = [json.dumps({"messages": chat_messages(item, system)}, ensure_ascii=False) for item in items]
    if not lines:
        raise ValueError(f"no items to write to {path}")
    return _atomic_write_text(Path(path), "\n".join(lines) + "\n")


def write_finetune_files(train: Sequence[Item], val: Sequence[Item], folder: str | os.PathLike) -> tuple[Path, Path]:
    """train.jsonl and validation.jsonl in `folder`."""
    folder = Path(folder)
    return write_jsonl(train, folder / "train.jsonl"), write_jsonl(val, folder / "validation.jsonl")


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


def estimate_cost(training_tokens: int, epochs: int, model: str = DEFAULT_OPENAI_BASE, price_per_m: float | None = None) -> dict:
    """Billed tokens (every epoch sees every token) and dollars for a fine-tuning job."""
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if price_per_m is None:
        try:
            price_per_m = TRAINING_PRICE_PER_M[model]
        except KeyError:
            raise KeyError(f"no training price known for {model!r}; pass price_per_m (known: {sorted(TRAINING_PRICE_PER_M)})") from None
    billed = training_tokens * epochs
    return {"model": model, "epochs": epochs, "billed tokens": billed, "usd": round(billed / 1e6 * price_per_m, 4)}


# --- the OpenAI fine-tuning API (only with OPENAI_API_KEY) ----------------------------------
def openai_client():
    """An OpenAI client, or None when no OPENAI_API_KEY is set (the notebooks then skip the job)."""
    from . import secrets

    secrets.load_dotenv_once()
    key = secrets.get_secret("OPENAI_API_KEY")
    if not key:
        return None
    from openai import OpenAI

    return OpenAI(api_key=key)


def start_openai_job(client, train_path, val_path, model: str = DEFAULT_OPENAI_BASE, epochs: int = 1, suffix: str = "pricer", seed: int = 42):
    """Upload both files and create a supervised fine-tuning job; returns the job object."""
    with open(train_path, "rb") as handle:
        train_file = client.files.create(file=handle, purpose="fine-tune")
    with open(val_path, "rb") as handle:
        val_file = client.files.create(file=handle, purpose="fine-tune")
    return client.fine_tuning.jobs.create(
        model=model,
        training_file=train_file.id,
        validation_file=val_file.id,
        suffix=suffix,
        seed=seed,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": epochs}}},
    )


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
        if job.status in {"succeeded", "failed", "cancelled"}:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {job.status} after {timeout:.0f} s; poll again later")
        time.sleep(every)
