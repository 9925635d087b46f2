"""`CapturedEpoch`: `train.train_epoch` on CUDA, with each training step replayed from a CUDA graph captured once.

A step of a small model is many small kernels, and launching them one by one from Python can cost more than running
them. A CUDA graph records a step's kernels once and replays them with one launch. A replay runs no Python, so
everything a step reads or writes that changes from step to step lives in tensors on the device, which this module
owns: the epoch's shuffled order, each step's learning rate and KL weight, a step counter, and the table of step
statistics. It also adapts Adam for the epoch: capturable, its learning rate read from a device tensor.

The CUDA calls it makes are in `CUDAGraphs` (a side stream, capture); `CapturedEpoch` takes them as an argument, so
that the tests can run it on the CPU with stand-ins.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from typing import Protocol

import torch

from vae_core.data import Split
from vae_core.messages import first_line
from vae_core.train import ELBOStats, StepStats, TrainState, train_step

WARMUP_CALLS = 3
"""Eager calls of a step before it is captured: they initialize Adam's state and the kernels' workspaces."""


class Graph(Protocol):
    def replay(self) -> None: ...


class Graphs(Protocol):
    """What a captured epoch needs from the device (`CUDAGraphs` on CUDA)."""

    def side_stream(self) -> AbstractContextManager[None]: ...

    def capture(self, fn: Callable[[], None], generator: torch.Generator) -> Graph: ...


class CUDAGraphs:
    """The CUDA calls of a captured epoch: steps run eagerly and are captured on a side stream of `device`."""

    def __init__(self, device: torch.device) -> None:
        self.stream = torch.cuda.Stream(device)

    @contextmanager
    def side_stream(self) -> Iterator[None]:
        """Run the block on the side stream, after the work queued before it and before the work queued after it."""
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            yield
        torch.cuda.current_stream().wait_stream(self.stream)

    def capture(self, fn: Callable[[], None], generator: torch.Generator) -> torch.cuda.CUDAGraph:
        """A graph of the kernels `fn` launches (capturing runs none of them); each replay draws from `generator`'s
        random stream, and advances it, as a call of `fn` would."""
        graph = torch.cuda.CUDAGraph()
        graph.register_generator_state(generator)
        with torch.cuda.graph(graph, stream=self.stream):
            fn()
        return graph


class GraphedCall:
    """`fn` called eagerly on the side stream for its first `warmup` calls, then captured once and replayed.

    A capture that fails warns once and leaves `fn` eager from then on.
    """

    def __init__(self, fn: Callable[[], None], generator: torch.Generator, graphs: Graphs, warmup: int) -> None:
        self.fn, self.generator, self.graphs, self.warmup = fn, generator, graphs, warmup
        self.graph: Graph | None = None
        self.eager_calls = 0
        self.failed = False

    def __call__(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        elif self.failed or self.eager_calls < self.warmup:
            self.eager()
        else:
            self.capture()

    def eager(self) -> None:
        self.eager_calls += 1
        with self.graphs.side_stream():
            self.fn()

    def capture(self) -> None:
        """Capture `fn` and replay it (the capture ran none of it); on failure, warn and call it eagerly instead."""
        try:
            graph = self.graphs.capture(self.fn, self.generator)
        except Exception as err:  # e.g. an op that cannot be captured, or a torch without graph-safe generators
            self.failed = True
            warnings.warn(
                f"CUDA graph capture of the training step failed ({type(err).__name__}: {first_line(err, 200)}); "
                "training goes on without it, more slowly. Turn capture off with cuda_graph=False (--no-cuda-graph).",
                RuntimeWarning,
                stacklevel=2,
            )
            return self.eager()
        self.graph = graph
        graph.replay()


class CapturedEpoch:
    """`train_epoch(state, data)` with each step replayed from a CUDA graph; call it to run the next epoch.

    A replay gathers its minibatch by the step counter from the epoch's order (`Split.batch`, which binarizes a
    dynamic split with the run's generator, registered with the graph so that its random stream advances as in eager
    mode), copies its learning rate into Adam's device tensor, takes `train_step` with its KL weight and writes its
    row of statistics. The host reads the device once per epoch (ELBOStats.from_steps).

    The last, partial batch (when the batch size does not divide the data) is captured in a second graph of its own
    size, so each epoch sees every example once, as `train_epoch` does. The first WARMUP_CALLS steps, and the first
    partial one, run eagerly as real steps. `graphs` defaults to CUDA on the data's device.
    """

    def __init__(self, state: TrainState, data: Split, graphs: Graphs | None = None) -> None:
        self.state, self.data = state, data
        device, size, steps = data.x.device, state.config.batch_size, state.steps_per_epoch
        graphs = CUDAGraphs(device) if graphs is None else graphs
        self.order = torch.zeros(len(data), dtype=torch.long, device=device)
        self.rates = torch.zeros(steps, 2, dtype=torch.float64, device=device)  # learning rate, KL weight
        self.lr = torch.zeros((), dtype=torch.float32, device=device)  # the learning rate Adam reads
        self.stats = torch.zeros(steps, len(StepStats._fields), device=device)
        self.step = torch.zeros(1, dtype=torch.long, device=device)
        self.step_ids = torch.arange(steps, device=device).unsqueeze(1)
        self.offsets = torch.arange(size, device=device)
        full, rest = divmod(len(data), size)
        self.calls = [(GraphedCall(partial(self.body, size), state.generator, graphs, WARMUP_CALLS), full)]
        if rest:  # its kernels are warm by then: one eager call (the first epoch's) is enough
            self.calls.append((GraphedCall(partial(self.body, rest), state.generator, graphs, 1), 1))

    def body(self, size: int) -> None:
        """One step of `size` examples, all on the device: what a graph captures."""
        rows = self.order.index_select(0, self.step * self.state.config.batch_size + self.offsets[:size])
        batch = self.data.batch(rows, self.state.generator)
        labels = self.data.labels_at(rows) if self.state.model.conditional else None
        lr, beta = self.rates.index_select(0, self.step)[0]
        self.lr.copy_(lr)
        stats = train_step(self.state, batch, beta, labels)
        self.stats.copy_(torch.where(self.step_ids == self.step, stats, self.stats))
        self.step.add_(1)

    def __call__(self) -> ELBOStats:
        state = self.state
        first = state.epoch * state.steps_per_epoch
        rates = [state.rates(step) for step in range(first, first + state.steps_per_epoch)]
        self.rates.copy_(torch.tensor(rates, dtype=torch.float64))
        state.model.train()
        self.order.copy_(torch.randperm(len(self.data), generator=state.generator, device=self.order.device))
        self.step.zero_()
        with self.adam_on_device(last_lr=rates[-1][0]):
            for call, count in self.calls:
                for _ in range(count):
                    call()
        state.epoch += 1
        return ELBOStats.from_steps(self.stats, len(self.data), state.epoch)

    @contextmanager
    def adam_on_device(self, last_lr: float) -> Iterator[None]:
        """Adam as the graphs need it, for the length of the block: capturable, its learning rate read from `self.lr`.

        After the block it is plain again, the last step's learning rate a float, as `train_epoch` leaves it: the
        state, and so its checkpoint, is the same however the epoch ran.
        """
        groups = self.state.optimizer.param_groups
        capturable = [group["capturable"] for group in groups]
        for group in groups:
            group["lr"], group["capturable"] = self.lr, True
        try:
            yield
        finally:
            for group, was in zip(groups, capturable, strict=True):
                group["lr"], group["capturable"] = last_lr, was
