"""Curation: raw listings in, `Item`s out, with every dropped row counted and its reason.

Offline, the rows are the Mercari listings (`foundations.listings` reads them); the GPU
profiles load Amazon Reviews 2023 product metadata from the Hub. Both parsers turn raw
rows into `Item`s and count every row they drop, with its reason, in a `CurationReport`:
nothing is dropped silently. The price-range filter and the category balance are choices,
counted apart from defects.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ..core import config
from ..foundations.listings import DataSourceError, clean_str, file_fingerprint, mercari_path, read_mercari, scrub
from .items import Item, PriceError, parse_listed_price

CURATION_VERSION = 1  # bump when parsing or scrubbing changes: it changes data_version
MIN_TEXT_CHARS = 3  # a listing whose title and description together are shorter has no usable text

MERCARI_CONDITIONS = {1: "New", 2: "Like new", 3: "Good", 4: "Fair", 5: "Poor"}

# Amazon Reviews 2023 categories used on the GPU profiles (the Hub config is raw_meta_<name>).
AMAZON_CATEGORIES = (
    "Appliances",
    "Automotive",
    "Cell_Phones_and_Accessories",
    "Electronics",
    "Musical_Instruments",
    "Office_Products",
    "Tools_and_Home_Improvement",
    "Toys_and_Games",
)
AMAZON_REPO = "McAuley-Lab/Amazon-Reviews-2023"

# --- curation report --------------------------------------------------------------------
@dataclass
class CurationReport:
    """What happened to every raw row: kept, dropped (with the reason) or filtered by a choice."""

    source: str
    rows_read: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)  # defects: bad price, no text
    filtered: Counter = field(default_factory=Counter)  # choices: price range, category balance
    cleaned: Counter = field(default_factory=Counter)  # fields repaired in kept rows

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1

    @property
    def balanced(self) -> bool:
        """Every row read is accounted for: kept + dropped + filtered == rows read."""
        return self.rows_read == self.kept + sum(self.dropped.values()) + sum(self.filtered.values())

    def table(self):
        """A tidy DataFrame: one row per outcome (kept, each drop reason, each filter, each repair)."""
        import pandas as pd

        rows = [("read", "rows read", self.rows_read), ("kept", "items kept", self.kept)]
        rows += [("dropped", reason, n) for reason, n in sorted(self.dropped.items())]
        rows += [("filtered", reason, n) for reason, n in sorted(self.filtered.items())]
        rows += [("cleaned", what, n) for what, n in sorted(self.cleaned.items())]
        return pd.DataFrame(rows, columns=["outcome", "reason", "rows"])

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "rows_read": self.rows_read,
            "kept": self.kept,
            "dropped": dict(self.dropped),
            "filtered": dict(self.filtered),
            "cleaned": dict(self.cleaned),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "CurationReport":
        return cls(
            source=data["source"],
            rows_read=data["rows_read"],
            kept=data["kept"],
            dropped=Counter(data.get("dropped", {})),
            filtered=Counter(data.get("filtered", {})),
            cleaned=Counter(data.get("cleaned", {})),
        )

    def __str__(self) -> str:
        parts = [f"{self.source}: read {self.rows_read:,}, kept {self.kept:,}"]
        for reason, n in self.dropped.most_common():
            parts.append(f"dropped {n:,} ({reason})")
        for reason, n in self.filtered.most_common():
            parts.append(f"filtered {n:,} ({reason})")
        return "; ".join(parts)


class DropRow(ValueError):
    """A raw row that cannot become an Item; `reason` is the report's key."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def price_problem(value) -> str | None:
    """None for a usable price, else a short reason ('missing price', 'price not positive', ...)."""
    try:
        parse_listed_price(value)
    except PriceError as exc:
        text = str(exc)
        if "missing" in text:
            return "missing price"
        if "not positive" in text:
            return "price not positive"
        if "not finite" in text:
            return "price not finite"
        return "price not a number"
    return None


def _whole_number(value, what: str) -> int | None:
    """A small integer code (condition id, shipping flag); None when missing; DropRow when not a number."""
    if value is None or value != value:  # None or NaN
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DropRow(f"bad {what}") from None
    if not number.is_integer():
        raise DropRow(f"bad {what}")
    return int(number)


