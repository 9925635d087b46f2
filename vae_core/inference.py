"""Inference for single images: the IW bound and the effective sample size of stored importance weights, and
per-image Gaussians.

The importance weights are those of the IW bound, w_k = p(x, z_k) / q(z_k | x) with z_k ~ q, for any diagonal
Gaussian q given by its mean and log-variance (the encoder's by default), as `evaluate.sample_log_weights` draws them:
a table (n, K), one row per image (the package's names for them are listed in `vae_core.evaluate`).
`fit_local_gaussians` optimizes one q per image, all images at once, to measure the amortization gap of Cremer, Li &
Duvenaud (2018).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from vae_core import losses
from vae_core.densities import log_mean_exp
from vae_core.model import VAE, reparameterize
from vae_core.train import cosine_decay


def iw_bound(log_w: Tensor, k: int) -> Tensor:
    """The IW bound L_k per image from (n, K) log weights: log-mean-exp over each of the K // k disjoint groups of k
    weights, averaged over the groups (so L_1 is the mean of log w, the ELBO estimate)."""
    n, total = log_w.shape
    if not 1 <= k <= total:
        raise ValueError(f"k must be in [1, {total}], got {k}")
    groups = log_w[:, : (total // k) * k].reshape(n, total // k, k)
    return log_mean_exp(groups, dim=-1).mean(dim=1)


def effective_sample_size(log_w: Tensor) -> Tensor:
    """Kish's effective sample size (sum w)^2 / sum w^2 per row of log weights, between 1 and K."""
    return torch.exp(2 * torch.logsumexp(log_w, dim=-1) - torch.logsumexp(2 * log_w, dim=-1))


def gaussian_elbo(model: VAE, x: Tensor, mu: Tensor, logvar: Tensor, eps: Tensor) -> Tensor:
    """ELBO of q = N(mu, diag exp(logvar)) per image: log p(x|z) averaged over z = mu + sigma * eps for the S rows of
    `eps` (shape (S, n, z_dim)), minus the closed-form KL to N(0, I). Differentiable in mu and logvar."""
    z = reparameterize(mu, logvar, eps=eps)
    reconstruction = losses.bernoulli_log_likelihood(model.decoder(z), x.expand(eps.shape[0], *x.shape)).mean(0)
    return reconstruction - losses.kl_to_standard_normal(mu, logvar)


@dataclass
class LocalFit:
    """Per-image Gaussians after optimization, and the mean ELBO over the images every few steps."""

    mu: Tensor
    logvar: Tensor
    steps: list[int]
    mean_elbo: list[float]


def fit_local_gaussians(
    model: VAE,
    x: Tensor,
    steps: int = 150,
    samples: int = 4,
    lr: float = 0.08,
    seed: int = 0,
    every: int = 10,
    trace_samples: int = 8,
    start: tuple[Tensor, Tensor] | None = None,
) -> LocalFit:
    """Maximize each image's ELBO over its own Gaussian q(z) = N(mu, diag exp(logvar)), from the encoder's output
    (or from `start`, a (mu, logvar) pair, to continue an optimization).

    All images are optimized at once (their ELBOs are independent, so the gradient of the summed ELBO for one image's
    mu and logvar is that image's own): Adam with a cosine-decayed learning rate, `samples` fresh reparameterized
    draws per image and step; the decoder stays fixed. Every `every` steps the trace records the mean ELBO on one
    fixed set of `trace_samples` draws per image, so that the trace shows the optimization, not the sampling noise.
    """
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        with torch.no_grad():
            mu0, logvar0 = model.encoder(x) if start is None else start
        mu, logvar = mu0.clone().requires_grad_(True), logvar0.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([mu, logvar], lr=lr)
        generator = torch.Generator(device=x.device).manual_seed(seed)
        trace_eps = torch.randn((trace_samples, *mu.shape), generator=generator, device=x.device)
        trace_steps, trace = [], []
        for step in range(steps + 1):
            if step % every == 0 or step == steps:
                with torch.no_grad():
                    trace.append(gaussian_elbo(model, x, mu, logvar, trace_eps).mean().item())
                trace_steps.append(step)
            if step == steps:
                break
            eps = torch.randn((samples, *mu.shape), generator=generator, device=x.device)
            for group in optimizer.param_groups:
                group["lr"] = cosine_decay(lr, step, steps)
            optimizer.zero_grad(set_to_none=True)
            (-gaussian_elbo(model, x, mu, logvar, eps).sum()).backward()
            optimizer.step()
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    return LocalFit(mu=mu.detach(), logvar=logvar.detach(), steps=trace_steps, mean_elbo=trace)
