"""The deal-hunting agents' parts (notebook 16): a deal feed, memory, a messenger, pricer tools, scoring.

    feed       listings the course never trained, tuned or scored on, each with a seeded asking price,
               served as a real RSS 2.0 feed on 127.0.0.1 and read back with `feedparser`
    memory     a SQLite file in the results folder: every entry seen (de-duplicated by the feed's id),
               every estimate and every alert, each write one transaction, so an interrupted run leaves
               whole rows or none, and a new kernel finds them again
    messenger  alerts always go to a JSONL outbox file; to ntfy or Pushover only when configured
    pricers    the course's pricers behind one `Item -> float` interface, loaded from what notebooks
               08-14 saved; a missing artefact is an error that names the notebook to run
    scoring    precision and recall of alerts against the hidden true prices

Notebook 16 writes the scanner, the planner and the agents out in its cells; `deal_mcp` serves the same
tools over MCP.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import sqlite3
import threading
import time
import xml.etree.ElementTree as ET
from contextlib import closing
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterable, Sequence

from ..core import config
from ..pricing.items import Item

# A true deal: the asking price is at least this fraction below the true price.
DEAL_DISCOUNT = 0.25
# Asking prices are drawn from true price x exp(U(log LOW, log HIGH)): discounts down to half, mark-ups up to 40 %.
ASKING_LOW, ASKING_HIGH = 0.5, 1.4
FEED_NS = "https://llm-engineering-course.github.io/ns/deal"  # our own RSS namespace for the listing's fields
FEED_URL_ENV = "COURSE_DEAL_FEED_URL"  # a real feed to read instead of the course's own


# --- the feed ---------------------------------------------------------------------------
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

    def as_item(self, prompt_tokenizer=None, max_tokens: int | None = None) -> Item:
        """The listing as an `Item` a pricer reads. Its `price` field holds the asking price (an Item needs
        one); no pricer of the course reads it, and the true price is not known here."""
        item = Item(
            id=self.entry_id, title=self.title, description=self.description, categories=tuple(self.categories),
            brand=self.brand, condition=self.condition, price=self.asking_price,
        )  # fmt: skip
        if prompt_tokenizer is not None and max_tokens:
            from ..pricing.data import with_prompts

            item = with_prompts([item], prompt_tokenizer, max_tokens)[0]
        return item


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


# --- memory -----------------------------------------------------------------------------
SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    entry_id TEXT PRIMARY KEY, title TEXT NOT NULL, asking_price REAL NOT NULL, payload TEXT NOT NULL,
    first_seen REAL NOT NULL, run_id TEXT, status TEXT NOT NULL DEFAULT 'new', note TEXT
);
CREATE TABLE IF NOT EXISTS estimates (
    entry_id TEXT NOT NULL, pricer TEXT NOT NULL, estimate REAL NOT NULL, made_at REAL NOT NULL,
    PRIMARY KEY (entry_id, pricer)
);
CREATE TABLE IF NOT EXISTS alerts (
    entry_id TEXT PRIMARY KEY, run_id TEXT, asking_price REAL NOT NULL, estimate REAL NOT NULL,
    discount REAL NOT NULL, message TEXT NOT NULL, sent_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT, at REAL NOT NULL, agent TEXT NOT NULL, message TEXT NOT NULL
);
"""
DONE = ("priced", "alerted", "skipped")  # statuses of an entry the planner has decided on


