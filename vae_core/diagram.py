"""The model in pictures: the graphical model z -> x as a plate diagram, and the VAE's layers, drawn from the widths
of an actual `VAE`'s linear layers."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyBboxPatch
from torch import nn

from vae_core.model import VAE, Decoder, Encoder

INK, ENCODER, LATENT, DECODER, NOISE = "#222222", "#4c72b0", "#c44e52", "#55a868", "#8172b2"
STEP = 1.4  # distance between two layers' bars


def layer_widths(net: nn.Sequential) -> list[int]:
    """The widths along an MLP: the first linear layer's inputs, then every linear layer's outputs."""
    linears = [m for m in net if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("the network has no linear layer")
    return [linears[0].in_features, *(m.out_features for m in linears)]


def _bar(ax: Axes, x: float, units: int, scale: float, color: str, label: str, y: float = 0.0) -> float:
    """A bar centred at height `y`, as tall as `units` (at least a sliver), labelled below; returns its top."""
    height = max(units * scale, 0.06)
    ax.add_patch(
        FancyBboxPatch(
            (x - 0.13, y - height / 2),
            0.26,
            height,
            boxstyle="round,pad=0.01,rounding_size=0.05",
            facecolor=color,
            edgecolor=INK,
            linewidth=0.8,
            alpha=0.85,
        )
    )
    ax.text(x, y - height / 2 - 0.08, label, ha="center", va="top", fontsize=10, color=INK)
    return y + height / 2


def _hidden_layers(ax: Axes, x: float, widths: list[int], scale: float, color: str, activation: str) -> float:
    """An arrow and a bar for each hidden layer after position `x`; returns the position of the last bar."""
    for units in widths:
        _arrow(ax, x, x + STEP, "linear\n" + activation)
        x += STEP
        _bar(ax, x, units, scale, color, f"{units}")
    return x


def _arrow(ax: Axes, x0: float, x1: float, text: str = "", y: float = 0.0) -> None:
    ax.annotate("", xy=(x1 - 0.16, y), xytext=(x0 + 0.16, y), arrowprops={"arrowstyle": "->", "color": INK, "lw": 1})
    if text:
        ax.text((x0 + x1) / 2, y + 0.05, text, ha="center", va="bottom", fontsize=8.5, color=INK)


def model_diagram(model: VAE) -> Figure:
    """x -> encoder -> (mu, log sigma^2) -> z = mu + sigma * eps -> decoder -> Bernoulli means, to scale.

    Each layer is a bar as tall as its number of units, read from the model's own `nn.Linear` layers (an MLP VAE).
    """
    if not isinstance(model.encoder, Encoder) or not isinstance(model.decoder, Decoder):
        raise ValueError(f"the diagram draws an MLP VAE, got architecture {model.config.architecture!r}")
    enc, dec = layer_widths(model.encoder.net), layer_widths(model.decoder.net)
    act = model.config.activation.upper() if model.config.activation == "elu" else model.config.activation
    z_dim = dec[0]
    scale = 2.0 / max(enc + dec)
    fig, ax = plt.subplots(figsize=(10, 3.6))
    x = 0.0
    _bar(ax, x, enc[0], scale, INK, f"$x$\n{enc[0]} pixels")
    x = _hidden_layers(ax, x, enc[1:-1], scale, ENCODER, act)
    _arrow(ax, x, x + STEP, "linear")
    x += STEP
    _bar(ax, x, z_dim, scale, ENCODER, "", y=0.22)
    _bar(ax, x, enc[-1] - z_dim, scale, ENCODER, "", y=-0.22)
    ax.text(x, 0.3, f"$\\mu$ ({z_dim})", ha="center", va="bottom", fontsize=10)
    ax.text(x, -0.3, f"$\\log\\sigma^2$ ({enc[-1] - z_dim})", ha="center", va="top", fontsize=10)
    encoder_end = x
    _arrow(ax, x, x + STEP, "sample")
    x += STEP
    _bar(ax, x, z_dim, scale, LATENT, f"$z$ ({z_dim})")
    ax.text(x, 0.42, "$z = \\mu + \\sigma \\odot \\varepsilon$", ha="center", va="bottom", fontsize=11, color=LATENT)
    ax.annotate(
        "$\\varepsilon \\sim \\mathcal{N}(0, I)$",
        xy=(x, -0.12),
        xytext=(x, -0.75),
        ha="center",
        va="top",
        fontsize=10,
        color=NOISE,
        arrowprops={"arrowstyle": "->", "color": NOISE, "lw": 1},
    )
    decoder_start = x
    x = _hidden_layers(ax, x, dec[1:-1], scale, DECODER, act)
    _arrow(ax, x, x + STEP, "linear\nsigmoid")
    x += STEP
    _bar(ax, x, dec[-1], scale, DECODER, f"Bernoulli means\n$f_\\theta(z)$, {dec[-1]}")
    top = 1.25
    for start, end, color, name in (
        (0.0, encoder_end, ENCODER, "encoder $q_\\phi(z \\mid x)$"),
        (decoder_start, x, DECODER, "decoder $p_\\theta(x \\mid z)$"),
    ):
        ax.plot([start, start, end, end], [top - 0.05, top, top, top - 0.05], color=color, lw=1.2)
        ax.text((start + end) / 2, top + 0.04, name, ha="center", va="bottom", fontsize=12, color=color)
    ax.set_xlim(-0.7, x + 0.7)
    ax.set_ylim(-1.35, top + 0.3)
    ax.set_aspect("auto")
    ax.set_axis_off()
    fig.tight_layout()
    return fig


def plate_diagram() -> Figure:
    """The graphical model z -> x inside a plate repeated N times, with theta outside and the encoder's dashed arrow.

    The latent z is an open circle, the observed x a shaded one; the decoder's parameters theta (a dot outside the
    plate) point into x; the dashed arrow from x back to z is the inference model q_phi(z | x), its parameters phi
    (a dot outside the plate, on the other side) shared by every image.
    """
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    radius, z_xy, x_xy = 0.42, (3.0, 3.0), (3.0, 1.0)
    ax.add_patch(
        FancyBboxPatch(
            (0.95, 0.2), 3.35, 3.55, boxstyle="round,pad=0,rounding_size=0.12", fill=False, edgecolor=INK, lw=1.2
        )
    )
    ax.text(4.18, 0.3, "$N$", ha="right", va="bottom", fontsize=14, color=INK)
    for xy, face, name in ((z_xy, "white", "$z$"), (x_xy, "#bbbbbb", "$x$")):
        ax.add_patch(Circle(xy, radius, facecolor=face, edgecolor=INK, lw=1.5, zorder=2))
        ax.text(*xy, name, ha="center", va="center", fontsize=18, color=INK, zorder=3)
    solid = {"arrowstyle": "-|>", "color": INK, "lw": 1.5, "mutation_scale": 16}
    dashed = solid | {"color": ENCODER, "linestyle": "--"}
    ax.annotate("", xy=(x_xy[0], x_xy[1] + radius), xytext=(z_xy[0], z_xy[1] - radius), arrowprops=solid)
    ax.text(3.1, 2.0, "$p_\\theta(x \\mid z)$", ha="left", va="center", fontsize=12, color=INK)
    ax.text(z_xy[0] + radius + 0.1, z_xy[1] + 0.2, "$p(z)$", ha="left", va="bottom", fontsize=12, color=INK)
    # the decoder's parameters, outside the plate: one theta for every image
    theta = (5.3, 1.0)
    ax.plot(*theta, "o", color=INK, markersize=7)
    ax.text(theta[0], theta[1] + 0.2, "$\\theta$", ha="center", va="bottom", fontsize=16, color=INK)
    ax.annotate("", xy=(x_xy[0] + radius, x_xy[1]), xytext=(theta[0] - 0.1, theta[1]), arrowprops=solid)
    # inference: x back to z, dashed, with the encoder's parameters phi outside the plate
    ax.annotate(
        "",
        xy=(z_xy[0] - radius * 0.8, z_xy[1] - radius * 0.6),
        xytext=(x_xy[0] - radius * 0.8, x_xy[1] + radius * 0.6),
        arrowprops=dashed | {"connectionstyle": "arc3,rad=-0.45"},
    )
    ax.text(2.15, 2.0, "$q_\\phi(z \\mid x)$", ha="right", va="center", fontsize=12, color=ENCODER)
    phi = (0.3, 3.0)
    ax.plot(*phi, "o", color=ENCODER, markersize=7)
    ax.text(phi[0], phi[1] + 0.2, "$\\phi$", ha="center", va="bottom", fontsize=16, color=ENCODER)
    ax.annotate("", xy=(z_xy[0] - radius, z_xy[1]), xytext=(phi[0] + 0.1, phi[1]), arrowprops=dashed)
    ax.set_xlim(0.0, 5.7)
    ax.set_ylim(0.0, 4.0)
    ax.set_aspect("equal")
    ax.set_axis_off()
    fig.tight_layout()
    return fig
