"""Atomic writes: what a learner made is never left half-written.

Every file or folder the course writes (splits, results, vector-store metrics, adapters,
converted models, tokenizers) goes to a temporary sibling first and is moved into place
with `os.replace`, so an interrupted kernel leaves either the old version or the new one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, then move it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; these are ordinary shared files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _aside(target: Path) -> Path:
    return target.with_name(f".{target.name}-old")


def restore_dir(target: str | os.PathLike) -> Path:
    """Put back the previous version of `target` if a swap was cut off between its two moves.

    `atomic_write_dir` moves the old folder aside before moving the new one in; a process
    killed in between leaves only the aside copy. Readers and the next write call this, so
    that copy is used (and kept) rather than reported missing and then deleted.
    """
    target = Path(target)
    old = _aside(target)
    if not target.exists() and old.is_dir():
        os.replace(old, target)
    return target


def atomic_write_dir(target: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_dir)` on a temporary folder, then swap it in place of `target`.

    An existing folder is moved aside first (a folder cannot be replaced while it has
    files) and removed only once the new one is in place.
    """
    target = restore_dir(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    old = _aside(target)
    try:
        write(tmp)
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        restore_dir(target)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return target
