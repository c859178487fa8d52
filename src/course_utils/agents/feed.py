"""The deal feed (notebook 16): listings the course never touched, served as RSS over HTTP and read back.

Entries come from the part of the test split no notebook read (`untouched_items`), each with a seeded asking
price (the true price times a factor between ASKING_LOW and ASKING_HIGH); the true prices are returned apart,
for scoring, and never put in the feed. `FeedServer` serves the entries as a real RSS 2.0 document on
127.0.0.1 from a thread; `parse_feed` reads any RSS or Atom feed with `feedparser`.
"""

from __future__ import annotations

import math
import os
import random
import re
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Sequence

from ..core import config
from ..pricing.items import Item

# Asking prices are drawn from true price x exp(U(log LOW, log HIGH)): discounts down to half, mark-ups up to 40 %.
ASKING_LOW, ASKING_HIGH = 0.5, 1.4
FEED_NS = "https://llm-engineering-course.github.io/ns/deal"  # our own RSS namespace for the listing's fields
FEED_URL_ENV = "COURSE_DEAL_FEED_URL"  # a real feed to read instead of the course's own


@dataclass
class DealEntry:
    """One listing on the feed: what a buyer sees. The true price is never part of it."""

    entry_id: str
    title: str
    asking_price: float
    description: str = ""
    categories: tuple[str, ...] = ()
    brand: str | None = None
    condition: str | None = None
    link: str = ""

    def summary(self, limit: int = 90) -> str:
        text = " ".join(self.description.split())
        return text if len(text) <= limit else text[: limit - 1] + "…"

    def as_item(self) -> Item:
        """The listing as an `Item` a pricer reads. Its `price` field holds the asking price (an Item needs
        one); no pricer of the course reads it, and the true price is not known here."""
        return Item(
            id=self.entry_id, title=self.title, description=self.description, categories=tuple(self.categories),
            brand=self.brand, condition=self.condition, price=self.asking_price,
        )  # fmt: skip


def untouched_items(profile: config.Profile | None = None) -> list[Item]:
    """Test-split listings outside the fixed eval set: no model of the course trained, tuned or was scored on them.

    The training split trains the models, the validation split tunes them (stack weights, the ensemble,
    store sizes), and the eval set (a seeded slice of the test split) scores them; the rest of the test
    split is never read by notebooks 08-14.
    """
    from ..pricing.data import eval_set, load_splits

    profile = profile or config.get_profile()
    scored = {it.id for it in eval_set(profile)}
    return [it for it in load_splits(profile).test if it.id not in scored]


def make_entries(items: Sequence[Item], seed: int) -> tuple[list[DealEntry], dict[str, float]]:
    """Feed entries with seeded asking prices, and {entry_id: true price}, kept apart for scoring."""
    rng = random.Random(seed)
    entries, truth = [], {}
    for item in items:
        factor = math.exp(rng.uniform(math.log(ASKING_LOW), math.log(ASKING_HIGH)))
        entry = DealEntry(
            entry_id=f"deal-{item.id}", title=item.title, asking_price=float(max(1, round(item.price * factor))),
            description=item.description, categories=tuple(item.categories), brand=item.brand, condition=item.condition,
        )  # fmt: skip
        entries.append(entry)
        truth[entry.entry_id] = float(item.price)
    return entries, truth


def feed_entries(profile: config.Profile | None = None) -> tuple[list[DealEntry], list[DealEntry], dict[str, float]]:
    """The fixed validation and evaluation entries of notebook 16 and their hidden true prices."""
    profile = profile or config.get_profile()
    pool = untouched_items(profile)
    n_val, n_eval = profile.size("deal_val_entries"), profile.size("deal_eval_entries")
    chosen = random.Random(profile.seed).sample(pool, n_val + n_eval)
    entries, truth = make_entries(chosen, profile.seed)
    return entries[:n_val], entries[n_val:], truth