class DealMemory:
    """The agents' memory: a SQLite file. Each method opens its own connection (threads and the MCP
    server's process can share the file) and writes in one transaction (`with conn:` commits, or rolls
    back on an error), so a run killed half-way leaves only whole rows behind."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as conn, conn:
            conn.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")  # readers (the dashboard) never block the writer
        conn.row_factory = sqlite3.Row
        return conn

    def query(self, sql: str, params: Sequence = ()) -> list[dict]:
        with closing(self._connect()) as conn:
            return [dict(row) for row in conn.execute(sql, params)]

    def remember(self, entries: Iterable[DealEntry], run_id: str | None = None) -> int:
        """Store entries not seen before (by feed id), in one transaction; returns how many were new."""
        rows = ((e.entry_id, e.title, e.asking_price, json.dumps(asdict(e)), time.time(), run_id) for e in entries)
        with closing(self._connect()) as conn, conn:  # rows are read inside the transaction: all of them or none
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO entries (entry_id, title, asking_price, payload, first_seen, run_id) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            return conn.total_changes - before

    def decided(self) -> set[str]:
        """Ids of entries the planner has already decided on: the scanner skips them."""
        marks = ",".join("?" * len(DONE))
        return {r["entry_id"] for r in self.query(f"SELECT entry_id FROM entries WHERE status IN ({marks})", DONE)}

    def entry(self, entry_id: str) -> DealEntry | None:
        rows = self.query("SELECT payload FROM entries WHERE entry_id = ?", (entry_id,))
        if not rows:
            return None
        data = json.loads(rows[0]["payload"])
        data["categories"] = tuple(data.get("categories") or ())
        return DealEntry(**data)

    def set_status(self, entry_id: str, status: str, note: str | None = None) -> None:
        with closing(self._connect()) as conn, conn:
            conn.execute("UPDATE entries SET status = ?, note = COALESCE(?, note) WHERE entry_id = ?", (status, note, entry_id))

    def save_estimate(self, entry_id: str, pricer: str, estimate: float) -> None:
        """Cache a pricer's estimate (it does not change the entry's status: a cached value is not a decision)."""
        with closing(self._connect()) as conn, conn:
            conn.execute(
                "INSERT OR REPLACE INTO estimates (entry_id, pricer, estimate, made_at) VALUES (?, ?, ?, ?)",
                (entry_id, pricer, float(estimate), time.time()),
            )

    def estimate(self, entry_id: str, pricer: str) -> float | None:
        rows = self.query("SELECT estimate FROM estimates WHERE entry_id = ? AND pricer = ?", (entry_id, pricer))
        return rows[0]["estimate"] if rows else None

    def record_alert(self, entry: DealEntry, estimate: float, message: str, run_id: str | None = None) -> bool:
        """Store an alert and mark the entry alerted, together; False when it was alerted before (no repeat)."""
        discount = 1 - entry.asking_price / estimate if estimate > 0 else 0.0
        with closing(self._connect()) as conn, conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO alerts (entry_id, run_id, asking_price, estimate, discount, message, sent_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (entry.entry_id, run_id, entry.asking_price, float(estimate), discount, message, time.time()),
            )
            conn.execute("UPDATE entries SET status = 'alerted' WHERE entry_id = ?", (entry.entry_id,))
            return cursor.rowcount == 1

    def log(self, agent: str, message: str, run_id: str | None = None) -> None:
        with closing(self._connect()) as conn, conn:
            conn.execute("INSERT INTO log (run_id, at, agent, message) VALUES (?, ?, ?, ?)", (run_id, time.time(), agent, message))

    def deals_table(self, pricer: str | None = None):
        """Every entry with its latest estimate and whether it was alerted, newest first (a DataFrame)."""
        import pandas as pd

        rows = self.query(
            "SELECT e.entry_id, e.title, e.asking_price, e.status, "
            "(SELECT estimate FROM estimates s WHERE s.entry_id = e.entry_id AND (? IS NULL OR s.pricer = ?) "
            " ORDER BY made_at DESC LIMIT 1) AS estimate, a.sent_at IS NOT NULL AS alerted "
            "FROM entries e LEFT JOIN alerts a ON a.entry_id = e.entry_id ORDER BY e.first_seen DESC, e.entry_id",
            (pricer, pricer),
        )
        frame = pd.DataFrame(rows, columns=["entry_id", "title", "asking_price", "status", "estimate", "alerted"])
        frame["discount"] = 1 - frame["asking_price"] / frame["estimate"]
        return frame

    def log_table(self, limit: int = 200):
        import pandas as pd

        rows = self.query("SELECT run_id, at, agent, message FROM log ORDER BY id DESC LIMIT ?", (limit,))
        frame = pd.DataFrame(rows, columns=["run_id", "at", "agent", "message"])
        frame["at"] = pd.to_datetime(frame["at"], unit="s").dt.strftime("%H:%M:%S")
        return frame


def agents_dir(profile: config.Profile | None = None) -> Path:
    """Where notebook 16 keeps its memory file and outbox: results/<profile>/deal_agents/."""
    path = (profile or config.get_profile()).work_dir / "deal_agents"
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- the messenger ----------------------------------------------------------------------
NTFY_ENV = ("NTFY_TOPIC", "NTFY_SERVER")  # topic (a secret of sorts: anyone who knows it can read), server URL
PUSHOVER_ENV = ("PUSHOVER_USER", "PUSHOVER_TOKEN")


def _http_post(url: str, data: bytes, headers: dict) -> int:
    import urllib.request

    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


class Messenger:
    """Sends alerts. Every alert goes to the outbox (one JSON line each, flushed to disk); to ntfy when
    NTFY_TOPIC is set and to Pushover when PUSHOVER_USER and PUSHOVER_TOKEN are set; nowhere else.

    `post(url, data, headers)` does the HTTP request (tests pass a recorder). Secrets are read once and
    only ever shown masked."""

    def __init__(self, outbox: str | os.PathLike, env: dict | None = None, post: Callable = _http_post):
        from ..core import secrets

        self.outbox = Path(outbox)
        self.outbox.parent.mkdir(parents=True, exist_ok=True)
        if env is None:
            secrets.load_dotenv_once()
            env = os.environ
        self._ntfy_topic = (env.get("NTFY_TOPIC") or "").strip() or None
        self._ntfy_server = (env.get("NTFY_SERVER") or "https://ntfy.sh").strip().rstrip("/")
        self._pushover = tuple((env.get(name) or "").strip() for name in PUSHOVER_ENV)
        self._post = post
        self.sent: list[dict] = []

    @property
    def channels(self) -> list[str]:
        found = ["outbox"]
        if self._ntfy_topic:
            found.append("ntfy")
        if all(self._pushover):
            found.append("pushover")
        return found

    def describe(self) -> str:
        """Where alerts go, safe to print: topics and tokens masked."""
        from ..core.secrets import mask

        parts = [f"outbox {self.outbox}"]
        if self._ntfy_topic:
            parts.append(f"ntfy {self._ntfy_server}/{mask(self._ntfy_topic)}")
        if all(self._pushover):
            parts.append(f"pushover user {mask(self._pushover[0])} token {mask(self._pushover[1])}")
        return "; ".join(parts)

    def send(self, title: str, message: str, data: dict | None = None) -> dict:
        """Deliver one alert; returns {channel: "ok" or the error} (an unreachable service is reported, not raised)."""
        record = {"at": time.strftime("%Y-%m-%dT%H:%M:%S"), "title": title, "message": message, **(data or {})}
        with open(self.outbox, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        status = {"outbox": "ok"}
        if self._ntfy_topic:
            status["ntfy"] = self._deliver(
                f"{self._ntfy_server}/{self._ntfy_topic}", message.encode(), {"Title": title.encode("ascii", "replace").decode()}
            )
        if all(self._pushover):
            from urllib.parse import urlencode

            body = urlencode({"token": self._pushover[1], "user": self._pushover[0], "title": title, "message": message})
            status["pushover"] = self._deliver(
                "https://api.pushover.net/1/messages.json", body.encode(), {"Content-Type": "application/x-www-form-urlencoded"}
            )
        self.sent.append({**record, "status": status})
        return status

    def _deliver(self, url: str, data: bytes, headers: dict) -> str:
        try:
            code = self._post(url, data, headers)
        except Exception as exc:  # a push service that is down must not stop the planner
            return f"failed: {type(exc).__name__}"
        return "ok" if 200 <= int(code) < 300 else f"failed: HTTP {code}"

    def read_outbox(self) -> list[dict]:
        if not self.outbox.is_file():
            return []
        return [json.loads(line) for line in self.outbox.read_text(encoding="utf-8").splitlines() if line.strip()]


# --- pricers behind one interface ---------------------------------------------------------
class MissingArtifactError(FileNotFoundError):
    """A pricer needs something an earlier notebook saves; the message names that notebook."""


PRICERS = {  # name: (what it is, the notebook that makes what it loads)
    "baseline": ("notebook 08's baseline stack (ridge, SVR, LightGBM, neural nets), refitted and cached", "08_baselines.ipynb"),
    "specialist": ("the QLoRA fine-tuned model (adapter of notebook 10)", "10_qlora.ipynb"),
    "rag": ("the RAG pricer (notebook 13's Chroma store + the profile's bulk model)", "13_rag_pricer.ipynb"),
    "forest": ("the random forest on the store's embeddings", "13_rag_pricer.ipynb"),
    "ensemble": ("notebook 14's blend of the four, weights fitted on ensemble_val", "14_ensemble.ipynb"),
}


def _baseline_stack(profile: config.Profile):
    """Notebook 08's best baseline, fitted as notebook 08 fits it, and cached (joblib) under the data version."""
    import joblib

    from ..pricing import baseline_stack, data

    path = agents_dir(profile) / f"baseline-stack-{data.data_version(profile)}.joblib"
    if path.is_file():
        return joblib.load(path)
    stack = baseline_stack.all_baselines(seed=profile.seed, holdout=data.baseline_val_set(profile))[-1]
    stack.fit(data.load_splits(profile).train)
    from ..core.storage import atomic_write

    atomic_write(path, lambda tmp: joblib.dump(stack, tmp))
    return stack


