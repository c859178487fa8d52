"""Where the course runs: Colab or not, and pip into this kernel's own Python.

Two tiny helpers that `start`, `models` and `llm` all need; they live here, below all three, so no
module imports another that imports it back.
"""

from __future__ import annotations

import subprocess
import sys


def in_colab() -> bool:
    return "google.colab" in sys.modules


def pip_install(*args: str, env: dict | None = None) -> None:
    """`pip install -q ARGS` into this kernel's own Python (Colab's first-use installs); raises when pip fails."""
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *args], check=True, env=env)
