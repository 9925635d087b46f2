"""Evaluation over a whole split, in batches: the ELBO and the importance-weighted log-likelihood."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from vae_core import losses
from vae_core.model import VAE, reparameterize


@contextmanager
def evaluating(model: VAE) -> Iterator[VAE]:
    """Put `model` in eval mode for the block, then restore the mode it had."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def evaluate_elbo(model: VAE, x: Tensor, batch_size: int = 2000, seed: int = 0) -> losses.ELBOResult:
    """Mean single-sample ELBO, reconstruction and KL over `x`, in nats per example.

    The sums stay on x's device and are read once, at the end (no host synchronization per batch).
    """
    generator = torch.Generator(device=x.device).manual_seed(seed)
    sums = torch.zeros(3, dtype=torch.float64, device=x.device)
    with evaluating(model):
        for start in range(0, x.shape[0], batch_size):
            batch = x[start : start + batch_size]
            terms = losses.elbo(*model(batch, generator), batch)
            sums += terms.sums().double()
    return losses.ELBOResult.from_sums(sums, x.shape[0])


@dataclass
class IWEstimate:
    """The importance-weighted bound with K samples: its mean over examples, standard error, and per-example values."""

    k: int
    mean: float
    stderr: float
    per_example: Tensor


@torch.no_grad()
def iw_log_likelihood(
    model: VAE, x: Tensor, k: int, batch_size: int = 100, chunk: int = 100, seed: int = 0
) -> IWEstimate:
    """Estimate log p(x) per example with K importance samples from q(z|x), in batches, streaming over K.

    The batches' values stay on x's device and are read once, at the end (no host synchronization per batch).
    """
    generator = torch.Generator(device=x.device).manual_seed(seed)
    with evaluating(model):
        values = [
            iw_bound(model, x[s : s + batch_size], k, chunk, generator).double()
            for s in range(0, x.shape[0], batch_size)
        ]
    per_example = torch.cat(values).cpu()
    n = per_example.numel()
    stderr = per_example.std().item() / math.sqrt(n) if n > 1 else float("nan")
    return IWEstimate(k=k, mean=per_example.mean().item(), stderr=stderr, per_example=per_example)


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
        log_w = losses.log_weights(model.decoder(z), z, mu, logvar, x)
        total = torch.logaddexp(total, torch.logsumexp(log_w, dim=0))
        done += n
    return total - math.log(k)


@torch.no_grad()
def active_units(model: VAE, x: Tensor, threshold: float = 1e-2, batch_size: int = 2000) -> tuple[int, Tensor]:
    """Burda et al.'s active units: latent dimensions whose posterior mean varies across data, Var_x[mu] > threshold."""
    variance = posterior_means(model, x, batch_size).double().var(dim=0)
    return int((variance > threshold).sum().item()), variance


@torch.no_grad()
def posterior_means(model: VAE, x: Tensor, batch_size: int = 2000) -> Tensor:
    """The encoder means mu_phi(x) of q(z|x), in batches."""
    return torch.cat([model.encoder(x[s : s + batch_size])[0] for s in range(0, x.shape[0], batch_size)])
