"""The VAE: an encoder to a diagonal Gaussian q(z|x) and a decoder to Bernoulli logits, each an MLP or convolutional.

Two options of `VAEConfig` change the networks, never the losses or anything downstream of the logits:

- ``architecture="conv"``: strided convolutions down to a dense layer that gives mu and log sigma^2, and a dense
  layer up to transposed convolutions that give the 28 x 28 logits (`ConvEncoder`, `ConvDecoder`).
- ``classes=C``: a conditional VAE, q(z | x, y) and p(x | z, y) with the label y one-hot (`one_hot`) beside the
  encoder's input (or, for conv, its features) and beside z at the decoder's input. The prior p(z) stays N(0, I).
  Every call then takes the integer labels ``y``; an unconditional model takes none.
"""

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
ARCHITECTURES: tuple[str, ...] = ("mlp", "conv")
IMAGE_SIDE = 28  # the convolutional networks' images are IMAGE_SIDE x IMAGE_SIDE
ModuleT = TypeVar("ModuleT", bound=nn.Module)


@dataclass(frozen=True)
class VAEConfig:
    """The networks' settings.

    `hidden` are the MLP's hidden layer sizes (the decoder mirrors them); `channels` the conv encoder's channels, one
    stride-2 convolution each (one or two, so 28 halves to 14 or 7; the decoder mirrors them). `classes` > 0 makes
    the VAE conditional on a label in 0 .. classes - 1.
    """

    x_dim: int = 784
    hidden: tuple[int, ...] = (500, 500)
    z_dim: int = 20
    activation: str = "tanh"
    architecture: str = "mlp"
    channels: tuple[int, ...] = (16, 32)
    classes: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if self.x_dim < 1 or self.z_dim < 1 or any(h < 1 for h in self.hidden):
            raise ValueError(f"x_dim, z_dim and hidden sizes must be positive, got {self}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; choose one of {sorted(ACTIVATIONS)}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.architecture!r}; choose one of {', '.join(ARCHITECTURES)}")
        if self.classes < 0:
            raise ValueError(f"classes must be 0 (unconditional) or the number of labels, got {self.classes}")
        if self.architecture == "conv":
            if self.x_dim != IMAGE_SIDE**2:
                raise ValueError(
                    f"the conv architecture takes {IMAGE_SIDE}x{IMAGE_SIDE} images, x_dim 784, got {self.x_dim}"
                )
            if len(self.channels) not in (1, 2) or any(c < 1 for c in self.channels):
                raise ValueError(f"conv channels are one or two positive sizes like 16,32, got {self.channels}")

    def to_dict(self) -> dict:
        """A JSON-friendly dict that `VAEConfig(**d)` reads back."""
        return {**asdict(self), "hidden": list(self.hidden), "channels": list(self.channels)}


def mlp(sizes: list[int], activation: str) -> nn.Sequential:
    """Linear layers of the given sizes with the activation between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def one_hot(y: Tensor | None, classes: int, lead: tuple[int, ...]) -> Tensor | None:
    """The labels `y` (integers, shape (batch,)) one-hot as floats of shape (*lead, classes), expanded over leading
    sample dimensions; None for an unconditional network (classes 0), which must be given no labels."""
    if classes == 0:
        if y is not None:
            raise ValueError("this VAE is not conditional: pass no labels (y=None)")
        return None
    if y is None:
        raise ValueError(f"this VAE is conditional on {classes} classes: pass the integer labels y")
    if y.dtype not in (torch.int64, torch.int32, torch.uint8):
        raise ValueError(f"labels y must be integers in 0..{classes - 1}, got dtype {y.dtype}")
    if y.device.type == "cpu" and y.numel() and (int(y.min()) < 0 or int(y.max()) >= classes):
        raise ValueError(f"labels y must lie in 0..{classes - 1}, got {int(y.min())}..{int(y.max())}")
    # A comparison, not F.one_hot: no host synchronization, so a CUDA graph can capture it (`Split.labels_for`, which
    # `fit` and the command line call, checks the range of a split's labels once).
    code = (y.long().unsqueeze(-1) == torch.arange(classes, device=y.device)).float()
    return code.expand(*lead, classes)


def with_label(h: Tensor, y: Tensor | None, classes: int) -> Tensor:
    """`h` with the one-hot label appended to its last dimension (unchanged for an unconditional network)."""
    code = one_hot(y, classes, tuple(h.shape[:-1]))
    return h if code is None else torch.cat([h, code], dim=-1)


class Encoder(nn.Module):
    """(x, y) -> (mu, log sigma^2) of the diagonal Gaussian q(z|x) (or q(z|x, y)): an MLP."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.classes = config.classes
        self.net = mlp([config.x_dim + config.classes, *config.hidden, 2 * config.z_dim], config.activation)

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        mu, logvar = self.net(with_label(x, y, self.classes)).chunk(2, dim=-1)
        return mu, logvar


