"""Relay Market, the course's example marketplace: its fee rules as a tool, a price lookup
over past listings, and listings with categories for notebook 04's few-shot classification.

The listings are the Mercari listings, read by `foundations.listings` (the course's one reader).
"""

from __future__ import annotations

import re
from typing import Sequence

from pydantic import BaseModel, Field

from ..foundations.listings import NO_CATEGORY
from .tool_calling import Tool


class FeeArgs(BaseModel):
    price: float = Field(gt=0, le=2000, description="the item's sale price in US dollars")
    relay_plus: bool = Field(default=False, description="whether the seller is a Relay Plus member")


def seller_earnings(price: float, relay_plus: bool = False) -> dict:
    """Relay Market's fee rules (course_data/knowledge_base/policy-selling-fees.md) as a function."""
    rate = 0.08 if relay_plus else 0.10
    selling_fee = max(1.0, round(price * rate, 2))
    processing_fee = round(price * 0.029 + 0.50, 2)
    return {
        "price": round(price, 2),
        "selling_fee": selling_fee,
        "processing_fee": processing_fee,
        "seller_earns": round(price - selling_fee - processing_fee, 2),
    }


def fee_tool() -> Tool:
    return Tool(
        name="seller_earnings",
        description="How much a Relay Market seller earns after fees for a given sale price.",
        parameters=FeeArgs,
        fn=lambda args: seller_earnings(args.price, args.relay_plus),
    )


class PriceLookupArgs(BaseModel):
    query: str = Field(min_length=2, description="words to look for in listing titles, e.g. 'nike air max'")


def _listings():
    """Listings with a price and a title, with their lower-cased title and top-level category."""
    from ..foundations.listings import read_mercari, top_category

    global _LISTINGS
    if _LISTINGS is None:
        frame = read_mercari(["name", "price", "category_name"])
        frame = frame[(frame["price"] > 0) & frame["name"].notna()]
        _LISTINGS = frame.assign(lower=frame["name"].str.lower(), category=frame["category_name"].map(top_category)).reset_index(drop=True)
    return _LISTINGS


_LISTINGS = None


def price_lookup(query: str, limit: int = 3) -> dict:
    """Prices of past listings whose titles contain every word of `query`."""
    words = [w for w in query.lower().split() if w]
    frame = _listings()
    mask = None
    for word in words:
        hit = frame["lower"].str.contains(word, regex=False)
        mask = hit if mask is None else mask & hit
    matches = frame[mask] if mask is not None else frame.iloc[:0]
    if matches.empty:
        return {"query": query, "matches": 0}
    prices = matches["price"]
    return {
        "query": query,
        "matches": int(len(matches)),
        "median_price": round(float(prices.median()), 2),
        "min_price": round(float(prices.min()), 2),
        "max_price": round(float(prices.max()), 2),
        "examples": matches["name"].head(limit).tolist(),
    }


def price_lookup_tool() -> Tool:
    return Tool(
        name="price_lookup",
        description="Median, min and max sale price of past marketplace listings whose titles contain the query words.",
        parameters=PriceLookupArgs,
        fn=lambda args: price_lookup(args.query),
    )


# --- listings for few-shot classification (notebook 04 writes the prompts and the loop) ---
CATEGORIES = (
    "Women", "Men", "Electronics", "Kids", "Home", "Beauty",
    "Vintage & Collectibles", "Sports & Outdoors", "Handmade", "Other",
)  # fmt: skip


def sample_listings(n: int, seed: int = 42, exclude: Sequence[str] = ()) -> list[dict]:
    """`n` random Mercari listings (title, top-level category, price), reproducible by seed."""
    frame = _listings()
    frame = frame[(frame["category"] != NO_CATEGORY) & ~frame["name"].isin(list(exclude))]
    rows = frame.sample(n=n, random_state=seed)
    return [{"title": r.name, "category": r.category, "price": float(r.price)} for r in rows.itertuples()]


def _whole_word(name: str) -> re.Pattern:
    return re.compile(r"(?<![a-z])" + re.escape(name.lower()) + r"(?![a-z])")


_CATEGORY_PATTERNS = {c: _whole_word(c) for c in CATEGORIES}


def parse_category(reply: str) -> str | None:
    """The category a reply names as a whole word (the earliest mention wins), or None.

    Whole words only, so a reply that echoes the title does not count as an answer by
    accident: "Mother's day mug" names no category, "Women's jeans" names Women, not Men.
    """
    text = reply.lower()
    found = [(m.start(), c) for c, pattern in _CATEGORY_PATTERNS.items() if (m := pattern.search(text))]
    return min(found)[1] if found else None
