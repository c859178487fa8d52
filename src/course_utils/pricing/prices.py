"""Read a price out of whatever a language model wrote.

Models answer "Price is $1,299.99", "about 20 dollars", "$10-$20" or "I cannot tell".
`parse_price` turns each into a float (a range gives its midpoint) or None, and
`price_or_fallback` swaps a None for a stated fallback, so an evaluation never
crashes on a bad answer and never hides how many answers were bad.
"""

from __future__ import annotations

import math
import re

# A number: digits with optional thousands commas and decimals, or a bare ".99".
_NUMBER = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+"
# A range: "10-20", "$10 - $20", "10 to 20", "between 10 and 20", "10–20" (en dash).
_RANGE_RE = re.compile(
    rf"\$?\s*(?P<low>{_NUMBER})\s*(?:-|–|—|to|and)\s*\$?\s*(?P<high>{_NUMBER})(?!\d)",
    re.IGNORECASE,
)
_NUMBER_RE = re.compile(rf"(?<![\w.])(?P<sign>-)?\$?\s*(?P<value>{_NUMBER})(?P<suffix>\s*[kK]\b)?")
_DOLLAR_RE = re.compile(rf"\$\s*(?P<value>{_NUMBER})")


class NoPriceError(ValueError):
    """The text holds no usable price."""


def _to_float(text: str) -> float:
    return float(text.replace(",", ""))


def parse_price(text: str | None) -> float | None:
    """The price a model's answer states, or None when it states none.

    Rules, in order:
      1. a range ("10-20", "$10 to $20", "between 10 and 20") gives its midpoint;
      2. a number written after a dollar sign wins over other numbers
         ("Model 3000, price $45" -> 45);
      3. otherwise the first non-negative number ("about 20 dollars" -> 20);
      "1.2k" means 1200. Zero, negatives and text with no digits give None.
    """
    if text is None:
        return None
    if not isinstance(text, str):
        raise TypeError(f"parse_price expects text, got {type(text).__name__}")
    value: float | None = None
    dollar = _DOLLAR_RE.search(text)
    rng = _RANGE_RE.search(text)
    if rng and (dollar is None or rng.start() <= dollar.start() <= rng.end()):
        low, high = _to_float(rng.group("low")), _to_float(rng.group("high"))
        if 0 < low <= high:
            value = (low + high) / 2
    if value is None and dollar:
        value = _to_float(dollar.group("value"))
    if value is None:
        for match in _NUMBER_RE.finditer(text):
            if match.group("sign"):
                continue
            value = _to_float(match.group("value"))
            if match.group("suffix"):
                value *= 1000
            break
    if value is None or not math.isfinite(value) or value <= 0:
        return None
    return value


def price_or_fallback(text: str | None, fallback: float) -> float:
    """`parse_price`, with `fallback` (e.g. the training median) when the text has no price."""
    value = parse_price(text)
    if value is not None:
        return value
    if fallback is None or not math.isfinite(fallback) or fallback <= 0:
        raise NoPriceError(f"no price in {text!r} and the fallback {fallback!r} is not a positive number")
    return float(fallback)


def format_price(value: float) -> str:
    """The canonical answer in prompts and fine-tuning data: 'Price is $1299.00'.

    No thousands comma: every digit is then a single token for SmolLM2-style tokenizers,
    which keeps the digit-by-digit decoding of `specialist` simple.
    """
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"price must be positive and finite, got {value!r}")
    return f"Price is ${value:.2f}"