class Decoder(nn.Module):
    """(z, y) -> logits of M independent Bernoullis, one per pixel: an MLP. z may have leading sample dimensions."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.classes = config.classes
        self.net = mlp([config.z_dim + config.classes, *reversed(config.hidden), config.x_dim], config.activation)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.net(with_label(z, y, self.classes))


class ConvEncoder(nn.Module):
    """(x, y) -> (mu, log sigma^2): stride-2 4x4 convolutions (28 -> 14 -> 7), then one dense layer."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.classes = config.classes
        layers: list[nn.Module] = []
        for c_in, c_out in zip((1, *config.channels[:-1]), config.channels, strict=True):
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), ACTIVATIONS[config.activation]()]
        self.conv = nn.Sequential(*layers)
        side = IMAGE_SIDE >> len(config.channels)
        self.dense = nn.Linear(config.channels[-1] * side * side + config.classes, 2 * config.z_dim)

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        features = self.conv(x.reshape(-1, 1, IMAGE_SIDE, IMAGE_SIDE)).flatten(1)
        mu, logvar = self.dense(with_label(features, y, self.classes)).chunk(2, dim=-1)
        return mu, logvar


class ConvDecoder(nn.Module):
    """(z, y) -> 784 logits: a dense layer to a 7 x 7 (or 14 x 14) feature map, then stride-2 4x4 transposed
    convolutions up to 28 x 28, the encoder's mirror. z may have leading sample dimensions."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.classes = config.classes
        self.side = IMAGE_SIDE >> len(config.channels)
        self.shape = (config.channels[-1], self.side, self.side)
        self.dense = nn.Linear(config.z_dim + config.classes, config.channels[-1] * self.side * self.side)
        act = ACTIVATIONS[config.activation]
        layers: list[nn.Module] = [act()]
        outs = (*reversed(config.channels[:-1]), 1)
        for i, (c_in, c_out) in enumerate(zip(reversed(config.channels), outs, strict=True)):
            layers.append(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1))
            if i < len(outs) - 1:
                layers.append(act())
        self.deconv = nn.Sequential(*layers)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        lead = z.shape[:-1]
        h = self.dense(with_label(z, y, self.classes)).reshape(-1, *self.shape)
        h = h.contiguous(memory_format=torch.channels_last)  # the same function, a third faster on the CPU
        return self.deconv(h).reshape(*lead, IMAGE_SIDE * IMAGE_SIDE)


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
    """Encoder and decoder together, with ancestral sampling from the prior N(0, I).

    For a conditional model (`config.classes` > 0) every method takes the integer labels `y`, one per example.
    """

    def __init__(self, config: VAEConfig | None = None) -> None:
        super().__init__()
        self.config = config or VAEConfig()
        conv = self.config.architecture == "conv"
        self.encoder: Encoder | ConvEncoder = (ConvEncoder if conv else Encoder)(self.config)
        self.decoder: Decoder | ConvDecoder = (ConvDecoder if conv else Decoder)(self.config)

    @property
    def conditional(self) -> bool:
        """Whether the model conditions on a label."""
        return self.config.classes > 0

    def forward(
        self, x: Tensor, generator: torch.Generator | None = None, y: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Return (decoder logits at one reparameterized z, mu, logvar)."""
        mu, logvar = self.encoder(x, y)
        z = reparameterize(mu, logvar, generator)
        return self.decoder(z, y), mu, logvar

    def forward_k(
        self, x: Tensor, k: int, generator: torch.Generator | None = None, y: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Return (decoder logits (k, batch, x_dim), z (k, batch, z_dim), mu, logvar) at k reparameterized z per x."""
        if k < 1:
            raise ValueError(f"k must be a positive integer, got {k}")
        mu, logvar = self.encoder(x, y)
        z = reparameterize(mu.expand(k, *mu.shape), logvar.expand(k, *logvar.shape), generator)
        return self.decoder(z, y), z, mu, logvar

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, binary: bool = False, y: Tensor | None = None
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Ancestral sampling: z ~ N(0, I), then the Bernoulli means f(z) (f(z, y) for the n labels `y` of a
        conditional model); with `binary`, also x ~ Bern(f(z))."""
        device = next(self.parameters()).device
        if y is not None and len(y) != n:
            raise ValueError(f"sample n={n} needs n labels, got {len(y)}")
        z = torch.randn(n, self.config.z_dim, generator=generator, device=device)
        means = torch.sigmoid(self.decoder(z, None if y is None else y.to(device)))
        if not binary:
            return means
        return means, torch.bernoulli(means, generator=generator)
