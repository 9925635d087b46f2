"""vae_core.evaluate: the batched ELBO, the importance-weighted log-likelihood and log weights, and active units.

The IW bound of one batch against an exact log p(x) by quadrature is in test_losses."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import binary64, binary_data, float64_vae, gen, new_model
from torch.distributions import Bernoulli, Independent, Normal

from vae_core import losses
from vae_core.evaluate import active_units, evaluate_elbo, iw_log_likelihood, posterior_means, sample_log_weights
from vae_core.model import VAE

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> VAE:
    return new_model()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return binary_data(300, seed=1, prototypes=3, flip=0.0)


def test_evaluate_elbo_matches_manual_loop(model, x):
    got = evaluate_elbo(model, x, batch_size=70, seed=5)
    g = torch.Generator().manual_seed(5)
    rows = []
    with torch.no_grad():
        for s in range(0, len(x), 70):
            t = losses.elbo(*model(x[s : s + 70], g), x[s : s + 70])
            rows.append(torch.stack([t.elbo, t.reconstruction, t.kl]))
    manual = torch.cat(rows, dim=1).double().mean(1).tolist()
    assert [got.elbo, got.reconstruction, got.kl] == pytest.approx(manual, rel=1e-6)  # float32 batch sums
    assert got.elbo == pytest.approx(got.reconstruction - got.kl, rel=1e-6)
    assert got.elbo < 0 and got.kl > 0


def test_evaluate_elbo_is_seeded_and_keeps_training_mode(model, x):
    model.train()
    a, b = evaluate_elbo(model, x, seed=1), evaluate_elbo(model, x, seed=1)
    assert a == b
    assert evaluate_elbo(model, x, seed=2).reconstruction != a.reconstruction
    assert evaluate_elbo(model, x, seed=2).kl == pytest.approx(a.kl, rel=1e-12)  # the KL is exact
    assert model.training
    model.eval()
    evaluate_elbo(model, x)
    assert not model.training
    model.train()


def test_iw_estimate_summarizes_its_per_example_values(model, x):
    """The mean and standard error come from the float64 per-example values (K = 1 and growth with K: test_losses)."""
    est = iw_log_likelihood(model, x, k=100, chunk=30, seed=0)
    assert est.k == 100 and est.per_example.shape == (300,) and est.per_example.dtype == torch.float64
    assert est.stderr == pytest.approx(est.per_example.std().item() / math.sqrt(300), rel=1e-12)
    assert est.mean == pytest.approx(est.per_example.mean().item(), rel=1e-12)
    assert est.mean < 0


def test_iw_is_deterministic_for_a_seed(model, x):
    a = iw_log_likelihood(model, x[:50], k=20, batch_size=16, chunk=7, seed=4)
    b = iw_log_likelihood(model, x[:50], k=20, batch_size=16, chunk=7, seed=4)
    c = iw_log_likelihood(model, x[:50], k=20, batch_size=16, chunk=7, seed=5)
    assert torch.equal(a.per_example, b.per_example) and a.mean == b.mean
    assert not torch.equal(a.per_example, c.per_example)


def test_iw_single_example_has_no_stderr(model, x):
    est = iw_log_likelihood(model, x[:1], k=5)
    assert math.isnan(est.stderr) and math.isfinite(est.mean)


def test_log_weights_and_iw_bound_against_torch_distributions() -> None:
    """One batch, one chunk: the K draws are mu + sigma * eps with eps (K, n, d) from the seeded generator, the log
    weights log Bern(x | z) + log N(z | 0, I) - log N(z | mu, sigma^2), and the IW bound their log-mean-exp."""
    model, x, k = float64_vae(), binary64(6, 20, seed=30), 9
    log_w = sample_log_weights(model, x, k, batch_size=6, chunk=k, seed=31)
    bound = iw_log_likelihood(model, x, k, batch_size=6, chunk=k, seed=31).per_example
    with torch.no_grad():
        mu, logvar = model.encoder(x)
        std = torch.exp(0.5 * logvar)
        z = mu + std * torch.randn((k, *mu.shape), generator=gen(31), dtype=torch.float64)
        likelihood = Independent(Bernoulli(logits=model.decoder(z)), 1).log_prob(x)
        prior = Independent(Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1).log_prob(z)
        expected = (likelihood + prior - Independent(Normal(mu, std), 1).log_prob(z)).T  # (n, K)
    assert log_w.shape == (6, k) and log_w.dtype == torch.float64
    torch.testing.assert_close(log_w, expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(bound, torch.logsumexp(expected, 1) - math.log(k), rtol=1e-10, atol=1e-10)


def test_log_weights_of_a_given_q(model, x):
    mu, logvar = torch.zeros(40, 4), torch.zeros(40, 4)  # q = the prior: log w = log p(x|z)
    log_w = sample_log_weights(model, x[:40], 30, mu=mu, logvar=logvar, seed=0)
    z = torch.randn((30, 40, 4), generator=gen(0))
    with torch.no_grad():
        expected = losses.bernoulli_log_likelihood(model.decoder(z), x[:40].expand(30, 40, 784)).T.double()
    torch.testing.assert_close(log_w, expected, rtol=0, atol=1e-3)


def test_log_weights_in_batches_and_chunks(model, x):
    """Every image gets K weights in its own row, whatever the batches and chunks; sizes must be positive."""
    log_w = sample_log_weights(model, x[:50], 23, batch_size=16, chunk=7, seed=2)
    assert log_w.shape == (50, 23) and log_w.dtype == torch.float64 and torch.isfinite(log_w).all()
    assert torch.equal(log_w, sample_log_weights(model, x[:50], 23, batch_size=16, chunk=7, seed=2))
    with pytest.raises(ValueError, match="must be positive"):
        sample_log_weights(model, x[:5], 0)


def test_active_units_counts_varying_dimensions(x):
    model = new_model()
    last = model.encoder.net[-1]  # rows 0..3 give mu, rows 4..7 give log sigma^2
    with torch.no_grad():
        last.weight[[0, 2]] = 0.0
        last.bias[[0, 2]] = 0.3  # mu_0 = mu_2 = 0.3 for every x: inactive
        last.weight[[1, 3]] *= 20.0  # make the other two vary well above the threshold
    count, variance = active_units(model, x, batch_size=64)
    assert count == 2
    assert variance.shape == (4,)
    assert variance[0] == 0 and variance[2] == 0
    assert (variance[[1, 3]] > 0.01).all()
    assert active_units(model, x, threshold=variance.max().item() + 1)[0] == 0
    # The variance is Var_x of the posterior means, computed in batches.
    mu = model.encoder(x)[0].detach().double()
    assert torch.allclose(variance, mu.var(dim=0), rtol=1e-6)


def test_posterior_means_in_batches(model, x):
    mu = posterior_means(model, x, batch_size=64)
    assert mu.shape == (300, 4) and not mu.requires_grad
    assert torch.allclose(mu, model.encoder(x)[0].detach(), atol=1e-6)
