"""vae_core.aggregate: the mixture's moments and density against brute force, and ELBO surgery's limiting cases."""

from __future__ import annotations

import math

import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, MultivariateNormal, Normal

from vae_core import aggregate
from vae_core.losses import kl_to_standard_normal
from vae_core.model import VAE, VAEConfig


def posteriors(n: int = 40, d: int = 3, seed: int = 0, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mu = scale * torch.randn(n, d, generator=g, dtype=torch.float64)
    logvar = 0.5 * torch.randn(n, d, generator=g, dtype=torch.float64) - 1.0
    return mu, logvar


def mixture(mu: torch.Tensor, logvar: torch.Tensor) -> MixtureSameFamily:
    components = Independent(Normal(mu, torch.exp(0.5 * logvar)), 1)
    return MixtureSameFamily(Categorical(torch.ones(mu.shape[0], dtype=mu.dtype)), components)


def test_encode_matches_the_encoder_in_float64():
    torch.manual_seed(0)
    model = VAE(VAEConfig(x_dim=6, hidden=(5,), z_dim=2))
    x = torch.rand(7, 6)
    mu, logvar = aggregate.encode(model, x, batch_size=3)
    expected_mu, expected_logvar = model.encoder(x)
    assert mu.dtype == torch.float64 and mu.shape == (7, 2)
    torch.testing.assert_close(mu, expected_mu.detach().double())
    torch.testing.assert_close(logvar, expected_logvar.detach().double())


def test_moments_are_the_mixture_moments():
    mu, logvar = posteriors()
    mean, variance = aggregate.moments(mu, logvar)
    q = mixture(mu, logvar)
    torch.testing.assert_close(mean, q.mean)
    torch.testing.assert_close(variance, q.variance)


def test_log_mixture_density_matches_torch_distributions():
    mu, logvar = posteriors()
    z = torch.randn(50, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(aggregate.log_mixture_density(z, mu, logvar, chunk=7), mixture(mu, logvar).log_prob(z))


def test_gaussian_lower_bound_is_zero_for_the_prior_and_below_the_mixture_kl():
    zeros = torch.zeros(5, 2, dtype=torch.float64)
    assert abs(aggregate.gaussian_lower_bound(zeros, zeros)) < 1e-12
    mu, logvar = posteriors(scale=2.0)
    q = mixture(mu, logvar)
    z = q.sample((20000,))
    prior = MultivariateNormal(torch.zeros(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64))
    mc_kl = (q.log_prob(z) - prior.log_prob(z)).mean().item()
    moment_matched = MultivariateNormal(q.mean, torch.cov(z.T))  # a sampled covariance: checks the formula loosely
    closed = torch.distributions.kl_divergence(moment_matched, prior).item()
    bound = aggregate.gaussian_lower_bound(mu, logvar)
    assert abs(bound - closed) < 0.05
    assert bound < mc_kl


def test_surgery_of_the_prior_itself_is_all_zero():
    zeros = torch.zeros(30, 4, dtype=torch.float64)
    s = aggregate.elbo_surgery(zeros, zeros, 500, torch.Generator().manual_seed(0))
    assert s.rate == 0.0
    assert abs(s.mutual_information) < 1e-9 and abs(s.marginal_kl) < 1e-9


def test_separated_narrow_posteriors_carry_log_n():
    n = 16
    mu = 50.0 * torch.eye(n, dtype=torch.float64)  # far apart: z identifies its n
    logvar = torch.full((n, n), -4.0, dtype=torch.float64)
    s = aggregate.elbo_surgery(mu, logvar, 400, torch.Generator().manual_seed(0))
    assert abs(s.mutual_information - math.log(n)) < 1e-6
    assert s.log_n == math.log(n)


def test_surgery_adds_up_and_respects_log_n():
    mu, logvar = posteriors(n=60, scale=0.7)
    s = aggregate.elbo_surgery(mu, logvar, 4000, torch.Generator().manual_seed(0))
    assert abs(s.rate - kl_to_standard_normal(mu, logvar).mean().item()) < 1e-12
    assert abs(s.mutual_information + s.marginal_kl - s.rate_mc) < 1e-9  # the same samples: exact
    assert abs(s.rate_mc - s.rate) < 4 * s.rate_mc_se  # the Monte Carlo rate agrees with the closed form
    assert abs(s.marginal_kl_by_difference - s.marginal_kl) < 4 * s.marginal_kl_se
    assert 0 < s.mutual_information <= s.log_n
    assert s.marginal_kl > aggregate.gaussian_lower_bound(mu, logvar) - 4 * s.marginal_kl_se


def test_aggregate_posterior_figure_draws_one_bar_pair_per_split():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vae_core.plots import aggregate_posterior

    fig = aggregate_posterior(torch.zeros(4), torch.ones(4), {"a": (2.0, 3.0, 2.3), "b": (1.0, 0.5, 1.1)})
    left, right = fig.axes
    assert len(left.patches) == 4  # one variance bar per dimension
    assert len(right.patches) == 4  # I_q and KL(q(z) || p(z)) for each of two splits
    heights = sorted(p.get_height() for p in right.patches)
    assert heights == [0.5, 1.0, 2.0, 3.0]
    plt.close(fig)
