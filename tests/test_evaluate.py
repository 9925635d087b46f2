"""vae_core.evaluate: the batched ELBO, the importance-weighted log-likelihood, and active units."""

from __future__ import annotations

import math

import pytest
import torch

from vae_core import losses
from vae_core.evaluate import active_units, evaluate_elbo, evaluating, iw_log_likelihood, posterior_means
from vae_core.model import VAE, VAEConfig

CONFIG = VAEConfig(hidden=(64,), z_dim=4)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> VAE:
    torch.manual_seed(0)
    return VAE(CONFIG)


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    prototypes = torch.bernoulli(torch.full((3, 784), 0.3), generator=g)
    return prototypes[torch.randint(0, 3, (300,), generator=g)]


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


def test_active_units_counts_varying_dimensions(x):
    torch.manual_seed(0)
    model = VAE(CONFIG)
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


@pytest.mark.parametrize("training", [True, False])
def test_evaluating_sets_eval_mode_and_restores_the_mode_even_on_error(training: bool) -> None:
    model = VAE(VAEConfig(x_dim=4, hidden=(3,), z_dim=2)).train(training)
    with evaluating(model) as inside:
        assert inside is model and not model.training
    assert model.training is training
    with pytest.raises(RuntimeError), evaluating(model):
        raise RuntimeError("boom")
    assert model.training is training
