"""The conditional VAE as a classifier, for the chapter "Convolutional and conditional VAEs": log p(x | y) of every
test image under each of the ten labels, by importance sampling.

Usage: python scripts/classify.py [--name cvae_z50] [--k 1000]

For each label y = 0 .. 9, K draws z ~ q(z | x, y) per image (`evaluate.sample_log_weights`, seed 0, the images
binarized with seed 0 as `python -m vae_core evaluate` binarizes them) give the IW bound L_k of log p(x | y) from
the first k draws, for k = 1, 10, 100, ..., K. The bounds go to book/checkpoints/variants/NAME/classify.npz as a
float32 array (len(ks), 10000, 10), with the ks; Bayes' rule turns them into p(y | x) in the chapter. No labels or
images are stored. On one CPU thread K = 1000 takes about twenty minutes for the MLP.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import numpy as np
import torch

from vae_core import data
from vae_core.checkpoint import load_model
from vae_core.densities import log_mean_exp
from vae_core.evaluate import sample_log_weights
from vae_core.io import atomic_write, atomic_write_text
from vae_core.repro import make_deterministic

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ROOT / "book" / "checkpoints" / "variants"


def label_bounds(model: torch.nn.Module, x: torch.Tensor, label: int, k: int, ks: list[int]) -> np.ndarray:
    """L_k of log p(x | y = label) per image from the first k of K draws, for each k in `ks`: (len(ks), n)."""
    y = torch.full((len(x),), label, dtype=torch.long)
    log_w = sample_log_weights(model, x, k, y=y, seed=0)  # (n, K), float64
    return np.stack([log_mean_exp(log_w[:, :j], dim=1).numpy() for j in ks])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="cvae_z50", help="a run under book/checkpoints/variants")
    parser.add_argument("--k", type=int, default=1000, help="importance samples per image and label")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", type=Path, default=None, help="another model folder (a trial run; writes nothing)")
    parser.add_argument("--limit", type=int, default=None, help="the first N test images only (with --model)")
    args = parser.parse_args()
    make_deterministic(args.threads)
    folder = VARIANTS / args.name
    model = load_model(args.model or folder / "model")
    if not model.conditional:
        raise SystemExit(f"{folder} holds an unconditional model: nothing to classify with")
    x = data.load("mnist", "test").binarized(0)[: args.limit]
    ks = [k for k in (1, 10, 100, 1000, 10000) if k < args.k] + [args.k]
    tic = time.perf_counter()
    bounds = np.stack([label_bounds(model, x, c, args.k, ks) for c in range(model.config.classes)], axis=-1)
    seconds = time.perf_counter() - tic
    if args.model is not None:
        print(f"trial: {bounds.shape} bounds in {seconds:.1f} s; accuracy needs the labels, see the chapter")
        return 0

    def write(tmp: Path) -> None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, bounds=bounds.astype(np.float32), ks=np.array(ks))
        tmp.write_bytes(buffer.getvalue())

    atomic_write(folder / "classify.npz", write)
    record = {"command": f"python scripts/classify.py --name {args.name} --k {args.k}", "seconds": round(seconds, 1)}
    record |= {"threads": args.threads, "seed": 0, "binarization_seed": 0, "ks": ks, "images": len(x)}
    atomic_write_text(folder / "classify.json", json.dumps(record, indent=1) + "\n")
    print(f"wrote {folder / 'classify.npz'} ({seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