def _product_store(profile: config.Profile):
    from ..retrieval.vectorstore import ProductStore, store_path

    if not store_path(profile).is_dir():
        raise MissingArtifactError(f"no product store at {store_path(profile)}; run notebooks/13_rag_pricer.ipynb (profile {profile.name}) first")
    store = ProductStore(profile)
    if store.count() == 0:
        raise MissingArtifactError(f"the product store at {store.path} is empty; run notebooks/13_rag_pricer.ipynb (profile {profile.name}) first")
    return store


def _specialist(profile: config.Profile, mode: str = "greedy"):
    from ..pricing import qlora
    from ..foundations.models import load_tokenizer
    from ..pricing.specialist import SpecialistPricer

    try:
        model = qlora.load_finetuned(profile)
    except FileNotFoundError as exc:
        raise MissingArtifactError(f"{exc} (notebooks/10_qlora.ipynb, profile {profile.name})") from None
    return SpecialistPricer(model, load_tokenizer("base_model", profile), mode=mode)


class PricerBank:
    """The course's pricers by name, each loaded on first use and kept; `price(name, entry)` is the one tool.

    Items are built from the feed entry with the same capped prompt as the training data (the chat model's
    tokenizer, `max_tokens_prompt`), so a pricer reads a feed listing as it read its training listings."""

    def __init__(self, profile: config.Profile | None = None):
        self.profile = profile or config.get_profile()
        self._pricers: dict[str, Callable[[Item], float]] = {}
        self._tokenizer = None
        self.load_seconds: dict[str, float] = {}

    def item(self, entry: DealEntry) -> Item:
        if self._tokenizer is None:
            from ..foundations.models import load_tokenizer

            self._tokenizer = load_tokenizer("chat_model", self.profile)
        return entry.as_item(self._tokenizer, self.profile.size("max_tokens_prompt"))

    def pricer(self, name: str) -> Callable[[Item], float]:
        if name not in PRICERS:
            raise ValueError(f"unknown pricer {name!r}; choose one of {', '.join(PRICERS)}")
        if name not in self._pricers:
            started = time.perf_counter()
            self._pricers[name] = self._load(name)
            self.load_seconds[name] = round(time.perf_counter() - started, 1)
        return self._pricers[name]

    def _load(self, name: str) -> Callable[[Item], float]:
        profile = self.profile
        if name == "baseline":
            return _baseline_stack(profile)
        if name == "specialist":
            return _specialist(profile)
        if name == "rag":
            from ..chat.llm import get_backend
            from ..pricing.rag_pricer import RAGPricer

            return RAGPricer(_product_store(profile), get_backend(model=profile.bulk_model), k=5)
        if name == "forest":
            from ..pricing.rag_pricer import EmbeddingForest

            return EmbeddingForest(_product_store(profile), seed=profile.seed).fit()
        return self._ensemble()

    def _ensemble(self) -> Callable[[Item], float]:
        from ..pricing import ensemble, results

        if not results.list_predictions(ensemble.FIT_SPLIT, self.profile):  # say so before loading any data
            raise MissingArtifactError(
                f"no stored predictions on {ensemble.FIT_SPLIT!r} for profile {self.profile.name}: run notebooks/08_baselines.ipynb, "
                "10_qlora.ipynb, 11_evaluating_the_finetune.ipynb and 13_rag_pricer.ipynb, then 14_ensemble.ipynb"
            )
        try:
            blend = ensemble.fit_ensemble(self.profile)
        except ensemble.MissingInputError as exc:
            raise MissingArtifactError(f"{exc}\nthen notebooks/14_ensemble.ipynb") from None
        inputs = {}
        for role, model in blend.models.items():
            if role == "specialist":
                inputs[role] = _specialist(self.profile, "weighted" if model.endswith("weighted") else "greedy")
            else:
                inputs[role] = self.pricer(role)

        def blended(item: Item) -> float:
            return float(blend.predict([[inputs[role](item) for role in blend.roles]])[0])

        blended.blend = blend  # the weights, for a notebook to show
        return blended

    def price(self, name: str, entry: DealEntry) -> float:
        return float(self.pricer(name)(self.item(entry)))


