"""The settings trial behind chapter 1.9: train each candidate with the command line and collect the final ELBOs.

Usage: python scripts/sweep.py [--jobs 2] [--only NAME ...]

Each run is `python -m vae_core train ... --threads 1 --out runs/sweep/NAME`, `--jobs` of them at a time; the
summary (command, model and training settings, final ELBOs, seconds per epoch) is written atomically to
book/checkpoints/sweep.json, which the chapter shows. A run whose history.json already matches its command is not
retrained.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from pathlib import Path

from vae_core.io import atomic_write_text
from vae_core.model import VAEConfig
from vae_core.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "sweep"
SUMMARY = ROOT / "book" / "checkpoints" / "sweep.json"

COMMON = ["--threads", "1", "--no-progress"]
VAE_FIELDS = {f.name for f in fields(VAEConfig)}
E40 = {"activation": "elu", "epochs": 40}
CANDIDATES: dict[str, tuple[str, dict[str, object]]] = {
    "tanh": ("the course template: tanh units, lr 1e-3", {"activation": "tanh", "epochs": 40}),
    "relu": ("ReLU units, lr 1e-3", {"activation": "relu", "epochs": 40}),
    "softplus": ("softplus units, lr 1e-3", {"activation": "softplus", "epochs": 40}),
    "elu": ("ELU units, lr 1e-3", E40),
    "elu-seed1": ("ELU units, lr 1e-3, another seed", {**E40, "seed": 1}),
    "elu-lr5e-4": ("ELU, lr 5e-4", {**E40, "lr": 0.0005}),
    "elu-lr2e-3": ("ELU, lr 2e-3: the chapter's settings", {**E40, "lr": 0.002}),
    "elu-lr2e-3-seed1": ("ELU, lr 2e-3, another seed", {**E40, "lr": 0.002, "seed": 1}),
    "elu-lr3e-3": ("ELU, lr 3e-3", {**E40, "lr": 0.003}),
    "elu-lr3e-3-seed1": ("ELU, lr 3e-3, another seed", {**E40, "lr": 0.003, "seed": 1}),
    "elu-b256": ("ELU, batch 256, lr 1.5e-3", {"activation": "elu", "epochs": 48, "batch_size": 256, "lr": 0.0015}),
    "elu-b256-seed1": (
        "ELU, batch 256, lr 1.5e-3, another seed",
        {"activation": "elu", "epochs": 48, "batch_size": 256, "lr": 0.0015, "seed": 1},
    ),
}
"""Each candidate: what it changes, and its settings as overrides of the VAEConfig and TrainConfig defaults."""


def configs(name: str) -> tuple[VAEConfig, TrainConfig]:
    """The model and training settings of one candidate: the dataclasses' defaults with its overrides."""
    overrides = CANDIDATES[name][1]
    model = {k: v for k, v in overrides.items() if k in VAE_FIELDS}
    return VAEConfig(**model), TrainConfig(**{k: v for k, v in overrides.items() if k not in VAE_FIELDS})


def command(name: str) -> list[str]:
    """The full training command of one candidate (without the interpreter): its overrides as flags."""
    overrides = CANDIDATES[name][1]
    flags = [item for key, value in overrides.items() for item in ("--" + key.replace("_", "-"), str(value))]
    seed = [] if "seed" in overrides else ["--seed", "0"]
    return ["-m", "vae_core", "train", *flags, *seed, *COMMON, "--out", f"runs/sweep/{name}"]


def run(name: str) -> dict:
    """Train one candidate (unless its finished run is already there) and summarise its history."""
    out = RUNS / name
    provenance = out / "provenance.json"
    cmd = command(name)
    stated = "python -m vae_core " + shlex.join(cmd[2:])  # as the command line records it
    if not (provenance.exists() and json.loads(provenance.read_text())["command"] == stated):
        subprocess.run([sys.executable, *cmd], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    history = json.loads((out / "history.json").read_text())
    record = json.loads(provenance.read_text())
    return {
        "name": name,
        "change": CANDIDATES[name][0],
        "command": record["command"],
        "model_config": json.loads((out / "model" / "config.json").read_text())["config"],
        "train_config": record["train_config"],
        "seed": record["seed"],
        "epochs": len(history),
        "valid_elbo": history[-1]["valid_elbo"],
        "train_elbo": history[-1]["train_elbo"],
        "seconds_per_epoch": sum(r["seconds"] for r in history) / len(history),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, one thread each")
    parser.add_argument("--only", nargs="*", choices=sorted(CANDIDATES), help="run these candidates only")
    args = parser.parse_args()
    names = args.only or list(CANDIDATES)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(pool.map(run, names))
    old = {r["name"]: r for r in json.loads(SUMMARY.read_text())} if SUMMARY.exists() else {}
    old.update({r["name"]: r for r in rows})
    ordered = [old[n] for n in CANDIDATES if n in old]
    atomic_write_text(SUMMARY, json.dumps(ordered, indent=1) + "\n")
    for r in ordered:
        print(f"{r['name']:>12}: validation ELBO {r['valid_elbo']:.2f} after {r['epochs']} epochs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
