"""The linear-Gaussian toy model: exact quantities against torch.distributions, the ELBO identity, MC estimators."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal

from vae_core import toy


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.fixture
def model(gen: torch.Generator) -> toy.LinearGaussian:
    return toy.LinearGaussian.random(latent_dim=3, data_dim=5, generator=gen, w_scale=0.8, sigma=0.7)


def random_q(d: int, gen: torch.Generator, full: bool) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.randn(d, generator=gen, dtype=torch.float64)
    if not full:
        return mean, torch.rand(d, generator=gen, dtype=torch.float64) + 0.1
    A = torch.randn(d, d, generator=gen, dtype=torch.float64)
    return mean, A @ A.T + 0.1 * torch.eye(d, dtype=torch.float64)


def test_log_marginal_matches_torch(model: toy.LinearGaussian, gen: torch.Generator) -> None:
    _, x = toy.sample(model, 7, gen)
    ref = MultivariateNormal(model.b, model.W @ model.W.T + model.sigma**2 * torch.eye(5, dtype=torch.float64))
    torch.testing.assert_close(toy.log_marginal(model, x), ref.log_prob(x), rtol=0, atol=1e-12)


def test_log_joint_and_densities_match_torch(model: toy.LinearGaussian, gen: torch.Generator) -> None:
    z, x = toy.sample(model, 4, gen)
    lik = Normal(z @ model.W.T + model.b, model.sigma).log_prob(x).sum(-1)
    prior = Normal(0.0, 1.0).log_prob(z).sum(-1)
    torch.testing.assert_close(toy.log_likelihood(model, x, z), lik, rtol=0, atol=1e-12)
    torch.testing.assert_close(toy.log_joint(model, x, z), lik + prior, rtol=0, atol=1e-12)
    mean, cov = random_q(3, gen, full=True)
    torch.testing.assert_close(
        toy.gaussian_log_density_cov(z, mean, cov), MultivariateNormal(mean, cov).log_prob(z), rtol=0, atol=1e-12
    )


def test_posterior_is_bayes_rule(model: toy.LinearGaussian, gen: torch.Generator) -> None:
    """log p(z|x) = log p(x, z) - log p(x) at arbitrary z."""
    _, x = toy.sample(model, 1, gen)
    x = x[0]
    mean, cov = toy.posterior(model, x)
    z = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    lhs = MultivariateNormal(mean, cov).log_prob(z)
    torch.testing.assert_close(lhs, toy.log_joint(model, x, z) - toy.log_marginal(model, x), rtol=0, atol=1e-10)


def test_kl_gaussians_matches_torch(gen: torch.Generator) -> None:
    m0, c0 = random_q(4, gen, full=True)
    m1, c1 = random_q(4, gen, full=True)
    ref = torch.distributions.kl_divergence(MultivariateNormal(m0, c0), MultivariateNormal(m1, c1))
    torch.testing.assert_close(toy.kl_gaussians(m0, c0, m1, c1), ref, rtol=1e-12, atol=1e-12)
    d0, v0 = random_q(4, gen, full=False)
    torch.testing.assert_close(
        toy.kl_gaussians(d0, v0, m1, c1), toy.kl_gaussians(d0, torch.diag(v0), m1, c1), rtol=0, atol=1e-12
    )
    assert abs(toy.kl_gaussians(m0, c0, m0, c0).item()) < 1e-12


@pytest.mark.parametrize("full", [False, True])
def test_elbo_identity_for_random_q(model: toy.LinearGaussian, gen: torch.Generator, full: bool) -> None:
    """log p(x) = ELBO + KL(q || p(z|x)) to 1e-10, for random Gaussian q (diagonal and full)."""
    _, xs = toy.sample(model, 5, gen)
    for x in xs:
        for _ in range(4):
            mean, cov = random_q(3, gen, full)
            gap = toy.log_marginal(model, x) - toy.elbo(model, x, mean, cov)
            kl = toy.kl_to_posterior(model, x, mean, cov)
            assert abs((gap - kl).item()) < 1e-10
            assert kl.item() > 0


def test_elbo_matches_monte_carlo(model: toy.LinearGaussian, gen: torch.Generator) -> None:
    """The closed-form expectation agrees with E_q[log p(x, z) - log q(z)] estimated from samples."""
    _, x = toy.sample(model, 1, gen)
    mean, cov = random_q(3, gen, full=True)
    z = toy.sample_gaussian(mean, cov, 200_000, gen)
    terms = toy.log_joint(model, x[0], z) - toy.gaussian_log_density_cov(z, mean, cov)
    se = terms.std() / math.sqrt(len(terms))
    assert abs((terms.mean() - toy.elbo(model, x[0], mean, cov)).item()) < 4 * se.item()


def test_elbo_is_tight_at_the_posterior(model: toy.LinearGaussian, gen: torch.Generator) -> None:
    _, x = toy.sample(model, 3, gen)
    mean, cov = toy.posterior(model, x)
    assert toy.kl_to_posterior(model, x, mean, cov).abs().max().item() < 1e-12
    torch.testing.assert_close(toy.elbo(model, x, mean, cov), toy.log_marginal(model, x), rtol=0, atol=1e-12)


def test_batched_x_with_diagonal_q(model: toy.LinearGaussian, gen: torch.Generator) -> None:
    _, x = toy.sample(model, 3, gen)  # a batch of 3 = D points: shapes must not be confused
    mean = torch.randn(3, 3, generator=gen, dtype=torch.float64)
    var = torch.rand(3, 3, generator=gen, dtype=torch.float64) + 0.2
    batched = toy.elbo(model, x, mean, var)
    one_by_one = torch.stack([toy.elbo(model, x[i], mean[i], var[i]) for i in range(3)])
    torch.testing.assert_close(batched, one_by_one, rtol=0, atol=1e-12)
    gap = toy.log_marginal(model, x) - batched
    torch.testing.assert_close(gap, toy.kl_to_posterior(model, x, mean, var), rtol=0, atol=1e-10)


def test_gradients_flow_to_theta_and_phi(gen: torch.Generator) -> None:
    model = toy.LinearGaussian.random(2, 4, gen, requires_grad=True)
    _, x = toy.sample(model, 1, gen)
    x = x[0].detach()
    mean = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    log_std = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    value = toy.elbo(model, x, mean, (2 * log_std).exp())
    grads = torch.autograd.grad(value, [*model.parameters(), mean, log_std])
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)
    # log p(x) does not depend on phi: the phi-gradient of the ELBO equals minus that of the KL
    kl = toy.kl_to_posterior(model, x, mean, (2 * log_std).exp())
    g_kl = torch.autograd.grad(kl, [mean, log_std])
    torch.testing.assert_close(grads[3], -g_kl[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(grads[4], -g_kl[1], rtol=0, atol=1e-12)


def test_naive_mc_converges(model: toy.LinearGaussian, gen: torch.Generator) -> None:
    """The naive estimate of p(x) is unbiased: within 4 standard errors of the exact value."""
    _, x = toy.sample(model, 1, gen)
    x = x[0]
    w = toy.naive_log_weights(model, x, 400_000, gen).exp()
    exact = toy.log_marginal(model, x).exp()
    se = w.std() / math.sqrt(len(w))
    assert abs((w.mean() - exact).item()) < 4 * se.item()
    assert abs((toy.naive_mc(model, x, 400_000, gen) - toy.log_marginal(model, x)).item()) < 0.05


def test_importance_sampling_converges(model: toy.LinearGaussian, gen: torch.Generator) -> None:
    _, x = toy.sample(model, 1, gen)
    x = x[0]
    post_mean, post_cov = toy.posterior(model, x)
    q_mean, q_var = post_mean + 0.1, 1.2 * post_cov.diagonal()
    w = toy.sample_log_weights(model, x, q_mean, q_var, 100_000, gen).exp()
    exact = toy.log_marginal(model, x).exp()
    se = w.std() / math.sqrt(len(w))
    assert abs((w.mean() - exact).item()) < 4 * se.item()
    # with q equal to the posterior every weight equals p(x): zero variance
    exact_w = toy.sample_log_weights(model, x, post_mean, post_cov, 10, gen)
    torch.testing.assert_close(exact_w, toy.log_marginal(model, x).expand(10), rtol=0, atol=1e-10)
    assert abs((toy.importance_sampling(model, x, q_mean, q_var, 1000, gen) - toy.log_marginal(model, x)).item()) < 0.05


def test_chi2_divergence_predicts_weight_variance(model: toy.LinearGaussian, gen: torch.Generator) -> None:
    """Var[w] / p(x)^2 from samples agrees with the closed-form chi^2, for the prior and a near-posterior q."""
    _, x = toy.sample(model, 1, gen)
    x = x[0]
    post_mean, post_cov = toy.posterior(model, x)
    exact = toy.log_marginal(model, x).exp()
    zeros = torch.zeros(3, dtype=torch.float64)
    naive = toy.naive_log_weights(model, x, 1_000_000, gen).exp()
    chi2_naive = toy.chi2_divergence(post_mean, post_cov, zeros, torch.ones(3, dtype=torch.float64))
    assert chi2_naive.item() == pytest.approx((naive / exact).var().item(), rel=0.1)
    q_mean, q_var = post_mean + 0.1, 1.2 * post_cov.diagonal()
    w = toy.sample_log_weights(model, x, q_mean, q_var, 200_000, gen).exp()
    chi2_q = toy.chi2_divergence(post_mean, post_cov, q_mean, q_var)
    assert chi2_q.item() == pytest.approx((w / exact).var().item(), rel=0.05)
    assert chi2_q.item() < chi2_naive.item()
    assert abs(toy.chi2_divergence(post_mean, post_cov, post_mean, post_cov).item()) < 1e-10
    # batched: one value per row, infinite only where the proposal is too narrow
    means = torch.stack([post_mean, post_mean])
    q_means = torch.stack([q_mean, q_mean])
    batch = toy.chi2_divergence(means, post_cov.expand(2, 3, 3), q_means, torch.stack([q_var, 0.1 * q_var]))
    assert batch[0].item() == pytest.approx(chi2_q.item(), rel=1e-12) and batch[1].item() == math.inf
    # a proposal much narrower than the target has infinite weight variance
    assert (
        toy.chi2_divergence(
            zeros, torch.ones(3, dtype=torch.float64), zeros, 0.3 * torch.ones(3, dtype=torch.float64)
        ).item()
        == math.inf
    )


def test_sample_moments(model: toy.LinearGaussian, gen: torch.Generator) -> None:
    _, x = toy.sample(model, 200_000, gen)
    torch.testing.assert_close(x.mean(0), model.b, rtol=0, atol=0.02)
    torch.testing.assert_close(torch.cov(x.T), toy.marginal_cov(model), rtol=0, atol=0.05)


def test_best_diagonal_q_is_the_minimum_and_its_gap_is_closed_form(
    model: toy.LinearGaussian, gen: torch.Generator
) -> None:
    """best_diagonal_q attains diagonal_gap; perturbed diagonal q's do worse; the gap is positive for correlated z."""
    _, x = toy.sample(model, 4, gen)
    mean, var = toy.best_diagonal_q(model, x)
    kl = toy.kl_to_posterior(model, x, mean, var)
    gap = toy.diagonal_gap(model)
    torch.testing.assert_close(kl, gap.expand(4), rtol=0, atol=1e-12)
    assert gap > 1e-3
    for _ in range(5):
        dm = 0.1 * torch.randn(mean.shape, generator=gen, dtype=torch.float64)
        dv = torch.exp(0.2 * torch.randn(var.shape, generator=gen, dtype=torch.float64))
        assert (toy.kl_to_posterior(model, x, mean + dm, var * dv) > kl).all()
    # marginal variances (moment matching) are wider than 1 / Lambda_ii and cost more
    post_cov = toy.posterior(model, x)[1][0]
    assert (post_cov.diagonal() > var[0]).all()
    assert (toy.kl_to_posterior(model, x, mean, post_cov.diagonal().expand_as(mean)) > kl).all()


