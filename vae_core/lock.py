"""One run per output folder: an advisory lock that a second `train --out` on the same folder meets as a clear error.

The lock is `fcntl.flock` on `OUT/.lock`, so the operating system releases it when its holder exits, even when killed:
a stale lock cannot block a later run. The holder writes its process id, host, start time and command into the file,
so the error can say who holds the folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class FolderLocked(RuntimeError):
    """Another live run holds the output folder."""


@contextmanager
def exclusive_folder(folder: Path, command: str = "") -> Iterator[Path]:
    """Hold `folder`'s lock for the duration of the block, or raise `FolderLocked` naming the run that holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".lock"
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise FolderLocked(
                f"{folder} is in use by another run ({holder(handle.read())}); wait for it to end, "
                f"or choose another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        handle.write(json.dumps({**owner, "command": command}) + "\n")
        handle.flush()
        try:
            yield path
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def holder(text: str) -> str:
    """The lock file's record as words: 'process 123 on host, since ..., running ...'."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return "a process that has not yet written its name"
    words = f"process {record.get('pid')} on {record.get('host')}, since {record.get('since')}"
    return words + (f", running `{record['command']}`" if record.get("command") else "")
