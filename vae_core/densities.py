"""Gaussian log-densities and the log-mean-exp of log weights: the arithmetic shared by the VAE's losses, the
aggregate posterior and the book's linear-Gaussian toy model (no Bernoulli decoder, no network).

A Gaussian here is diagonal and given by its log-variance, as the encoder outputs it; the toy model's Gaussians with
a full covariance are `toy.gaussian_log_density_cov`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_density(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z | mu, diag exp(logvar)), summed over the last dimension."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar)).sum(-1)


def standard_normal_log_density(z: Tensor) -> Tensor:
    """log N(z | 0, I), summed over the last dimension."""
    return -0.5 * (LOG_2PI + z.pow(2)).sum(-1)


def log_mean_exp(log_w: Tensor, dim: int = -1) -> Tensor:
    """log (1/N) sum_n exp(log_w_n) over `dim`, computed stably: the IW bound of N log weights."""
    return torch.logsumexp(log_w, dim) - math.log(log_w.shape[dim])
