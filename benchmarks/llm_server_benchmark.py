"""How fast each offline chat model runs behind the course's local OpenAI-compatible server.

    python benchmarks/llm_server_benchmark.py            # every offline GGUF, 3 repeats each
    python benchmarks/llm_server_benchmark.py --models qwen2.5-coder-1.5b --repeats 5

For each model: the server is started alone (start time includes loading the file), then,
through the official `openai` client and with streaming:
- prompt reading: a ~900-token prompt (a RAG-sized context) with one output token, in prompt tokens a second;
- generation: 128 new tokens after a short prompt, counted from the first token to the last;
- time to first token of a short prompt (what a chat user waits for);
- the server's resident memory once loaded and after the requests.
Figures are medians over the repeats. Run it with nothing else heavy on the machine: two llama.cpp
processes on 2 cores slow each other several-fold.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import psutil

from course_utils.core import model_registry
from course_utils.foundations import models
from course_utils.chat import llm

LONG_PROMPT = " ".join(
    f"Listing {i}: a used item in good condition, shipped by the seller, sold for {10 + i} dollars." for i in range(45)
)


def stream(client, model: str, messages: list[dict], max_tokens: int) -> tuple[float, float, int]:
    """(seconds to the first token, seconds in all, content pieces streamed)."""
    started = time.perf_counter()
    first = None
    pieces = 0
    for chunk in client.chat.completions.create(
        model=model, messages=messages, max_tokens=max_tokens, temperature=0, stream=True
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            pieces += 1
            if first is None:
                first = time.perf_counter() - started
    return first or 0.0, time.perf_counter() - started, pieces


def measure(source: model_registry.ModelSource, repeats: int) -> dict:
    from openai import OpenAI

    path = models.gguf_path(source)
    started = time.perf_counter()
    server = llm.LocalServer(path, alias=source.short_name, n_ctx=4096).start()
    start_s = time.perf_counter() - started
    try:
        rss = lambda: psutil.Process(server.process.pid).memory_info().rss / 1e9  # noqa: E731
        loaded_gb = rss()
        client = OpenAI(base_url=server.base_url, api_key="local", max_retries=0)
        long_messages = [{"role": "user", "content": LONG_PROMPT + "\nWhat is the cheapest listing?"}]
        prompt_tokens = client.chat.completions.create(
            model=server.alias, messages=long_messages, max_tokens=1, temperature=0
        ).usage.prompt_tokens
        prompt_rates, gen_rates, ttfts = [], [], []
        for i in range(repeats):
            # A different first word each time, so no request reuses the previous one's cached prompt.
            messages = [{"role": "user", "content": f"Run {i}. " + long_messages[0]["content"]}]
            t0 = time.perf_counter()
            client.chat.completions.create(model=server.alias, messages=messages, max_tokens=1, temperature=0)
            prompt_rates.append(prompt_tokens / (time.perf_counter() - t0))
            short = [{"role": "user", "content": f"Request {i}: write a long paragraph about selling used cameras online."}]
            response = client.chat.completions.create(model=server.alias, messages=short, max_tokens=128, temperature=0)
            generated = response.usage.completion_tokens
            ttft, total, _ = stream(client, server.alias, short, 128)
            gen_rates.append((generated - 1) / max(total - ttft, 1e-6))
            ttfts.append(ttft)
        return {
            "model": source.short_name,
            "server": server.kind,
            "file GB": round(path.stat().st_size / 1e9, 2),
            "start s": round(start_s, 1),
            "prompt tok/s": round(statistics.median(prompt_rates), 1),
            "generation tok/s": round(statistics.median(gen_rates), 1),
            "time to first token s": round(statistics.median(ttfts), 2),
            "RSS loaded GB": round(loaded_gb, 2),
            "RSS after GB": round(rss(), 2),
        }
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    offline = {s.short_name: s for s in (model_registry.SMOLLM2_GGUF, *model_registry.SPLIT_MODELS)}
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(offline), help=f"any of {', '.join(offline)}")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    unknown = [m for m in args.models if m not in offline]
    if unknown:
        parser.error(f"unknown model {unknown[0]!r}; choose from {', '.join(offline)}")
    import pandas as pd

    rows = [measure(offline[name], args.repeats) for name in args.models]
    print(f"{os.cpu_count()} cores, {llm.server_threads()} server threads, n_ctx 4096, medians of {args.repeats} repeats")
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
