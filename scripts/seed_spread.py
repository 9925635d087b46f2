"""How much a trained VAE's test log-likelihood moves with the training seed alone, for the chapter "Beyond 1.9".

Usage: python scripts/seed_spread.py [--jobs N]

The dynamic-MNIST VAE of scripts/long_runs.py (D = 50, 784-500-500 ELU, Adam, cosine decay), shortened to 20 epochs,
is trained with seeds 0 to 4 by the command line and each model is evaluated with K = 5000 on the first 1000 test
images, binarized with the same seed, so the five differ only in the training seed. The commands, the histories'
last rows and every image's L_5000 go to book/checkpoints/long/seed_spread.json; the models stay in runs/ (about 6 MB
each), since the chapter reads only their evaluations.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "book" / "checkpoints" / "long" / "seed_spread.json"
SEEDS = (0, 1, 2, 3, 4)
EPOCHS, K, LIMIT = 20, 5000, 1000
ARGS = ["--dataset", "mnist", "--z-dim", "50", "--hidden", "500,500", "--activation", "elu", "--lr", "0.002"]
ARGS += ["--schedule", "cosine", "--epochs", str(EPOCHS), "--device", "cpu", "--threads", "1", "--no-progress"]


def commands(seed: int) -> tuple[list[str], list[str]]:
    """The training and evaluation commands of one seed, without the interpreter."""
    out = f"runs/seed_spread/s{seed}"
    train = ["-m", "vae_core", "train", *ARGS, "--seed", str(seed), "--out", out]
    evaluate = ["-m", "vae_core", "evaluate", "--checkpoint", f"{out}/model", "--dataset", "mnist", "--split", "test"]
    evaluate += ["--iw-samples", str(K), "--limit", str(LIMIT), "--seed", "0", "--device", "cpu", "--json"]
    return train, [*evaluate, "--save", f"{out}/test_k{K}_first{LIMIT}.json"]


def run(seed: int) -> dict:
    """Train (resuming if interrupted) and evaluate one seed unless its outputs exist; return its record."""
    train, evaluate = commands(seed)
    out = ROOT / "runs" / "seed_spread" / f"s{seed}"
    if not (out / "provenance.json").exists():
        subprocess.run([sys.executable, *train, "--resume"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    result = out / f"test_k{K}_first{LIMIT}.json"
    if not result.exists():
        subprocess.run([sys.executable, *evaluate], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    provenance = json.loads((out / "provenance.json").read_text())
    history = json.loads((out / "history.json").read_text())
    test = json.loads(result.read_text())
    return {
        "seed": seed,
        "train_command": "python " + shlex.join(train),
        "evaluate_command": "python " + shlex.join(evaluate),
        "train_seconds": provenance["wall_seconds"],
        "versions": provenance["versions"],
        "last_epoch": history[-1],
        "log_likelihood_nats": test["log_likelihood_nats"],
        "log_likelihood_stderr": test["log_likelihood_stderr"],
        "elbo": test["elbo"],
        "per_example_log_likelihood": test["per_example_log_likelihood"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1, help="seeds at a time, one thread each")
    args = parser.parse_args()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        records = list(pool.map(run, SEEDS))
    payload = {"epochs": EPOCHS, "iw_samples": K, "test_images": LIMIT, "runs": records}
    with tempfile.NamedTemporaryFile("w", dir=TARGET.parent, delete=False, suffix=".tmp") as handle:
        json.dump(payload, handle, indent=1)
    os.replace(handle.name, TARGET)
    for r in records:
        print(f"seed {r['seed']}: log p(x) {r['log_likelihood_nats']:.2f} ± {r['log_likelihood_stderr']:.2f} nats")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
