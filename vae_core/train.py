"""fit(): the training loop over a device-resident dataset, with history, snapshots and resumable checkpoints.

From the smallest piece up: `train_step` takes one Adam step on a minibatch, `train_epoch` one pass over the data,
`TrainState` holds all a run needs to go on and owns the checkpoint format, and `fit` runs the epochs with
validation, checkpoints and hooks. On CUDA, `CapturedEpoch` replays the step from a CUDA graph.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm  # the terminal bar: tqdm.auto warns in kernels without ipywidgets

from vae_core import losses
from vae_core.checkpoint import first_line, load_checkpoint, save_checkpoint
from vae_core.data import Split, as_split
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
    model: VAE, x: Tensor, config: TrainConfig, generator: torch.Generator, beta: float | Tensor
) -> tuple[Tensor, losses.ELBOTerms]:
    """The per-example bound that training maximizes (the beta-ELBO or the IWAE bound) and the ELBO terms."""
    if config.objective == "iwae":
        return losses.iw_objective(*model.forward_k(x, config.k, generator), x)
    terms = losses.elbo(*model(x, generator), x, beta)
    return terms.elbo, terms


def make_optimizer(model: VAE, lr: float, lr_tensor: bool = False) -> torch.optim.Adam:
    """Adam; the fused kernel where the device supports it (it pays on CPU and CUDA).

    With `lr_tensor`, the learning rate lives in a float32 tensor on the model's device that a captured step
    overwrites in place, and on CUDA the optimizer is capturable (its step counts stay on the device too).
    """
    device = next(model.parameters()).device
    fused = device.type in ("cpu", "cuda")
    if lr_tensor:
        rate = torch.tensor(lr, dtype=torch.float32, device=device)
        return torch.optim.Adam(model.parameters(), lr=rate, fused=fused, capturable=device.type == "cuda")
    return torch.optim.Adam(model.parameters(), lr=lr, fused=fused)


def schedule(config: TrainConfig, steps: range, steps_per_epoch: int, device: torch.device | str = "cpu") -> Tensor:
    """The learning rate and KL weight of each global step in `steps`, a (len(steps), 2) float64 tensor on `device`.

    A captured step reads its row through a step counter on the device. The entries are computed by
    `learning_rate` and `kl_weight` themselves, so they equal them exactly; evaluating the cosine with torch.cos
    instead would not (it differs from math.cos in the last bit at some steps).
    """
    total = steps_per_epoch * config.epochs
    rows = [(learning_rate(config, s, total), kl_weight(config, s, steps_per_epoch)) for s in steps]
    return torch.tensor(rows, dtype=torch.float64).reshape(len(steps), 2).to(device)


STEP_STATS = ("loss", "elbo", "reconstruction", "kl", "bound")
"""What `train_step` returns for a step: its loss, then the batch sums of the ELBO (reconstruction - KL, whatever the
KL weight), its terms and the bound that training maximizes (the beta-weighted ELBO or the IWAE bound)."""


@dataclass(frozen=True)
class ELBOStats:
    """An epoch's means in nats per example: the ELBO result (reconstruction - KL, whatever the KL weight) and the
    bound training maximizes (the beta-weighted ELBO, or the IWAE bound for the iwae objective)."""

    terms: losses.ELBOResult
    bound: float

    @classmethod
    def from_steps(cls, steps: Tensor, n: int, epoch: int) -> ELBOStats:
        """The means over an epoch's `n` examples from its step statistics (one row per step, see STEP_STATS).

        This is the epoch's one read from the device. The float32 batch sums are added in float64, step by step, in
        order. A non-finite loss raises a TrainingError naming the epoch and its first bad step.
        """
        rows = steps.tolist()
        bad = next((i for i, row in enumerate(rows) if not math.isfinite(row[0])), None)
        if bad is not None:
            raise TrainingError(
                f"the loss became {rows[bad][0]} at epoch {epoch}, step {bad}; the last good checkpoint (if any) is "
                "kept. Lower the learning rate (--lr) or check the data for values outside [0, 1]."
            )
        totals = [0.0, 0.0, 0.0, 0.0]
        for row in rows:
            totals = [s + v for s, v in zip(totals, row[1:], strict=True)]
        elbo, reconstruction, kl, bound = (s / n for s in totals)
        return cls(losses.ELBOResult(elbo, reconstruction, kl), bound)


@dataclass
class TrainState:
    """Everything a run needs to go on: the model, Adam, the random stream, the epochs done and their history.

    With `config.keep_best`, also the best epoch so far and a copy of its weights. `state_dict()` is the checkpoint
    and `load_state_dict()` reads it back, so a resumed run continues exactly where the saved one stopped.
    `beta` is the current step's KL weight, set with the learning rate by `set_step` (or, in a CUDA graph, from
    device tensors by `CapturedEpoch`).
    """

    model: VAE
    config: TrainConfig
    optimizer: torch.optim.Adam
    generator: torch.Generator
    steps_per_epoch: int
    epoch: int = 0
    history: History = field(default_factory=History)
    best: dict[str, Any] = field(default_factory=lambda: {"epoch": 0, "valid_elbo": -math.inf, "model": None})
    beta: float | Tensor = 1.0

    @classmethod
    def create(cls, model: VAE, config: TrainConfig, n_train: int, lr_tensor: bool = False) -> TrainState:
        """A fresh state for `n_train` examples: Adam (see make_optimizer), a generator seeded with the run's seed."""
        device = next(model.parameters()).device
        generator = torch.Generator(device=device).manual_seed(config.seed)
        steps_per_epoch = math.ceil(n_train / config.batch_size)
        return cls(model, config, make_optimizer(model, config.lr, lr_tensor), generator, steps_per_epoch)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.config.epochs

    def set_step(self, step: int) -> None:
        """Set the learning rate and the KL weight of global step `step`."""
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.config, step, self.total_steps)
        self.beta = kl_weight(self.config, step, self.steps_per_epoch)

    def end_epoch(self, record: EpochRecord) -> None:
        """Record an epoch; with keep_best, copy the weights when its validation ELBO is the best so far."""
        self.history.records.append(record)
        valid = record.valid
        if self.config.keep_best and valid is not None and valid.elbo > self.best["valid_elbo"]:
            self.best = {"epoch": record.epoch, "valid_elbo": valid.elbo, "model": _copy_state(self.model)}

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint: settings, weights, optimizer, random state, epoch, history (and the best epoch)."""
        optimizer = self.optimizer.state_dict()
        for group in optimizer["param_groups"]:
            group["lr"] = float(group["lr"])  # a number, also where it lives in a device tensor
        state = {
            "model_config": self.model.config.to_dict(),
            "train_config": asdict(self.config),
            "model": self.model.state_dict(),
            "optimizer": optimizer,
            "rng": self.generator.get_state(),
            "epoch": self.epoch,
            "history": self.history.to_list(),
        }
        return {**state, "best": self.best} if self.config.keep_best else state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint written by `state_dict` with the same settings (else TrainingError)."""
        if state["train_config"] != asdict(self.config) or state["model_config"] != self.model.config.to_dict():
            raise TrainingError("it was written with other settings; use the same settings or a new --out")
        self.model.load_state_dict(state["model"])
        live = [(group["lr"], group["capturable"]) for group in self.optimizer.param_groups]
        self.optimizer.load_state_dict(state["optimizer"])
        for group, (lr, capturable) in zip(self.optimizer.param_groups, live, strict=True):
            group["capturable"] = capturable  # how this run steps, whatever the saved run did
            if torch.is_tensor(lr):  # the saved rate, in this run's device tensor (the one a graph captures)
                group["lr"] = lr.fill_(group["lr"])
        self.generator.set_state(state["rng"].cpu())
        self.epoch = state["epoch"]
        self.history = History.from_list(state["history"])
        self.best = state.get("best", self.best)


