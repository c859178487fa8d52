"""Throughput and p50/p95 latency of the pricer service (notebook 15) at 1, 4 and 16 concurrent clients.

    python benchmarks/service_load.py                              # the baseline stack, then every LLM pricer
    python benchmarks/service_load.py --pricers baseline --requests 2000
    COURSE_PROFILE=ci python benchmarks/service_load.py --llm-requests 8 --json build/service_load.json

The service runs as a real uvicorn process on 127.0.0.1 (`service.start`); the load comes from this process,
an asyncio loop of httpx clients, each sending its next request when its last one is answered, for a fixed
number of requests per level (`service.load_test`). Payloads are eval listings, as a seller would type them.

Rows:
- the baseline stack, without and with micro-batching (`batch=True`): its requests are cheap, so it gets many;
- each LLM-backed pricer (specialist, rag, ensemble) with fewer requests, and an empty response cache, each
  level on listings no earlier level sent (so no answer is a cache hit);
- the RAG pricer again on listings it has just priced: what the response cache saves.

The load generator shares the machine's cores with the service, as it does in the notebook. Run it with
nothing else heavy on the machine (on the course's shared machines: under `flock /tmp/heavy.lock`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from course_utils.pricing import data
from course_utils.serving import service
from course_utils.core.start import start as course_start

LLM_PRICERS = ("specialist", "rag", "ensemble")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pricers", nargs="+", default=["baseline", *LLM_PRICERS], choices=service.PRICERS)
    parser.add_argument("--clients", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--llm-clients", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--requests", type=int, help="requests per level for the baseline (default: the profile's service_requests)")
    parser.add_argument("--llm-requests", type=int, help="requests per level for LLM pricers (default: service_llm_requests)")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args(argv)

    profile = course_start(quiet=True)
    n_fast = args.requests or profile.size("service_requests")
    n_llm = args.llm_requests or profile.size("service_llm_requests")
    payloads = service.request_payloads(data.eval_set(profile) + data.split_items("test", profile))
    rows: list[dict] = []

    def record(label: str, found: list[dict]) -> None:
        for row in found:
            rows.append({"pricer": label, **row})
            print(f"{label:32s} {row['clients']:>3d} clients {row['ok']:>5d} ok {row['errors']:>3d} errors "
                  f"{row['throughput_rps']:8.1f} req/s  p50 {row['p50_ms']:8.1f} ms  p95 {row['p95_ms']:8.1f} ms", flush=True)  # fmt: skip

    print(f"profile {profile.name}, {os.cpu_count()} cores; {n_fast} requests a level (baseline), {n_llm} (LLM pricers)")
    if "baseline" in args.pricers:
        for batch in (False, True):
            started = time.perf_counter()
            with service.start(profile, pricers=("baseline",), batch=batch) as handle:
                print(f"baseline service (batch={batch}) ready in {time.perf_counter() - started:.1f} s")
                record("baseline" + (" + batching" if batch else ""), service.load_test(f"{handle.url}/price", payloads, args.clients, n_fast, progress=False))
    llm = [p for p in args.pricers if p in LLM_PRICERS]
    if llm:
        cache_file = Path(tempfile.mkdtemp(prefix="service-load-")) / "responses.sqlite"  # every level starts cold
        started = time.perf_counter()
        with service.start(profile, pricers=tuple(llm), env={"COURSE_RESPONSE_CACHE": str(cache_file)}) as handle:
            print(f"LLM service ({', '.join(llm)}) ready in {time.perf_counter() - started:.1f} s")
            offset = 0
            for key in llm:
                for clients in args.llm_clients:
                    fresh = payloads[offset : offset + n_llm]
                    if len(fresh) < n_llm:
                        raise SystemExit(f"not enough listings for {n_llm} fresh requests at every level; lower --llm-requests")
                    record(key, service.load_test(f"{handle.url}/price/{key}", fresh, (clients,), n_llm, progress=False))
                    if key == "rag":
                        record("rag (cached answers)", service.load_test(f"{handle.url}/price/rag", fresh, (clients,), n_llm, progress=False))
                    offset += n_llm
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"profile": profile.name, "cores": os.cpu_count(), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
