"""Chat models as pricers: zero-shot, few-shot and structured output.

Every pricer here is an `Item -> float` that sends one chat through
`course_utils.chat.llm.get_backend()` (the local llama.cpp server, or OpenAI when a key
is set), reads the price from the answer with `prices.parse_price`, and falls back
to a stated price (the training median) when the answer holds none. Answers go
through the SQLite response cache, so a re-run costs nothing and shows the same text.
"""

from __future__ import annotations

import json
import random
import statistics
from dataclasses import dataclass, field
from typing import Sequence

from pydantic import BaseModel, Field, ValidationError

from ..chat.structured_output import response_format_for
from .finetune import SYSTEM_PROMPT, answer, chat_messages, user_prompt
from .items import Item
from .prices import parse_price

INSTRUCTION = "Answer with the price only, starting with: Price is $"


class PriceEstimate(BaseModel):
    """The structured answer: a price in US dollars (and nothing else to parse)."""

    price: float = Field(description="estimated price in US dollars", gt=0)


def response_format(backend_kind: str) -> dict:
    """How to ask this kind of back end for a PriceEstimate (`chat.structured_output` says which gets what, and why)."""
    return response_format_for(PriceEstimate, backend_kind)


def zero_shot_messages(item: Item) -> list[dict]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"{user_prompt(item)}\n\n{INSTRUCTION}"},
    ]


def few_shot_messages(item: Item, examples: Sequence[Item]) -> list[dict]:
    """Worked examples as earlier turns of the chat: the model sees the format and the price scale."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    for example in examples:
        messages.append({"role": "user", "content": f"{user_prompt(example)}\n\n{INSTRUCTION}"})
        messages.append({"role": "assistant", "content": answer(example)})
    messages.append({"role": "user", "content": f"{user_prompt(item)}\n\n{INSTRUCTION}"})
    return messages


def structured_messages(item: Item) -> list[dict]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"{user_prompt(item)}\n\nAnswer in JSON with one key, price, in US dollars."},
    ]


def pick_examples(train: Sequence[Item], k: int, seed: int = 42) -> list[Item]:
    """k training items spread over the price range (one per price quantile), in a seeded order.

    The same examples for every item keep the prompt prefix identical, which the
    llama.cpp server (and OpenAI's prompt caching) reuse instead of recomputing.
    """
    if k < 1 or len(train) < k:
        raise ValueError(f"need at least {k} training items for {k} examples, got {len(train)}")
    ranked = sorted(train, key=lambda it: it.price)
    picked = [ranked[int((i + 0.5) * len(ranked) / k)] for i in range(k)]
    random.Random(seed).shuffle(picked)
    return picked


def median_price(items: Sequence[Item]) -> float:
    """The fallback answer: the median training price (the best constant for RMSLE, roughly)."""
    return float(statistics.median(it.price for it in items))


# zero-shot, few-shot and structured prompt a general chat model; "fine-tuned" asks a model
# fine-tuned on finetune.write_jsonl's files with the very chat it was trained on.
STYLES = ("zero-shot", "few-shot", "structured", "fine-tuned")


@dataclass
class ChatPricer:
    """An Item -> float pricer over a chat back end; keeps every raw answer for inspection."""

    backend: object
    style: str = "zero-shot"  # one of STYLES
    fallback: float = 20.0
    examples: Sequence[Item] = ()
    max_tokens: int = 16
    use_cache: bool = True
    answers: dict[str, str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.style not in STYLES:
            raise ValueError(f"style must be one of {', '.join(STYLES)}; got {self.style!r}")
        if self.style == "few-shot" and not self.examples:
            raise ValueError("few-shot pricing needs examples: pass examples=pick_examples(train, k)")

    def messages(self, item: Item) -> list[dict]:
        if self.style == "fine-tuned":  # exactly the chat it was trained on, without the answer
            return chat_messages(item, with_answer=False)
        if self.style == "few-shot":
            return few_shot_messages(item, self.examples)
        if self.style == "structured":
            return structured_messages(item)
        return zero_shot_messages(item)

    def ask(self, item: Item) -> str:
        params = {"temperature": 0.0, "max_tokens": self.max_tokens, "seed": 42}
        if self.style == "structured":
            params["response_format"] = response_format(self.backend.kind)
            params["max_tokens"] = max(self.max_tokens, 32)
        from ..chat.cache import ask_chat

        return ask_chat(self.backend, self.messages(item), use_cache=self.use_cache, **params)

    def read(self, text: str) -> float | None:
        if self.style == "structured":
            try:
                return PriceEstimate.model_validate_json(text).price
            except (ValidationError, json.JSONDecodeError):
                return parse_price(text)  # a model that ignored the format may still state a price
        return parse_price(text)

    def __call__(self, item: Item) -> float:
        text = self.ask(item)
        self.answers[item.id] = text
        value = self.read(text)
        if value is None:
            self.failures.append(item.id)
            return self.fallback
        return value

    @property
    def failure_rate(self) -> float:
        return len(self.failures) / max(1, len(self.answers))