def train_step(state: TrainState, x: Tensor) -> Tensor:
    """One Adam step on the minibatch `x` at the state's learning rate and KL weight; it never waits for the device.

    Returns the step's statistics (STEP_STATS) as one tensor on x's device.
    """
    bound, terms = objective_terms(state.model, x, state.config, state.generator, state.beta)
    loss = -bound.mean()
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    state.optimizer.step()
    with torch.no_grad():
        return torch.cat([loss.reshape(1), terms.sums(), bound.sum().reshape(1)])


def train_epoch(state: TrainState, data: Split) -> ELBOStats:
    """One pass over shuffled minibatches of `data` (see Split.batches); return the epoch's means."""
    state.model.train()
    order = torch.randperm(len(data), generator=state.generator, device=data.x.device)
    first_step = state.epoch * state.steps_per_epoch
    steps = []
    for i, batch in enumerate(data.batches(order, state.config.batch_size, state.generator)):
        state.set_step(first_step + i)
        steps.append(train_step(state, batch))
    state.epoch += 1
    return ELBOStats.from_steps(torch.stack(steps), len(data), state.epoch)


WARMUP_CALLS = 3
"""Eager calls of a step before it is captured: they initialize Adam's state and the kernels' workspaces."""


class CapturedEpoch:
    """`train_epoch` with each step replayed from a CUDA graph captured once; call it to run the next epoch.

    The graph reads and writes only static tensors on the device: the training set, this epoch's shuffled order, the
    learning rate and KL weight of each step (`schedule`), a step counter, and the table of step statistics. Each
    replay gathers its minibatch by the counter from the split (`Split.batch`, which binarizes a dynamic split with
    the run's generator, registered with the graph so that its random stream advances as in eager mode), copies its
    learning rate into Adam's device tensor (Adam is fused and capturable), takes `train_step` and writes its
    statistics row. The host reads the device once per epoch (ELBOStats.from_steps).

    The last, partial batch (when the batch size does not divide the data) is captured in a second graph of its own
    size, so each epoch sees every example once, as `train_epoch` does. The first WARMUP_CALLS steps, and the first
    partial one, run eagerly on a side stream as real steps; a capture that fails warns and leaves its step eager.
    Off CUDA (in the tests) the same steps run eagerly. The state comes from `TrainState.create(..., lr_tensor=True)`.
    """

    def __init__(self, state: TrainState, data: Split) -> None:
        if not torch.is_tensor(state.optimizer.param_groups[0]["lr"]):
            raise ValueError(
                "CapturedEpoch needs the learning rate in a tensor: TrainState.create(..., lr_tensor=True)"
            )
        self.state, self.data = state, data
        device, size = data.x.device, state.config.batch_size
        self.order = torch.zeros(len(data), dtype=torch.long, device=device)
        self.lr_beta = torch.zeros(state.steps_per_epoch, 2, dtype=torch.float64, device=device)
        self.steps = torch.zeros(state.steps_per_epoch, len(STEP_STATS), device=device)
        self.step_ids = torch.arange(state.steps_per_epoch, device=device).unsqueeze(1)
        self.step = torch.zeros(1, dtype=torch.long, device=device)
        self.offsets = torch.arange(size, device=device)
        full, rest = divmod(len(data), size)
        stream = torch.cuda.Stream(device) if device.type == "cuda" else None  # for warm-up and capture
        self.calls = [(_Graphed(lambda: self.body(size), state.generator, stream, WARMUP_CALLS), full)]
        if rest:  # its kernels are warm by then: one eager call (the first epoch's) is enough
            self.calls.append((_Graphed(lambda: self.body(rest), state.generator, stream, 1), 1))

    def body(self, size: int) -> None:
        """One step of `size` examples, all on the device: what a graph captures."""
        rows = self.order.index_select(0, self.step * self.state.config.batch_size + self.offsets[:size])
        batch = self.data.batch(rows, self.state.generator)
        lr, beta = self.lr_beta.index_select(0, self.step)[0]
        self.state.optimizer.param_groups[0]["lr"].copy_(lr)
        self.state.beta = beta
        stats = train_step(self.state, batch)
        self.steps.copy_(torch.where(self.step_ids == self.step, stats, self.steps))
        self.step.add_(1)

    def __call__(self) -> ELBOStats:
        state = self.state
        first = state.epoch * state.steps_per_epoch
        self.lr_beta.copy_(schedule(state.config, range(first, first + state.steps_per_epoch), state.steps_per_epoch))
        state.model.train()
        self.order.copy_(torch.randperm(len(self.data), generator=state.generator, device=self.order.device))
        self.step.zero_()
        for step, count in self.calls:
            for _ in range(count):
                step()
        state.epoch += 1
        return ELBOStats.from_steps(self.steps, len(self.data), state.epoch)


