"""python -m vae_core download | train | evaluate | sample."""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path

import torch

from vae_core import data
from vae_core.checkpoint import CheckpointError, describe, load_model, save_shareable
from vae_core.evaluate import active_units, evaluate_elbo, iw_log_likelihood
from vae_core.io import atomic_write, atomic_write_text
from vae_core.lock import FolderLocked, exclusive_folder
from vae_core.losses import nats_to_bits_per_dim
from vae_core.model import ACTIVATIONS, ARCHITECTURES, VAE, VAEConfig
from vae_core.repro import DEFAULT_THREADS, make_deterministic, pick_device, seed_everything
from vae_core.train import TrainConfig, TrainingError, fit


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more, got {text}")
    return value


def sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes are comma-separated integers like 500,500, got {text}") from None


def labels(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"labels are comma-separated integers like 0,1,7, got {text}") from None


FLAG_HELP: dict[str, str] = {
    "hidden": "comma-separated sizes of the hidden layers, e.g. 500,500",
    "activation": f"one of {', '.join(sorted(ACTIVATIONS))}",
    "architecture": f"the encoder and decoder: {' or '.join(ARCHITECTURES)}",
    "channels": "conv only: channels of the one or two stride-2 convolutions, e.g. 16,32",
    "classes": "condition on labels 0..N-1 (10 for MNIST digits, needs --dataset mnist); 0: unconditional",
    "schedule": "cosine or constant learning rate",
    "final_lr_fraction": "cosine floor as a fraction of --lr",
    "eval_batch_size": "batch size of the validation pass",
    "beta": "weight of the KL term",
    "objective": "the bound training maximizes: elbo or iwae",
    "k": "importance samples of the iwae objective",
    "keep_best": "keep the epoch with the best validation ELBO",
    "kl_warmup_epochs": "ramp beta up from 0 over N epochs",
}


def add_config_flags(parser: argparse.ArgumentParser, config: type, skip: tuple[str, ...] = ()) -> None:
    """One flag per field of a config dataclass, with the field's default; the dataclass itself validates values."""
    for field in fields(config):
        if field.name in skip:
            continue
        flag, default, help_ = "--" + field.name.replace("_", "-"), field.default, FLAG_HELP.get(field.name)
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true", help=help_)
        else:
            kind = sizes if field.name in ("hidden", "channels") else type(default)
            choices = ARCHITECTURES if field.name == "architecture" else None
            parser.add_argument(flag, type=kind, default=default, choices=choices, help=help_)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vae_core", description="Train and evaluate the book's VAE.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("download", help="fetch, verify (md5) and cache a dataset")
    p.add_argument("--dataset", choices=[*data.DATASETS, "all"], default="all")

    p = sub.add_parser("train", help="train a VAE; writes checkpoint.pt, history.json, the shareable model, provenance")
    p.add_argument("--dataset", choices=data.DATASETS, default="binarized-mnist")
    add_config_flags(p, VAEConfig, skip=("x_dim",))
    add_config_flags(p, TrainConfig)
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    p.add_argument(
        "--threads",
        type=positive_int,
        default=DEFAULT_THREADS,
        help="CPU threads (default: %(default)s; a fixed count gives bit-identical runs)",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt if it exists")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "--no-cuda-graph", action="store_true", help="on CUDA, run each step eagerly instead of replaying a CUDA graph"
    )

    p = sub.add_parser(
        "evaluate",
        help="the ELBO, its terms and the IW log-likelihood of a checkpoint on a split, in nats per example "
        "(log p(x|y), given the split's labels, for a conditional model)",
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint.pt or a folder with model.safetensors")
    p.add_argument("--dataset", choices=data.DATASETS, default="binarized-mnist")
    p.add_argument("--split", choices=data.SPLITS, default="test")
    p.add_argument("--iw-samples", type=non_negative_int, default=0, help="K for the IW bound; 0 skips it")
    p.add_argument("--limit", type=positive_int, default=None, help="evaluate only the first N examples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--save", type=Path, default=None, help="also write the result, with per-example IW values, here")

    p = sub.add_parser("sample", help="ancestral samples from the prior, saved as a PNG grid")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("-n", type=positive_int, default=64, help="samples in all, or for a conditional model per label")
    p.add_argument(
        "--labels",
        type=labels,
        default=None,
        help="a conditional model's labels, e.g. 0,1,7: a row of -n samples each (default: every class)",
    )
    p.add_argument("--binary", action="store_true", help="draw binary pixels instead of showing Bernoulli means")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="PNG file to write")
    return parser


def cmd_download(args: argparse.Namespace) -> int:
    for name in data.DATASETS if args.dataset == "all" else (args.dataset,):
        for path in data.download(name):
            print(f"{name}: {path}")
    return 0


