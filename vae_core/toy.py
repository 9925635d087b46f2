"""A linear-Gaussian latent model where p(x), p(z|x), the ELBO and its gap are all exact.

    z ~ N(0, I_D),    x | z ~ N(W z + b, sigma_x^2 I_M)
    p(x) = N(b, W W^T + sigma_x^2 I_M),    p(z|x) = N(mu_post, Sigma_post) with
    Sigma_post = (I + W^T W / sigma_x^2)^-1,    mu_post = Sigma_post W^T (x - b) / sigma_x^2.

Everything is float64 torch and differentiable in theta = (W, b, log sigma_x) and in the parameters of q.
A Gaussian `cov` argument is either the variances of a diagonal covariance (exactly the shape of its mean)
or a full covariance matrix (the mean's shape plus a trailing D, or (D, D) shared by a batch of means).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from vae_core.densities import LOG_2PI, log_mean_exp, standard_normal_log_density

DTYPE = torch.float64


@dataclass
class LinearGaussian:
    """theta = (W, b, log sigma_x) of z ~ N(0, I_D), x | z ~ N(W z + b, sigma_x^2 I_M)."""

    W: Tensor  # (M, D)
    b: Tensor  # (M,)
    log_sigma: Tensor  # ()

    @property
    def sigma(self) -> Tensor:
        return self.log_sigma.exp()

    @property
    def latent_dim(self) -> int:
        return self.W.shape[1]

    @property
    def data_dim(self) -> int:
        return self.W.shape[0]

    def parameters(self) -> list[Tensor]:
        """theta as a list, e.g. for a torch optimizer."""
        return [self.W, self.b, self.log_sigma]

    @classmethod
    def random(
        cls,
        latent_dim: int,
        data_dim: int,
        generator: torch.Generator,
        w_scale: float = 1.0,
        sigma: float = 1.0,
        requires_grad: bool = False,
    ) -> LinearGaussian:
        """W with i.i.d. N(0, w_scale^2) entries, b ~ N(0, I), the given sigma."""
        W = w_scale * torch.randn(data_dim, latent_dim, generator=generator, dtype=DTYPE)
        b = torch.randn(data_dim, generator=generator, dtype=DTYPE)
        log_sigma = torch.tensor(math.log(sigma), dtype=DTYPE)
        return cls(*(t.requires_grad_(requires_grad) for t in (W, b, log_sigma)))


def full_cov(mean: Tensor, cov: Tensor) -> Tensor:
    """The covariance matrix of `cov` (a matrix already, or the variances of a diagonal one)."""
    return torch.diag_embed(cov) if cov.shape == mean.shape else cov


def gaussian_log_density_cov(z: Tensor, mean: Tensor, cov: Tensor) -> Tensor:
    """log N(z | mean, cov) over the last dimension, with cov diagonal (variances) or full; the VAE's diagonal
    Gaussians, given by log-variances, are `densities.gaussian_log_density`."""
    diff = z - mean
    if cov.shape == mean.shape:
        return -0.5 * (LOG_2PI + cov.log() + diff.pow(2) / cov).sum(-1)
    L = torch.linalg.cholesky(cov)
    if L.dim() == 2:  # one covariance for every z: a single triangular solve
        y = torch.linalg.solve_triangular(L, diff.reshape(-1, L.shape[0]).T, upper=False).T.reshape(diff.shape)
    else:
        y = torch.linalg.solve_triangular(L, diff.unsqueeze(-1), upper=False).squeeze(-1)
    logdet = 2.0 * L.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return -0.5 * (z.shape[-1] * LOG_2PI + logdet + y.pow(2).sum(-1))


def sample_gaussian(mean: Tensor, cov: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
    """n reparameterized samples mean + L eps (L L^T = cov, eps ~ N(0, I)), shape (n, *mean.shape)."""
    eps = torch.randn((n, *mean.shape), generator=generator, dtype=mean.dtype)
    if cov.shape == mean.shape:
        return mean + cov.sqrt() * eps
    L = torch.linalg.cholesky(cov)
    if L.dim() == 2:
        return mean + eps @ L.T
    return mean + (L @ eps.unsqueeze(-1)).squeeze(-1)


def log_prior(z: Tensor) -> Tensor:
    """log N(z | 0, I)."""
    return standard_normal_log_density(z)


def log_likelihood(model: LinearGaussian, x: Tensor, z: Tensor) -> Tensor:
    """log p(x|z) = log N(x | W z + b, sigma_x^2 I)."""
    resid = x - z @ model.W.T - model.b
    return -0.5 * (model.data_dim * (LOG_2PI + 2.0 * model.log_sigma) + resid.pow(2).sum(-1) / model.sigma**2)


def log_joint(model: LinearGaussian, x: Tensor, z: Tensor) -> Tensor:
    """log p(x, z) = log p(x|z) + log p(z)."""
    return log_likelihood(model, x, z) + log_prior(z)


def marginal_cov(model: LinearGaussian) -> Tensor:
    """W W^T + sigma_x^2 I_M, the covariance of p(x)."""
    return model.W @ model.W.T + model.sigma**2 * torch.eye(model.data_dim, dtype=model.W.dtype)


def log_marginal(model: LinearGaussian, x: Tensor) -> Tensor:
    """Exact log p(x) = log N(x | b, W W^T + sigma_x^2 I)."""
    return gaussian_log_density_cov(x, model.b, marginal_cov(model))


def posterior(model: LinearGaussian, x: Tensor) -> tuple[Tensor, Tensor]:
    """Exact p(z|x): mean of shape (..., D) and covariance (..., D, D), which is the same for every x."""
    eye = torch.eye(model.latent_dim, dtype=model.W.dtype)
    cov = torch.linalg.inv(eye + model.W.T @ model.W / model.sigma**2)
    mean = (x - model.b) @ model.W @ cov / model.sigma**2  # cov is symmetric
    return mean, cov.expand(*mean.shape, model.latent_dim)


def expected_log_likelihood(model: LinearGaussian, x: Tensor, q_mean: Tensor, q_cov: Tensor) -> Tensor:
    """E_q[log p(x|z)] in closed form, for q = N(mu_q, Sigma_q):

    -M/2 log(2 pi sigma_x^2) - (|x - b - W mu_q|^2 + tr(W Sigma_q W^T)) / (2 sigma_x^2).
    """
    resid = x - q_mean @ model.W.T - model.b
    if q_cov.shape == q_mean.shape:
        trace = (model.W.pow(2).sum(0) * q_cov).sum(-1)
    else:
        trace = (model.W @ q_cov @ model.W.T).diagonal(dim1=-2, dim2=-1).sum(-1)
    sq = resid.pow(2).sum(-1) + trace
    return -0.5 * (model.data_dim * (LOG_2PI + 2.0 * model.log_sigma) + sq / model.sigma**2)


def kl_gaussians(mean0: Tensor, cov0: Tensor, mean1: Tensor, cov1: Tensor) -> Tensor:
    """Exact KL(N(mean0, cov0) || N(mean1, cov1)) = 1/2 [tr(S1^-1 S0) + d^T S1^-1 d - D + log|S1| - log|S0|]."""
    S0, S1 = full_cov(mean0, cov0), full_cov(mean1, cov1)
    L0, L1 = torch.linalg.cholesky(S0), torch.linalg.cholesky(S1)
    A = torch.linalg.solve_triangular(L1, L0, upper=False)  # L1^-1 L0, so tr(S1^-1 S0) = |A|_F^2
    d = torch.linalg.solve_triangular(L1, (mean1 - mean0).unsqueeze(-1), upper=False).squeeze(-1)
    logdet0 = 2.0 * L0.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    logdet1 = 2.0 * L1.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return 0.5 * (A.pow(2).sum((-2, -1)) + d.pow(2).sum(-1) - mean0.shape[-1] + logdet1 - logdet0)


def kl_to_prior(q_mean: Tensor, q_cov: Tensor) -> Tensor:
    """KL(q || N(0, I))."""
    zeros = torch.zeros_like(q_mean)
    return kl_gaussians(q_mean, q_cov, zeros, torch.ones_like(q_mean))


def elbo(model: LinearGaussian, x: Tensor, q_mean: Tensor, q_cov: Tensor) -> Tensor:
    """Exact ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z)) for a Gaussian q."""
    return expected_log_likelihood(model, x, q_mean, q_cov) - kl_to_prior(q_mean, q_cov)


def m_step(x: Tensor, q_mean: Tensor, q_cov: Tensor) -> LinearGaussian:
    """The exact M-step: the theta = (W, b, log sigma_x) that maximizes sum_n ELBO(x_n) with every q(z|x_n) held fixed.

    x is (N, M); q_mean (N, D); q_cov the variances (N, D) or covariances (N, D, D) or (D, D). With z' = (z, 1) and
    W' = (W, b), the summed ELBO is a least-squares fit of x_n by W' z' under q, so
    W' = (sum_n x_n E_q[z'_n]^T) (sum_n E_q[z'_n z'_n^T])^-1 and sigma_x^2 is the mean expected squared residual.
    With q(z|x_n) = p_theta(z|x_n) this is the M-step of classical EM (factor analysis with one noise variance).
    """
    n, data_dim = x.shape
    latent_dim = q_mean.shape[-1]
    cov = full_cov(q_mean, q_cov).expand(n, latent_dim, latent_dim)
    mean1 = torch.cat([q_mean, torch.ones(n, 1, dtype=q_mean.dtype)], dim=1)  # E_q[z'_n]
    second = mean1.T @ mean1  # sum_n E_q[z'_n z'_n^T] = sum_n (E z' E z'^T + Cov z')
    second[:latent_dim, :latent_dim] += cov.sum(0)
    W1 = torch.linalg.solve(second, mean1.T @ x).T  # (M, D + 1); `second` is symmetric
    W, b = W1[:, :latent_dim], W1[:, latent_dim]
    resid = x - q_mean @ W.T - b
    trace = (W @ cov @ W.T).diagonal(dim1=-2, dim2=-1).sum(-1)  # E_q|x - W z - b|^2 = |resid|^2 + tr(W Cov W^T)
    variance = (resid.pow(2).sum(-1) + trace).sum() / (n * data_dim)
    return LinearGaussian(W, b, 0.5 * variance.log())


def kl_to_posterior(model: LinearGaussian, x: Tensor, q_mean: Tensor, q_cov: Tensor) -> Tensor:
    """Exact KL(q(z|x) || p(z|x)), the gap log p(x) - ELBO."""
    post_mean, post_cov = posterior(model, x)
    return kl_gaussians(q_mean, q_cov, post_mean, post_cov)


def sample(model: LinearGaussian, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Ancestral sampling: (z, x) with z ~ N(0, I) and x ~ N(W z + b, sigma_x^2 I), shapes (n, D) and (n, M)."""
    z = torch.randn(n, model.latent_dim, generator=generator, dtype=model.W.dtype)
    noise = torch.randn(n, model.data_dim, generator=generator, dtype=model.W.dtype)
    return z, z @ model.W.T + model.b + model.sigma * noise


