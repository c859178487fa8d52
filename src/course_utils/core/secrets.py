"""API keys: read from the environment, a `.env` file or Colab's userdata; shown masked only.

A key is never printed, logged or returned inside a message in full: use `mask()`.
"""

from __future__ import annotations

import os
from pathlib import Path

_LOADED = False

# Obvious prefixes, used only to catch a key pasted into the wrong variable.
KNOWN_PREFIXES = {
    "OPENAI_API_KEY": ("sk-",),
    "ANTHROPIC_API_KEY": ("sk-ant-",),
    "HF_TOKEN": ("hf_",),
}


class SecretError(ValueError):
    """A key is present but malformed (whitespace, empty, wrong prefix)."""


def mask(secret: str | None) -> str:
    """`sk-proj-abcdef...wxyz` -> `sk-p...wxyz`; values under 24 characters reveal nothing.

    Eight characters of a long key are too few to guess the rest; of a short one they
    would be most of it.
    """
    if not secret:
        return "(not set)"
    if len(secret) < 24:
        return "*" * 8
    return f"{secret[:4]}...{secret[-4:]}"


def mask_url(url: str | None) -> str:
    """A URL safe to print: a password in it and the values of its query parameters are masked.

    `https://user:TOKEN@proxy/v1?api-key=abc` -> `https://user:********@proxy/v1?api-key=********`.
    """
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    if not url:
        return "(not set)"
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{'*' * 8}@{host}" if ":" in userinfo else f"{'*' * 8}@{host}"
    query = urlencode([(name, "*" * 8) for name, _ in parse_qsl(parts.query, keep_blank_values=True)], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def load_dotenv_once(path: str | os.PathLike | None = None) -> Path | None:
    """Load `.env` from the working folder or a parent, else from the course checkout's top folder,
    without overriding the environment (so `course-doctor` run from anywhere sees the same file)."""
    global _LOADED
    if _LOADED and path is None:
        return None
    from dotenv import find_dotenv, load_dotenv

    from .config import repo_root

    found = str(path) if path else find_dotenv(usecwd=True)
    if not found and (repo_root() / ".env").is_file():
        found = str(repo_root() / ".env")
    _LOADED = True
    if found:
        load_dotenv(found, override=False)
        return Path(found)
    return None


def colab_secret(name: str) -> str | None:
    """A secret from Colab's key panel, or None outside Colab, when absent or access is not granted."""
    try:
        from google.colab import userdata  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        return userdata.get(name)
    except Exception:  # the secret is absent or notebook access was not granted
        return None


def validate(name: str, value: str) -> str:
    """Return the key if it looks usable; raise SecretError naming the problem (masked)."""
    if value.strip() == "":
        raise SecretError(f"{name} is set but empty")
    if value != value.strip():
        raise SecretError(f"{name} has leading or trailing whitespace ({mask(value.strip())}); remove it")
    if any(ch.isspace() for ch in value):
        raise SecretError(f"{name} contains whitespace ({mask(value)}); was it pasted with a line break?")
    if value.startswith(("'", '"')) or value.endswith(("'", '"')):
        raise SecretError(f"{name} is wrapped in quotes ({mask(value)}); remove them")
    prefixes = KNOWN_PREFIXES.get(name)
    if prefixes and not value.startswith(prefixes):
        raise SecretError(f"{name} should start with {' or '.join(prefixes)!r}, got {mask(value)}")
    return value


def get_secret(name: str, required: bool = False) -> str | None:
    """The value of `name` from the environment, `.env`, or Colab userdata; validated."""
    load_dotenv_once()
    value = os.environ.get(name)
    if value is None:
        value = colab_secret(name)
    if value is None:
        if required:
            raise SecretError(
                f"{name} is not set: add it to your environment, to a .env file in the course folder, "
                "or to Colab's secrets (key icon in the left bar)"
            )
        return None
    return validate(name, value)


def key_status(names: tuple[str, ...] = ("OPENAI_API_KEY", "HF_TOKEN", "ANTHROPIC_API_KEY")) -> dict[str, str]:
    """Each key's masked value, or the reason it is unusable. Safe to print."""
    status = {}
    for name in names:
        try:
            status[name] = mask(get_secret(name))
        except SecretError as exc:
            status[name] = f"invalid: {exc}"
    return status