def parse_mercari_row(row: dict, cleaned: Counter | None = None) -> Item:
    """One Mercari row (a dict of the parquet columns) as an Item; raises DropRow with the reason."""
    problem = price_problem(row.get("price"))
    if problem:
        raise DropRow(problem)
    title = scrub(row.get("name"), cleaned)
    description = scrub(row.get("item_description"), cleaned)
    if len(title) + len(description) < MIN_TEXT_CHARS:
        raise DropRow("no usable text")
    category = clean_str(row.get("category_name"))
    if category is None and cleaned is not None:
        cleaned["category missing (kept as Unknown)"] += 1
    # Some category names contain '/', so only the first two slashes separate levels.
    categories = tuple(part.strip() for part in category.split("/", 2)) if category else ()
    condition = MERCARI_CONDITIONS.get(_whole_number(row.get("item_condition_id"), "condition"))
    shipping = _whole_number(row.get("shipping"), "shipping flag")
    item_id = row.get("train_id", row.get("id"))
    if item_id is None:
        raise DropRow("no listing id")
    return Item(
        id=f"mercari-{item_id}",
        title=title,
        description=description,
        categories=categories,
        brand=clean_str(row.get("brand_name")),
        condition=condition,
        shipping_paid_by_seller=None if shipping is None else bool(shipping),
        price=row.get("price"),
    )


def parse_rows(rows: Iterable[dict], parser, source: str) -> tuple[list[Item], CurationReport]:
    """Run a row parser over raw rows, counting every kept and dropped row."""
    report = CurationReport(source=source)
    items: list[Item] = []
    for row in rows:
        report.rows_read += 1
        try:
            items.append(parser(row, report.cleaned))
        except DropRow as exc:
            report.drop(exc.reason)
    report.kept = len(items)
    return items, report


def load_mercari(profile: config.Profile | None = None, path: Path | str | None = None) -> tuple[list[Item], CurationReport]:
    """Every usable Mercari listing as an Item, and the report of what was dropped and why."""
    path = Path(path) if path else mercari_path()
    key = (str(path), file_fingerprint(path))
    if key in _MERCARI_MEMO:  # parsing 100k rows takes seconds; the file has not changed
        items, report = _MERCARI_MEMO[key]
        return list(items), CurationReport.from_dict(report.to_dict())
    frame = read_mercari(path=path)
    missing = {"name", "price", "item_description"} - set(frame.columns)
    if not {"train_id", "id"} & set(frame.columns):
        missing.add("train_id (or id)")
    if missing:
        raise DataSourceError(f"{path} lacks the columns {sorted(missing)}; is it the Mercari listings file?")
    records = frame.to_dict("records")
    items, report = parse_rows(records, parse_mercari_row, source=f"mercari ({path.name})")
    _MERCARI_MEMO[key] = (items, report)
    return list(items), CurationReport.from_dict(report.to_dict())


_MERCARI_MEMO: dict[tuple, tuple[list[Item], CurationReport]] = {}


# --- Amazon Reviews 2023 (GPU profiles) -------------------------------------------------
_AMAZON_NOISY_DETAILS = {"Best Sellers Rank", "Date First Available", "Customer Reviews", "ASIN", "Discontinued by manufacturer"}


def _as_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value if v is not None]


def _amazon_price(value):
    """The raw price with the json builder's quoting undone; None where the listing has none."""
    if isinstance(value, str) and value.startswith('"'):
        # a chunk that mixes numbers and strings is stored as JSON text: '"$12.99"', '"None"'
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError:
            decoded = None
        if isinstance(decoded, str):
            value = decoded
    if isinstance(value, str) and value.strip().lower() in {"none", "", "nan"}:
        return None
    return value


