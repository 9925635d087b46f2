"""fit(): the training loop over a device-resident dataset, with history, snapshots and resumable checkpoints.

From the smallest piece up: `learning_rate` and `kl_weight` give a step's settings, `training_loss` the loss it
minimizes, `train_step` takes one Adam step on a minibatch, `train_epoch` one pass over the data, `TrainState` holds
all a run needs to go on and owns the checkpoint format, and `fit` runs the epochs with validation, checkpoints and
hooks. On CUDA, `fit` replays the steps from CUDA graphs instead (`vae_core.cuda_graph`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor
from tqdm import tqdm  # the terminal bar: tqdm.auto warns in kernels without ipywidgets

from vae_core import losses
from vae_core.checkpoint import load_checkpoint, save_checkpoint
from vae_core.data import Split, as_split
from vae_core.evaluate import evaluate_elbo
from vae_core.model import VAE, VAEConfig


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
    """One epoch: the ELBO results on the training and validation data, the learning rate at its first step, its
    wall time and the training bound (the ELBO itself unless training maximized a KL-weighted or IWAE bound).

    As a JSON row (`to_row`, read back by `from_row`) the results are flat: ``train_elbo``, ``valid_kl``, ...
    """

    epoch: int
    train: losses.ELBOResult
    valid: losses.ELBOResult | None
    seconds: float
    lr: float
    train_objective: float | None = None

    def to_row(self) -> dict[str, Any]:
        valid = self.valid.flat("valid") if self.valid else dict.fromkeys(losses.ELBOResult.keys("valid"))
        row = {"epoch": self.epoch, **self.train.flat("train"), **valid}
        return {**row, "seconds": self.seconds, "lr": self.lr, "train_objective": self.train_objective}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> EpochRecord:
        train = losses.ELBOResult.from_flat(row, "train")
        if train is None:
            raise ValueError(f"history row {row.get('epoch')} lacks its training ELBO: {sorted(row)}")
        valid = losses.ELBOResult.from_flat(row, "valid")
        return cls(row["epoch"], train, valid, row["seconds"], row["lr"], row.get("train_objective"))


@dataclass
class History:
    """The per-epoch records of a run."""

    records: list[EpochRecord] = field(default_factory=list)

    def column(self, name: str) -> list[Any]:
        """One column of the JSON rows, e.g. ``"valid_elbo"``, epoch by epoch."""
        return [r.to_row()[name] for r in self.records]

    def to_list(self) -> list[dict[str, Any]]:
        return [r.to_row() for r in self.records]

    @classmethod
    def from_list(cls, rows: list[dict[str, Any]]) -> History:
        return cls([EpochRecord.from_row(row) for row in rows])


Hook = Callable[[int, VAE, History], None]


def cosine_decay(start: float, step: int, total_steps: int, end: float = 0.0) -> float:
    """Half a cosine from `start` at step 0 down to `end` at `total_steps`, and `end` after it."""
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))


def learning_rate(config: TrainConfig, step: int, total_steps: int) -> float:
    """The learning rate at a global step: constant, or cosine from lr down to lr * final_lr_fraction."""
    if config.schedule == "constant" or total_steps == 0:
        return config.lr
    return cosine_decay(config.lr, step, total_steps, end=config.lr * config.final_lr_fraction)


def kl_weight(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """beta, ramped linearly from 0 over the first kl_warmup_epochs epochs (KL warm-up), then constant."""
    warm_steps = config.kl_warmup_epochs * steps_per_epoch
    return config.beta if step >= warm_steps else config.beta * step / warm_steps


def make_optimizer(model: VAE, lr: float) -> torch.optim.Adam:
    """Adam at learning rate `lr`; the fused kernel where the device supports it (it pays on CPU and CUDA)."""
    device = next(model.parameters()).device
    return torch.optim.Adam(model.parameters(), lr=lr, fused=device.type in ("cpu", "cuda"))


class StepStats(NamedTuple):
    """A training step's statistics: its loss, then the batch sums of the ELBO (reconstruction - KL, whatever the KL
    weight), of its two terms and of the bound that training maximizes (the beta-weighted ELBO or the IWAE bound).

    A step returns them stacked, in this order, as one tensor on the device; an epoch stacks its steps' into a table
    with one column per field (`ELBOStats.from_steps`).
    """

    loss: Tensor
    elbo: Tensor
    reconstruction: Tensor
    kl: Tensor
    bound: Tensor


def training_loss(
    model: VAE,
    x: Tensor,
    config: TrainConfig,
    generator: torch.Generator,
    beta: float | Tensor,
    y: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The loss a training step minimizes on the minibatch `x` (with labels `y` for a conditional model), and the
    step's statistics (StepStats, one tensor).

    The loss is the negative batch mean of the bound that training maximizes: the ELBO with its KL weighted by `beta`
    (`losses.loss`), or with the iwae objective the importance-weighted bound over `config.k` samples.
    """
    if config.objective == "iwae":
        bound, terms = losses.iw_objective(*model.forward_k(x, config.k, generator, y), x)
    else:
        logits, mu, logvar = model(x, generator, y)
        terms = losses.elbo(logits, mu, logvar, x, beta)
        bound = terms.objective
    loss = -bound.mean()
    with torch.no_grad():
        elbo, reconstruction, kl = terms.sums()
        return loss, torch.stack(StepStats(loss, elbo, reconstruction, kl, bound.sum()))


