"""vae_core.losses and vae_core.densities against torch.distributions, hand-computed values and an exact log p(x) by
quadrature (with the streamed IW bound of vae_core.evaluate.iw_log_likelihood, which sums the log weights of
losses.log_weights)."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import binary64, float64_vae, gen
from torch import Tensor
from torch.distributions import Bernoulli, Independent, Normal, kl_divergence

from vae_core import densities, losses
from vae_core.evaluate import iw_log_likelihood
from vae_core.model import VAE

F64 = torch.float64


def streamed_iw(model: VAE, x: Tensor, k: int, chunk: int = 100, seed: int = 0) -> Tensor:
    """The streamed IW bound per example of `x` as one batch, drawn with a generator seeded `seed`."""
    return iw_log_likelihood(model, x, k, batch_size=len(x), chunk=chunk, seed=seed).per_example


# --- KL(N(mu, diag sigma^2) || N(0, I)) ---


def test_kl_is_zero_for_identical_gaussians() -> None:
    kl = losses.kl_to_standard_normal(torch.zeros(4, 7), torch.zeros(4, 7))
    assert kl.shape == (4,)
    assert torch.equal(kl, torch.zeros(4))


@pytest.mark.parametrize("mu", [10.0, -10.0])
def test_kl_is_fifty_for_a_mean_gap_of_ten(mu: float) -> None:
    # (mu_q, mu_p, sigma_q^2, sigma_p^2) = (0, 10, 1, 1): only the gap matters, 10^2 / 2 = 50.
    kl = losses.kl_to_standard_normal(torch.tensor([[mu]]), torch.tensor([[0.0]]))
    assert kl.item() == 50.0


def test_kl_hand_value() -> None:
    # 1/2 [(2 + 1 - 1 - log 2) + (1 + 4 - 1 - 0)] = 3 - log(2) / 2
    kl = losses.kl_to_standard_normal(
        torch.tensor([1.0, 2.0], dtype=F64), torch.tensor([math.log(2.0), 0.0], dtype=F64)
    )
    assert kl.item() == pytest.approx(3.0 - math.log(2.0) / 2.0, abs=1e-14)


def test_kl_matches_torch_distributions() -> None:
    g = gen(1)
    mu = 2.0 * torch.randn(32, 5, generator=g, dtype=F64)
    logvar = 1.5 * torch.randn(32, 5, generator=g, dtype=F64)
    q = Independent(Normal(mu, torch.exp(0.5 * logvar)), 1)
    p = Independent(Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1)
    torch.testing.assert_close(losses.kl_to_standard_normal(mu, logvar), kl_divergence(q, p), rtol=1e-12, atol=1e-12)


# --- Bernoulli log-likelihood from logits ---


def test_bernoulli_matches_torch_and_hand_formula() -> None:
    g = gen(2)
    logits = 3.0 * torch.randn(16, 30, generator=g, dtype=F64)
    x = torch.bernoulli(torch.full((16, 30), 0.5, dtype=F64), generator=g)
    ours = losses.bernoulli_log_likelihood(logits, x)
    torch.testing.assert_close(ours, Bernoulli(logits=logits).log_prob(x).sum(-1), rtol=1e-12, atol=1e-12)
    f = torch.sigmoid(logits)
    hand = (x * torch.log(f) + (1 - x) * torch.log(1 - f)).sum(-1)
    torch.testing.assert_close(ours, hand, rtol=1e-10, atol=1e-10)


def test_bernoulli_at_zero_logits_is_minus_m_log_two() -> None:
    x = binary64(3, 784, seed=3)
    ll = losses.bernoulli_log_likelihood(torch.zeros(3, 784, dtype=F64), x)
    torch.testing.assert_close(ll, torch.full((3,), -784 * math.log(2.0), dtype=F64))


def test_bernoulli_is_finite_at_extreme_logits() -> None:
    logits = torch.tensor([[50.0, -50.0, 50.0, -50.0]])
    x = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    f = torch.sigmoid(logits)
    naive = (x * torch.log(f) + (1 - x) * torch.log(1 - f)).sum(-1)
    assert not torch.isfinite(naive).any()  # the naive formula gives nan here
    ll = losses.bernoulli_log_likelihood(logits, x)
    assert torch.isfinite(ll).all()
    torch.testing.assert_close(ll, torch.tensor([-100.0]), rtol=0, atol=1e-5)


# --- Gaussian log densities ---


def test_log_densities_match_torch() -> None:
    g = gen(4)
    z, mu, logvar = (torch.randn(8, 6, generator=g, dtype=F64) for _ in range(3))
    expected = Independent(Normal(mu, torch.exp(0.5 * logvar)), 1).log_prob(z)
    torch.testing.assert_close(densities.gaussian_log_density(z, mu, logvar), expected, rtol=1e-12, atol=1e-12)
    standard = Independent(Normal(torch.zeros_like(z), torch.ones_like(z)), 1).log_prob(z)
    torch.testing.assert_close(densities.standard_normal_log_density(z), standard, rtol=1e-12, atol=1e-12)


def test_log_mean_exp_by_hand_and_far_from_zero() -> None:
    log_w = torch.log(torch.tensor([[1.0, 3.0, 2.0, 6.0]], dtype=F64))
    assert densities.log_mean_exp(log_w).item() == pytest.approx(math.log(3.0), abs=1e-15)
    assert densities.log_mean_exp(log_w.T, dim=0).item() == pytest.approx(math.log(3.0), abs=1e-15)
    assert densities.log_mean_exp(log_w - 1000.0).item() == pytest.approx(math.log(3.0) - 1000.0, abs=1e-12)


# --- ELBO and loss ---


def test_elbo_is_the_closed_form_loss_by_hand() -> None:
    model = float64_vae()
    x = binary64(12, 20, seed=5)
    with torch.no_grad():
        terms = losses.elbo(*model(x, gen(7)), x)
        mu, logvar = model.encoder(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=gen(7), dtype=F64)
        f = torch.sigmoid(model.decoder(z))
        reconstruction = (x * torch.log(f) + (1 - x) * torch.log(1 - f)).sum(-1)
        kl = 0.5 * (logvar.exp() + mu.pow(2) - 1 - logvar).sum(-1)
    torch.testing.assert_close(terms.reconstruction, reconstruction, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(terms.kl, kl, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(terms.elbo, reconstruction - kl, rtol=1e-10, atol=1e-10)


def test_beta_weights_the_kl_in_the_objective_and_loss_is_its_mean_negative() -> None:
    model = float64_vae()
    x = binary64(12, 20, seed=6)
    with torch.no_grad():
        terms = losses.elbo(*model(x, gen(8)), x, beta=0.25)
        batch_loss = losses.loss(*model(x, gen(8)), x, beta=0.25)
    torch.testing.assert_close(terms.objective, terms.reconstruction - 0.25 * terms.kl)
    torch.testing.assert_close(terms.elbo, terms.reconstruction - terms.kl)  # the ELBO itself, whatever beta
    torch.testing.assert_close(batch_loss, -terms.objective.mean())


def test_gradients_reach_the_encoder_through_the_sample() -> None:
    model = float64_vae()
    x = binary64(12, 20, seed=9)
    # Only the reconstruction term: its sole path to the encoder is z = mu + sigma * eps.
    (-losses.elbo(*model(x, gen(10)), x).reconstruction.mean()).backward()
    for p in model.encoder.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    last, z_dim = model.encoder.net[-1].weight.grad, model.config.z_dim  # both halves: the mu and log-variance rows
    assert last[:z_dim].abs().sum() > 0 and last[z_dim:].abs().sum() > 0
    model.zero_grad()
    losses.loss(*model(x, gen(10)), x).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


# --- Importance-weighted bound ---


def test_iw_bound_with_k_one_is_one_sample_log_weight() -> None:
    model = float64_vae()
    x = binary64(10, 20, seed=11)
    iw = streamed_iw(model, x, 1, seed=12)
    with torch.no_grad():
        mu, logvar = model.encoder(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn((1, *mu.shape), generator=gen(12), dtype=F64)[0]
        log_w = (
            losses.bernoulli_log_likelihood(model.decoder(z), x)
            + densities.standard_normal_log_density(z)
            - densities.gaussian_log_density(z, mu, logvar)
        )
    torch.testing.assert_close(iw, log_w, rtol=1e-10, atol=1e-10)


def test_iw_bound_with_k_one_equals_the_elbo_in_expectation() -> None:
    model = float64_vae()
    x = binary64(1, 20, seed=13).expand(20000, 20)
    iw = streamed_iw(model, x, 1, seed=14)
    with torch.no_grad():
        el = losses.elbo(*model(x, gen(15)), x).elbo
    se = math.sqrt(iw.var().item() / iw.numel() + el.var().item() / el.numel())
    assert abs(iw.mean().item() - el.mean().item()) < 4 * se


def test_iw_bound_grows_with_k_and_exceeds_the_elbo() -> None:
    # 20 images, each repeated 20 times, so that the average is over examples and over draws.
    model = float64_vae(x_dim=100, hidden=(32,))
    x = binary64(20, 100, seed=16).repeat(20, 1)
    with torch.no_grad():
        el = losses.elbo(*model(x, gen(17)), x).elbo.mean().item()
    bounds = [streamed_iw(model, x, k, seed=18).mean().item() for k in (1, 10, 100)]
    assert bounds[0] < bounds[1] < bounds[2]
    assert bounds[1] > el and bounds[2] > el


def test_elbo_and_iw_bound_against_exact_values_by_quadrature() -> None:
    # With a one-dimensional latent, log p(x) and the ELBO are integrals over z that a fine grid gets exactly enough.
    model = float64_vae(seed=3, x_dim=10, hidden=(8,), z_dim=1)
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.mul_(2.0)  # a sharper decoder, so that q(z|x) is visibly off the true posterior
    x = binary64(4, 10, seed=19)
    grid = torch.linspace(-12.0, 12.0, 24001, dtype=F64)
    dz = (grid[1] - grid[0]).item()
    with torch.no_grad():
        logits = model.decoder(grid[:, None])[:, None, :].expand(-1, x.shape[0], -1)
        log_joint = losses.bernoulli_log_likelihood(logits, x.expand(grid.numel(), -1, -1))  # (grid, batch)
        log_joint = log_joint + densities.standard_normal_log_density(grid[:, None])[:, None]
        log_px = torch.logsumexp(log_joint, dim=0) + math.log(dz)
        mu, logvar = model.encoder(x)
        log_q = densities.gaussian_log_density(grid[:, None, None], mu, logvar)
        elbo_exact = (log_q.exp() * (log_joint - log_q)).sum(0) * dz
        xs = x.repeat(4000, 1)
        draws = losses.elbo(*model(xs, gen(20)), xs).elbo.view(4000, -1)
    iw = streamed_iw(model, x, 5000, chunk=1000, seed=21)
    gap = log_px - elbo_exact  # = KL(q(z|x) || p(z|x)) > 0
    assert (gap > 0.01).all() and gap.max() > 0.3
    # The single-sample ELBO is unbiased for the exact ELBO.
    se = draws.std(0) / math.sqrt(draws.shape[0])
    assert ((draws.mean(0) - elbo_exact).abs() < 4 * se).all()
    # The IW bound with K = 5000 closes nearly all of the gap.
    torch.testing.assert_close(iw, log_px, rtol=0, atol=0.05)
    assert ((iw - log_px).abs().mean() < 0.2 * gap.mean()).item()


def test_iw_bound_is_chunk_invariant() -> None:
    model = float64_vae()
    x = binary64(8, 20, seed=21)
    # A chunk at least K draws the same samples in one go: identical results.
    torch.testing.assert_close(
        streamed_iw(model, x, 50, chunk=50, seed=22),
        streamed_iw(model, x, 50, chunk=500, seed=22),
        rtol=0,
        atol=0,
    )
    # Smaller chunks may draw other samples (torch's normal stream is not split-invariant), so compare in
    # distribution: 792 rows, each an IW estimate with K = 50.
    xs = x.repeat(99, 1)
    means = [streamed_iw(model, xs, 50, chunk=c, seed=23).mean().item() for c in (50, 7, 1)]
    assert max(means) - min(means) < 0.02


@pytest.mark.parametrize(("k", "chunk", "batch_size"), [(0, 10, 5), (10, 0, 5), (-1, 1, 5), (10, 10, 0)])
def test_iw_bound_rejects_nonpositive_sizes(k: int, chunk: int, batch_size: int) -> None:
    model = float64_vae()
    with pytest.raises(ValueError, match="must be positive"):
        iw_log_likelihood(model, binary64(2, 20, seed=0), k=k, batch_size=batch_size, chunk=chunk)


# --- Units ---


def test_nats_to_bits_per_dim() -> None:
    assert losses.nats_to_bits_per_dim(-784 * math.log(2.0)) == pytest.approx(-1.0, abs=1e-15)
    assert losses.nats_to_bits_per_dim(-100.0) == pytest.approx(-100.0 / (784 * math.log(2.0)))
    assert losses.nats_to_bits_per_dim(math.log(2.0), dims=1) == pytest.approx(1.0)
    out = losses.nats_to_bits_per_dim(torch.tensor([-86.76, 0.0], dtype=F64))
    torch.testing.assert_close(out, torch.tensor([-86.76 / (784 * math.log(2.0)), 0.0], dtype=F64))
