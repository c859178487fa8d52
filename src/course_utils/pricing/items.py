"""The `Item`: one product listing, the unit every pricing stage passes around.

Every pricer has the signature `Item -> float`, so the evaluator and the ensemble
treat a random guess, a random forest and a fine-tuned LLM alike.
"""

from __future__ import annotations

import math
import re
from typing import Callable, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

QUESTION = "How much does this cost to the nearest dollar?"
PRICE_PREFIX = "Price is $"

# Digits with commas only as thousands separators: "1,299.99" is a price, "12,99" (a decimal comma) is refused.
_PRICE_RE = re.compile(r"^\s*\$?\s*((?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?)\s*$")


class PriceError(ValueError):
    """A price that is missing, not a number, zero, negative or not finite."""


def parse_listed_price(value) -> float:
    """A listing's price as a positive float; '$1,299.99' and 12 are fine, 'abc', 0 and -3 are not."""
    if value is None:
        raise PriceError("price is missing")
    if isinstance(value, bool):
        raise PriceError(f"price {value!r} is not a number")
    if isinstance(value, (int, float)):
        price = float(value)
    else:
        match = _PRICE_RE.match(str(value))
        if not match:
            hint = " (commas may only separate thousands, as in 1,299.99)" if "," in str(value) else ""
            raise PriceError(f"price {value!r} is not a number{hint}")
        price = float(match.group(1).replace(",", ""))
    if not math.isfinite(price):
        raise PriceError(f"price {value!r} is not finite")
    if price <= 0:
        raise PriceError(f"price {value!r} is not positive")
    return price


class Item(BaseModel):
    """A product listing with its true price and the prompt text the models see."""

    model_config = ConfigDict(frozen=False, extra="forbid")

    id: str
    title: str
    description: str = ""
    categories: tuple[str, ...] = ()  # top level first, e.g. ("Women", "Tops & Blouses", "Blouse")
    brand: Optional[str] = None
    condition: Optional[str] = None
    shipping_paid_by_seller: Optional[bool] = None
    price: float = Field(gt=0)
    prompt: Optional[str] = None  # the capped text, set by curation

    @field_validator("price", mode="before")
    @classmethod
    def _valid_price(cls, value):
        return parse_listed_price(value)

    @property
    def category(self) -> str:
        """The top-level category ('Unknown' when the listing has none)."""
        return self.categories[0] if self.categories else "Unknown"

    def details(self) -> str:
        """All the listing's text fields in one block, before any token cap."""
        lines = [f"Title: {self.title}"]
        if self.categories:
            lines.append("Category: " + " > ".join(self.categories))
        if self.brand:
            lines.append(f"Brand: {self.brand}")
        if self.condition:
            lines.append(f"Condition: {self.condition}")
        if self.description:
            lines.append(f"Description: {self.description}")
        return "\n".join(lines)

    @property
    def text(self) -> str:
        """What a model is shown about the item: the curated prompt, else the full details."""
        return self.prompt or self.details()

    def test_prompt(self) -> str:
        """The question and the item text, ending where the model should write the price."""
        return f"{QUESTION}\n\n{self.text}\n\n{PRICE_PREFIX}"

    def training_prompt(self) -> str:
        """The test prompt followed by the true price, for supervised fine-tuning."""
        return f"{self.test_prompt()}{round(self.price)}.00"


Pricer = Callable[[Item], float]
