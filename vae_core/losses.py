"""The ELBO's terms and the importance-weighted bound, per example and in nats, from the model's output tensors.

Every function here takes tensors (decoder logits, the encoder's mu and logvar, samples z, the data x), never the
model: the forward pass is the model's (`VAE.forward`, `VAE.forward_k`), the arithmetic of the bounds is here; the
Gaussian log-densities come from `vae_core.densities`.

Names: `elbo` is always the ELBO itself, reconstruction - KL (`ELBOTerms.elbo`, `ELBOResult.elbo`); the bound that
training maximizes is its `objective` (reconstruction - beta * KL, `ELBOTerms.objective`, or the IWAE bound of
`iw_objective`). The importance-weight names of the package are listed in `vae_core.evaluate`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from vae_core.densities import gaussian_log_density, log_mean_exp, standard_normal_log_density


def bernoulli_log_likelihood(logits: Tensor, x: Tensor) -> Tensor:
    """log prod_m Bern(x_m | sigmoid(logits_m)) = sum_m x_m log pi_m + (1 - x_m) log(1 - pi_m), stable from logits."""
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


def kl_to_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, diag sigma^2) || N(0, I)) = 1/2 sum_i (sigma_i^2 + mu_i^2 - 1 - log sigma_i^2)."""
    return 0.5 * (logvar.exp() + mu.pow(2) - 1.0 - logvar).sum(-1)


@dataclass
class ELBOTerms:
    """Per-example terms, each of shape (batch,), in nats: the `objective` reconstruction - beta * KL that training
    maximizes, the reconstruction term and the KL; `elbo` is the ELBO itself, reconstruction - KL, whatever beta."""

    objective: Tensor
    reconstruction: Tensor
    kl: Tensor

    @property
    def elbo(self) -> Tensor:
        """The ELBO, reconstruction - KL: the objective with beta = 1."""
        return self.reconstruction - self.kl

    def sums(self) -> Tensor:
        """The batch sums of the ELBO (whatever beta), of the reconstruction term and of the KL: a tensor (3,) on the
        terms' device, which `ELBOResult.from_sums` turns into means."""
        return torch.stack([self.elbo.sum(), self.reconstruction.sum(), self.kl.sum()])


@dataclass(frozen=True)
class ELBOResult:
    """Means over a set of examples, in nats per example: the ELBO (reconstruction - KL), its reconstruction term
    E_q[log p(x|z)] and its KL(q(z|x) || p(z)).

    The one shape of an ELBO result: `evaluate_elbo` returns it, the training history holds one for the training and
    one for the validation data, and the command line's JSON writes it. Flat, JSON-friendly keys come from `flat`
    (``{prefix}_elbo``, ...) and are read back by `from_flat`.
    """

    elbo: float
    reconstruction: float
    kl: float

    @classmethod
    def from_sums(cls, sums: Tensor, n: int) -> ELBOResult:
        """The means from the sums (elbo, reconstruction, kl) over `n` examples: one read from the device."""
        elbo, reconstruction, kl = (sums.double() / n).tolist()
        return cls(elbo, reconstruction, kl)

    @staticmethod
    def keys(prefix: str = "") -> list[str]:
        """The flat keys under `prefix`: ``{prefix}_elbo``, ``{prefix}_reconstruction``, ``{prefix}_kl``."""
        return [f"{prefix}_{name}" if prefix else name for name in ("elbo", "reconstruction", "kl")]

    def flat(self, prefix: str = "") -> dict[str, float]:
        """The result as a flat, JSON-friendly dict with the `keys` under `prefix`."""
        return dict(zip(self.keys(prefix), (self.elbo, self.reconstruction, self.kl), strict=True))

    @classmethod
    def from_flat(cls, row: dict, prefix: str = "") -> ELBOResult | None:
        """The result that `flat` stored in `row` under `prefix`, or None where the row holds none (null values)."""
        values = [row.get(key) for key in cls.keys(prefix)]
        numbers = [v for v in values if v is not None]
        return cls(*numbers) if len(numbers) == len(values) else None


def elbo(logits: Tensor, mu: Tensor, logvar: Tensor, x: Tensor, beta: float | Tensor = 1.0) -> ELBOTerms:
    """Single-sample ELBO from one forward pass (`VAE.forward`): log p(x|z) at the reparameterized z that gave
    `logits`, an estimate of E_q[log p(x|z)], minus the closed-form KL of q = N(mu, diag exp(logvar)) to N(0, I)."""
    reconstruction = bernoulli_log_likelihood(logits, x)
    kl = kl_to_standard_normal(mu, logvar)
    return ELBOTerms(objective=reconstruction - beta * kl, reconstruction=reconstruction, kl=kl)


def loss(logits: Tensor, mu: Tensor, logvar: Tensor, x: Tensor, beta: float | Tensor = 1.0) -> Tensor:
    """The training loss: the negative objective (the ELBO with its KL weighted by beta) averaged over the batch."""
    return -elbo(logits, mu, logvar, x, beta).objective.mean()


def log_weights(logits: Tensor, z: Tensor, mu: Tensor, logvar: Tensor, x: Tensor) -> Tensor:
    """log w = log p(x|z) + log p(z) - log q(z|x) for samples z of shape (K, batch, z_dim), shape (K, batch).

    `logits` are the decoder's at `z` (`VAE.forward_k`); q is N(mu, diag exp(logvar)).
    """
    log_px_z = bernoulli_log_likelihood(logits, x.expand(*logits.shape))
    return log_px_z + standard_normal_log_density(z) - gaussian_log_density(z, mu, logvar)


def iw_objective(logits: Tensor, z: Tensor, mu: Tensor, logvar: Tensor, x: Tensor) -> tuple[Tensor, ELBOTerms]:
    """The IWAE training bound log (1/k) sum_i p(x, z_i) / q(z_i|x), differentiable, per example (Burda et al. 2016),
    from the k samples of `VAE.forward_k`.

    Also returns the ELBO terms of the first sample (closed-form KL), for the history. With k = 1 the bound is the
    single-sample ELBO with a Monte-Carlo KL: its expectation is the ELBO.
    """
    return log_mean_exp(log_weights(logits, z, mu, logvar, x), dim=0), elbo(logits[0], mu, logvar, x)


def nats_to_bits_per_dim(nats: Tensor | float, dims: int = 784) -> Tensor | float:
    """Convert a log-likelihood in nats per example to bits per dimension (sign kept)."""
    return nats / (dims * math.log(2.0))