@dataclass(frozen=True)
class ELBOStats:
    """An epoch's means in nats per example: the ELBO result (reconstruction - KL, whatever the KL weight) and the
    bound training maximizes (the beta-weighted ELBO, or the IWAE bound for the iwae objective)."""

    terms: losses.ELBOResult
    bound: float

    @classmethod
    def from_steps(cls, steps: Tensor, n: int, epoch: int) -> ELBOStats:
        """The means over an epoch's `n` examples from its table of step statistics (a row per step, a column per
        StepStats field).

        This is the epoch's one read from the device. The float32 batch sums are added in float64, step by step, in
        order (a cumulative sum). A non-finite loss raises a TrainingError naming the epoch and its first bad step.
        """
        table = steps.to("cpu", torch.float64)
        loss = StepStats(*table.unbind(1)).loss
        bad = torch.nonzero(~torch.isfinite(loss))
        if len(bad):
            step = int(bad[0])
            raise TrainingError(
                f"the loss became {loss[step].item()} at epoch {epoch}, step {step}; the last good checkpoint (if any) "
                "is kept. Lower the learning rate (--lr) or check the data for values outside [0, 1]."
            )
        means = dict(zip(StepStats._fields, (table.cumsum(0)[-1] / n).tolist(), strict=True))
        return cls(losses.ELBOResult(means["elbo"], means["reconstruction"], means["kl"]), means["bound"])


@dataclass
class TrainState:
    """Everything a run needs to go on: the model, Adam, the random stream, the epochs done and their history.

    With `config.keep_best`, also the best epoch so far and a copy of its weights. `state_dict()` is the checkpoint
    and `load_state_dict()` reads it back, so a resumed run continues exactly where the saved one stopped.
    """

    model: VAE
    config: TrainConfig
    optimizer: torch.optim.Adam
    generator: torch.Generator
    steps_per_epoch: int
    epoch: int = 0
    history: History = field(default_factory=History)
    best: dict[str, Any] = field(default_factory=lambda: {"epoch": 0, "valid_elbo": -math.inf, "model": None})

    @classmethod
    def create(cls, model: VAE, config: TrainConfig, n_train: int) -> TrainState:
        """A fresh state for `n_train` examples: Adam (see make_optimizer), a generator seeded with the run's seed."""
        device = next(model.parameters()).device
        generator = torch.Generator(device=device).manual_seed(config.seed)
        steps_per_epoch = math.ceil(n_train / config.batch_size)
        return cls(model, config, make_optimizer(model, config.lr), generator, steps_per_epoch)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.config.epochs

    def rates(self, step: int) -> tuple[float, float]:
        """The learning rate and the KL weight of global step `step`."""
        return learning_rate(self.config, step, self.total_steps), kl_weight(self.config, step, self.steps_per_epoch)

    def end_epoch(self, record: EpochRecord) -> None:
        """Record an epoch; with keep_best, copy the weights when its validation ELBO is the best so far."""
        self.history.records.append(record)
        valid = record.valid
        if self.config.keep_best and valid is not None and valid.elbo > self.best["valid_elbo"]:
            self.best = {"epoch": record.epoch, "valid_elbo": valid.elbo, "model": _copy_state(self.model)}

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint: settings, weights, optimizer, random state, epoch, history (and the best epoch)."""
        state = {
            "model_config": self.model.config.to_dict(),
            "train_config": asdict(self.config),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": self.generator.get_state(),
            "epoch": self.epoch,
            "history": self.history.to_list(),
        }
        return {**state, "best": self.best} if self.config.keep_best else state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint written by `state_dict` with the same settings (else TrainingError)."""
        saved_model = VAEConfig(**state["model_config"]).to_dict()  # an older checkpoint lacks the newer keys
        if state["train_config"] != asdict(self.config) or saved_model != self.model.config.to_dict():
            raise TrainingError("it was written with other settings; use the same settings or a new --out")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["rng"].cpu())
        self.epoch = state["epoch"]
        self.history = History.from_list(state["history"])
        self.best = state.get("best", self.best)


