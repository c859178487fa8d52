import pytest

from course_utils.storage import atomic_write, atomic_write_dir, atomic_write_text


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
