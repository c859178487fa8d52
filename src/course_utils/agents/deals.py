"""The deal-hunting agents' system (notebook 16): its parts, and the scoring of its alerts.

    feed       listings the course never trained, tuned or scored on, each with a seeded asking price,
               served as a real RSS 2.0 feed on 127.0.0.1 and read back with `feedparser` (`feed`)
    memory     a SQLite file in the results folder: every entry seen, estimate and alert, each write one
               transaction, so an interrupted run leaves whole rows or none (`memory`)
    messenger  alerts always go to a JSONL outbox file; to ntfy or Pushover only when configured (`messenger`)
    pricers    the course's pricers behind one `Item -> float` interface, loaded from what notebooks
               08-14 saved; a missing artefact is an error that names the notebook to run (`pricers`)
    scanner    the chat model's structured pick of the promising listings (`scanner`)
    scoring    precision, recall and F1 of alerts against the hidden true prices (here)

Each part is a module of its own; this one re-exports them, so a notebook reaches the whole system as `deals`.
Notebook 16 writes the scanner, the planner and the agents out in its cells; `deal_mcp` serves the tools over MCP.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from .feed import (  # noqa: F401 (re-exported)
    ASKING_HIGH,
    ASKING_LOW,
    FEED_NS,
    FEED_URL_ENV,
    DealEntry,
    FeedServer,
    configured_feed_url,
    feed_entries,
    make_entries,
    parse_feed,
    rss_xml,
    untouched_items,
)
from .memory import DONE, DealMemory, agents_dir  # noqa: F401
from .messenger import NTFY_ENV, PUSHOVER_ENV, Messenger  # noqa: F401
from .pricers import PRICERS, MissingArtifactError, PricerBank  # noqa: F401
from .scanner import SCAN_SYSTEM, scan_prompt, select_deals, selection_schema  # noqa: F401

# A true deal: the asking price is at least this fraction below the true price.
DEAL_DISCOUNT = 0.25


def is_deal(asking_price: float, true_price: float, discount: float = DEAL_DISCOUNT) -> bool:
    """A true deal: the asking price is at least `discount` below the true price."""
    return asking_price <= (1 - discount) * true_price


def score_alerts(alerted: Iterable[str], entries: Sequence[DealEntry], truth: dict[str, float], discount: float = DEAL_DISCOUNT) -> dict:
    """Precision, recall and F1 of a set of alerted entry ids over `entries`, against the hidden true prices.

    Each entry is one binary case (a true deal or not, alerted or not), scored with scikit-learn. Precision is
    None when nothing was alerted (no alert was wrong, none was right); recall is None when the entries hold
    no true deal; F1 is 0 when either is 0 or undefined."""
    import numpy as np
    from sklearn.metrics import precision_recall_fscore_support

    alerted = set(alerted)
    unknown = alerted - {e.entry_id for e in entries}
    if unknown:
        raise ValueError(f"alerts for entries outside the scored set: {sorted(unknown)[:3]}")
    actual = [is_deal(e.asking_price, truth[e.entry_id], discount) for e in entries]
    predicted = [e.entry_id in alerted for e in entries]
    precision, recall, f1, _ = precision_recall_fscore_support(actual, predicted, average="binary", zero_division=np.nan)
    defined = lambda value: None if np.isnan(value) else float(value)  # noqa: E731
    return {
        "entries": len(entries),
        "true deals": sum(actual),
        "alerts": len(alerted),
        "correct alerts": sum(a and p for a, p in zip(actual, predicted)),
        "precision": defined(precision),
        "recall": defined(recall),
        "f1": defined(f1) or 0.0,
    }
