"""Benchmark: the whole notebook suite in the CI profile, wall time and peak memory per notebook.

    .venv/bin/python benchmarks/notebook_suite.py [--profile ci] [--only 05 07]

Figures are printed and written to build/benchmark/<profile>.json. Targets (issue 2):
at most 3 minutes per notebook, 15 minutes in total, peak memory at most 6 GB.
"""

import argparse
import json
import os
import sys
import time

from course_utils.core import config, runner

ROOT = config.repo_root()


def first_completion_seconds() -> float:
    """Time from asking for the local server to its first chat answer (target: 5 s)."""
    from course_utils.chat import llm

    started = time.perf_counter()
    backend = llm.get_backend("local")
    backend.chat([{"role": "user", "content": "Name a colour."}], max_tokens=8, temperature=0)
    seconds = time.perf_counter() - started
    llm.stop_local_server()
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="ci")
    parser.add_argument("--only", nargs="*")
    args = parser.parse_args()
    out = ROOT / "build" / "benchmark"
    # An empty response cache of its own, as in make test: cached answers would time a lookup, not the model.
    responses = out / "responses.sqlite"
    for stale in out.glob("responses.sqlite*"):
        stale.unlink()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.update({
        config.PROFILE_ENV: args.profile, "COURSE_LLM": "local", "COURSE_BLOCK_NETWORK": "1",
        "COURSE_RESPONSE_CACHE": str(responses), "COURSE_RESULTS": str(out / "results"),
    })  # fmt: skip
    server_seconds = first_completion_seconds()
    print(f"local server: first chat completion {server_seconds:.2f} s after asking (target 5 s)")
    runs = [runner.execute(p, out / args.profile, args.profile, timeout=1800) for p in runner.notebooks(ROOT / "notebooks", args.only)]
    print(runner.format_table(runs))
    total = sum(r.seconds for r in runs)
    peak = max((r.peak_rss_mb for r in runs), default=0)
    slow = [r.notebook for r in runs if r.seconds > 180]
    print(f"\ntotal {total / 60:.1f} min (target 15), peak {peak / 1024:.2f} GB (target 6), over 3 min: {slow or 'none'}")
    out.mkdir(parents=True, exist_ok=True)
    figures = {"profile": args.profile, "server_first_completion_s": round(server_seconds, 2),
               "total_s": round(total, 1), "peak_rss_mb": peak, "notebooks": [r.__dict__ for r in runs]}
    (out / f"{args.profile}.json").write_text(json.dumps(figures, indent=2))
    return 0 if all(r.status == "ok" for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
