"""vae_core.cuda_graph on the CPU: warm-up, capture, replay and fallback, through stand-ins for the CUDA calls.

`FakeGraphs` stands in for `CUDAGraphs`: its side stream is no stream, and its capture records the step without
running it (as a CUDA capture runs none of its kernels) in a graph whose replay calls it. A `CapturedEpoch` on it
runs every step of the epoch once, eagerly or replayed, so it must train exactly as `train_epoch` does. The real
graphs are tested on a GPU (test_train_cuda.py).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import torch
from helpers import assert_same_weights, binary_data, new_model

from vae_core.cuda_graph import WARMUP_CALLS, CapturedEpoch, GraphedCall
from vae_core.data import Split
from vae_core.train import TrainConfig, TrainState, train_epoch

pytestmark = pytest.mark.usefixtures("one_thread")


class FakeGraph:
    def __init__(self, fn: Callable[[], None], events: list[str]) -> None:
        self.fn, self.events = fn, events

    def replay(self) -> None:
        self.events.append("replay")
        self.fn()


class FakeGraphs:
    """Records what happens: "eager" (a call on the side stream), "capture", "replay". With `refuse`, captures fail."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.events: list[str] = []
        self.generators: list[torch.Generator] = []

    @contextmanager
    def side_stream(self) -> Iterator[None]:
        self.events.append("eager")
        yield

    def capture(self, fn: Callable[[], None], generator: torch.Generator) -> FakeGraph:
        self.events.append("capture")
        self.generators.append(generator)
        if self.refuse:
            raise RuntimeError("no graph-safe generators here")
        return FakeGraph(fn, self.events)


def test_graphed_call_warms_up_captures_once_then_replays():
    graphs, generator, calls = FakeGraphs(), torch.Generator(), []
    step = GraphedCall(lambda: calls.append(len(calls)), generator, graphs, warmup=2)
    for _ in range(6):
        step()
    # Two eager calls, the capture (which runs nothing) replayed at once, then replays only: six calls, six steps.
    assert graphs.events == ["eager", "eager", "capture", "replay", "replay", "replay", "replay"]
    assert len(calls) == 6 and graphs.generators == [generator]


def test_a_failed_capture_warns_once_and_stays_eager():
    graphs, calls = FakeGraphs(refuse=True), []
    step = GraphedCall(lambda: calls.append(len(calls)), torch.Generator(), graphs, warmup=2)
    with pytest.warns(RuntimeWarning, match="capture of the training step failed .*no graph-safe generators"):
        for _ in range(3):
            step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second capture, no second warning
        for _ in range(3):
            step()
    assert graphs.events == ["eager", "eager", "capture", "eager", "eager", "eager", "eager"]
    assert len(calls) == 6


CASES = {
    "static": ({}, False),
    "dynamic": ({}, True),
    "kl-warmup": ({"kl_warmup_epochs": 2, "beta": 0.5}, False),
    "iwae": ({"objective": "iwae", "k": 3}, False),
}


@pytest.mark.parametrize("refuse", [False, True], ids=["captured", "capture-fails"])
@pytest.mark.parametrize("case", CASES)
def test_captured_epoch_trains_as_train_epoch(case, refuse):
    """Three epochs of 6 steps (5 of 48 examples, a partial one of 16): the same statistics, random stream and
    weights as train_epoch, bit for bit, whether the steps are replayed or (after a failed capture) eager; and
    between epochs Adam is as train_epoch leaves it, so the checkpoint does not depend on how the epoch ran.

    The learning rate is one that float32 holds exactly: a graph's Adam reads it from a float32 tensor, train_epoch's
    from the float (see the next test for the cosine schedule)."""
    overrides, dynamic = CASES[case]
    config = TrainConfig(**{"epochs": 3, "batch_size": 48, "lr": 2**-9, "schedule": "constant", "seed": 3, **overrides})
    x = binary_data(256)
    data = Split(x * 0.8 + 0.1 if dynamic else x, dynamic=dynamic)
    eager = TrainState.create(new_model(), config, len(data))
    graphed = TrainState.create(new_model(), config, len(data))
    graphs = FakeGraphs(refuse)
    run = CapturedEpoch(graphed, data, graphs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(config.epochs):
            assert run() == train_epoch(eager, data)
            assert graphed.optimizer.param_groups[0]["lr"] == 2**-9
            assert without_state(graphed.optimizer) == without_state(eager.optimizer)
    assert graphed.epoch == eager.epoch == 3
    assert torch.equal(graphed.generator.get_state(), eager.generator.get_state())
    assert_same_weights(graphed.model, eager.model)
    for (name, a), b in zip(
        graphed.optimizer.state_dict()["state"].items(), eager.optimizer.state_dict()["state"].values(), strict=True
    ):
        assert all(torch.equal(a[k], b[k]) for k in a), name
    if refuse:  # one failed capture per graph, one warning each, then eager steps only
        assert graphs.events.count("capture") == 2 and "replay" not in graphs.events
        assert len([w for w in caught if issubclass(w.category, RuntimeWarning)]) == 2
        return
    first = ["eager"] * WARMUP_CALLS + ["capture"] + ["replay"] * (5 - WARMUP_CALLS) + ["eager"]
    assert graphs.events == [*first, *["replay"] * 5, "capture", "replay", *["replay"] * 6]


def without_state(optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer's state_dict without its per-parameter tensors: its settings, learning rate included."""
    return {**optimizer.state_dict(), "state": None}


def test_captured_epoch_follows_the_cosine_schedule():
    """With the cosine schedule the learning rates are rounded to float32 in a graph: the runs agree to float
    precision, not bit for bit. Between epochs Adam holds the same float as train_epoch leaves it."""
    config = TrainConfig(epochs=3, batch_size=48, lr=3e-3, seed=3, kl_warmup_epochs=2, final_lr_fraction=0.1)
    data = Split(binary_data(256))
    eager = TrainState.create(new_model(), config, len(data))
    graphed = TrainState.create(new_model(), config, len(data))
    run = CapturedEpoch(graphed, data, FakeGraphs())
    for _ in range(config.epochs):
        a, b = run(), train_epoch(eager, data)
        assert a.bound == pytest.approx(b.bound, rel=1e-5)
        for name in ("elbo", "reconstruction", "kl"):
            assert getattr(a.terms, name) == pytest.approx(getattr(b.terms, name), rel=1e-5), name
        assert without_state(graphed.optimizer) == without_state(eager.optimizer)
    assert torch.equal(graphed.generator.get_state(), eager.generator.get_state())
    for p, q in zip(graphed.model.parameters(), eager.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
