"""What a test needs installed or built: a skip on a learner's partial install, a failure under CI.

CI (`.ci/run`, `make test`) installs everything, so there a missing piece is a broken set-up that must
show, not a quietly skipped test.
"""

from __future__ import annotations

import importlib
import importlib.util
import os

import pytest


def missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; under CI this is a broken set-up (make test installs and builds it)", pytrace=False)
    pytest.skip(reason)


def need_module(name: str, reason: str):
    """The imported module; skips (fails under CI) when it is not installed."""
    if importlib.util.find_spec(name) is None:
        missing(reason)
    return importlib.import_module(name)
