"""A bounded load test of the pricer service (notebook 15, benchmarks/service_load.py): a fixed number of requests
at each number of concurrent clients; throughput and p50/p95 latency per level.
"""

from __future__ import annotations

import asyncio
import time
from typing import Sequence

import numpy as np

from ..pricing.items import Item
from .app import CONDITIONS, MAX_DESCRIPTION_CHARS, MAX_FIELD_CHARS, MAX_TITLE_CHARS


async def _load(url: str, payloads: Sequence[dict], clients: int, requests: int, timeout: float, bar) -> dict:
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    order = iter(range(requests))  # each client takes the next request number until none are left

    async def client_loop(http):
        for i in order:
            started = time.perf_counter()
            try:
                response = await http.post(url, json=payloads[i % len(payloads)])
                response.raise_for_status()
                latencies.append(1000 * (time.perf_counter() - started))
            except httpx.HTTPError as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
            if bar is not None:
                bar.update(1)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(http) for _ in range(clients)))
        seconds = time.perf_counter() - started
    p50, p95 = np.percentile(latencies, [50, 95]).tolist() if latencies else [float("nan")] * 2
    return {"clients": clients, "requests": requests, "ok": len(latencies), "errors": len(errors),
            "seconds": round(seconds, 3), "throughput_rps": len(latencies) / seconds if seconds else float("nan"),
            "p50_ms": p50, "p95_ms": p95, "first_error": errors[0] if errors else ""}  # fmt: skip


def load_test(
    url: str,
    payloads: Sequence[dict],
    clients: Sequence[int] = (1, 4, 16),
    requests: int = 100,
    timeout: float = 120.0,
    progress: bool = True,
    desc: str = "load test",
) -> list[dict]:
    """POST `requests` payloads to `url` with each number of concurrent `clients`; one row per level.

    Each client sends its next request as soon as its last one is answered (a closed loop), so the
    throughput is what the service sustains at that concurrency and the latency is what each client waits.
    Runs in a thread of its own, so it works inside Jupyter's already-running event loop too.
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    if not payloads:
        raise ValueError("the load test needs at least one payload")
    rows = []
    for n in clients:
        bar = tqdm(total=requests, desc=f"{desc}, {n} client{'s' if n > 1 else ''}", disable=not progress, leave=False)
        with ThreadPoolExecutor(1) as pool:
            rows.append(pool.submit(asyncio.run, _load(url, payloads, n, requests, timeout, bar)).result())
        bar.close()
    return rows


def request_payloads(items: Sequence[Item]) -> list[dict]:
    """The `POST /price` bodies for listings (what a seller would type: no price, no id)."""
    payloads = []
    for it in items:
        body = {"title": it.title[:MAX_TITLE_CHARS], "description": it.description[:MAX_DESCRIPTION_CHARS],
                "category": " > ".join(it.categories)[:MAX_FIELD_CHARS] or None, "brand": (it.brand or "")[:MAX_FIELD_CHARS] or None,
                "condition": it.condition if it.condition in CONDITIONS else None, "shipping_paid_by_seller": it.shipping_paid_by_seller}  # fmt: skip
        payloads.append({k: v for k, v in body.items() if v is not None})
    return payloads
