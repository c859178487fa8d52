"""Gated Hub models a profile may swap in when the learner's HF token can open them.

Kept out of `config`, so reading a profile never makes a network call: `start()` asks the Hub once,
for the profiles that name gated models (`hf_token_models`, the GPU profiles), and registers the
result with `config.use_profile`.
"""

from __future__ import annotations

from dataclasses import replace

from . import secrets
from .config import Profile
from .model_registry import ModelSource


def unlock_gated_models(profile: Profile) -> Profile:
    """Swap in the larger, gated models the profile names, for each one the HF token can open.

    The token may live in the environment, .env or Colab's secrets. Having a token is not
    enough: its owner must also have accepted the model's licence on the Hub, so access is
    checked first and the ungated default kept (with a warning naming the model) when it fails.
    """
    try:
        token = secrets.get_secret("HF_TOKEN")
    except secrets.SecretError as exc:
        _warn_once(f"HF_TOKEN is unusable ({exc}); the profile keeps its ungated models")
        return profile
    if not token:
        return profile
    swaps = {}
    for role, repo_id in profile.hf_token_models.items():
        problem = hub_access_problem(repo_id, token)
        if problem is None:
            swaps[role] = ModelSource(hub_id=repo_id)
        else:
            default = getattr(profile, role).describe()
            _warn_once(f"HF_TOKEN cannot open {repo_id} ({problem}); {role} stays {default}")
    return replace(profile, **swaps) if swaps else profile


_ACCESS: dict[tuple[str, int], str | None] = {}


def hub_access_problem(repo_id: str, token: str) -> str | None:
    """None when the token can download `repo_id`; otherwise why not. Asked once per process."""
    key = (repo_id, hash(token))
    if key not in _ACCESS:
        try:
            from huggingface_hub import auth_check

            auth_check(repo_id, token=token)
            _ACCESS[key] = None
        except Exception as exc:  # gated and not accepted, no such repo, or no network
            reason = type(exc).__name__
            if "Gated" in reason:
                reason = "its licence is not accepted for this account: accept it on the model's Hub page"
            _ACCESS[key] = reason
    return _ACCESS[key]


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    import warnings

    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(message, stacklevel=3)
