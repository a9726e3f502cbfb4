"""The one writer: atomic replacement, nothing left behind on failure, ordinary permissions."""

import os
import stat

import pytest

from vqart import atomic


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_write_replaces_whole_and_has_plain_permissions(tmp_path):
    target = tmp_path / "out.json"
    atomic.write_json(target, {"a": 1})
    atomic.write_json(target, {"a": 2})
    assert target.read_text() == '{\n  "a": 2\n}\n'
    assert _mode(target) == atomic.FILE_MODE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "frame.png"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frame.png"]


def test_atomic_dir_appears_complete_or_not_at_all(tmp_path):
    folder = tmp_path / "sketch"
    with atomic.atomic_dir(folder) as tmp:
        (tmp / "frame_00000.png").write_bytes(b"1")
        assert not folder.exists()
    assert _mode(folder) == atomic.DIR_MODE
    with pytest.raises(RuntimeError):
        with atomic.atomic_dir(folder) as tmp:
            (tmp / "frame_00000.png").write_bytes(b"2")
            raise RuntimeError("crash mid-capture")
    assert (folder / "frame_00000.png").read_bytes() == b"1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sketch"]
