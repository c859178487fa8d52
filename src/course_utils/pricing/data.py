"""Product listings for the pricing weeks: capped prompts, deterministic splits, and their cache.

`load_items()` gives the profile's curated listings (`curation`: Mercari offline, Amazon
product metadata on the GPU profiles). `load_splits()` makes deterministic train /
validation / test splits, sized by the profile, and caches them on disk (written
atomically, reused while the inputs are unchanged). `eval_set()` is the fixed slice of the
test split that every model in the course is scored on.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

from ..core import config
from ..core.storage import atomic_write
from ..foundations.listings import file_fingerprint, mercari_path
from .curation import (
    AMAZON_CATEGORIES,
    CURATION_VERSION,
    CurationReport,
    balance_categories,
    filter_price_range,
    load_amazon,
    load_mercari,
    merge_reports,
)
from .items import Item


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



def _split_inputs(profile: config.Profile, price_range, max_category_share, with_prompt: bool) -> dict:
    if profile.price_data == "mercari":
        source = {"name": "mercari", "file": file_fingerprint(mercari_path())}
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
            from ..foundations.models import load_tokenizer

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
