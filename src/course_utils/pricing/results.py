"""One results store on disk that every evaluation writes and the leaderboard reads.

`results/results.json` holds one entry per (model, profile, data_version, split); running
an evaluation again replaces its entry. Per-item predictions live beside it, under
`results/<profile>/predictions/<split>/<model>.json`, so the ensemble (notebook 14) can
stack the predictions of several models on the same items.

Every write goes through a temporary file and `os.replace`, under a lock file, so two
notebooks finishing at once cannot corrupt the store.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from pathlib import Path

from ..core import config
from ..core.storage import atomic_write_text

RESULTS_FILE = "results.json"
KEY_FIELDS = ("model", "profile", "data_version", "split")
METRIC_COLUMNS = ("rmsle", "mae", "hit_rate", "median_ae", "n_items")


class MissingPredictionsError(FileNotFoundError):
    """No stored predictions for a model and split; the message lists the ones there are."""


def results_path() -> Path:
    return config.results_dir() / RESULTS_FILE


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock beside `path` (POSIX); elsewhere the atomic replace alone protects the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _atomic_write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True))


def _read_entries(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"the results store {path} is not valid JSON ({exc}); delete it to start a new one") from None
    return data.get("entries", []) if isinstance(data, dict) else data


def _current_data_version(profile: config.Profile) -> str:
    from .data import data_version

    return data_version(profile)


def record(
    model: str,
    metrics: dict,
    profile: config.Profile | None = None,
    split: str = "eval",
    data_version: str | None = None,
    timings: dict | None = None,
    extra: dict | None = None,
) -> dict:
    """Add or replace the entry for (model, profile, data_version, split); returns it."""
    if not model or not isinstance(model, str):
        raise ValueError("a result needs a model name")
    profile = profile or config.get_profile()
    entry = {
        "model": model,
        "profile": profile.name,
        "data_version": data_version or _current_data_version(profile),
        "split": split,
        "metrics": {k: (float(v) if isinstance(v, (int, float)) else v) for k, v in metrics.items()},
        "timings": dict(timings or {}),
        "extra": dict(extra or {}),
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    path = results_path()
    with _locked(path):
        entries = [e for e in _read_entries(path) if tuple(e.get(k) for k in KEY_FIELDS) != tuple(entry[k] for k in KEY_FIELDS)]
        entries.append(entry)
        _atomic_write_json(path, {"entries": entries})
    return entry


def load_results(profile: config.Profile | str | None = None, all_profiles: bool = False):
    """Every stored result of the profile (or of all profiles) as a flat DataFrame."""
    import pandas as pd

    entries = _read_entries(results_path())
    if not all_profiles:
        name = profile if isinstance(profile, str) else (profile or config.get_profile()).name
        entries = [e for e in entries if e.get("profile") == name]
    rows = []
    for e in entries:
        row = {k: e.get(k) for k in KEY_FIELDS}
        row.update(e.get("metrics", {}))
        row.update({f"{k}": v for k, v in e.get("timings", {}).items()})
        row["kind"] = e.get("extra", {}).get("kind")
        row["llm"] = e.get("extra", {}).get("llm")  # the language model that answered, when one did
        row["blend"] = bool(e.get("extra", {}).get("blend", False))  # a model that combines other stored models
        row["recorded_at"] = e.get("recorded_at")
        rows.append(row)
    columns = list(KEY_FIELDS) + list(METRIC_COLUMNS)
    frame = pd.DataFrame(rows)
    for col in columns:
        if col not in frame.columns:
            frame[col] = pd.Series(dtype="object")
    return frame


def leaderboard(
    profile: config.Profile | None = None,
    split: str = "eval",
    data_version: str | None = "current",
    kind: str | None = None,
):
    """Models on one split, best (lowest RMSLE) first.

    By default only results on the current data version count: a change to the data
    or the sizes starts a new board instead of mixing incomparable numbers.
    """
    profile = profile or config.get_profile()
    frame = load_results(profile)
    if data_version == "current":
        data_version = _current_data_version(profile)
    frame = frame[frame["split"] == split]
    if data_version:
        frame = frame[frame["data_version"] == data_version]
    if kind:
        frame = frame[frame["kind"] == kind]
    keep = ["model", "rmsle", "mae", "hit_rate", "median_ae", "n_items"]
    # which language model answered, for the rows an LLM produced (a model name alone may not say)
    keep += ["llm"] if "llm" in frame.columns and frame["llm"].notna().any() else []
    # cached_answers only when some answer on this board came from the response cache
    keep += [c for c in ("train_s", "predict_s", "ms_per_item", "cached_answers", "kind", "blend")
             if c in frame.columns and (c != "cached_answers" or frame[c].notna().any())]  # fmt: skip
    board = frame.sort_values("rmsle", kind="stable")[keep].reset_index(drop=True)
    board.index = board.index + 1
    board.index.name = "rank"
    return board


def plot_leaderboard(board, metric: str = "rmsle", ax=None, title: str | None = None):
    """A horizontal bar chart of a leaderboard, best at the top."""
    import matplotlib.pyplot as plt

    if board.empty:
        raise ValueError("the leaderboard is empty: evaluate a model first")
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.35 * len(board) + 1.2))
    ordered = board.sort_values(metric, ascending=False)
    bars = ax.barh(ordered["model"], ordered[metric], color="tab:blue")
    ax.bar_label(bars, fmt="%.3f" if metric != "mae" else "$%.2f", padding=3, fontsize=8)
    ax.set_xlabel(metric.upper() + (" (lower is better)" if metric in ("rmsle", "mae", "median_ae") else ""))
    ax.set_title(title or f"Leaderboard by {metric.upper()}")
    ax.margins(x=0.15)
    return ax


# --- per-item predictions ---------------------------------------------------------------
def _slug(model: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("_")
    if not slug:
        raise ValueError(f"model name {model!r} has no usable characters")
    return slug


def predictions_path(model: str, split: str, profile: config.Profile | None = None) -> Path:
    profile = profile or config.get_profile()
    return profile.work_dir / "predictions" / _slug(split) / f"{_slug(model)}.json"


def save_predictions(
    model: str,
    split: str,
    predictions: dict,
    profile: config.Profile | None = None,
    data_version: str | None = None,
) -> Path:
    """Store {item_id: predicted price} for a model on a split (atomic; replaces the old file)."""
    profile = profile or config.get_profile()
    clean = {str(k): float(v) for k, v in predictions.items()}
    path = predictions_path(model, split, profile)
    payload = {
        "model": model,
        "split": split,
        "profile": profile.name,
        "data_version": data_version or _current_data_version(profile),
        "predictions": clean,
    }
    _atomic_write_json(path, payload)
    return path


def list_predictions(split: str, profile: config.Profile | None = None) -> list[str]:
    """Models with stored predictions on a split."""
    folder = (profile or config.get_profile()).work_dir / "predictions" / _slug(split)
    models = []
    for path in sorted(folder.glob("*.json")):
        try:
            models.append(json.loads(path.read_text())["model"])
        except (json.JSONDecodeError, KeyError):
            continue
    return models


def load_predictions(model: str, split: str, profile: config.Profile | None = None, check_version: bool = True) -> dict:
    """{item_id: predicted price} stored for a model on a split.

    With `check_version`, predictions made on other data (an older data version) are refused.
    """
    profile = profile or config.get_profile()
    path = predictions_path(model, split, profile)
    if not path.is_file():
        have = list_predictions(split, profile)
        raise MissingPredictionsError(
            f"no predictions of {model!r} on split {split!r} for profile {profile.name!r}; "
            f"stored on that split: {have or 'none'}. Evaluate the model on that split first."
        )
    payload = json.loads(path.read_text())
    if check_version:
        current = _current_data_version(profile)
        if payload.get("data_version") != current:
            raise MissingPredictionsError(
                f"the predictions of {model!r} on {split!r} were made on data {payload.get('data_version')!r}, "
                f"not the current {current!r}; evaluate the model again"
            )
    return payload["predictions"]
