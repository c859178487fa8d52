import pytest

from course_utils.core.storage import atomic_write, atomic_write_dir, atomic_write_text


def test_file_is_replaced_whole(tmp_path):
    path = atomic_write_text(tmp_path / "sub" / "a.txt", "first")
    atomic_write_text(path, "second")
    assert path.read_text() == "second"
    assert [p.name for p in path.parent.iterdir()] == ["a.txt"]
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_failed_write_keeps_the_old_file(tmp_path):
    path = atomic_write_text(tmp_path / "a.json", "old")

    def crash(tmp):
        tmp.write_text("half")
        raise RuntimeError("kernel died")

    with pytest.raises(RuntimeError):
        atomic_write(path, crash)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_folder_is_swapped_and_failure_keeps_the_old_one(tmp_path):
    target = tmp_path / "adapter"
    atomic_write_dir(target, lambda d: (d / "weights.bin").write_text("v1"))
    atomic_write_dir(target, lambda d: (d / "weights.bin").write_text("v2"))
    assert (target / "weights.bin").read_text() == "v2"

    def crash(d):
        (d / "weights.bin").write_text("partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write_dir(target, crash)
    assert (target / "weights.bin").read_text() == "v2"
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]


def test_a_swap_cut_off_between_its_two_moves_is_undone(tmp_path):
    """Killed after the old folder went aside and before the new one came in: the old one comes back."""
    from course_utils.core.storage import restore_dir

    target = tmp_path / "adapter"
    aside = tmp_path / ".adapter-old"

    def cut_off():  # what such a kill leaves: only the aside copy
        aside.mkdir()
        (aside / "weights.bin").write_text("v1")

    cut_off()
    assert restore_dir(target) == target
    assert (target / "weights.bin").read_text() == "v1" and not aside.exists()
    assert restore_dir(target) == target and (target / "weights.bin").read_text() == "v1"  # nothing to undo

    # the next save finds the same state: it restores first, so v1 is still there if this save fails
    target.rename(tmp_path / "gone")
    cut_off()

    def crash(tmp):
        raise RuntimeError("kernel died")

    with pytest.raises(RuntimeError):
        atomic_write_dir(target, crash)
    assert (target / "weights.bin").read_text() == "v1"
    atomic_write_dir(target, lambda tmp: (tmp / "weights.bin").write_text("v2"))
    assert (target / "weights.bin").read_text() == "v2" and not aside.exists()
