"""The aggregate posterior q̄(z) = (1/N) sum_n q_phi(z | x_n) against the prior, and Hoffman & Johnson's ELBO surgery.

The average KL of a VAE (the rate) splits exactly as E_n KL(q(z|x_n) || p(z)) = I_q(n; z) + KL(q̄(z) || p(z)), where
I_q is the mutual information between the index n of a training image and its code z, at most log N.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from vae_core.densities import LOG_2PI, gaussian_log_density, standard_normal_log_density
from vae_core.losses import kl_to_standard_normal
from vae_core.model import VAE, reparameterize


@torch.no_grad()
def encode(model: VAE, x: Tensor, batch_size: int = 2000) -> tuple[Tensor, Tensor]:
    """The means and log-variances of q(z | x_n) for every row of `x`, in float64."""
    parts = [model.encoder(x[s : s + batch_size]) for s in range(0, x.shape[0], batch_size)]
    return torch.cat([p[0] for p in parts]).double(), torch.cat([p[1] for p in parts]).double()


def moments(mu: Tensor, logvar: Tensor) -> tuple[Tensor, Tensor]:
    """Per-dimension mean and variance of the mixture q̄(z): E_n mu_n and E_n sigma_n^2 + Var_n mu_n."""
    return mu.mean(0), logvar.exp().mean(0) + mu.var(0, unbiased=False)


def gaussian_lower_bound(mu: Tensor, logvar: Tensor) -> float:
    """KL(N(μ̄, Σ̄) || N(0, I)) for the mixture's mean μ̄ and full covariance Σ̄: a lower bound on KL(q̄(z) || p(z)).

    Against a Gaussian prior, E_q[log p(z)] depends on q's first two moments only, and the Gaussian has the largest
    entropy of all distributions with covariance S, so the moment-matched Gaussian is the closest to p.
    """
    mean = mu.mean(0)
    cov = torch.diag(logvar.exp().mean(0)) + torch.cov(mu.T, correction=0)
    d = mu.shape[1]
    return 0.5 * (torch.trace(cov) + mean @ mean - d - torch.linalg.slogdet(cov)[1]).item()


def log_mixture_density(z: Tensor, mu: Tensor, logvar: Tensor, chunk: int = 256) -> Tensor:
    """log q̄(z) = log (1/N) sum_n N(z | mu_n, diag sigma_n^2) at each row of `z`, exactly, in chunks of rows.

    The quadratic form is one matrix product: (z - mu)^2 / sigma^2 = z^2 / sigma^2 - 2 z mu / sigma^2 + mu^2 / sigma^2.
    """
    precision = torch.exp(-logvar)
    const = -0.5 * (mu.shape[1] * LOG_2PI + logvar.sum(1) + (mu.pow(2) * precision).sum(1))
    weights = torch.cat([-0.5 * precision, mu * precision, const[:, None]], dim=1)
    out = []
    for s in range(0, z.shape[0], chunk):
        zs = z[s : s + chunk]
        features = torch.cat([zs.pow(2), zs, torch.ones_like(zs[:, :1])], dim=1)
        out.append(torch.logsumexp(features @ weights.T, dim=1) - math.log(mu.shape[0]))
    return torch.cat(out)


@dataclass(frozen=True)
class Surgery:
    """ELBO surgery in nats: the rate (closed form) and Monte Carlo estimates of its two parts, with standard errors."""

    n: int
    samples: int
    rate: float
    mutual_information: float
    mutual_information_se: float
    marginal_kl: float
    marginal_kl_se: float
    rate_mc: float
    rate_mc_se: float

    @property
    def log_n(self) -> float:
        return math.log(self.n)

    @property
    def marginal_kl_by_difference(self) -> float:
        """KL(q̄(z) || p(z)) as the closed-form rate minus the I_q estimate: unbiased too, with I_q's standard error."""
        return self.rate - self.mutual_information


def _mean_se(values: Tensor) -> tuple[float, float]:
    return values.mean().item(), values.std().item() / math.sqrt(values.numel())


def elbo_surgery(mu: Tensor, logvar: Tensor, samples: int, generator: torch.Generator) -> Surgery:
    """Split the rate E_n KL(q(z|x_n) || p(z)) into I_q(n; z) and KL(q̄(z) || p(z)) for the mixture of the N posteriors.

    Draw n uniformly and z ~ q(z | x_n), so z ~ q̄(z); then I_q = E[log q(z|x_n) - log q̄(z)] and
    KL(q̄(z) || p) = E[log q̄(z) - log p(z)], with log q̄(z) exact over all N components. Both estimates are unbiased
    for this mixture; each term of the first is at most log N, since q̄(z) >= q(z | x_n) / N.
    """
    index = torch.randint(0, mu.shape[0], (samples,), generator=generator)
    z = reparameterize(mu[index], logvar[index], generator)
    log_conditional = gaussian_log_density(z, mu[index], logvar[index])
    log_aggregate = log_mixture_density(z, mu, logvar)
    info, info_se = _mean_se(log_conditional - log_aggregate)
    marginal, marginal_se = _mean_se(log_aggregate - standard_normal_log_density(z))
    rate_mc, rate_mc_se = _mean_se(log_conditional - standard_normal_log_density(z))
    rate = kl_to_standard_normal(mu, logvar).mean().item()
    return Surgery(mu.shape[0], samples, rate, info, info_se, marginal, marginal_se, rate_mc, rate_mc_se)