def test_diagonal_gap_in_two_dimensions_is_minus_half_log_one_minus_rho_squared(gen: torch.Generator) -> None:
    model = toy.LinearGaussian.random(latent_dim=2, data_dim=4, generator=gen, sigma=0.5)
    cov = toy.posterior(model, torch.zeros(4, dtype=torch.float64))[1]
    rho = cov[0, 1] / (cov[0, 0] * cov[1, 1]).sqrt()
    torch.testing.assert_close(toy.diagonal_gap(model), -0.5 * torch.log1p(-(rho**2)), rtol=1e-12, atol=1e-12)


def test_affine_encoder_optimal_outputs_the_best_diagonal_q(model: toy.LinearGaussian, gen: torch.Generator) -> None:
    _, x = toy.sample(model, 6, gen)
    encoder = toy.AffineEncoder.optimal(model, requires_grad=True)
    mean, var = encoder(x)
    best_mean, best_var = toy.best_diagonal_q(model, x)
    torch.testing.assert_close(mean, best_mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(var, best_var, rtol=0, atol=1e-12)
    assert all(p.requires_grad and p.is_leaf for p in encoder.parameters())
    # at the optimum, the summed ELBO has zero gradient in phi
    grads = torch.autograd.grad(toy.elbo(model, x, mean, var).sum(), encoder.parameters())
    assert max(g.abs().max().item() for g in grads) < 1e-10


@pytest.mark.parametrize("full", [False, True])
def test_m_step_maximizes_the_summed_elbo_in_theta(model: toy.LinearGaussian, gen: torch.Generator, full: bool) -> None:
    """The summed ELBO's gradient in theta vanishes at m_step, and moving any parameter away from it lowers the ELBO."""
    _, x = toy.sample(model, 20, gen)
    q = [random_q(3, gen, full) for _ in range(20)]
    mean, cov = torch.stack([m for m, _ in q]), torch.stack([c for _, c in q])
    best = toy.m_step(x, mean, cov)
    theta = [p.clone().requires_grad_() for p in best.parameters()]
    value = toy.elbo(toy.LinearGaussian(*theta), x, mean, cov).sum()
    grads = torch.autograd.grad(value, theta)
    assert max(g.abs().max().item() for g in grads) < 1e-9
    for _ in range(5):
        moved = [p + 0.05 * torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in best.parameters()]
        assert toy.elbo(toy.LinearGaussian(*moved), x, mean, cov).sum() < value


def test_m_step_after_an_exact_e_step_raises_log_p(model: toy.LinearGaussian, gen: torch.Generator) -> None:
    """Classical EM: q = p_theta(z|x), then the M-step; log p(X) cannot fall, and rises from a poor start."""
    _, x = toy.sample(model, 30, gen)
    start = toy.LinearGaussian.random(3, 5, gen, sigma=1.5)
    after = toy.m_step(x, *toy.posterior(start, x))
    assert toy.log_marginal(after, x).sum() > toy.log_marginal(start, x).sum() + 1.0