def rss_xml(entries: Sequence[DealEntry], title: str = "Relay Market deals", link: str = "http://127.0.0.1/") -> bytes:
    """An RSS 2.0 document: one <item> per entry, the listing's extra fields in the course's namespace."""
    ET.register_namespace("deal", FEED_NS)
    rss = ET.Element("rss", {"version": "2.0"})
    channel = ET.SubElement(rss, "channel")
    for tag, text in (("title", title), ("link", link), ("description", "Second-hand listings with asking prices")):
        ET.SubElement(channel, tag).text = text
    for entry in entries:
        node = ET.SubElement(channel, "item")
        ET.SubElement(node, "title").text = f"{entry.title} - ${entry.asking_price:.2f}"
        ET.SubElement(node, "guid", {"isPermaLink": "false"}).text = entry.entry_id
        ET.SubElement(node, "link").text = entry.link or f"{link.rstrip('/')}/deal/{entry.entry_id}"
        ET.SubElement(node, "description").text = entry.description
        for category in entry.categories:
            ET.SubElement(node, "category").text = category
        ET.SubElement(node, f"{{{FEED_NS}}}price").text = f"{entry.asking_price:.2f}"
        for tag in ("brand", "condition"):
            if getattr(entry, tag):
                ET.SubElement(node, f"{{{FEED_NS}}}{tag}").text = getattr(entry, tag)
    return ET.tostring(rss, encoding="utf-8", xml_declaration=True)


_TITLE_PRICE = re.compile(r"\s*[-–]\s*\$\s*([0-9][0-9,]*(?:\.[0-9]+)?)\s*$")


def parse_feed(source) -> list[DealEntry]:
    """Entries of an RSS or Atom feed (a URL, a file or the document itself), read with feedparser.

    The asking price comes from the course's `deal:price` element, else from a trailing "- $12.50" in the
    title; entries without a price are skipped (a deal needs one).
    """
    import feedparser

    parsed = feedparser.parse(source)
    if parsed.bozo and not parsed.entries:
        raise ValueError(f"could not read a feed from {str(source)[:80]!r}: {parsed.get('bozo_exception')}")
    entries = []
    for raw in parsed.entries:
        title = raw.get("title", "")
        match = _TITLE_PRICE.search(title)
        price = raw.get("deal_price") or (match.group(1).replace(",", "") if match else None)
        if price is None:
            continue
        entries.append(
            DealEntry(
                entry_id=raw.get("id") or raw.get("link") or title,
                title=_TITLE_PRICE.sub("", title).strip(),
                asking_price=float(price),
                description=raw.get("summary", ""),
                categories=tuple(tag.get("term") for tag in raw.get("tags", []) if tag.get("term")),
                brand=raw.get("deal_brand"),
                condition=raw.get("deal_condition"),
                link=raw.get("link", ""),
            )
        )
    return entries


class FeedServer:
    """Serves a changing list of entries as RSS at http://127.0.0.1:<port>/deals.rss from a thread.

    `publish(entries)` replaces what the feed shows (a real feed moves on the same way: new listings in,
    old ones out); `close()` stops the thread.
    """

    def __init__(self, entries: Sequence[DealEntry] = (), port: int = 0, title: str = "Relay Market deals"):
        self._entries: list[DealEntry] = list(entries)
        self._lock = threading.Lock()
        self.requests = 0
        feed = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                if self.path.split("?")[0] != "/deals.rss":
                    self.send_error(404, "the feed is at /deals.rss")
                    return
                with feed._lock:
                    body = rss_xml(feed._entries, title, f"http://127.0.0.1:{feed.port}/")
                    feed.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # keep the notebook's output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="deal-feed", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/deals.rss"

    def publish(self, entries: Sequence[DealEntry]) -> None:
        with self._lock:
            self._entries = list(entries)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def configured_feed_url() -> str | None:
    """A real feed to read ($COURSE_DEAL_FEED_URL), or None for the course's own."""
    return os.environ.get(FEED_URL_ENV, "").strip() or None