# --- scoring ----------------------------------------------------------------------------
def is_deal(asking_price: float, true_price: float, discount: float = DEAL_DISCOUNT) -> bool:
    """A true deal: the asking price is at least `discount` below the true price."""
    return asking_price <= (1 - discount) * true_price


def score_alerts(alerted: Iterable[str], entries: Sequence[DealEntry], truth: dict[str, float], discount: float = DEAL_DISCOUNT) -> dict:
    """Precision and recall of a set of alerted entry ids over `entries`, against the hidden true prices.

    Precision is None when nothing was alerted (no alert was wrong, none was right); recall is None when
    the entries hold no true deal."""
    alerted = set(alerted)
    ids = {e.entry_id for e in entries}
    unknown = alerted - ids
    if unknown:
        raise ValueError(f"alerts for entries outside the scored set: {sorted(unknown)[:3]}")
    deals = {e.entry_id for e in entries if is_deal(e.asking_price, truth[e.entry_id], discount)}
    hits = len(alerted & deals)
    return {
        "entries": len(entries),
        "true deals": len(deals),
        "alerts": len(alerted),
        "correct alerts": hits,
        "precision": hits / len(alerted) if alerted else None,
        "recall": hits / len(deals) if deals else None,
    }


def f1(scores: dict) -> float:
    p, r = scores.get("precision"), scores.get("recall")
    return 0.0 if not p or not r else 2 * p * r / (p + r)


