"""Walks through the latent space: interpolations between two images, traversals along one latent dimension."""

from __future__ import annotations

import torch
from torch import Tensor

from vae_core import losses
from vae_core.model import VAE


@torch.no_grad()
def interpolate(model: VAE, x_a: Tensor, x_b: Tensor, n: int = 9) -> tuple[Tensor, Tensor]:
    """n images from x_a to x_b: decoded Bernoulli means along the line between the posterior means mu(x_a) and
    mu(x_b), and the pixel blend (1 - t) x_a + t x_b. Both have shape (n, M); t runs over linspace(0, 1, n)."""
    t = torch.linspace(0, 1, n, dtype=x_a.dtype, device=x_a.device)[:, None]
    mu_a, mu_b = model.encoder(torch.stack([x_a, x_b]))[0]
    latent = torch.sigmoid(model.decoder((1 - t) * mu_a + t * mu_b))
    return latent, (1 - t) * x_a + t * x_b


@torch.no_grad()
def traverse(model: VAE, z: Tensor, dim: int, values: Tensor) -> Tensor:
    """Decoded Bernoulli means of copies of the code `z` whose coordinate `dim` is set to each of `values`."""
    codes = z.expand(len(values), -1).clone()
    codes[:, dim] = values
    return torch.sigmoid(model.decoder(codes))


@torch.no_grad()
def binarized_elbo(model: VAE, means: Tensor, draws: int = 32, seed: int = 0) -> Tensor:
    """The ELBO of binary images drawn from Bernoulli `means` (n, M), averaged over `draws` images per row: the ELBO
    that a binary image 'like' a grey-level one gets. One reparameterized z per drawn image."""
    generator = torch.Generator(device=means.device).manual_seed(seed)
    x = torch.bernoulli(means.expand(draws, *means.shape), generator=generator)
    x = x.reshape(-1, means.shape[-1])
    logits, mu, logvar = model(x, generator)
    return losses.elbo(logits, mu, logvar, x).elbo.reshape(draws, -1).mean(0)
