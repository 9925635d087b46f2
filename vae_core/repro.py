"""Seeds, determinism and device choice: one place so every run and chapter sets them the same way."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

DEFAULT_THREADS = 2


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a fresh torch.Generator seeded with `seed`."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def make_deterministic(threads: int | None = DEFAULT_THREADS) -> None:
    """Deterministic kernels and a fixed CPU thread count, so the same command gives bit-identical outputs."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=False)
    if threads is not None:
        torch.set_num_threads(threads)


def pick_device(requested: str | None = None) -> torch.device:
    """The requested device, checked; or the best present: cuda, then mps, then cpu."""
    if requested in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as err:
        raise ValueError(f"unknown device {requested!r}; use auto, cpu, cuda, cuda:N or mps") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was asked for but this torch sees no CUDA GPU; use --device cpu or auto")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("MPS was asked for but is not available here; use --device cpu or auto")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {requested!r}; use auto, cpu, cuda or mps")
    return device


def setup_chapter(threads: int | None = 1, seed: int = 0) -> torch.Generator:
    """Every chapter's first line: deterministic kernels on `threads` CPU threads, all seeds set, no tqdm notice.

    Returns a torch.Generator seeded with `seed`.
    """
    import warnings

    warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm.auto in a kernel without ipywidgets
    make_deterministic(threads)
    return seed_everything(seed)