class _Graphed:
    """`fn` called eagerly `warmup` times on the side `stream`, then captured there in a CUDA graph and replayed.

    A failed capture warns once and leaves `fn` eager. Without a stream (off CUDA), `fn` is simply called.
    """

    def __init__(
        self, fn: Callable[[], None], generator: torch.Generator, stream: torch.cuda.Stream | None, warmup: int
    ) -> None:
        self.fn, self.generator, self.stream, self.warmup = fn, generator, stream, warmup
        self.cuda = stream is not None
        self.graph: torch.cuda.CUDAGraph | None = None
        self.eager_calls = 0
        self.eager_only = not self.cuda

    def __call__(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        elif self.eager_only or self.eager_calls < self.warmup:
            self.eager()
        else:
            self.capture()

    def eager(self) -> None:
        self.eager_calls += 1
        if not self.cuda:
            return self.fn()
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            self.fn()
        torch.cuda.current_stream().wait_stream(self.stream)

    def capture(self) -> None:
        """Capture `fn` (capturing runs nothing) and replay it; on failure, warn and call it eagerly instead."""
        try:
            graph = torch.cuda.CUDAGraph()
            graph.register_generator_state(self.generator)
            with torch.cuda.graph(graph, stream=self.stream):
                self.fn()
        except Exception as err:  # e.g. an op that cannot be captured, or a torch without graph-safe generators
            self.eager_only = True
            warnings.warn(
                f"CUDA graph capture of the training step failed ({type(err).__name__}: {first_line(err, 200)}); "
                "training goes on without it, more slowly. Turn capture off with cuda_graph=False (--no-cuda-graph).",
                RuntimeWarning,
                stacklevel=2,
            )
            return self.eager()
        self.graph = graph
        graph.replay()


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
    ELBO, not the last; the history keeps every epoch. On CUDA each step is replayed from a CUDA graph
    (CapturedEpoch) unless `cuda_graph=False`; otherwise `train_epoch` runs (bit-reproducible on the CPU).
    """
    config = config or TrainConfig()
    train = as_split(train)
    valid_x = None if valid is None else as_split(valid).binarized(config.seed + 1)
    device = next(model.parameters()).device
    if train.x.device != device or (valid_x is not None and valid_x.device != device):
        raise ValueError(f"data must live on the model's device {device}; move it with .to(device) first")
    if len(train) == 0:
        raise ValueError("the training split holds no examples")
    if config.keep_best and valid_x is None:
        raise ValueError("keep_best selects the epoch on the validation ELBO: pass a validation split")
    capture = cuda_graph and device.type == "cuda"
    state = TrainState.create(model, config, len(train), lr_tensor=capture)
    if resume and checkpoint is not None and Path(checkpoint).exists():
        try:
            state.load_state_dict(load_checkpoint(Path(checkpoint), map_location=device))
        except TrainingError as err:
            raise TrainingError(f"{checkpoint}: {err}") from None
    run_epoch = CapturedEpoch(state, train) if capture else partial(train_epoch, state, train)
    bar = tqdm(range(state.epoch + 1, config.epochs + 1), disable=not progress, desc="epochs", unit="epoch")
    for epoch in bar:
        tic = time.perf_counter()
        lr = learning_rate(config, state.epoch * state.steps_per_epoch, state.total_steps)
        stats = run_epoch()
        scores = None
        if valid_x is not None:
            scores = evaluate_elbo(model, valid_x, config.eval_batch_size, seed=config.seed + epoch)
        if device.type == "cuda":
            torch.cuda.synchronize()
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
