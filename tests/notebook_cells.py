"""Run the lesson code a notebook writes in its cells, so a test can check it agrees with the package copy.

A notebook that teaches code the package also keeps (because a later notebook reuses it) marks nothing special:
the test names a line the cell contains (for example ``"def hit_at_k("``), and `cell_namespace` executes that
cell alone and returns what it defined. The cell must therefore define its functions without needing the
notebook's earlier state beyond imports it makes itself.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cell_source(notebook: str, contains: str) -> str:
    """The source of the one code cell of `notebook` (a file name in notebooks/) that contains `contains`."""
    path = ROOT / "notebooks" / notebook
    cells = ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    found = [c for c in cells if contains in c]
    if len(found) != 1:
        raise AssertionError(f"{notebook}: expected one code cell containing {contains!r}, found {len(found)}")
    return found[0]


def cell_namespace(notebook: str, contains: str, **given) -> dict:
    """Execute that cell with `given` already defined (for example ``profile=...``) and return its namespace."""
    namespace = dict(given)
    exec(compile(cell_source(notebook, contains), f"{notebook}:<cell>", "exec"), namespace)
    return namespace
