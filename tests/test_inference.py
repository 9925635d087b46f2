"""vae_core.inference: the IW bound and effective sample size of stored log weights, and per-image Gaussians."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import binary_data, new_model

from vae_core import losses
from vae_core.inference import effective_sample_size, fit_local_gaussians, gaussian_elbo, iw_bound
from vae_core.model import VAE, VAEConfig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> VAE:
    return new_model(config=VAEConfig(hidden=(32,), z_dim=3))


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return binary_data(40, seed=1, prototypes=3, flip=0.0)


def test_iw_bound_by_hand():
    log_w = torch.log(torch.tensor([[1.0, 3.0, 2.0, 6.0]], dtype=torch.float64))
    assert iw_bound(log_w, 1).item() == pytest.approx(math.log(36) / 4)
    assert iw_bound(log_w, 2).item() == pytest.approx((math.log(2) + math.log(4)) / 2)
    assert iw_bound(log_w, 4).item() == pytest.approx(math.log(3))
    assert iw_bound(log_w, 3).item() == pytest.approx(math.log(2))  # one group of three; the fourth weight unused
    with pytest.raises(ValueError):
        iw_bound(log_w, 5)


def test_effective_sample_size():
    equal = torch.zeros(2, 100, dtype=torch.float64)
    torch.testing.assert_close(effective_sample_size(equal), torch.full((2,), 100.0, dtype=torch.float64))
    one = torch.full((1, 100), -50.0, dtype=torch.float64)
    one[0, 7] = 0.0
    assert effective_sample_size(one).item() == pytest.approx(1.0, abs=1e-9)
    two = torch.log(torch.tensor([[1.0, 1.0, 0.0, 0.0]], dtype=torch.float64))
    assert effective_sample_size(two).item() == pytest.approx(2.0)


def test_gaussian_elbo_equals_the_training_elbo_at_the_same_draw(model, x):
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        terms = losses.elbo(*model(x, torch.Generator().manual_seed(4)), x)
        mu, logvar = model.encoder(x)
        eps = torch.randn((1, *mu.shape), generator=g)
        torch.testing.assert_close(gaussian_elbo(model, x, mu, logvar, eps), terms.elbo, rtol=0, atol=1e-4)


def test_local_gaussians_beat_the_encoder_and_leave_the_model_alone(model, x):
    before = [p.clone() for p in model.parameters()]
    fit = fit_local_gaussians(model, x, steps=60, samples=4, lr=0.05, every=20)
    assert fit.steps == [0, 20, 40, 60] and len(fit.mean_elbo) == 4
    assert fit.mean_elbo[-1] > fit.mean_elbo[0] + 1.0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(p.requires_grad for p in model.parameters())
    eps = torch.randn((200, 40, 3), generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        mu, logvar = model.encoder(x)
        amortized = gaussian_elbo(model, x, mu, logvar, eps)
        local = gaussian_elbo(model, x, fit.mu, fit.logvar, eps)
    assert local.mean() > amortized.mean() + 1.0
    assert (local > amortized - 0.5).float().mean() > 0.9  # per image, almost every q improves


def test_local_gaussians_continue_from_a_start(model, x):
    first = fit_local_gaussians(model, x, steps=30, samples=4, lr=0.05, every=30)
    still = fit_local_gaussians(model, x, steps=0, start=(first.mu, first.logvar), every=1)
    assert torch.equal(still.mu, first.mu) and torch.equal(still.logvar, first.logvar)  # no step: unchanged
    again = fit_local_gaussians(model, x, steps=30, samples=4, lr=0.005, seed=1, start=(first.mu, first.logvar))
    assert again.mean_elbo[0] == pytest.approx(first.mean_elbo[-1], abs=2.0)  # starts where the first run ended
    assert not torch.equal(again.mu, first.mu)
