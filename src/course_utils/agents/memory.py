"""The agents' memory (notebook 16): one SQLite file that survives the kernel and never announces a deal twice.

Four tables: `entries` (every listing seen, keyed by the feed's id), `estimates` (what a pricer said),
`alerts` (one row per announced listing) and `log` (what each agent did). Each write is one transaction.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import closing
from dataclasses import asdict
from pathlib import Path
from typing import Iterable, Sequence

from ..core import config
from .feed import DealEntry

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
