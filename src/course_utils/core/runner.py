"""Execute the course's notebooks in order, headless, and report how each one went.

    python -m course_utils.core.runner                 # offline default profile, every notebook
    python -m course_utils.core.runner --profile ci    # what the tests and the benchmark use
    python -m course_utils.core.runner --only 05 07    # a subset, by number prefix

Executed copies go to build/executed/<profile>/ (the notebooks in git stay output-free).
The run prints one row per notebook (status, seconds, peak memory of the kernel and
everything it started), then the course leaderboard, and exits 1 if any notebook failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from . import config


@dataclass
class NotebookRun:
    notebook: str
    status: str  # "ok" or "failed"
    seconds: float
    peak_rss_mb: float
    error: str = ""


class PeakMemory:
    """Polls the resident memory of this process's children (the kernel and its servers)."""

    def __init__(self, interval: float = 0.25):
        import psutil

        self._psutil = psutil
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        me = self._psutil.Process()
        while not self._stop.is_set():
            total = 0
            for child in me.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except self._psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def notebooks(folder: Path, only: list[str] | None = None) -> list[Path]:
    paths = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if only:
        paths = [p for p in paths if any(p.name.startswith(prefix) for prefix in only)]
    return paths


def execute(path: Path, out_dir: Path, profile: str, timeout: int) -> NotebookRun:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    nb = nbformat.read(path, as_version=4)
    os.environ[config.PROFILE_ENV] = profile  # the kernel inherits the environment
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    out_dir.mkdir(parents=True, exist_ok=True)
    # The kernel's own stderr (transport warnings, library chatter) goes to a log beside the
    # executed copy, so the run prints one clean line per notebook; cell errors still come back.
    kernel_log = out_dir / f"{path.stem}.kernel.log"
    started = time.perf_counter()
    error = ""
    with PeakMemory() as memory, open(kernel_log, "wb") as log:
        try:
            client.execute(stdout=log, stderr=subprocess.STDOUT)
        except (CellExecutionError, CellTimeoutError, RuntimeError) as exc:
            error = str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else type(exc).__name__
            error += f" (kernel log: {kernel_log})"
    seconds = time.perf_counter() - started
    tmp = out_dir / f".{path.name}.tmp"
    nbformat.write(nb, tmp)
    os.replace(tmp, out_dir / path.name)
    return NotebookRun(path.name, "failed" if error else "ok", round(seconds, 1), round(memory.peak / 2**20), error)


def format_table(runs: list[NotebookRun]) -> str:
    lines = [f"{'notebook':<42} {'status':<7} {'seconds':>8} {'peak MB':>8}"]
    for run in runs:
        lines.append(f"{run.notebook:<42} {run.status:<7} {run.seconds:>8.1f} {run.peak_rss_mb:>8.0f}")
        if run.error:
            lines.append(f"    {run.error}")
    total = sum(r.seconds for r in runs)
    peak = max((r.peak_rss_mb for r in runs), default=0)
    lines.append(f"{'total':<42} {sum(r.status == 'ok' for r in runs):>3}/{len(runs):<3} {total:>8.1f} {peak:>8.0f}")
    return "\n".join(lines)


def print_leaderboard(profile: str) -> None:
    """The course leaderboard from the results store, when the pricing notebooks have run."""
    from ..pricing.leaderboard import write_leaderboard

    try:
        print(write_leaderboard(config.get_profile(profile)))
    except Exception as exc:  # the table is a report: never hide the notebook status behind it
        print(f"(no leaderboard: {type(exc).__name__}: {exc})")


def offline_chat_backend(profile: str, environ=os.environ) -> str | None:
    """The COURSE_LLM the run sets: "local" in the offline profile unless COURSE_LLM is set already.

    The offline run must stay offline and free even when `.env` holds an OpenAI key (notebook 09
    would otherwise start a paid fine-tuning job); `COURSE_LLM=openai make course` still uses it.
    """
    if profile == "offline" and not environ.get("COURSE_LLM", "").strip():
        return "local"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=os.environ.get(config.PROFILE_ENV, config.DEFAULT_PROFILE))
    parser.add_argument("--only", nargs="*", help="notebook number prefixes, e.g. 00 05")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    parser.add_argument("--out", type=Path, help="folder for executed copies (default build/executed/<profile>)")
    parser.add_argument("--json", type=Path, help="also write the per-notebook figures here")
    args = parser.parse_args(argv)
    try:
        profile = config.get_profile(args.profile)
    except config.UnknownProfileError as exc:
        print(exc, file=sys.stderr)
        return 2
    root = config.repo_root()
    out_dir = args.out or root / "build" / "executed" / profile.name
    paths = notebooks(root / "notebooks", args.only)
    if not paths:
        print("no notebooks matched", file=sys.stderr)
        return 2
    backend = offline_chat_backend(profile.name)
    if backend:
        os.environ["COURSE_LLM"] = backend  # the kernels inherit it
        print(f"chat backend: COURSE_LLM={backend} (the local llama.cpp server; set COURSE_LLM=openai to use your key)")
    print(f"running {len(paths)} notebooks in the {profile.name!r} profile; executed copies go to {out_dir}")
    runs = []
    for path in paths:
        print(f"  {path.name} ...", end="", flush=True)
        run = execute(path, out_dir, profile.name, args.timeout)
        print(f" {run.status} in {run.seconds:.0f} s, peak {run.peak_rss_mb:.0f} MB", flush=True)
        runs.append(run)
    print()
    print(format_table(runs))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in runs], indent=2))
    print()
    print_leaderboard(profile.name)
    return 0 if all(r.status == "ok" for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