def _amazon_details(value, cleaned: Counter | None = None) -> dict:
    """`details` as a dict: the builder hands it over as JSON text, a fixture may pass the dict."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, dict) and cleaned is not None:
            cleaned["unparsable details ignored"] += 1
    return value if isinstance(value, dict) else {}


def parse_amazon_row(row: dict, cleaned: Counter | None = None, category: str | None = None) -> Item:
    """One raw_meta row of Amazon Reviews 2023 as an Item; raises DropRow with the reason.

    Prices arrive as floats, as strings such as '$12.99' (also JSON-quoted), or as None / 'None'.
    `details` is a JSON string (or already a dict) of product attributes.
    """
    price = _amazon_price(row.get("price"))
    problem = price_problem(price)
    if problem:
        raise DropRow(problem)
    title = scrub(row.get("title"), cleaned)
    parts = [scrub(p, cleaned) for p in _as_list(row.get("description")) + _as_list(row.get("features"))]
    details = _amazon_details(row.get("details"), cleaned)
    # null values are skipped: the loaded JSON carries every key of its chunk, null where the row had none
    detail_text = "; ".join(
        f"{k}: {v}" for k, v in details.items() if k not in _AMAZON_NOISY_DETAILS and isinstance(v, (str, int, float))
    )
    if detail_text:
        parts.append(scrub(detail_text, cleaned))
    description = " ".join(p for p in parts if p)
    if len(title) + len(description) < MIN_TEXT_CHARS:
        raise DropRow("no usable text")
    main = clean_str(row.get("main_category")) or (category.replace("_", " ") if category else None)
    categories = tuple(c for c in [main, *_as_list(row.get("categories"))] if c)
    # dict.fromkeys drops a repeated top level while keeping the order
    categories = tuple(dict.fromkeys(categories))
    brand = clean_str(details.get("Brand")) or clean_str(row.get("store"))
    asin = row.get("parent_asin") or row.get("asin")
    if not asin:
        raise DropRow("no product id")
    return Item(
        id=f"amazon-{asin}",
        title=title,
        description=description,
        categories=categories,
        brand=brand,
        price=price,
    )


def amazon_meta_features():
    """The raw_meta schema, fixed up front (the Hub's own loading script declared the same one).

    Without it the json builder infers the schema from the first chunk and fails to cast a later
    chunk whose `details` has other keys or whose `price` is a string. `details` and `price` are
    strings: the builder stores a dict as its JSON text, and a number as its text.
    """
    from datasets import Features, List, Value

    text = Value("string")
    return Features({
        "main_category": text,
        "title": text,
        "average_rating": Value("float64"),
        "rating_number": Value("int64"),
        "features": List(text),
        "description": List(text),
        "price": text,
        "images": List({"hi_res": text, "large": text, "thumb": text, "variant": text}),
        "videos": List({"title": text, "url": text, "user_id": text}),
        "store": text,
        "categories": List(text),
        "details": text,
        "parent_asin": text,
        "bought_together": text,
        "subtitle": text,  # only some categories (Books) have these two; absent ones read as null
        "author": text,
    })


def amazon_dataset(category: str, streaming: bool = True, data_file: str | None = None, **options):
    """The raw_meta_<category> rows: from the Hub (needs network; GPU profiles only) or `data_file`.

    `options` go to `datasets.load_dataset` (tests pass a small `chunksize` and a `cache_dir`).
    """
    import datasets

    # datasets 4 (the course's pin) runs no loading scripts: read the JSON-lines file the repository's script would.
    data_file = data_file or f"hf://datasets/{AMAZON_REPO}/raw/meta_categories/meta_{category}.jsonl"
    return datasets.load_dataset(
        "json", data_files=data_file, features=amazon_meta_features(), split="train", streaming=streaming, **options
    )


def load_amazon(
    category: str,
    profile: config.Profile | None = None,
    limit: int | None = None,
    rows: Iterable[dict] | None = None,
) -> tuple[list[Item], CurationReport]:
    """Usable Amazon listings of one category (at most `limit` kept), with the curation report.

    `rows` replaces the Hub download (tests pass a small fixture).
    """
    if rows is None:
        rows = amazon_dataset(category)
    report = CurationReport(source=f"amazon {category}")
    items: list[Item] = []
    for row in rows:
        report.rows_read += 1
        try:
            items.append(parse_amazon_row(row, report.cleaned, category=category))
        except DropRow as exc:
            report.drop(exc.reason)
        if limit is not None and len(items) >= limit:
            break
    report.kept = len(items)
    return items, report


def merge_reports(reports: Sequence[CurationReport], source: str) -> CurationReport:
    merged = CurationReport(source=source)
    for r in reports:
        merged.rows_read += r.rows_read
        merged.kept += r.kept
        merged.dropped.update(r.dropped)
        merged.filtered.update(r.filtered)
        merged.cleaned.update(r.cleaned)
    return merged


# --- price range and category balance ---------------------------------------------------
def filter_price_range(items: list[Item], low: float | None, high: float | None, report: CurationReport | None = None) -> list[Item]:
    """Keep items priced within [low, high]; the others are counted in the report's `filtered`."""
    kept = [it for it in items if (low is None or it.price >= low) and (high is None or it.price <= high)]
    if report is not None and len(kept) != len(items):
        report.filtered[f"price outside [{low}, {high}]"] += len(items) - len(kept)
        report.kept -= len(items) - len(kept)
    return kept


def balance_categories(
    items: list[Item], max_share: float, seed: int = 42, report: CurationReport | None = None
) -> list[Item]:
    """Cap every top-level category at `max_share` of the items (a seeded subsample), keeping order.

    Mercari is 45% 'Women'; a cap of 0.25 stops one category from dominating what a model sees.
    """
    if not 0 < max_share <= 1:
        raise ValueError(f"max_share must be in (0, 1], got {max_share}")
    by_cat: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        by_cat.setdefault(it.category, []).append(i)
    # The cap is a share of the balanced total; iterate because capping shrinks the total.
    cap = len(items)
    for _ in range(50):
        total = sum(min(len(v), cap) for v in by_cat.values())
        new_cap = max(1, int(max_share * total))
        if new_cap >= cap:
            break
        cap = new_cap
    rng = random.Random(seed)
    keep: set[int] = set()
    for cat in sorted(by_cat):
        idx = by_cat[cat]
        keep.update(idx if len(idx) <= cap else rng.sample(idx, cap))
    kept = [it for i, it in enumerate(items) if i in keep]
    if report is not None and len(kept) != len(items):
        report.filtered[f"category balance (max share {max_share:.0%})"] += len(items) - len(kept)
        report.kept -= len(items) - len(kept)
    return kept


