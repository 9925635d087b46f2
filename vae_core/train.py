"""fit(): the training loop over a device-resident dataset, with history, snapshots and resumable checkpoints."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm  # the terminal bar: tqdm.auto warns in kernels without ipywidgets

from vae_core import losses
from vae_core.checkpoint import load_checkpoint, save_checkpoint
from vae_core.evaluate import evaluate_elbo
from vae_core.model import VAE


class TrainingError(RuntimeError):
    """Training cannot go on, e.g. the loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings: Adam with an optional cosine decay of the learning rate per step."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    schedule: str = "cosine"
    final_lr_fraction: float = 0.0
    seed: int = 0
    beta: float = 1.0
    eval_batch_size: int = 2000
    objective: str = "elbo"
    k: int = 1
    keep_best: bool = False
    kl_warmup_epochs: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError(f"batch sizes must be >= 1, got {self.batch_size} and {self.eval_batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        if not 0.0 <= self.final_lr_fraction <= 1.0:
            raise ValueError(f"final_lr_fraction must be in [0, 1], got {self.final_lr_fraction}")
        if not (self.beta >= 0 and math.isfinite(self.beta)):
            raise ValueError(f"beta must be a finite number >= 0, got {self.beta}")
        if self.objective not in ("elbo", "iwae"):
            raise ValueError(f"objective must be 'elbo' or 'iwae', got {self.objective!r}")
        if self.k < 1 or (self.objective == "elbo" and self.k != 1):
            raise ValueError(f"k must be 1 for the elbo objective and >= 1 for iwae, got {self.k}")
        if self.kl_warmup_epochs < 0:
            raise ValueError(f"kl_warmup_epochs must be >= 0, got {self.kl_warmup_epochs}")
        if self.objective == "iwae" and (self.beta != 1.0 or self.kl_warmup_epochs):
            raise ValueError("the iwae objective has no KL term to weight: use beta 1 and no KL warm-up")


@dataclass
class EpochRecord:
    """One epoch's averages in nats per example (ELBO = reconstruction - KL), and its wall time."""

    epoch: int
    train_elbo: float
    train_reconstruction: float
    train_kl: float
    valid_elbo: float | None
    valid_reconstruction: float | None
    valid_kl: float | None
    seconds: float
    lr: float
    train_objective: float | None = None


@dataclass
class History:
    """The per-epoch records of a run."""

    records: list[EpochRecord] = field(default_factory=list)

    def column(self, name: str) -> list[Any]:
        return [getattr(r, name) for r in self.records]

    def to_list(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.records]

    @classmethod
    def from_list(cls, rows: list[dict[str, Any]]) -> History:
        return cls([EpochRecord(**row) for row in rows])


Hook = Callable[[int, VAE, History], None]


def learning_rate(config: TrainConfig, step: int, total_steps: int) -> float:
    """The learning rate at a global step: constant, or cosine from lr down to lr * final_lr_fraction."""
    if config.schedule == "constant" or total_steps == 0:
        return config.lr
    floor = config.lr * config.final_lr_fraction
    return floor + 0.5 * (config.lr - floor) * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))


def kl_weight(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """beta, ramped linearly from 0 over the first kl_warmup_epochs epochs (KL warm-up), then constant."""
    warm_steps = config.kl_warmup_epochs * steps_per_epoch
    return config.beta if step >= warm_steps else config.beta * step / warm_steps


def objective_terms(
    model: VAE, x: Tensor, config: TrainConfig, generator: torch.Generator, beta: float
) -> tuple[Tensor, losses.ELBOTerms]:
    """The per-example bound that training maximizes (the beta-ELBO or the IWAE bound) and the ELBO terms."""
    if config.objective == "iwae":
        return losses.iw_objective(model, x, config.k, generator)
    terms = losses.elbo(model, x, generator, beta)
    return terms.elbo, terms


def make_optimizer(model: VAE, lr: float) -> torch.optim.Adam:
    """Adam; the fused kernel where the device supports it (it pays on CPU and CUDA)."""
    device = next(model.parameters()).device
    fused = device.type in ("cpu", "cuda")
    return torch.optim.Adam(model.parameters(), lr=lr, fused=fused)


FINITE_CHECK_EVERY = 50
"""Steps between checks that the loss is finite (each check waits for a GPU); the epoch's last step is checked too."""


def _check_finite(objectives: Tensor, first: int, epoch: int) -> None:
    """Raise TrainingError naming the first step from `first` on whose loss (in `objectives`) is NaN or infinite."""
    bad = ~torch.isfinite(objectives)
    if bad.any():
        step = first + int(bad.nonzero()[0, 0])
        raise TrainingError(
            f"the loss became {objectives[step - first].item()} at epoch {epoch}, step {step}; the last good "
            "checkpoint (if any) is kept. Lower the learning rate (--lr) or check the data for values outside [0, 1]."
        )


def train_epoch(
    model: VAE,
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    config: TrainConfig,
    generator: torch.Generator,
    first_step: int,
    total_steps: int,
    dynamic: bool,
    epoch: int,
) -> tuple[float, float, float, float]:
    """One pass over shuffled minibatches of `x`; return the mean ELBO, reconstruction, KL and training bound.

    Per-step statistics stay on the device and are read once per epoch; the loss is checked for NaN every
    FINITE_CHECK_EVERY steps, and a TrainingError names the first bad step.
    """
    model.train()
    n = x.shape[0]
    order = torch.randperm(n, generator=generator, device=x.device)
    starts = range(0, n, config.batch_size)
    steps_per_epoch = len(starts)
    stats = torch.empty(len(starts), 5, dtype=torch.float32, device=x.device)  # loss, ELBO, rec., KL, bound sums
    checked = 0
    for i, start in enumerate(starts):
        batch = x[order[start : start + config.batch_size]]
        if dynamic:
            batch = torch.bernoulli(batch, generator=generator)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, first_step + i, total_steps)
        beta = kl_weight(config, first_step + i, steps_per_epoch)
        bound, terms = objective_terms(model, batch, config, generator, beta)
        objective = -bound.mean()
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        optimizer.step()
        with torch.no_grad():
            sums = [terms.elbo.sum(), terms.reconstruction.sum(), terms.kl.sum(), bound.sum()]
            torch.stack([objective, *sums], out=stats[i])
        if i + 1 - checked == FINITE_CHECK_EVERY or i + 1 == len(starts):
            _check_finite(stats[checked : i + 1, 0], checked, epoch)
            checked = i + 1
    totals = [0.0, 0.0, 0.0, 0.0]
    for row in stats[:, 1:].tolist():  # float64 sums, step by step, in order
        totals = [s + v for s, v in zip(totals, row, strict=True)]
    elbo, rec, kl, bound = (s / n if n else math.nan for s in totals)
    return elbo, rec, kl, bound


