"""vae_core.io: a failed write leaves the old file and no temporary file; a good one replaces the target."""

from __future__ import annotations

from pathlib import Path

import pytest

from vae_core.io import atomic_write, atomic_write_text


class Boom(Exception):
    pass


def test_atomic_write_failure_leaves_no_temp_file_and_keeps_old_file(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def failing_writer(tmp: Path) -> None:
        tmp.write_bytes(b"half a fi")
        raise Boom

    with pytest.raises(Boom):
        atomic_write(target, failing_writer)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    assert target.read_bytes() == b"old"

    with pytest.raises(Boom):
        atomic_write(tmp_path / "new" / "file.bin", failing_writer)
    assert list((tmp_path / "new").iterdir()) == []


def test_atomic_write_success(tmp_path):
    path = atomic_write_text(tmp_path / "deep" / "a.txt", "hello\n")
    assert path.read_text() == "hello\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.txt"]