def naive_log_weights(model: LinearGaussian, x: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
    """log p(x|z_k) for z_k ~ p(z), k = 1..K: the terms of the naive Monte-Carlo estimator."""
    z = torch.randn(n, model.latent_dim, generator=generator, dtype=model.W.dtype)
    return log_likelihood(model, x, z)


def sample_log_weights(
    model: LinearGaussian, x: Tensor, q_mean: Tensor, q_cov: Tensor, n: int, generator: torch.Generator | None = None
) -> Tensor:
    """log p(x, z_k) - log q(z_k) for z_k ~ q: the terms of the importance-sampling estimator."""
    z = sample_gaussian(q_mean, q_cov, n, generator)
    return log_joint(model, x, z) - gaussian_log_density_cov(z, q_mean, q_cov)


def naive_mc(model: LinearGaussian, x: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
    """log (1/K) sum_k p(x|z_k) with z_k ~ p(z), an estimate of log p(x)."""
    return log_mean_exp(naive_log_weights(model, x, n, generator))


def importance_sampling(
    model: LinearGaussian, x: Tensor, q_mean: Tensor, q_cov: Tensor, n: int, generator: torch.Generator | None = None
) -> Tensor:
    """log (1/K) sum_k p(x, z_k) / q(z_k) with z_k ~ q, an estimate of log p(x)."""
    return log_mean_exp(sample_log_weights(model, x, q_mean, q_cov, n, generator))


def _quadratic(P: Tensor, m: Tensor) -> Tensor:
    """m^T P m over the last dimension."""
    return (m.unsqueeze(-2) @ P @ m.unsqueeze(-1)).squeeze(-1).squeeze(-1)


def chi2_divergence(mean1: Tensor, cov1: Tensor, mean2: Tensor, cov2: Tensor) -> Tensor:
    """Exact chi^2(N1 || N2) = int N1^2 / N2 dz - 1; +inf when 2 S1^-1 - S2^-1 is not positive definite.

    With N1 = p(z|x) and N2 = q, this is Var_q[w] / p(x)^2 for the weight w = p(x, z) / q(z), so the
    estimate of p(x) from N samples of q has relative standard deviation sqrt(chi^2 / N).
    """
    P1 = torch.linalg.inv(full_cov(mean1, cov1))
    P2 = torch.linalg.inv(full_cov(mean2, cov2))
    A = 2.0 * P1 - P2
    finite = torch.linalg.cholesky_ex(A).info == 0
    L = torch.linalg.cholesky(torch.where(finite[..., None, None], A, torch.eye(A.shape[-1], dtype=A.dtype)))
    h = 2.0 * (P1 @ mean1.unsqueeze(-1)) - P2 @ mean2.unsqueeze(-1)
    y = torch.linalg.solve_triangular(L, h, upper=False).squeeze(-1)
    log_moment = (
        torch.logdet(P1)
        - 0.5 * torch.logdet(P2)
        - L.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        + 0.5 * y.pow(2).sum(-1)
        - _quadratic(P1, mean1)
        + 0.5 * _quadratic(P2, mean2)
    )
    return torch.where(finite, torch.expm1(log_moment), math.inf)


def posterior_precision(model: LinearGaussian) -> Tensor:
    """Lambda = I + W^T W / sigma^2, the inverse of the posterior covariance (the same for every x)."""
    eye = torch.eye(model.latent_dim, dtype=model.W.dtype)
    return eye + model.W.T @ model.W / model.sigma**2


def best_diagonal_q(model: LinearGaussian, x: Tensor) -> tuple[Tensor, Tensor]:
    """The diagonal Gaussian q closest to p(z|x) in KL(q || p(z|x)): the posterior mean and variances 1 / Lambda_ii.

    Lambda is the posterior precision I + W^T W / sigma^2. Returns (mean, variances), both of shape (..., D).
    """
    mean, _ = posterior(model, x)
    return mean, (1.0 / posterior_precision(model).diagonal()).expand_as(mean)


def diagonal_gap(model: LinearGaussian) -> Tensor:
    """min over diagonal Gaussians q of KL(q || p(z|x)) = 1/2 (sum_i log Lambda_ii - log det Lambda), for any x.

    For D = 2 this is -1/2 log(1 - rho^2), rho the posterior correlation: the part of the ELBO's gap that no
    diagonal q can close.
    """
    precision = posterior_precision(model)
    return 0.5 * (precision.diagonal().log().sum() - torch.logdet(precision))


@dataclass
class AffineEncoder:
    """An amortized q_phi(z|x) = N(A x + c, diag(exp(2 log_std))): one phi = (A, c, log_std) shared by every x."""

    A: Tensor  # (D, M)
    c: Tensor  # (D,)
    log_std: Tensor  # (D,)

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, variances) of q(z|x) for a batch x of shape (..., M)."""
        mean = x @ self.A.T + self.c
        return mean, (2.0 * self.log_std).exp().expand_as(mean)

    def parameters(self) -> list[Tensor]:
        """phi as a list, e.g. for a torch optimizer."""
        return [self.A, self.c, self.log_std]

    @classmethod
    def optimal(cls, model: LinearGaussian, requires_grad: bool = False) -> AffineEncoder:
        """The encoder that outputs best_diagonal_q(model, x) for every x (the posterior mean is affine in x)."""
        with torch.no_grad():
            precision = posterior_precision(model)
            A = torch.linalg.solve(precision, model.W.T) / model.sigma**2
            c = -A @ model.b
            log_std = -0.5 * precision.diagonal().log()
        return cls(*(t.clone().requires_grad_(requires_grad) for t in (A, c, log_std)))