def fit(
    model: VAE,
    train_x: Tensor,
    valid_x: Tensor | None = None,
    config: TrainConfig | None = None,
    *,
    dynamic: bool = False,
    hook: Hook | None = None,
    checkpoint: Path | str | None = None,
    resume: bool = False,
    progress: bool = True,
) -> History:
    """Train `model` on `train_x` (already on the model's device) with Adam; return the per-epoch history.

    With `checkpoint`, the full state (weights, optimizer, RNG, epoch, history) is saved atomically after every epoch,
    and `resume=True` continues from it: a resumed run equals the uninterrupted one. `hook(epoch, model, history)`
    runs after each epoch, e.g. to take sample snapshots. With `dynamic`, each minibatch is binarized afresh.
    With `config.keep_best`, the model returned (and checkpointed as "best") is the epoch with the highest validation
    ELBO, not the last; the history keeps every epoch.
    """
    config = config or TrainConfig()
    device = next(model.parameters()).device
    if train_x.device != device or (valid_x is not None and valid_x.device != device):
        raise ValueError(f"data must live on the model's device {device}; move it with .to(device) first")
    if config.keep_best and valid_x is None:
        raise ValueError("keep_best selects the epoch on the validation ELBO: pass valid_x")
    generator = torch.Generator(device=device).manual_seed(config.seed)
    optimizer = make_optimizer(model, config.lr)
    history = History()
    start_epoch = 1
    best: dict[str, Any] = {"epoch": 0, "valid_elbo": -math.inf, "model": None}
    if resume and checkpoint is not None and Path(checkpoint).exists():
        state = load_checkpoint(Path(checkpoint), map_location=device)
        if state["train_config"] != asdict(config) or state["model_config"] != model.config.to_dict():
            raise TrainingError(f"{checkpoint} was written with other settings; use the same settings or a new --out")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["rng"].cpu())
        history = History.from_list(state["history"])
        start_epoch = state["epoch"] + 1
        best = state.get("best", best)
    valid_eval = valid_x
    if dynamic and valid_x is not None:
        valid_eval = torch.bernoulli(valid_x, generator=torch.Generator(device=device).manual_seed(config.seed + 1))
    steps_per_epoch = math.ceil(train_x.shape[0] / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    bar = tqdm(range(start_epoch, config.epochs + 1), disable=not progress, desc="epochs", unit="epoch", leave=True)
    for epoch in bar:
        tic = time.perf_counter()
        lr = learning_rate(config, (epoch - 1) * steps_per_epoch, total_steps)
        *train, bound = train_epoch(
            model, optimizer, train_x, config, generator, (epoch - 1) * steps_per_epoch, total_steps, dynamic, epoch
        )
        valid: tuple[float | None, ...] = (None, None, None)
        if valid_eval is not None:
            terms = evaluate_elbo(model, valid_eval, config.eval_batch_size, seed=config.seed + epoch)
            valid = (terms["elbo"], terms["reconstruction"], terms["kl"])
        if device.type == "cuda":
            torch.cuda.synchronize()
        history.records.append(
            EpochRecord(epoch, *train, *valid, seconds=time.perf_counter() - tic, lr=lr, train_objective=bound)
        )
        if config.keep_best and valid[0] is not None and valid[0] > best["valid_elbo"]:
            best = {"epoch": epoch, "valid_elbo": valid[0], "model": _copy_state(model)}
        if checkpoint is not None:
            save_checkpoint(
                Path(checkpoint),
                {
                    "model_config": model.config.to_dict(),
                    "train_config": asdict(config),
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "rng": generator.get_state(),
                    "epoch": epoch,
                    "history": history.to_list(),
                    **({"best": best} if config.keep_best else {}),
                },
            )
        if hook is not None:
            hook(epoch, model, history)
        bar.set_postfix(train=f"{train[0]:.2f}", valid="-" if valid[0] is None else f"{valid[0]:.2f}")
    if config.keep_best and best["model"] is not None:
        model.load_state_dict(best["model"])
    return history


def _copy_state(model: VAE) -> dict[str, Tensor]:
    """A detached copy of the model's weights (the best epoch's, for keep_best)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
