"""Environment check: `python -m course_utils.core.doctor` or `course-doctor`.

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

from . import config, model_registry, secrets

LIBRARIES = (
    "torch", "transformers", "trl", "peft", "accelerate", "datasets", "sentence-transformers",
    "bitsandbytes", "openai", "langchain-core", "chromadb", "gradio", "llama-cpp-python", "scikit-learn",
)  # fmt: skip


def _offline_files() -> dict:
    """{label: a function giving the file or folder an offline package ships}; each raises, naming
    the pip fix, when the package or its file is missing (found without importing the package)."""
    from ..foundations import models
    from ..foundations import listings

    return {
        "chat model (SmolLM2 GGUF)": lambda: models.gguf_path(model_registry.SMOLLM2_GGUF),
        "embedding model (MiniLM)": lambda: models.package_dir(model_registry.MINILM),
        "price data (Mercari)": listings.mercari_path,
    }


def _missing(requirement) -> str:
    return f"missing; fix it with: pip install '{requirement}' (or make setup)"


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def requirement_problems(pins: dict[str, object]) -> list[tuple[str, str]]:
    """(package, what is wrong and the pip command that fixes it) for each pin not met here."""
    problems = []
    for name, req in pins.items():
        version = _version(req.name)
        if version == "missing":
            problems.append((req.name, _missing(req)))
        elif not req.specifier.contains(version, prereleases=True):
            problems.append((req.name, f"{version} is outside the course's pin {req.specifier}; fix it with: pip install '{req}'"))
    return problems


def resource_rows() -> list[tuple[str, str, bool]]:
    """Memory and free disk, for the record (make course peaks near 6 GB; set-up needs 6 GB of disk)."""
    import shutil

    import psutil

    memory = psutil.virtual_memory()
    free_disk = shutil.disk_usage(config.repo_root()).free
    return [
        ("memory", f"{memory.total / 1e9:.1f} GB, {memory.available / 1e9:.1f} GB free (make course peaks near 6 GB)", True),
        ("disk", f"{free_disk / 1e9:.1f} GB free beside the course", True),
    ]


def checks(profile: config.Profile, try_server: bool = True) -> list[tuple[str, str, bool]]:
    """(name, detail, ok) rows; the report and the exit code both come from these."""
    from ..foundations import models
    from .start import quiet_library_noise

    quiet_library_noise()
    rows: list[tuple[str, str, bool]] = [
        ("python", platform.python_version(), sys.version_info >= (3, 11)),
        ("profile", f"{profile.name}: {profile.description}", True),
    ]
    pins = config.pinned_requirements("cpu" if profile.offline else "colab")
    shown = set()
    for lib in LIBRARIES:
        version = _version(lib)
        optional = lib == "llama-cpp-python" and not profile.offline
        if version == "missing" and not optional:
            version = _missing(pins.get(lib, lib))
        rows.append((lib, version, not version.startswith("missing") or optional))
        shown.add(lib)
    problems = [(name, why) for name, why in requirement_problems(pins) if name not in shown]
    rows += [(name, why, False) for name, why in problems]
    if pins and not problems:
        rows.append(("other course packages", f"all {len(pins) - len(shown & set(pins))} installed within their pins", True))
    try:
        rows.append(("device", models.describe_device(), True))
        bf16 = models.cuda_has_native_bf16()
        rows.append(("bf16", "yes" if bf16 else "no (fp16 on CUDA, fp32 on CPU)", True))
    except ImportError as exc:
        rows.append(("device", f"torch missing: {exc}", False))
    bnb = models.bitsandbytes_status()
    rows.append(("bitsandbytes", bnb, True))  # notebooks explain the fallback when it is missing
    for label, find in _offline_files().items():
        try:
            rows.append((label, str(find()), True))
        except (models.MissingModelPackageError, RuntimeError) as exc:  # DataSourceError is a RuntimeError
            rows.append((label, str(exc), not profile.offline))
    rows += split_model_rows(profile)
    rows.append(llama_server_row(profile))
    rows += resource_rows()
    for name, status in secrets.key_status().items():
        rows.append((name, status, not status.startswith("invalid")))
    if try_server and profile.offline:
        rows.append(server_check(profile))
    return rows


def split_model_rows(profile: config.Profile) -> list[tuple[str, str, bool]]:
    """Each split GGUF (Qwen2.5-Coder 1.5B and 0.5B): parts installed, assembled, hash verified."""
    from ..foundations.split_gguf import state

    rows = []
    for source in model_registry.SPLIT_MODELS:
        detail, ok = state(source.split)
        needed = source == profile.frontier_model and profile.offline
        rows.append((f"model {source.short_name}", detail, ok or not needed))
    return rows


def llama_server_row(profile: config.Profile) -> tuple[str, str, bool]:
    """Which OpenAI-compatible server the embedded back end will start, and what that means for tools."""
    from ..chat import llm

    try:
        binary = llm.llama_server_binary()
    except llm.ServerStartError as exc:
        return ("local server program", str(exc), False)
    if binary:
        return ("local server program", f"llama-server at {binary} (native tool calls)", True)
    fix = "bash scripts/build_llama_server.sh VERSION .venv/bin/llama-server (or make setup)"
    return ("local server program", f"llama-cpp-python's server (tool calls come back as text); for native ones: {fix}", True)


def server_check(profile: config.Profile) -> tuple[str, str, bool]:
    from ..chat import llm

    try:
        started = time.perf_counter()
        backend = llm.get_backend("local", profile)
        answer = backend.chat([{"role": "user", "content": "Say hello in three words."}], max_tokens=12, temperature=0)
        seconds = time.perf_counter() - started
        detail = f"{backend.model} answered in {seconds:.1f} s (start included) at {backend.base_url}: {answer.strip()[:40]!r}"
        return ("local LLM server", detail, True)
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
    from .secrets import load_dotenv_once

    load_dotenv_once()  # before the profile: COURSE_PROFILE may be set in .env, as for the notebooks
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
