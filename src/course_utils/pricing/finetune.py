"""Fine-tuning data: one chat-format JSONL that both back ends train on, validated and counted.

The same file of conversations (system, user, assistant-with-the-price) feeds OpenAI's
fine-tuning API (`openai_jobs`) and TRL's SFTTrainer on the local model (`training`,
`qlora`). Every file is written to a temporary path and moved into place with
`os.replace`, so an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ..core import config
from ..core.storage import atomic_write_text
from .items import QUESTION, Item
from .prices import format_price

SYSTEM_PROMPT = "You estimate the prices of second-hand items. Reply only with the price."
ROLES = ("system", "user", "assistant")



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


