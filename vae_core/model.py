"""The VAE: an MLP encoder to a diagonal Gaussian q(z|x) and an MLP decoder to Bernoulli logits."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TypeVar

import torch
from torch import Tensor, nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "softplus": nn.Softplus,
    "elu": nn.ELU,
}
ModuleT = TypeVar("ModuleT", bound=nn.Module)


@dataclass(frozen=True)
class VAEConfig:
    """Sizes and activation of the encoder and decoder MLPs (the decoder mirrors `hidden`)."""

    x_dim: int = 784
    hidden: tuple[int, ...] = (500, 500)
    z_dim: int = 20
    activation: str = "tanh"

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if self.x_dim < 1 or self.z_dim < 1 or any(h < 1 for h in self.hidden):
            raise ValueError(f"x_dim, z_dim and hidden sizes must be positive, got {self}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; choose one of {sorted(ACTIVATIONS)}")

    def to_dict(self) -> dict:
        """A JSON-friendly dict that `VAEConfig(**d)` reads back."""
        return {**asdict(self), "hidden": list(self.hidden)}


def mlp(sizes: list[int], activation: str) -> nn.Sequential:
    """Linear layers of the given sizes with the activation between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """x -> (mu, log sigma^2) of the diagonal Gaussian q(z|x)."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.net = mlp([config.x_dim, *config.hidden, 2 * config.z_dim], config.activation)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.net(x).chunk(2, dim=-1)
        return mu, logvar


class Decoder(nn.Module):
    """z -> logits of M independent Bernoullis, one per pixel."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.net = mlp([config.z_dim, *reversed(config.hidden), config.x_dim], config.activation)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


def reparameterize(
    mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None, eps: Tensor | None = None
) -> Tensor:
    """z = mu + sigma * eps with eps ~ N(0, I): a sample of q(z|x) that gradients flow through.

    The noise `eps` is drawn from `generator` unless it is given (then it has the shape of mu, or more leading dims).
    """
    if eps is None:
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps


@contextmanager
def evaluating(model: ModuleT) -> Iterator[ModuleT]:
    """Put `model` in eval mode for the block, then restore the mode it had."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


class VAE(nn.Module):
    """Encoder and decoder together, with ancestral sampling from the prior N(0, I)."""

    def __init__(self, config: VAEConfig | None = None) -> None:
        super().__init__()
        self.config = config or VAEConfig()
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Return (decoder logits at one reparameterized z, mu, logvar)."""
        mu, logvar = self.encoder(x)
        z = reparameterize(mu, logvar, generator)
        return self.decoder(z), mu, logvar

    def forward_k(
        self, x: Tensor, k: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Return (decoder logits (k, batch, x_dim), z (k, batch, z_dim), mu, logvar) at k reparameterized z per x."""
        if k < 1:
            raise ValueError(f"k must be a positive integer, got {k}")
        mu, logvar = self.encoder(x)
        z = reparameterize(mu.expand(k, *mu.shape), logvar.expand(k, *logvar.shape), generator)
        return self.decoder(z), z, mu, logvar

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, binary: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Ancestral sampling: z ~ N(0, I), then the Bernoulli means f(z); with `binary`, also x ~ Bern(f(z))."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.config.z_dim, generator=generator, device=device)
        means = torch.sigmoid(self.decoder(z))
        if not binary:
            return means
        return means, torch.bernoulli(means, generator=generator)
