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
