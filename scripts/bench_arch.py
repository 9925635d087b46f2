"""Time per epoch and per importance-weighted evaluation of the MLP, convolutional and conditional VAEs, side by side
in one run, for the chapter "Convolutional and conditional VAEs".

Usage: python scripts/bench_arch.py [--rounds 3]

Each round trains every model, fresh from its seed, for one epoch of the 50 000 dynamic-MNIST training images
(`train.train_epoch`, batch 128, one CPU thread), then times `evaluate.iw_log_likelihood` with K = 500 on the first
200 test images; the models take turns within a round, in a rotated order, so that a slow spell of a shared machine
falls on all of them. The architectures are those of the committed runs. Seconds vary from machine to machine and
minute to minute; the chapter reads the ratios within a round. Writes book/checkpoints/variants/bench.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from vae_core import data
from vae_core.checkpoint import load_model
from vae_core.evaluate import iw_log_likelihood
from vae_core.io import atomic_write_text
from vae_core.model import VAE
from vae_core.repro import make_deterministic
from vae_core.train import TrainConfig, TrainState, train_epoch

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "book" / "checkpoints"
MODELS = {"mlp": "long/dyn_vae_z50", "conv": "variants/conv_vae_z50", "cvae": "variants/cvae_z50"}
K, EVAL_IMAGES = 500, 200


def epoch_seconds(model: VAE, train: data.Split) -> float:
    """Wall seconds of one training epoch of `model` on `train`."""
    state = TrainState.create(model, TrainConfig(epochs=1, batch_size=128, lr=0.002), len(train))
    tic = time.perf_counter()
    train_epoch(state, train)
    return time.perf_counter() - tic


def eval_seconds(model: VAE, test: data.Split) -> float:
    """Wall seconds of the K = 500 IW bound on the first EVAL_IMAGES test images."""
    part = test.head(EVAL_IMAGES)
    y = part.labels_for(model.config.classes)
    tic = time.perf_counter()
    iw_log_likelihood(model, part.binarized(0), K, y=y)
    return time.perf_counter() - tic


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    make_deterministic(1)
    train, test = data.load("mnist", "train"), data.load("mnist", "test")
    trained = {name: load_model(CHECKPOINTS / path / "model") for name, path in MODELS.items()}
    names = list(MODELS)
    rounds = []
    for r in range(args.rounds):
        row: dict[str, dict[str, float]] = {}
        for name in names[r % len(names) :] + names[: r % len(names)]:
            torch.manual_seed(0)
            fresh = VAE(trained[name].config)
            row[name] = {"epoch": epoch_seconds(fresh, train), "iw_eval": eval_seconds(trained[name], test)}
            print(f"round {r + 1}, {name}: {row[name]['epoch']:.1f} s an epoch, {row[name]['iw_eval']:.1f} s eval")
        rounds.append(row)
    record = {
        "command": f"python scripts/bench_arch.py --rounds {args.rounds}",
        "threads": 1,
        "batch_size": 128,
        "train_images": len(train),
        "iw_samples": K,
        "eval_images": EVAL_IMAGES,
        "models": MODELS,
        "machine": {"processor": platform.processor() or platform.machine(), "torch": torch.__version__},
        "rounds": rounds,
    }
    atomic_write_text(CHECKPOINTS / "variants" / "bench.json", json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