def train_step(state: TrainState, x: Tensor, beta: float | Tensor, y: Tensor | None = None) -> Tensor:
    """One Adam step on the minibatch `x`, at the optimizer's learning rate and the KL weight `beta`: it minimizes the
    batch's mean loss (`training_loss`) and returns the step's statistics (StepStats) without waiting for the device.
    `y` are the minibatch's labels, for a conditional model.
    """
    loss, stats = training_loss(state.model, x, state.config, state.generator, beta, y)
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    state.optimizer.step()
    return stats


def train_epoch(state: TrainState, data: Split) -> ELBOStats:
    """One pass over shuffled minibatches of `data` (see Split.batches), with their labels for a conditional model;
    return the epoch's means."""
    state.model.train()
    order = torch.randperm(len(data), generator=state.generator, device=data.x.device)
    first_step = state.epoch * state.steps_per_epoch
    steps = []
    conditional = state.model.conditional
    for i, (batch, labels) in enumerate(data.batches(order, state.config.batch_size, state.generator)):
        lr, beta = state.rates(first_step + i)
        for group in state.optimizer.param_groups:
            group["lr"] = lr
        steps.append(train_step(state, batch, beta, labels if conditional else None))
    state.epoch += 1
    return ELBOStats.from_steps(torch.stack(steps), len(data), state.epoch)


def fit(
    model: VAE,
    train: Split | Tensor,
    valid: Split | Tensor | None = None,
    config: TrainConfig | None = None,
    *,
    hook: Hook | None = None,
    checkpoint: Path | str | None = None,
    resume: bool = False,
    progress: bool = True,
    cuda_graph: bool = True,
) -> History:
    """Train `model` on the `train` split (already on the model's device) with Adam; return the per-epoch history.

    A split serves its own batches (`Split.batch`: a dynamic split binarizes each afresh) and its validation data
    (`Split.binarized`); a plain tensor is binary data (`as_split`). With `checkpoint`, the full state
    (TrainState.state_dict) is saved atomically after every epoch, and `resume=True` continues from it: a resumed run
    equals the uninterrupted one. `hook(epoch, model, history)` runs after each epoch, e.g. to take sample snapshots.
    With `config.keep_best`, the model returned (and checkpointed as "best") is the epoch with the highest validation
    ELBO, not the last; the history keeps every epoch. Each epoch is `train_epoch` (bit-reproducible on the CPU); on
    CUDA its steps are replayed from CUDA graphs (`vae_core.cuda_graph.CapturedEpoch`) unless `cuda_graph=False`.
    """
    config = config or TrainConfig()
    train = as_split(train)
    train.labels_for(model.config.classes, "the training split")  # a conditional model needs labels: fail early
    valid_x = None if valid is None else as_split(valid).binarized(config.seed + 1)
    valid_y = None if valid is None else as_split(valid).labels_for(model.config.classes, "the validation split")
    device = next(model.parameters()).device
    if train.x.device != device or (valid_x is not None and valid_x.device != device):
        raise ValueError(f"data must live on the model's device {device}; move it with .to(device) first")
    if len(train) == 0:
        raise ValueError("the training split holds no examples")
    if config.keep_best and valid_x is None:
        raise ValueError("keep_best selects the epoch on the validation ELBO: pass a validation split")
    state = TrainState.create(model, config, len(train))
    if resume and checkpoint is not None and Path(checkpoint).exists():
        try:
            state.load_state_dict(load_checkpoint(Path(checkpoint), map_location=device))
        except TrainingError as err:
            raise TrainingError(f"{checkpoint}: {err}") from None
    run_epoch: Callable[[], ELBOStats] = partial(train_epoch, state, train)
    if cuda_graph and device.type == "cuda":
        from vae_core.cuda_graph import CapturedEpoch  # imported here: that module imports this one

        run_epoch = CapturedEpoch(state, train)
    bar = tqdm(range(state.epoch + 1, config.epochs + 1), disable=not progress, desc="epochs", unit="epoch")
    for epoch in bar:
        tic = time.perf_counter()
        lr, _ = state.rates(state.epoch * state.steps_per_epoch)
        stats = run_epoch()  # it reads the statistics from the device, so the epoch's work is done
        scores = None
        if valid_x is not None:
            scores = evaluate_elbo(model, valid_x, config.eval_batch_size, seed=config.seed + epoch, y=valid_y)
        seconds = time.perf_counter() - tic
        state.end_epoch(EpochRecord(epoch, stats.terms, scores, seconds, lr, stats.bound))
        if checkpoint is not None:
            save_checkpoint(Path(checkpoint), state.state_dict())
        if hook is not None:
            hook(epoch, model, state.history)
        bar.set_postfix(train=f"{stats.terms.elbo:.2f}", valid="-" if scores is None else f"{scores.elbo:.2f}")
    if config.keep_best and state.best["model"] is not None:
        model.load_state_dict(state.best["model"])
    return state.history


def _copy_state(model: VAE) -> dict[str, Tensor]:
    """A detached copy of the model's weights (the best epoch's, for keep_best)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
