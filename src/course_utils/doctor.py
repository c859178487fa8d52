"""Environment check: `python -m course_utils.doctor` or `course-doctor`.

Prints versions, the profile, the device, bitsandbytes, the offline model packages,
masked keys, and whether the local LLM server starts and answers. Exits non-zero
when something the active profile needs is broken.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import sys
import time

from . import config, secrets

LIBRARIES = (
    "torch", "transformers", "trl", "peft", "accelerate", "datasets", "sentence-transformers",
    "bitsandbytes", "openai", "langchain", "chromadb", "gradio", "llama-cpp-python", "scikit-learn",
)  # fmt: skip
OFFLINE_PACKAGES = {
    "chat model (SmolLM2 GGUF)": config.SMOLLM2_GGUF,
    "embedding model (MiniLM)": config.MINILM,
    "price data (Mercari)": config.MERCARI,
}


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def checks(profile: config.Profile, try_server: bool = True) -> list[tuple[str, str, bool]]:
    """(name, detail, ok) rows; the report and the exit code both come from these."""
    from . import models
    from .start import quiet_library_noise

    quiet_library_noise()
    rows: list[tuple[str, str, bool]] = [
        ("python", platform.python_version(), sys.version_info >= (3, 11)),
        ("profile", f"{profile.name}: {profile.description}", True),
    ]
    for lib in LIBRARIES:
        version = _version(lib)
        optional = lib == "llama-cpp-python" and not profile.offline
        rows.append((lib, version, version != "missing" or optional))
    try:
        rows.append(("device", models.describe_device(), True))
        bf16 = models.cuda_has_native_bf16()
        rows.append(("bf16", "yes" if bf16 else "no (fp16 on CUDA, fp32 on CPU)", True))
    except ImportError as exc:
        rows.append(("device", f"torch missing: {exc}", False))
    bnb = models.bitsandbytes_status()
    rows.append(("bitsandbytes", bnb, True))  # notebooks explain the fallback when it is missing
    for label, source in OFFLINE_PACKAGES.items():
        try:
            where = models.package_dir(source)
            rows.append((label, str(where), True))
        except models.MissingModelPackageError as exc:
            rows.append((label, str(exc), not profile.offline))
    for name, status in secrets.key_status().items():
        rows.append((name, status, not status.startswith("invalid")))
    if try_server and profile.offline:
        rows.append(server_check(profile))
    return rows


def server_check(profile: config.Profile) -> tuple[str, str, bool]:
    from . import llm

    try:
        started = time.perf_counter()
        backend = llm.get_backend("local", profile)
        answer = backend.chat([{"role": "user", "content": "Say hello in three words."}], max_tokens=12, temperature=0)
        seconds = time.perf_counter() - started
        return ("local LLM server", f"answered in {seconds:.1f} s at {backend.base_url}: {answer.strip()[:40]!r}", True)
    except Exception as exc:  # report, never crash the doctor
        return ("local LLM server", f"{type(exc).__name__}: {exc}".splitlines()[0], False)


def report(rows: list[tuple[str, str, bool]]) -> str:
    width = max(len(name) for name, _, _ in rows)
    return "\n".join(f"{'ok ' if ok else 'BAD'} {name:<{width}}  {detail}" for name, detail, ok in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check the course environment.")
    parser.add_argument("--profile", help=f"one of {', '.join(config.PROFILES)} (default: ${config.PROFILE_ENV} or offline)")
    parser.add_argument("--no-server", action="store_true", help="skip starting the local LLM server")
    args = parser.parse_args(argv)
    try:
        profile = config.get_profile(args.profile)
    except config.UnknownProfileError as exc:
        print(f"BAD {exc}")
        return 2
    rows = checks(profile, try_server=not args.no_server)
    print(report(rows))
    broken = [name for name, _, ok in rows if not ok]
    print(f"\n{'all checks passed' if not broken else 'broken: ' + ', '.join(broken)}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
