"""A response cache on disk and retry with exponential backoff for LLM calls.

Two things every notebook that calls an API wants:

* **a cache**: the same model, messages and parameters give the same stored answer,
  so re-running a notebook costs nothing and shows the same text. Responses live in
  one SQLite file (`config.cache_dir() / "responses.sqlite"`, or $COURSE_RESPONSE_CACHE), keyed by a
  SHA-256 of the request. Sampled answers (temperature > 0) are cached too: the
  key includes the parameters, and a re-run replays the first sample on purpose.
* **retries**: rate limits (HTTP 429), timeouts and dropped connections are
  temporary, so the call is retried after 1, 2, 4, 8 ... seconds (capped, with
  jitter), honouring a server's `Retry-After` header. Every other error, such as a
  bad request or a wrong key, is raised at once: retrying would not fix it.
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from ..core import config

T = TypeVar("T")


def transient_errors() -> tuple[type[BaseException], ...]:
    """The openai exceptions worth retrying: rate limits, timeouts, connection drops."""
    import openai

    # APITimeoutError is a subclass of APIConnectionError; both are listed for clarity.
    return (openai.RateLimitError, openai.APITimeoutError, openai.APIConnectionError)


def _retry_after_seconds(exc: BaseException) -> float | None:
    """The delay a server asked for in a Retry-After header, when it sent one."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    value = headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def backoff_delays(retries: int, base: float = 1.0, factor: float = 2.0, max_delay: float = 30.0) -> list[float]:
    """The waits before each retry without jitter: base, base*factor, ... capped at max_delay."""
    return [min(max_delay, base * factor**attempt) for attempt in range(retries)]


def call_with_retry(
    fn: Callable[..., T],
    *args: Any,
    retries: int = 5,
    base_delay: float = 1.0,
    factor: float = 2.0,
    max_delay: float = 30.0,
    jitter: float = 0.1,
    retry_on: tuple[type[BaseException], ...] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
    **kwargs: Any,
) -> T:
    """Call `fn(*args, **kwargs)`, retrying transient errors with exponential backoff.

    After `retries` failed retries the last error is raised unchanged, so the caller
    sees the real cause. `sleep` and `on_retry` are injectable for tests and logging.
    """
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    retry_on = retry_on or transient_errors()
    delays = backoff_delays(retries, base_delay, factor, max_delay)
    for attempt in range(retries + 1):
        try:
            return fn(*args, **kwargs)
        except retry_on as exc:
            if attempt == retries:
                raise
            delay = delays[attempt]
            asked = _retry_after_seconds(exc)
            if asked is not None:
                delay = min(max_delay, max(delay, asked))
            delay *= 1 + random.uniform(-jitter, jitter) if jitter else 1
            if on_retry is not None:
                on_retry(attempt + 1, exc, delay)
            sleep(max(0.0, delay))
    raise AssertionError("unreachable")  # pragma: no cover


def cache_key(model: str, messages: list[dict], params: dict | None = None) -> str:
    """A stable SHA-256 of everything that determines a response."""
    payload = json.dumps(
        {"model": model, "messages": messages, "params": params or {}},
        sort_keys=True,
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


RESPONSE_CACHE_ENV = "COURSE_RESPONSE_CACHE"


def default_cache_path() -> Path:
    """$COURSE_RESPONSE_CACHE (a file), else responses.sqlite in the course cache folder.

    `make test` points it at a fresh file, so the tests' chat calls reach the server every run.
    """
    return config.path_from_env(RESPONSE_CACHE_ENV) or config.cache_dir() / "responses.sqlite"


class ResponseCache:
    """Responses stored in one SQLite file, safe to share between threads and processes."""

    total_hits = 0  # over every cache of this process: lets a timing tell how many answers were only looked up

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS responses ("
                " key TEXT PRIMARY KEY, model TEXT NOT NULL, request TEXT NOT NULL,"
                " response TEXT NOT NULL, created REAL NOT NULL)"
            )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def get(self, key: str) -> str | None:
        with self._lock, self._connect() as db:
            row = db.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        ResponseCache.total_hits += 1
        return row[0]

    def put(self, key: str, model: str, request: dict, response: str) -> None:
        with self._lock, self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO responses (key, model, request, response, created) VALUES (?, ?, ?, ?, ?)",
                (key, model, json.dumps(request, ensure_ascii=False, default=str), response, time.time()),
            )

    def __len__(self) -> int:
        with self._lock, self._connect() as db:
            return db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def clear(self) -> None:
        with self._lock, self._connect() as db:
            db.execute("DELETE FROM responses")
        self.hits = self.misses = 0

    def stats(self) -> dict[str, int]:
        return {"entries": len(self), "hits": self.hits, "misses": self.misses}


def cached_chat(
    backend,
    messages: list[dict],
    cache: ResponseCache | None = None,
    retries: int = 5,
    sleep: Callable[[float], None] = time.sleep,
    **params: Any,
) -> str:
    """`backend.chat(messages, **params)` through the cache, with retries on transient errors."""
    cache = cache if cache is not None else default_cache()
    key = cache_key(backend.model, messages, params)
    stored = cache.get(key)
    if stored is not None:
        return stored
    text = call_with_retry(backend.chat, messages, retries=retries, sleep=sleep, **params)
    cache.put(key, backend.model, {"messages": messages, "params": params}, text)
    return text


def ask_chat(backend, messages: list[dict], use_cache: bool = True, cache: ResponseCache | None = None, **params: Any) -> str:
    """One chat completion for a pricer: through the response cache (`cached_chat`), or, with
    `use_cache=False`, one direct call."""
    if not use_cache:
        return backend.chat(messages, **params)
    return cached_chat(backend, messages, cache=cache, **params)


_DEFAULT: ResponseCache | None = None


def default_cache() -> ResponseCache:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = ResponseCache()
    return _DEFAULT
