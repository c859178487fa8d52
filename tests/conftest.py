"""Shared fixtures. The tests run in the CI profile (the Makefile sets COURSE_PROFILE=ci)."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def clean_env(monkeypatch):
    """No keys, no backend overrides: what a learner without accounts has."""
    for name in ("OPENAI_API_KEY", "COURSE_LLM", "COURSE_LLM_BASE_URL", "COURSE_LLM_MODEL", "COURSE_LLM_API_KEY", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture(scope="session", autouse=True)
def _ci_profile():
    os.environ.setdefault("COURSE_PROFILE", "ci")


def _listing(folder: Path):
    return sorted((str(p.relative_to(folder)), p.stat().st_mtime_ns) for p in folder.rglob("*")) if folder.is_dir() else None


@pytest.fixture(scope="session", autouse=True)
def _learners_results_untouched():
    """When COURSE_RESULTS points elsewhere (make test does), no test may create or change the checkout's results/:
    that folder holds the learner's leaderboard, stores and adapters."""
    from course_utils.core import config

    folder = ROOT / "results"
    if config.path_from_env("COURSE_RESULTS") in (None, folder):
        yield
        return
    before = _listing(folder)
    yield
    assert _listing(folder) == before, f"a test created or changed {folder}: give it tmp_path (COURSE_RESULTS or config.repo_root)"
