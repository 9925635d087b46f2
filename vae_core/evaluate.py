"""Evaluation over a whole split, in batches: the ELBO, the importance-weighted log-likelihood, and active units.

The importance weights w = p(x, z) / q(z|x), z ~ q, have these names across the package:

- `losses.log_weights`: log w of given samples z (from the decoder's logits at z), shape (K, batch), differentiable.
- `losses.iw_objective`: the IW bound log (1/K) sum_k w_k of given samples, differentiable: what training maximizes
  with the iwae objective.
- `iw_log_likelihood` (here): the IW bound per example of K fresh draws, streamed over K, for a whole split, with its
  mean and standard error: the estimate of log p(x).
- `sample_log_weights` (here): all K log weights of K fresh draws per example, shape (n, K), for the book's analyses.
- `inference.iw_bound`: the IW bound L_k from such stored weights, for any k <= K (over K // k disjoint groups).

`iw_log_likelihood` and `sample_log_weights` draw their samples in one loop (`_log_weight_chunks`), so with the same
seed, batch size and chunk they see the same draws. The book's linear-Gaussian toy model has its own counterparts
(`toy.sample_log_weights`, `toy.naive_log_weights`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from vae_core import losses
from vae_core.model import VAE, evaluating, reparameterize


@torch.no_grad()
def evaluate_elbo(
    model: VAE, x: Tensor, batch_size: int = 2000, seed: int = 0, y: Tensor | None = None
) -> losses.ELBOResult:
    """Mean single-sample ELBO, reconstruction and KL over `x` (given the labels `y` for a conditional model), in nats
    per example.

    The sums stay on x's device and are read once, at the end (no host synchronization per batch).
    """
    generator = torch.Generator(device=x.device).manual_seed(seed)
    sums = torch.zeros(3, dtype=torch.float64, device=x.device)
    with evaluating(model):
        for start in range(0, x.shape[0], batch_size):
            batch = x[start : start + batch_size]
            logits, mu, logvar = model(batch, generator, _rows(y, start, batch_size))
            terms = losses.elbo(logits, mu, logvar, batch)
            sums += terms.sums().double()
    return losses.ELBOResult.from_sums(sums, x.shape[0])


@dataclass
class IWEstimate:
    """The importance-weighted bound with K samples: its mean over examples, standard error, and per-example values."""

    k: int
    mean: float
    stderr: float
    per_example: Tensor


def _check_sizes(k: int, batch_size: int, chunk: int) -> None:
    if k < 1 or chunk < 1 or batch_size < 1:
        raise ValueError(f"k, chunk and batch_size must be positive, got k={k}, chunk={chunk}, batch_size={batch_size}")


def _rows(y: Tensor | None, start: int, size: int) -> Tensor | None:
    """Rows start .. start + size of the labels `y`, or None without labels."""
    return None if y is None else y[start : start + size]


def _log_weight_chunks(
    model: VAE,
    x: Tensor,
    mu: Tensor,
    logvar: Tensor,
    k: int,
    chunk: int,
    generator: torch.Generator,
    y: Tensor | None = None,
) -> Iterator[Tensor]:
    """The log weights of k draws z ~ N(mu, diag exp(logvar)) per row of the batch `x` (with its labels `y` for a
    conditional model), `chunk` draws at a time: tensors (chunk, batch), the last one smaller. Only one
    chunk x batch x M tensor of logits exists at a time."""
    for done in range(0, k, chunk):
        n = min(chunk, k - done)
        z = reparameterize(mu.expand(n, *mu.shape), logvar.expand(n, *logvar.shape), generator)
        yield losses.log_weights(model.decoder(z, y), z, mu, logvar, x)


@torch.no_grad()
def iw_log_likelihood(
    model: VAE,
    x: Tensor,
    k: int,
    batch_size: int = 100,
    chunk: int = 100,
    seed: int = 0,
    y: Tensor | None = None,
) -> IWEstimate:
    """Estimate log p(x) per example by the IW bound log (1/K) sum_k p(x, z_k) / q(z_k|x) with z_k ~ q(z|x), in
    batches, streaming over K. For a conditional model, given the labels `y`, it is log p(x|y), with q(z|x, y) and
    p(x|z, y) (the prior p(z) is the same).

    Each batch's K samples go through the decoder in chunks, merged with a running logsumexp, so no batch x K table
    of weights is kept. The batches' values stay on x's device and are read once, at the end.
    """
    _check_sizes(k, batch_size, chunk)
    generator = torch.Generator(device=x.device).manual_seed(seed)
    values = []
    with evaluating(model):
        for s in range(0, x.shape[0], batch_size):
            batch, labels = x[s : s + batch_size], _rows(y, s, batch_size)
            mu, logvar = model.encoder(batch, labels)
            total = torch.full((batch.shape[0],), -math.inf, device=x.device, dtype=mu.dtype)
            for log_w in _log_weight_chunks(model, batch, mu, logvar, k, chunk, generator, labels):
                total = torch.logaddexp(total, torch.logsumexp(log_w, dim=0))
            values.append((total - math.log(k)).double())
    per_example = torch.cat(values).cpu()
    n = per_example.numel()
    stderr = per_example.std().item() / math.sqrt(n) if n > 1 else float("nan")
    return IWEstimate(k=k, mean=per_example.mean().item(), stderr=stderr, per_example=per_example)


@torch.no_grad()
def sample_log_weights(
    model: VAE,
    x: Tensor,
    k: int,
    mu: Tensor | None = None,
    logvar: Tensor | None = None,
    batch_size: int = 100,
    chunk: int = 100,
    seed: int = 0,
    y: Tensor | None = None,
) -> Tensor:
    """log w = log p(x|z) + log p(z) - log q(z|x) for K draws z ~ q per example: a float64 tensor (n, K) on the CPU.

    q is N(mu, diag exp(logvar)); without `mu` and `logvar` it is the encoder's q(z|x). With the encoder's q, the
    same seed, batch size and chunk, the draws are those of `iw_log_likelihood`. A conditional model takes the
    labels `y` (then p(x|z) is p(x|z, y)).
    """
    _check_sizes(k, batch_size, chunk)
    with evaluating(model):
        if mu is None or logvar is None:
            mu, logvar = model.encoder(x, y)
        generator = torch.Generator(device=x.device).manual_seed(seed)
        rows = []
        for s in range(0, x.shape[0], batch_size):
            batch, mb, lb = x[s : s + batch_size], mu[s : s + batch_size], logvar[s : s + batch_size]
            chunks = _log_weight_chunks(model, batch, mb, lb, k, chunk, generator, _rows(y, s, batch_size))
            rows.append(torch.cat([log_w.T.double() for log_w in chunks], dim=1))
    return torch.cat(rows).cpu()


@torch.no_grad()
def active_units(
    model: VAE, x: Tensor, threshold: float = 1e-2, batch_size: int = 2000, y: Tensor | None = None
) -> tuple[int, Tensor]:
    """Burda et al.'s active units: latent dimensions whose posterior mean varies across data, Var_x[mu] > threshold.

    For a conditional model, given the labels `y`, the means are those of q(z|x, y)."""
    variance = posterior_means(model, x, batch_size, y).double().var(dim=0)
    return int((variance > threshold).sum().item()), variance


@torch.no_grad()
def posterior_means(model: VAE, x: Tensor, batch_size: int = 2000, y: Tensor | None = None) -> Tensor:
    """The encoder means mu_phi(x) of q(z|x) (of q(z|x, y) given labels `y`), in batches."""
    starts = range(0, x.shape[0], batch_size)
    return torch.cat([model.encoder(x[s : s + batch_size], _rows(y, s, batch_size))[0] for s in starts])
