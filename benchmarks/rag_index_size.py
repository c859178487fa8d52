"""How many training listings notebook 13 stores (`rag_index_items`), chosen on validation items.

Embeds the first --max training listings of the profile's splits once (the order notebook 13 indexes
them in), then, for each store size, finds every validation item's --k most similar listings among the
first N and prices it with the neighbours' similarity-weighted "typical price", the number the RAG
pricer's prompt spells out (and what it falls back to). The items are validation items outside the
ensemble's slice (`data.baseline_val_set`); the evaluation set is never read. The chat model is left
out: per item it costs hundreds of times the lookup, and notebook 13 counts how often its answer is
that typical price anyway.

    python benchmarks/rag_index_size.py [--profile offline] [--sizes 2500,5000,10000,20000,30000] [--k 5]

It prints the validation RMSLE and the embedding time per size, and writes them as JSON to --out:
`rag_index_items` is set where the error stops falling by more than the embedding time is worth.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="offline")
    parser.add_argument("--sizes", default="2500,5000,10000,20000,30000")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "rag_index_size.json")
    parser.add_argument("--chunks", type=Path, default=ROOT / "build" / "rag_index_size_vectors", help="embedded chunks (resumable)")
    args = parser.parse_args(argv)

    import numpy as np

    from course_utils.core import config
    from course_utils.pricing import data, evaluation
    from course_utils.retrieval.vectorstore import embedding_text

    profile = config.get_profile(args.profile)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    train = data.load_splits(profile).train[: sizes[-1]]
    val_items = data.baseline_val_set(profile)
    truths = np.array([it.price for it in val_items])

    from course_utils.foundations.models import load_embedding_model

    model = load_embedding_model(profile)
    encode = lambda texts: np.asarray(model.encode(texts, batch_size=64, normalize_embeddings=True), dtype=np.float32)  # noqa: E731
    started = time.perf_counter()
    queries = encode([embedding_text(it) for it in val_items])
    # Chunks are saved as they are embedded, so an interrupted run resumes where it stopped.
    args.chunks.mkdir(parents=True, exist_ok=True)
    chunks, embedded = [], 0
    for start in range(0, len(train), 2_000):
        path = args.chunks / f"{profile.name}-{data.data_version(profile)}-{start:06d}.npy"  # stale if the splits change
        if path.exists():
            chunks.append(np.load(path))
            continue
        chunks.append(encode([embedding_text(it) for it in train[start : start + 2_000]]))
        np.save(path, chunks[-1])
        embedded += len(chunks[-1])
        print(f"embedded {start + len(chunks[-1]):,} / {len(train):,}", flush=True)
    stored = np.concatenate(chunks)
    per_1000 = (time.perf_counter() - started) / (embedded + len(val_items)) * 1000 if embedded else float("nan")
    prices = np.array([it.price for it in train])

    rows = []
    for size in sizes:
        sims = queries @ stored[:size].T
        top = np.argsort(-sims, axis=1)[:, : args.k]
        predictions = []
        for row, idx in enumerate(top):
            weights = np.maximum(sims[row, idx], 1e-6) ** 4  # as vectorstore.neighbour_weighted_price
            predictions.append(math.exp(float(np.dot(weights, np.log(prices[idx])) / weights.sum())))
        rows.append({
            "rag_index_items": size,
            "val_rmsle": round(evaluation.rmsle(truths, predictions), 4),
            "mean_top1_similarity": round(float(sims[np.arange(len(top)), top[:, 0]].mean()), 4),
            "embed_s_estimate": round(size * per_1000 / 1000, 1) if per_1000 == per_1000 else None,
        })  # fmt: skip
        print(rows[-1], flush=True)
    report = {"profile": profile.name, "k": args.k, "val_items": len(val_items), "embed_s_per_1000": per_1000, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
