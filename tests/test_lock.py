"""One run per output folder: a second holder is refused with a clear message, and a dead holder blocks nothing."""

from __future__ import annotations

import os
import signal

import pytest
from helpers import holding

from vae_core.lock import FolderLocked, exclusive_folder, holder


def test_a_second_holder_in_another_process_is_refused(tmp_path):
    with holding(tmp_path) as other:
        with pytest.raises(FolderLocked, match=f"process {other.pid} on .*running `holder`"):
            with exclusive_folder(tmp_path):
                pass


def test_the_lock_is_released_when_the_block_ends(tmp_path):
    with exclusive_folder(tmp_path, "first"):
        with pytest.raises(FolderLocked, match="running `first`"):  # a second open file in the same process
            with exclusive_folder(tmp_path):
                pass
    with exclusive_folder(tmp_path, "second") as lock:
        assert "second" in lock.read_text()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    with holding(tmp_path) as other:
        os.kill(other.pid, signal.SIGKILL)
        other.wait(timeout=30)
        with exclusive_folder(tmp_path, "after the kill") as lock:  # the kernel released the dead process's lock
            assert "after the kill" in lock.read_text()


def test_an_unreadable_record_still_gives_a_sentence():
    assert holder("") == "a process that has not yet written its name"
    assert holder('{"pid": 7, "host": "h", "since": "t"}') == "process 7 on h, since t"