# --- the scanner's structured selection (notebook 16 writes it out; the MCP server reuses it) ---------
SCAN_SYSTEM = (
    "You scan second-hand listings for bargains: items worth clearly more than their asking price. "
    "Pick the most promising ones and describe each in at most six plain words."
)


def selection_schema(count: int, picks: int):
    """A pydantic model for the scanner's reply: up to `picks` listings, named by their number 1..count.

    The numbers are a Literal, so the schema (and the grammar llama-server builds from it) only allows
    listings that are on the page: the model cannot invent one."""
    from typing import Literal

    from pydantic import BaseModel, Field, create_model

    numbers = Literal[tuple(range(1, count + 1))]
    pick = create_model(
        "Pick",
        number=(numbers, Field(description="the listing's number")),
        description=(str, Field(max_length=48, description="what the item is, in at most six words")),
        __base__=BaseModel,
    )
    return create_model("Selection", deals=(list[pick], Field(max_length=picks)), __base__=BaseModel)


def scan_prompt(entries: Sequence[DealEntry], picks: int) -> list[dict]:
    lines = [f"{i}. {e.title[:70]} | ${e.asking_price:.0f} | {e.brand or '-'} | {e.summary(60)}" for i, e in enumerate(entries, 1)]
    return [
        {"role": "system", "content": SCAN_SYSTEM},
        {"role": "user", "content": "Listings (number. title | asking price | brand | description):\n" + "\n".join(lines)
         + f"\n\nPick at most {picks}."},
    ]  # fmt: skip


def select_deals(backend, entries: Sequence[DealEntry], picks: int) -> list[tuple[DealEntry, str]]:
    """The scanner: (entry, cleaned description) for the listings the chat model picks, in its order."""
    from ..chat.structured_output import structured_chat

    if not entries:
        return []
    schema = selection_schema(len(entries), picks)
    reply = structured_chat(backend, scan_prompt(entries, picks), schema, max_tokens=30 * picks + 20, temperature=0)
    chosen, seen = [], set()
    for pick in reply.deals[:picks]:
        if pick.number not in seen:  # a number picked twice counts once
            seen.add(pick.number)
            chosen.append((entries[pick.number - 1], pick.description.strip()))
    return chosen