def device_name(device: torch.device) -> str:
    """The device as the records name it: the GPU's model for CUDA, else the device itself (cpu, mps)."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)


def provenance(args: argparse.Namespace, device: torch.device, seconds: float) -> dict:
    import numpy

    return {
        "command": "python -m vae_core " + shlex.join(getattr(args, "argv", sys.argv[1:])),
        "seed": args.seed,
        "device": device_name(device),
        "threads": torch.get_num_threads(),
        "wall_seconds": round(seconds, 1),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "numpy": numpy.__version__,
        },
    }


def cmd_train(args: argparse.Namespace) -> int:
    model_config = VAEConfig(**{f.name: getattr(args, f.name) for f in fields(VAEConfig) if f.name != "x_dim"})
    config = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    device = pick_device(args.device)
    make_deterministic(args.threads)
    seed_everything(args.seed)
    with exclusive_folder(args.out, "python -m vae_core " + shlex.join(args.argv)):  # one run per --out
        train, valid = data.load(args.dataset, "train", device), data.load(args.dataset, "valid", device)
        model = VAE(model_config).to(device)
        tic = time.perf_counter()
        history = fit(
            model,
            train,
            valid,
            config,
            checkpoint=args.out / "checkpoint.pt",
            resume=args.resume,
            progress=not args.no_progress,
            cuda_graph=not args.no_cuda_graph,
        )
        seconds = time.perf_counter() - tic
        atomic_write_text(args.out / "history.json", json.dumps(history.to_list(), indent=1) + "\n")
        record = {
            "dataset": args.dataset,
            "model_config": model_config.to_dict(),
            "train_config": asdict(config),
            **provenance(args, device, seconds),
        }
        validated = [(r.epoch, r.valid.elbo) for r in history.records if r.valid is not None]
        if config.keep_best and validated:
            record["selected_epoch"] = max(validated, key=lambda epoch_elbo: epoch_elbo[1])[0]
        save_shareable(args.out / "model", model.cpu(), {"provenance": record})
        atomic_write_text(args.out / "provenance.json", json.dumps(record, indent=2) + "\n")
    last = history.records[-1] if history.records else None
    if last is not None and last.valid is not None:
        print(f"epoch {last.epoch}: train ELBO {last.train.elbo:.2f}, validation ELBO {last.valid.elbo:.2f} nats")
    print(f"wrote {args.out}/checkpoint.pt, history.json, model/, provenance.json ({seconds:.1f} s)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    device = pick_device(args.device)
    make_deterministic()
    model = load_model(args.checkpoint, map_location=device).to(device)
    split = data.load(args.dataset, args.split, device)
    split = split.head(args.limit) if args.limit else split
    x, y = split.binarized(args.seed), split.labels_for(model.config.classes, f"{args.dataset} {args.split}")
    result: dict = {"dataset": args.dataset, "split": args.split, "n": x.shape[0], "model": describe(model.config)}
    result["quantity"] = "log p(x|y)" if model.conditional else "log p(x)"
    result.update(evaluate_elbo(model, x, seed=args.seed, y=y).flat())
    result["active_units"] = active_units(model, x, y=y)[0]
    tic = time.perf_counter()
    per_example = None
    if args.iw_samples:
        est = iw_log_likelihood(model, x, args.iw_samples, seed=args.seed, y=y)
        result.update({"iw_samples": est.k, "log_likelihood_nats": est.mean, "log_likelihood_stderr": est.stderr})
        result["bits_per_dim"] = -nats_to_bits_per_dim(est.mean)
        per_example = [round(v, 4) for v in est.per_example.tolist()]
    if args.save is not None:
        saved = {**result, "seconds": round(time.perf_counter() - tic, 1), "device": device_name(device)}
        saved.update(
            {"command": "python -m vae_core " + shlex.join(args.argv), "per_example_log_likelihood": per_example}
        )
        atomic_write_text(args.save, json.dumps(saved) + "\n")
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vae_core.images import show_grid

    if args.out.suffix.lower() != ".png":
        raise ValueError(f"--out must name a .png file, got {args.out}")
    model = load_model(args.checkpoint)
    generator = torch.Generator().manual_seed(args.seed)
    classes = model.config.classes
    if not classes and args.labels is not None:
        raise ValueError(f"{args.checkpoint} holds {describe(model.config)}: it takes no --labels")
    if classes:
        wanted = list(range(classes)) if args.labels is None else args.labels
        if any(not 0 <= label < classes for label in wanted):
            raise ValueError(f"--labels must lie in 0..{classes - 1} for this model, got {wanted}")
        y = torch.tensor(wanted).repeat_interleave(args.n)  # one row of n samples per label
        means, draws = model.sample(len(y), generator, binary=True, y=y)
        nrow = args.n
    else:
        means, draws = model.sample(args.n, generator, binary=True)
        nrow = max(1, int(round(args.n**0.5)))
    n = len(means)
    fig, ax = plt.subplots(figsize=(nrow * 0.6, -(-n // nrow) * 0.6))
    show_grid(ax, draws if args.binary else means, nrow=nrow)
    atomic_write(args.out, lambda tmp: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))
    print(f"wrote {args.out}")
    return 0


COMMANDS = {"download": cmd_download, "train": cmd_train, "evaluate": cmd_evaluate, "sample": cmd_sample}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # the provenance records this command, also when main() is called in-process
    try:
        return COMMANDS[args.command](args)
    except (
        data.DataError,
        CheckpointError,
        TrainingError,
        FolderLocked,
        ValueError,
        OSError,
    ) as err:  # OSError: a bad --out
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the last completed epoch is saved in checkpoint.pt: rerun with --resume", file=sys.stderr)
        return 130
