"""Per-example ELBO terms and the importance-weighted bound, in nats."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from vae_core.model import VAE, reparameterize

LOG_2PI = math.log(2.0 * math.pi)


def bernoulli_log_likelihood(logits: Tensor, x: Tensor) -> Tensor:
    """log prod_m Bern(x_m | sigmoid(logits_m)) = sum_m x log f + (1 - x) log(1 - f), stable from logits."""
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


def kl_to_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, diag sigma^2) || N(0, I)) = 1/2 sum_i (sigma_i^2 + mu_i^2 - 1 - log sigma_i^2)."""
    return 0.5 * (logvar.exp() + mu.pow(2) - 1.0 - logvar).sum(-1)


def gaussian_log_density(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z | mu, diag exp(logvar)), summed over the last dimension."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar)).sum(-1)


def standard_normal_log_density(z: Tensor) -> Tensor:
    """log N(z | 0, I), summed over the last dimension."""
    return -0.5 * (LOG_2PI + z.pow(2)).sum(-1)


@dataclass
class ELBOTerms:
    """Per-example ELBO = reconstruction - KL, each of shape (batch,), in nats."""

    elbo: Tensor
    reconstruction: Tensor
    kl: Tensor


def elbo(model: VAE, x: Tensor, generator: torch.Generator | None = None, beta: float = 1.0) -> ELBOTerms:
    """Single-sample ELBO: E_q[log p(x|z)] estimated at one reparameterized z, minus the closed-form KL."""
    logits, mu, logvar = model(x, generator)
    reconstruction = bernoulli_log_likelihood(logits, x)
    kl = kl_to_standard_normal(mu, logvar)
    return ELBOTerms(elbo=reconstruction - beta * kl, reconstruction=reconstruction, kl=kl)


def iw_objective(model: VAE, x: Tensor, k: int, generator: torch.Generator | None = None) -> tuple[Tensor, ELBOTerms]:
    """The IWAE training bound log (1/k) sum_i p(x, z_i) / q(z_i|x), differentiable, per example (Burda et al. 2016).

    Also returns the ELBO terms of the first sample (closed-form KL), for the history. With k = 1 the bound is the
    single-sample ELBO with a Monte-Carlo KL: its expectation is the ELBO.
    """
    if k < 1:
        raise ValueError(f"k must be a positive integer, got {k}")
    mu, logvar = model.encoder(x)
    z = reparameterize(mu.expand(k, *mu.shape), logvar.expand(k, *logvar.shape), generator)
    log_px_z = bernoulli_log_likelihood(model.decoder(z), x.expand(k, *x.shape))
    log_w = log_px_z + standard_normal_log_density(z) - gaussian_log_density(z, mu, logvar)
    bound = torch.logsumexp(log_w, dim=0) - math.log(k)
    kl = kl_to_standard_normal(mu, logvar)
    return bound, ELBOTerms(elbo=log_px_z[0] - kl, reconstruction=log_px_z[0], kl=kl)


def loss(model: VAE, x: Tensor, generator: torch.Generator | None = None, beta: float = 1.0) -> Tensor:
    """The training loss: the negative ELBO averaged over the batch."""
    return -elbo(model, x, generator, beta).elbo.mean()


@torch.no_grad()
def iw_bound(model: VAE, x: Tensor, k: int, chunk: int = 100, generator: torch.Generator | None = None) -> Tensor:
    """log (1/K) sum_k p(x, z_k) / q(z_k|x) with z_k ~ q(z|x), per example, streamed in chunks of K.

    Only a chunk x batch x M tensor of logits exists at a time; the chunks are merged with a running logsumexp.
    """
    if k < 1 or chunk < 1:
        raise ValueError(f"k and chunk must be positive, got k={k}, chunk={chunk}")
    mu, logvar = model.encoder(x)
    total = torch.full((x.shape[0],), -math.inf, device=x.device, dtype=mu.dtype)
    done = 0
    while done < k:
        n = min(chunk, k - done)
        z = reparameterize(mu.expand(n, *mu.shape), logvar.expand(n, *logvar.shape), generator)
        log_px_z = bernoulli_log_likelihood(model.decoder(z), x.expand(n, *x.shape))
        log_w = log_px_z + standard_normal_log_density(z) - gaussian_log_density(z, mu, logvar)
        total = torch.logaddexp(total, torch.logsumexp(log_w, dim=0))
        done += n
    return total - math.log(k)


def nats_to_bits_per_dim(nats: Tensor | float, dims: int = 784) -> Tensor | float:
    """Convert a log-likelihood in nats per example to bits per dimension (sign kept)."""
    return nats / (dims * math.log(2.0))
