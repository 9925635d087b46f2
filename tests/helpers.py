"""Helpers shared by the test modules: small models and binary data, small data files, an unreachable URL, file
listings, weight and history comparisons, the pages of the table of contents, and the browser tests' Chromium."""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from vae_core.model import VAE, VAEConfig
from vae_core.train import History

ROOT = Path(__file__).resolve().parents[1]
SMALL_MODEL = VAEConfig(hidden=(64,), z_dim=4)


def gen(seed: int) -> torch.Generator:
    """A CPU generator seeded with `seed`."""
    return torch.Generator().manual_seed(seed)


def new_model(seed: int = 0, config: VAEConfig = SMALL_MODEL) -> VAE:
    """A VAE initialized from torch's global seed `seed` (float32, MNIST-sized by default)."""
    torch.manual_seed(seed)
    return VAE(config)


def float64_vae(seed: int = 0, x_dim: int = 20, hidden: tuple[int, ...] = (16,), z_dim: int = 3) -> VAE:
    """A small float64 VAE, for comparisons with formulas by hand at tight tolerances."""
    return new_model(seed, VAEConfig(x_dim=x_dim, hidden=hidden, z_dim=z_dim)).double()


def binary64(n: int, m: int, seed: int, p: float = 0.4) -> torch.Tensor:
    """n x m independent Bernoulli(p) pixels in float64."""
    return torch.bernoulli(torch.full((n, m), p, dtype=torch.float64), generator=gen(seed))


def binary_data(n: int, seed: int = 0, prototypes: int = 4, flip: float = 0.05) -> torch.Tensor:
    """n binary MNIST-sized images: copies of random binary prototypes with each pixel flipped with probability
    `flip`, structured enough that a VAE learns something fast."""
    g = gen(seed)
    shapes = torch.bernoulli(torch.full((prototypes, 784), 0.3), generator=g)
    x = shapes[torch.randint(0, prototypes, (n,), generator=g)]
    if not flip:
        return x
    return (x + torch.bernoulli(torch.full((n, 784), flip), generator=g)) % 2


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


def chromium() -> str:
    """The Chromium executable, or skip (fail under CI) when there is none."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "no Chromium found on PATH (install the Debian package: apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


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
