"""A pricer made of a Hugging Face causal LM and its tokenizer (the fine-tuned "specialist").

The model sees the same chat as in fine-tuning (system, user with the item) and the
assistant turn is started for it with "Price is $", so its next tokens are the digits.
Two ways to read a price from there, computed together in one batched pass:

* greedy: take the most probable number token, then keep taking the most probable
  next token while it is still digits ("1" -> "2" -> "9" -> "." stops: $129).
* weighted: a price is several tokens (SmolLM2 and Qwen write one digit per token,
  Llama 3 up to three), so the first token's probabilities alone cannot be averaged
  into a price: "1" may start $1, $12 or $129. So each of the top-k first number
  tokens is completed greedily into a whole candidate price, and the candidates are
  averaged with the weights p(first token), renormalised over the k. The average is
  taken on log(1 + price), the scale RMSLE measures errors on, so $10 vs $1000 at
  50/50 gives $100, not $505.

The first token is restricted to number tokens not starting with 0: the prompt
already ends with "$", so anything else would be an unparseable answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Sequence

from .finetune import SYSTEM_PROMPT, chat_messages
from .items import PRICE_PREFIX, Item


@dataclass(frozen=True)
class PricePrediction:
    greedy: float
    weighted: float
    candidates: tuple[tuple[float, float], ...] = field(default=())  # (price, renormalised weight)
    number_mass: float = 0.0  # probability the model put on starting a number at all

def prompt_text(tokenizer, item: Item, system: str = SYSTEM_PROMPT) -> str:
    """The chat up to the assistant's "Price is $", rendered with the model's chat template."""
    messages = chat_messages(item, system, with_answer=False)
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return rendered + PRICE_PREFIX


@lru_cache(maxsize=8)
def number_tokens(tokenizer) -> tuple[dict[int, str], list[int]]:
    """Vocabulary ids whose text is only ASCII digits, and those that may start a price."""
    digits = {}
    for token, index in tokenizer.get_vocab().items():
        text = tokenizer.convert_tokens_to_string([token])
        if text and text.isascii() and text.isdigit():
            digits[index] = text
    if not digits:
        raise ValueError("this tokenizer has no pure-digit tokens; the specialist pricer cannot read prices from it")
    starts = sorted(i for i, t in digits.items() if not t.startswith("0"))
    return digits, starts


def weighted_log_price(candidates: Sequence[tuple[float, float]]) -> float:
    """expm1 of the weight-averaged log1p(price); weights need not sum to 1."""
    total = sum(w for _, w in candidates)
    if total <= 0:
        raise ValueError("candidate weights must have a positive sum")
    if len(candidates) == 1:  # exactly the one price, without exp/log rounding
        return float(candidates[0][0])
    return math.expm1(sum(w * math.log1p(p) for p, w in candidates) / total)


def predict_batch(model, tokenizer, items: Sequence[Item], top_k: int = 5, max_digits: int = 5, system: str = SYSTEM_PROMPT) -> list[PricePrediction]:
    """Greedy and probability-weighted prices for a batch of items, in one pass with a KV cache."""
    import torch

    if not items:
        return []
    digit_text, start_ids = number_tokens(tokenizer)
    device = next(model.parameters()).device
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # every prompt then ends at the same position
    try:
        batch = tokenizer([prompt_text(tokenizer, it, system) for it in items], return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = old_side
    input_ids, attention = batch["input_ids"].to(device), batch["attention_mask"].to(device)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)  # left padding must not shift positions
    k = min(top_k, len(start_ids))
    was_training = model.training
    model.eval()  # no dropout while pricing, even right after training
    try:
        with torch.inference_mode():
            return _decode(model, items, input_ids, attention, positions, digit_text, start_ids, k, max_digits, device)
    finally:
        model.train(was_training)


def _decode(model, items, input_ids, attention, positions, digit_text, start_ids, k, max_digits, device) -> list[PricePrediction]:
    import torch

    # logits_to_keep=1: only the last position's logits are read. Scoring every prompt position against a
    # 49k-token vocabulary is a fifth of the prompt's compute on SmolLM2 and a 200 MB tensor per batch of 8.
    out = model(input_ids=input_ids, attention_mask=attention, position_ids=positions, use_cache=True, logits_to_keep=1)
    probs = out.logits[:, -1, :].float().softmax(-1)
    start_index = torch.tensor(start_ids, device=device)
    start_probs = probs[:, start_index]  # (B, number-start tokens)
    top = start_probs.topk(k, dim=-1)
    first = start_index[top.indices]  # (B, k) token ids
    # Each item becomes k rows, one per first token, sharing the prompt's cache.
    cache = out.past_key_values
    cache.batch_repeat_interleave(k)
    attention = attention.repeat_interleave(k, dim=0)
    position = positions[:, -1].repeat_interleave(k, dim=0)
    tokens = first.reshape(-1)
    texts = [digit_text[int(t)] for t in tokens]
    alive = [len(t) < max_digits for t in texts]
    while any(alive):
        attention = torch.cat([attention, attention.new_ones((attention.shape[0], 1))], dim=1)
        position = position + 1
        out = model(input_ids=tokens[:, None], attention_mask=attention, position_ids=position[:, None], past_key_values=cache, use_cache=True)
        cache = out.past_key_values
        tokens = out.logits[:, -1, :].argmax(-1)
        for row, token in enumerate(tokens.tolist()):
            if not alive[row]:
                continue
            piece = digit_text.get(token)
            if piece is None or len(texts[row]) + len(piece) > max_digits:
                alive[row] = False
            else:
                texts[row] += piece
                alive[row] = len(texts[row]) < max_digits
    predictions = []
    weights = top.values.tolist()
    mass = start_probs.sum(-1).tolist()
    for b in range(len(items)):
        candidates = tuple((float(texts[b * k + j]), weights[b][j]) for j in range(k))
        total = sum(w for _, w in candidates) or 1.0
        normalised = tuple((p, w / total) for p, w in candidates)
        predictions.append(
            PricePrediction(
                greedy=candidates[0][0],  # topk is sorted: row 0 follows the most probable first token
                weighted=weighted_log_price(normalised),
                candidates=normalised,
                number_mass=mass[b],
            )
        )
    return predictions


def predict(model, tokenizer, items: Sequence[Item], batch_size: int = 8, top_k: int = 5, desc: str = "pricing", progress: bool = True, **kwargs) -> list[PricePrediction]:
    """`predict_batch` over all items in batches, with a progress bar."""
    from tqdm.auto import tqdm

    results: list[PricePrediction] = []
    bar = tqdm(total=len(items), desc=desc, disable=not progress)
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        results.extend(predict_batch(model, tokenizer, chunk, top_k=top_k, **kwargs))
        bar.update(len(chunk))
    bar.close()
    return results


class SpecialistPricer:
    """An `Item -> float` pricer; `prefetch(items)` prices many at once so later calls are instant."""

    def __init__(self, model, tokenizer, mode: str = "greedy", top_k: int = 5, batch_size: int = 8):
        if mode not in ("greedy", "weighted"):
            raise ValueError(f"mode must be 'greedy' or 'weighted', got {mode!r}")
        self.model, self.tokenizer, self.mode = model, tokenizer, mode
        self.top_k, self.batch_size = top_k, batch_size
        self._memo: dict[str, PricePrediction] = {}

    def prefetch(self, items: Sequence[Item], progress: bool = True) -> list[PricePrediction]:
        todo = [it for it in items if it.id not in self._memo]
        for item, pred in zip(todo, predict(self.model, self.tokenizer, todo, self.batch_size, self.top_k, progress=progress)):
            self._memo[item.id] = pred
        return [self._memo[it.id] for it in items]

    def prediction(self, item: Item) -> PricePrediction:
        if item.id not in self._memo:
            self._memo[item.id] = predict_batch(self.model, self.tokenizer, [item], self.top_k)[0]
        return self._memo[item.id]

    def __call__(self, item: Item) -> float:
        return getattr(self.prediction(item), self.mode)

    def with_mode(self, mode: str) -> "SpecialistPricer":
        """The same model and memo, read the other way (greedy <-> weighted) at no extra cost."""
        other = SpecialistPricer(self.model, self.tokenizer, mode, self.top_k, self.batch_size)
        other._memo = self._memo
        return other


def timed_predict(model, tokenizer, items: Sequence[Item], **kwargs) -> tuple[list[PricePrediction], dict]:
    """`predict`, plus the timings the results store keeps (one pass gives both readings)."""
    import time

    started = time.perf_counter()
    predictions = predict(model, tokenizer, items, **kwargs)
    seconds = time.perf_counter() - started
    return predictions, {"predict_s": round(seconds, 1), "ms_per_item": round(1000 * seconds / max(1, len(items)), 1)}
