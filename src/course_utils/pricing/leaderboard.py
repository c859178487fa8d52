"""The course leaderboard as files: a markdown table and a bar chart in the results folder.

`results.leaderboard()` builds the table from the results store; this module writes it
where a reader (and the README's main command) finds it:

    results/leaderboard.md    every model scored on the evaluation split, best first
    results/leaderboard.png   the same as a horizontal bar chart of RMSLE

Both files are written to a temporary name first and moved into place, so an
interrupted run never leaves half a table behind.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from ..core import config
from ..core.storage import atomic_write

MARKDOWN_FILE = "leaderboard.md"
CHART_FILE = "leaderboard.png"
_COLUMNS = (("model", "model"), ("llm", "LLM"), ("rmsle", "RMSLE"), ("mae", "MAE ($)"), ("hit_rate", "hit rate"), ("n_items", "items"))


def _fmt(column: str, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if column == "rmsle":
        return f"{value:.3f}"
    if column == "mae":
        return f"{value:.2f}"
    if column == "hit_rate":
        return f"{value:.1%}"
    if column == "n_items":
        return f"{int(value)}"
    return str(value).replace("|", "\\|")


def markdown_table(board) -> str:
    """A GitHub-flavoured markdown table of a leaderboard DataFrame (rank, model, metrics)."""
    columns = [(c, h) for c, h in _COLUMNS if c in board.columns]
    lines = ["| rank | " + " | ".join(h for _, h in columns) + " |", "|---:|" + "|".join("---" if c == "model" else "---:" for c, _ in columns) + "|"]
    for rank, (_, row) in enumerate(board.iterrows(), start=1):
        lines.append(f"| {rank} | " + " | ".join(_fmt(c, row[c]) for c, _ in columns) + " |")
    return "\n".join(lines)


def save_chart(board, path: Path, title: str) -> Path:
    """The leaderboard's RMSLE bar chart as a PNG (atomic)."""
    from matplotlib.figure import Figure

    from .results import plot_leaderboard

    # A bare Figure (no pyplot): nothing is displayed or left open in a notebook or a script.
    fig = Figure(figsize=(8, 0.35 * len(board) + 1.4))
    ax = fig.subplots()
    plot_leaderboard(board, ax=ax, title=title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    return path


def write_leaderboard(
    profile: config.Profile | None = None,
    split: str = "eval",
    folder: str | os.PathLike | None = None,
) -> str:
    """Write results/leaderboard.md and results/leaderboard.png; return the markdown table.

    The table holds every model scored on `split` under the profile's current data
    version, best (lowest RMSLE) first. The course runner prints it at the end.
    """
    from .data import data_version
    from .results import leaderboard

    profile = profile or config.get_profile()
    board = leaderboard(profile, split=split)
    if board.empty:
        raise ValueError(
            f"no model has been scored on split {split!r} in profile {profile.name!r} yet: "
            "run the pricing notebooks (08-14) first"
        )
    folder = Path(folder) if folder else config.results_dir()
    version = data_version(profile)
    n_items = int(board["n_items"].max()) if "n_items" in board.columns else 0
    title = f"Course leaderboard ({profile.name} profile, {n_items} {split} items)"
    table = markdown_table(board)
    text = (
        f"# {title}\n\n"
        f"Data version `{version}`. Lower RMSLE is better; a hit is a prediction within $5 or 20% of the true price.\n"
        f"Every number comes from the results store (`results/results.json`).\n\n{table}\n"
    )
    if split == "eval":  # the chat pricers scored on the eval set's head (notebook 09) get a table of their own
        head = leaderboard(profile, split="eval_llm")
        if not head.empty:
            n_head = int(head["n_items"].max())
            text += f"\n## Chat pricers on the first {n_head} eval items (split `eval_llm`)\n\n{markdown_table(head)}\n"
            table += f"\n\nChat pricers on the first {n_head} eval items (split eval_llm):\n\n{markdown_table(head)}"
    atomic_write(folder / MARKDOWN_FILE, lambda tmp: Path(tmp).write_text(text))
    save_chart(board, folder / CHART_FILE, title)
    return f"{title}\n\n{table}"
