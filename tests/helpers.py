"""Helpers shared by the test modules: small data files, an unreachable URL, file listings, weight and history
comparisons, and the pages of the table of contents."""

from __future__ import annotations

import contextlib
import gzip
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import yaml

from vae_core.train import History

ROOT = Path(__file__).resolve().parents[1]


def amat(bits: np.ndarray) -> bytes:
    """Larochelle's .amat text for a 0/1 array: one row a line, values separated by spaces."""
    return b"".join(b" ".join(b"%d" % v for v in row) + b"\n" for row in bits)


def idx_gz(array: np.ndarray, magic: int | None = None, dims: tuple[int, ...] | None = None) -> bytes:
    """A gzipped unsigned-byte IDX file holding ``array`` (header overridable to make bad files)."""
    dims = array.shape if dims is None else dims
    magic = 0x0800 + len(dims) if magic is None else magic
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims)
    return gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0)


def dead_url() -> str:
    """A loopback URL nobody listens on: connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def files_under(folder: Path) -> list[str]:
    """Every file below ``folder``, as sorted paths relative to it ([] if it does not exist)."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    """The two modules hold bit-identical parameters and buffers."""
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def without_seconds(history: History | list[dict]) -> list[dict]:
    """A history's rows without their wall times, the one field that differs between identical runs."""
    rows = history.to_list() if isinstance(history, History) else history
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def toc_pages() -> list[str]:
    """Page names (`book/q1_3_kl`) in `_toc.yml` order: the root, then every chapter of every part."""
    return [page for _, pages in toc_parts() for page in pages]


def toc_parts() -> list[tuple[str, list[str]]]:
    """`_toc.yml` as (caption, page names) pairs: the root alone under caption "", then each part."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    parts = toc.get("parts") or [{"caption": "", "chapters": toc.get("chapters", [])}]
    return [("", [toc["root"]])] + [(part["caption"], [entry["file"] for entry in part["chapters"]]) for part in parts]


@contextlib.contextmanager
def holding(folder: Path) -> Iterator[subprocess.Popen]:
    """Another process that holds `folder`'s run lock (vae_core.lock) until the block ends."""
    code = (
        "import sys; from pathlib import Path; from vae_core.lock import exclusive_folder\n"
        "with exclusive_folder(Path(sys.argv[1]), 'holder'):\n"
        "    print('held', flush=True); sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout=30)
