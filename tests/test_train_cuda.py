"""The CUDA path of training and evaluation: captured steps against eager ones, and no host synchronization per batch.

Skipped without a CUDA GPU (the CPU path is tested in test_train.py, CapturedEpoch's bookkeeping on the CPU with
stand-ins for the CUDA calls in test_cuda_graph.py). Run on a GPU machine with
`python -m pytest -o addopts="" -p no:cacheprovider tests/test_train_cuda.py`.
"""

from __future__ import annotations

import warnings

import helpers
import pytest
import torch

from vae_core.cuda_graph import CapturedEpoch
from vae_core.data import Split
from vae_core.evaluate import evaluate_elbo, iw_log_likelihood
from vae_core.model import VAE
from vae_core.train import TrainConfig, TrainState, fit, train_epoch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def binary_data(n: int, seed: int = 0) -> torch.Tensor:
    """The tests' noisy prototypes (helpers.binary_data), on the GPU."""
    return helpers.binary_data(n, seed).cuda()


def new_model(seed: int = 0) -> VAE:
    return helpers.new_model(seed).cuda()


def assert_close_models(a: VAE, b: VAE, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, rtol=rtol, atol=atol, msg=name)


def assert_close_stats(a, b, rel: float = 1e-4) -> None:
    assert a.bound == pytest.approx(b.bound, rel=rel), "bound"
    for name in ("elbo", "reconstruction", "kl"):
        assert getattr(a.terms, name) == pytest.approx(getattr(b.terms, name), rel=rel), name


CASES = {
    "static": ({}, False),
    "dynamic": ({}, True),
    "kl-warmup": ({"kl_warmup_epochs": 2, "beta": 0.5}, False),
    "iwae": ({"objective": "iwae", "k": 3}, False),
}


@pytest.mark.parametrize("case", CASES)
def test_captured_steps_equal_eager_steps(case):
    """From the same state and the same batches (same seed, so the same shuffles and draws), four epochs of 7 steps:
    the captured graphs (both the full batches' and the partial last batch's) against train_epoch, eager."""
    overrides, dynamic = CASES[case]
    config = TrainConfig(**{"epochs": 4, "batch_size": 48, "lr": 3e-3, "seed": 3, **overrides})
    x = binary_data(300)  # 6 batches of 48 and one of 12
    x = Split(x * 0.8 + 0.1 if dynamic else x, dynamic=dynamic)
    eager = TrainState.create(new_model(), config, len(x))
    graphed = TrainState.create(new_model(), config, len(x))
    run = CapturedEpoch(graphed, x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a failed capture would warn
        for _ in range(config.epochs):
            assert_close_stats(run(), train_epoch(eager, x))
    assert all(step.graph is not None for step, _ in run.calls), "both steps are replayed from graphs"
    assert torch.equal(graphed.generator.get_state(), eager.generator.get_state())
    assert_close_models(graphed.model, eager.model)
    group = graphed.optimizer.param_groups[0]  # plain Adam between epochs, as train_epoch leaves it
    assert group["lr"] == eager.optimizer.param_groups[0]["lr"] and group["capturable"] is False


def test_a_failed_capture_warns_and_trains_eagerly(monkeypatch):
    def refuse(self, generator):
        raise RuntimeError("no graph-safe generators here")

    monkeypatch.setattr(torch.cuda.CUDAGraph, "register_generator_state", refuse)
    config = TrainConfig(epochs=2, batch_size=48, lr=3e-3, seed=1)
    x = Split(binary_data(300))
    eager = TrainState.create(new_model(), config, len(x))
    graphed = TrainState.create(new_model(), config, len(x))
    run = CapturedEpoch(graphed, x)
    with pytest.warns(RuntimeWarning, match="CUDA graph capture of the training step failed"):
        assert_close_stats(run(), train_epoch(eager, x))
    assert_close_stats(run(), train_epoch(eager, x))
    assert all(step.graph is None for step, _ in run.calls)
    assert_close_models(graphed.model, eager.model)


def test_fit_with_and_without_capture_agree_and_resume(tmp_path):
    x, v = binary_data(300), binary_data(100, seed=1)
    config = TrainConfig(epochs=4, batch_size=48, lr=3e-3, seed=2, keep_best=True)
    a, b = new_model(), new_model()
    ha = fit(a, x, v, config, progress=False)
    hb = fit(b, x, v, config, progress=False, cuda_graph=False)
    for ra, rb in zip(ha.records, hb.records, strict=True):
        assert ra.train.elbo == pytest.approx(rb.train.elbo, rel=1e-4)
        assert ra.valid.elbo == pytest.approx(rb.valid.elbo, rel=1e-4)
        assert ra.lr == rb.lr
    assert_close_models(a, b)

    def stop_after_two(epoch, model, history):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(new_model(), x, v, config, checkpoint=tmp_path / "c.pt", hook=stop_after_two, progress=False)
    resumed = new_model(seed=7)
    hr = fit(resumed, x, v, config, checkpoint=tmp_path / "c.pt", resume=True, progress=False)
    assert [r.train.elbo for r in hr.records] == pytest.approx([r.train.elbo for r in ha.records], rel=1e-5)
    assert_close_models(resumed, a, rtol=1e-5)


def count_syncs(fn) -> int:
    """How many synchronizing CUDA calls `fn()` makes (torch's sync debug mode, set to warn)."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchronizing" in str(w.message) for w in caught)


def test_the_host_reads_the_device_per_epoch_not_per_step():
    """After capture, an epoch of 6 steps and one of 24 make the same number of synchronizing calls; so do the
    validation ELBO and the IW bound over 1 or 10 batches."""
    counts = []
    for n in (288, 1152):
        state = TrainState.create(new_model(), TrainConfig(epochs=3, batch_size=48), n)
        run = CapturedEpoch(state, Split(binary_data(n)))
        run()  # warm-up and capture
        counts.append(count_syncs(run))
    assert counts[0] == counts[1] <= 3, counts
    model, x = new_model(), binary_data(200)
    assert count_syncs(lambda: evaluate_elbo(model, x, 200)) == count_syncs(lambda: evaluate_elbo(model, x, 20)) <= 2
    one, many = (count_syncs(lambda b=b: iw_log_likelihood(model, x, k=50, batch_size=b)) for b in (200, 20))
    assert one == many <= 2, (one, many)
