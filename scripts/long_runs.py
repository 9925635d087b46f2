"""The long runs behind the chapters "Beyond 1.9" and "Convolutional and conditional VAEs": train each with the
command line, evaluate it with K = 5000, and copy the small artifacts into book/checkpoints/long/NAME/ (or
book/checkpoints/variants/NAME/ for the convolutional and conditional runs).

Usage: python scripts/long_runs.py [--only NAME ...] [--jobs N]

Each run is `python -m vae_core train ... --out runs/NAME` (resumed from its checkpoint if interrupted, skipped if its
provenance already records the same command), then `python -m vae_core evaluate --checkpoint runs/NAME/model
--iw-samples 5000 --save runs/NAME/test_k5000.json` on the full test set. What the chapter reads is copied into
book/checkpoints/long/NAME/: the shareable model (safetensors + JSON), history.json, provenance.json and the
evaluation JSON. On this project's 2-core CPU the whole set takes several hours; on one GPU it takes minutes.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book" / "checkpoints" / "long"
K = 5000
ARCH = ["--hidden", "500,500", "--activation", "elu"]
CPU = ["--seed", "0", "--device", "cpu", "--threads", "1", "--no-progress"]

VARIANTS = ROOT / "book" / "checkpoints" / "variants"
CONV = ["--architecture", "conv", "--channels", "16,32", "--activation", "elu"]
PROTOCOL = ["--dataset", "mnist", "--z-dim", "50", "--lr", "0.002", "--schedule", "cosine", "--epochs", "200"]

RUNS: dict[str, tuple[str, list[str]]] = {
    "dyn_vae_z50": (
        "dynamic MNIST, the VAE objective",
        ["--dataset", "mnist", "--z-dim", "50", *ARCH, "--lr", "0.002", "--schedule", "cosine", "--epochs", "200"],
    ),
    "static_vae_z40": (
        "static MNIST, the VAE objective, the epoch chosen on the validation ELBO",
        ["--dataset", "binarized-mnist", "--z-dim", "40", *ARCH, "--lr", "0.001", "--schedule", "cosine"]
        + ["--epochs", "100", "--kl-warmup-epochs", "10", "--keep-best"],
    ),
    "dyn_iwae5_z50": (
        "dynamic MNIST, the IWAE objective with k = 5",
        ["--dataset", "mnist", "--z-dim", "50", *ARCH, "--lr", "0.002", "--schedule", "cosine", "--epochs", "60"]
        + ["--objective", "iwae", "--k", "5"],
    ),
    "conv_vae_z50": (
        "dynamic MNIST, a convolutional VAE, the epoch chosen on the validation ELBO",
        [*PROTOCOL, *CONV, "--keep-best"],
    ),
    "cvae_z50": (
        "dynamic MNIST, an MLP VAE conditional on the digit, the epoch chosen on the validation ELBO",
        [*PROTOCOL, *ARCH, "--classes", "10", "--keep-best"],
    ),
    "conv_cvae_z50": (
        "dynamic MNIST, a convolutional VAE conditional on the digit, the epoch chosen on the validation ELBO",
        [*PROTOCOL, *CONV, "--classes", "10", "--keep-best"],
    ),
}
IN_VARIANTS = ("conv_vae_z50", "cvae_z50", "conv_cvae_z50")


def book_folder(name: str) -> Path:
    """Where the book keeps one run's artifacts."""
    return (VARIANTS if name in IN_VARIANTS else BOOK) / name


def train_command(name: str) -> list[str]:
    """The training command of one run, without the interpreter."""
    return ["-m", "vae_core", "train", *RUNS[name][1], *CPU, "--out", f"runs/{name}"]


def evaluate_command(name: str) -> list[str]:
    """The K = 5000 evaluation of one run's shareable model on the full test set, without the interpreter."""
    dataset = RUNS[name][1][RUNS[name][1].index("--dataset") + 1]
    out = f"runs/{name}"
    return ["-m", "vae_core", "evaluate", "--checkpoint", f"{out}/model", "--dataset", dataset, "--split", "test"] + [
        "--iw-samples",
        str(K),
        "--seed",
        "0",
        "--device",
        "cpu",
        "--json",
        "--save",
        f"{out}/test_k{K}.json",
    ]


def stated(command: list[str]) -> str:
    """A command as the command line records it in provenance.json."""
    return "python -m vae_core " + shlex.join(command[2:])


def run(name: str) -> str:
    """Train (or resume) and evaluate one run, unless its outputs already record the same commands; copy them."""
    out = ROOT / "runs" / name
    provenance, evaluation = out / "provenance.json", out / f"test_k{K}.json"
    train = train_command(name)
    done = provenance.exists() and json.loads(provenance.read_text())["command"].replace(" --resume", "") == stated(
        train
    )
    if not done:  # a resumed run ends exactly where the uninterrupted one would
        subprocess.run([sys.executable, *train, "--resume"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    evaluate = evaluate_command(name)
    if not (evaluation.exists() and json.loads(evaluation.read_text())["command"] == stated(evaluate)):
        subprocess.run([sys.executable, *evaluate], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    target = book_folder(name)
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(out / "model", target / "model")
    for path in (out / "history.json", provenance, evaluation):
        shutil.copy2(path, target / path.name)
    return name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(RUNS), help="these runs only")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time, one thread each")
    args = parser.parse_args()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for name in pool.map(run, args.only or list(RUNS)):
            result = json.loads((book_folder(name) / f"test_k{K}.json").read_text())
            print(f"{name}: log p(x) {result['log_likelihood_nats']:.2f} ± {result['log_likelihood_stderr']:.2f} nats")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
