"""Matplotlib figures used by the chapters: samples, ELBO curves, the 2-D manifold, latent scatter, and more.

The grids of digit images they draw come from `vae_core.images` (`show_grid`), which the command line uses too.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse
from matplotlib.text import Text
from torch import Tensor

from vae_core.images import show_grid
from vae_core.model import VAE, evaluating


def sample_figure(means: Tensor, draws: Tensor, nrow: int = 8, title: str = "") -> Figure:
    """Bernoulli means beside binary draws of the same latent codes."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 4.3))
    show_grid(left, means, nrow, "Bernoulli means $f_\\theta(z)$")
    show_grid(right, draws, nrow, "binary draws $x \\sim$ Bern$(f_\\theta(z))$")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def elbo_curves(
    epochs: Sequence[int],
    train: Sequence[float],
    valid: Sequence[float | None] | None = None,
    ax: Axes | None = None,
    label: str = "",
) -> Axes:
    """Train and (where given) validation ELBO per epoch, in nats, e.g. from `history.column("train_elbo")`."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, train, label=f"train {label}".strip())
    if valid is not None and any(v is not None for v in valid):
        ax.plot(epochs, np.asarray(valid, dtype=float), label=f"validation {label}".strip())  # None: a gap (NaN)
    ax.set_xlabel("epoch")
    ax.set_ylabel("ELBO (nats per image)")
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


@torch.no_grad()
def manifold(model: VAE, n: int = 20, ax: Axes | None = None) -> Axes:
    """Kingma & Welling's Fig. 4b: decode an n x n grid of the unit square pushed through the inverse Gaussian CDF."""
    if model.config.z_dim != 2:
        raise ValueError(f"the manifold plot needs a 2-D latent space, this model has z_dim={model.config.z_dim}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6))
    device = next(model.parameters()).device
    u = torch.linspace(0.5 / n, 1 - 0.5 / n, n, dtype=torch.float64)
    grid = torch.distributions.Normal(0.0, 1.0).icdf(u)
    z = torch.stack(torch.meshgrid(grid, grid.flip(0), indexing="xy"), dim=-1).reshape(-1, 2).float().to(device)
    means = torch.sigmoid(model.decoder(z))
    return show_grid(ax, means, nrow=n)


def latent_scatter(mu: Tensor, labels: Tensor | None = None, ax: Axes | None = None) -> Axes:
    """Scatter 2-D posterior means, coloured by digit label when labels exist."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5))
    xy = mu.detach().cpu().numpy()
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=2, alpha=0.5)
    else:
        points = ax.scatter(xy[:, 0], xy[:, 1], c=labels.cpu().numpy(), cmap="tab10", s=2, alpha=0.7)
        ax.figure.colorbar(points, ax=ax, ticks=range(10), label="digit")
    ax.set_xlabel("$\\mu_1$")
    ax.set_ylabel("$\\mu_2$")
    return ax


@torch.no_grad()
def reconstructions(model: VAE, x: Tensor, nrow: int = 8) -> Figure:
    """Images beside their reconstructions: the Bernoulli means f(mu(x)) decoded at the posterior mean."""
    device = next(model.parameters()).device
    x = x.to(device)
    with evaluating(model):
        means = torch.sigmoid(model.decoder(model.encoder(x)[0]))
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 4.3))
    show_grid(left, x, nrow, "test images $x$")
    show_grid(right, means, nrow, "reconstructions $f_\\theta(\\mu_\\phi(x))$")
    fig.tight_layout()
    return fig


def iw_curve(ks: list[int], means: list[float], stderrs: list[float], ax: Axes | None = None) -> Axes:
    """The importance-weighted bound against the number of samples K (log axis), with +- 2 standard errors."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    lo = [m - 2 * s for m, s in zip(means, stderrs, strict=True)]
    hi = [m + 2 * s for m, s in zip(means, stderrs, strict=True)]
    ax.fill_between(ks, lo, hi, alpha=0.25)
    ax.plot(ks, means, "o-")
    ax.set_xscale("log")
    ax.set_xlabel("importance samples $K$")
    ax.set_ylabel("$\\mathcal{L}_K$ (nats per image)")
    ax.grid(alpha=0.3)
    return ax


def gaussian_ellipse(ax: Axes, mean: Tensor, cov: Tensor, n_std: float = 1.0, **style: object) -> Ellipse:
    """Draw the n_std contour {z : (z - mean)^T cov^-1 (z - mean) = n_std^2} of a 2-D Gaussian; return the patch."""
    values, vectors = torch.linalg.eigh(cov.detach().double())
    angle = float(torch.rad2deg(torch.atan2(vectors[1, -1], vectors[0, -1])))
    width, height = (2 * n_std * values.flip(0).sqrt()).tolist()
    patch = Ellipse(tuple(mean.detach().double().tolist()), width, height, angle=angle, fill=False, **style)
    ax.add_patch(patch)
    return patch


def prior_samples_over_posterior(
    z: Tensor, log_w: Tensor, post_mean: Tensor, post_cov: Tensor, ax: Axes | None = None
) -> Axes:
    """2-D prior samples z_k, coloured by their share w_k / sum w of the naive weights, over the posterior's ellipses.

    The solid ellipses are the posterior's 1, 2 and 3 standard-deviation contours, the dashed circles the prior's.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5))
    share = torch.softmax(log_w.detach(), dim=0).numpy()
    points = z.detach().numpy()
    order = np.argsort(share)  # heaviest drawn last, on top
    floor = 1e-6
    scatter = ax.scatter(
        points[order, 0],
        points[order, 1],
        c=np.maximum(share[order], floor),
        s=6 + 60 * share[order] / share.max(),
        cmap="viridis",
        norm=matplotlib.colors.LogNorm(vmin=floor, vmax=1.0),
        linewidths=0,
    )
    for r in (1.0, 2.0):
        gaussian_ellipse(ax, torch.zeros(2), torch.eye(2), r, linestyle="--", edgecolor="0.5", linewidth=1, zorder=3)
    for r in (1.0, 2.0, 3.0):
        gaussian_ellipse(ax, post_mean, post_cov, r, edgecolor="C3", linewidth=1.2, zorder=3)
    ax.set_aspect("equal")
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.figure.colorbar(scatter, ax=ax, label="share of the total weight, $w_k / (w_1 + \\dots + w_K)$", shrink=0.8)
    return ax


def sample_snapshots(snapshots: dict[str, tuple[Tensor, Tensor]], nrow: int = 8) -> Figure:
    """One row per snapshot (e.g. before, halfway, after training): Bernoulli means beside binary draws."""
    fig, axes = plt.subplots(len(snapshots), 2, figsize=(8, 2.4 * len(snapshots)), squeeze=False)
    for (title, (means, draws)), (left, right) in zip(snapshots.items(), axes, strict=True):
        show_grid(left, means, nrow, f"{title}: means $f_\\theta(z)$")
        show_grid(right, draws, nrow, f"{title}: draws $x \\sim$ Bern$(f_\\theta(z))$")
    fig.tight_layout()
    return fig


def aggregate_posterior(mean: Tensor, variance: Tensor, splits: dict[str, tuple[float, float, float]]) -> Figure:
    """Left, the aggregate posterior's mean and variance per latent dimension against the prior's 0 and 1.

    Right, one stacked bar per label: the rate split into I_q (bottom) and KL(q̄(z) || p(z)) (top), from
    `splits[label] = (mutual_information, marginal_kl, log_n)`, with log N marked by a dashed line.
    """
    fig, (ax_m, ax_s) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [1.6, 1]})
    dims = np.arange(mean.numel())
    ax_m.bar(dims, variance.detach().cpu().numpy(), color="C0", alpha=0.6, label="variance of $\\bar q(z_i)$")
    ax_m.plot(dims, mean.detach().cpu().numpy(), "o", color="C1", label="mean of $\\bar q(z_i)$")
    ax_m.axhline(1.0, ls="--", color="0.3", lw=1, label="prior: variance 1")
    ax_m.axhline(0.0, ls=":", color="0.3", lw=1, label="prior: mean 0")
    ax_m.set_xticks(dims, [str(i) for i in dims.tolist()], fontsize=8)
    ax_m.set_xlabel("latent dimension $i$")
    ax_m.set_ylabel("moment of the aggregate posterior")
    ax_m.set_ylim(-0.1, 1.55)
    ax_m.legend(fontsize=8, loc="upper center", ncol=2)
    positions = np.arange(len(splits))
    for i, (info, marginal, log_n) in enumerate(splits.values()):
        ax_s.bar(i, info, color="C2", label="$I_q(n; z)$" if i == 0 else None)
        ax_s.bar(i, marginal, bottom=info, color="C3", label="KL$(\\bar q(z)\\,\\|\\,p(z))$" if i == 0 else None)
        ax_s.plot([i - 0.4, i + 0.4], [log_n, log_n], "k--", lw=1.2, label="$\\log N$" if i == 0 else None)
    ax_s.set_xticks(positions, list(splits))
    ax_s.set_ylabel("nats per image")
    ax_s.set_title("the rate, split")
    ax_s.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def posterior_vs_diagonal(ax: Axes, post_cov: Tensor, title: str = "") -> Axes:
    """A 2-D posterior's 1- and 2-sd contours against two diagonal Gaussians with the same mean.

    Solid: the posterior N(0, Sigma). Dashed: the best diagonal q in KL(q || p), variances 1 / Lambda_ii (Lambda =
    Sigma^-1). Dotted: the diagonal Gaussian with the posterior's own marginal variances Sigma_ii.
    """
    post_cov = post_cov.detach().double()
    zero = torch.zeros(2, dtype=torch.float64)
    best = torch.diag(1.0 / torch.linalg.inv(post_cov).diagonal())
    marginal = torch.diag(post_cov.diagonal())
    styles = (
        (post_cov, "posterior $p(z \\mid x)$", {"color": "black", "linestyle": "-"}),
        (best, "best diagonal $q$", {"color": "C0", "linestyle": "--"}),
        (marginal, "diagonal, marginal variances", {"color": "C1", "linestyle": ":"}),
    )
    for cov, label, style in styles:
        for n_std in (1.0, 2.0):
            gaussian_ellipse(
                ax, zero, cov, n_std, linewidth=1.6, label=label if n_std == 1.0 else "_nolegend_", **style
            )
    reach = 2.2 * float(post_cov.diagonal().max().sqrt())
    ax.set_xlim(-reach, reach)
    ax.set_ylim(-reach, reach)
    ax.set_aspect("equal")
    ax.set_xlabel("$z_1 - \\mathbb{E}[z_1 \\mid x]$")
    ax.set_ylabel("$z_2 - \\mathbb{E}[z_2 \\mid x]$")
    if title:
        ax.set_title(title)
    return ax


def _graph_node(ax: Axes, xy: tuple[float, float], text: str, stochastic: bool) -> Text:
    """A computation-graph node: a rounded box, orange and dashed if random, grey if deterministic."""
    face, edge, line = ("#fde3c8", "#d9730d", "--") if stochastic else ("#eeeeee", "#555555", "-")
    box = {"boxstyle": "round,pad=0.45", "facecolor": face, "edgecolor": edge, "linestyle": line, "linewidth": 1.5}
    return ax.text(*xy, text, ha="center", va="center", fontsize=12, bbox=box, zorder=3)


def _graph_edge(ax: Axes, start: Text, end: Text, backward: bool = False) -> None:
    """An arrow from box to box: forward (black, solid) or a gradient (red, dashed, just below the boxes' centres)."""
    color, line, dy = ("#c0392b", "--", -0.28) if backward else ("black", "-", 0.0)
    (x0, y0), (x1, y1) = start.get_position(), end.get_position()
    props = {"arrowstyle": "-|>", "color": color, "linestyle": line, "linewidth": 1.4, "shrinkA": 2, "shrinkB": 2}
    if not backward:
        props |= {"patchA": start.get_bbox_patch(), "patchB": end.get_bbox_patch()}
    else:  # from the bottom edge of one box to the bottom edge of the next, below both
        props |= {"connectionstyle": "arc3,rad=0.25" if x1 < x0 else "arc3,rad=-0.25"}
        y0, y1 = y0 + dy, y1 + dy
    ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops=props, zorder=2)


def reparameterization_graphs() -> Figure:
    """The computation graph from phi to h(z) without (top) and with (bottom) the reparameterization z = mu + sigma eps.

    Black arrows are the forward computation, red dashed arrows the gradient that backpropagation sends back; random
    nodes are orange and dashed. Without the trick the gradient stops at the sampled z; with it, it reaches phi.
    """
    fig, axes = plt.subplots(2, 1, figsize=(7.2, 5.0))
    panels = (
        ("without the trick: $z$ is drawn from $q_\\phi$", "$z \\sim \\mathcal{N}(\\mu, \\sigma^2)$", False),
        ("with the trick: the noise $\\varepsilon$ enters from outside", "$z = \\mu + \\sigma\\varepsilon$", True),
    )
    for ax, (title, z_text, reparameterized) in zip(axes, panels, strict=True):
        phi = _graph_node(ax, (0.0, 0.0), "$\\phi$", stochastic=False)
        musig = _graph_node(ax, (1.5, 0.0), "$\\mu_\\phi, \\sigma_\\phi$", stochastic=False)
        z = _graph_node(ax, (3.2, 0.0), z_text, stochastic=not reparameterized)
        f = _graph_node(ax, (4.8, 0.0), "$h(z)$", stochastic=False)
        for a, b in ((phi, musig), (musig, z), (z, f)):
            _graph_edge(ax, a, b)
        _graph_edge(ax, f, z, backward=True)
        if reparameterized:
            eps = _graph_node(ax, (3.2, 0.9), "$\\varepsilon \\sim \\mathcal{N}(0, 1)$", stochastic=True)
            _graph_edge(ax, eps, z)
            _graph_edge(ax, z, musig, backward=True)
            _graph_edge(ax, musig, phi, backward=True)
        else:
            ax.text(2.35, -0.3, "\u2715", color="#c0392b", fontsize=18, ha="center", va="center", zorder=4)
            ax.text(2.35, -0.62, "no derivative through a draw", color="#c0392b", fontsize=10, ha="center")
        ax.set_title(title, fontsize=12)
        ax.set_xlim(-0.5, 5.4)
        ax.set_ylim(-0.8, 1.25)
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def label_rows(means: Tensor, per_label: int, ax: Axes | None = None) -> Axes:
    """A conditional VAE's samples, one row per label: `means` (C * per_label, M) in label order, labels 0, 1, ...
    from the top, each row's label written at its left."""
    if ax is None:
        _, ax = plt.subplots(figsize=(per_label * 0.55, len(means) / per_label * 0.55))
    show_grid(ax, means, nrow=per_label)
    for label in range(len(means) // per_label):
        ax.text(-4, label * 29 + 14, str(label), ha="right", va="center", fontsize=11)
    return ax


def relabel_figure(images: Tensor, redrawn: Tensor) -> Figure:
    """Kingma et al. 2014's Fig. 1: each test image (left column) beside its code decoded under every label (one
    column per label); `redrawn` is `bayes.relabel`'s (n, C, M)."""
    n, classes, _ = redrawn.shape
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(0.55 * (classes + 1.6), 0.55 * n + 0.6), gridspec_kw={"width_ratios": [1, classes]}
    )
    show_grid(left, images, nrow=1, title="test image")
    show_grid(right, redrawn.reshape(n * classes, -1), nrow=classes, title="its z decoded with y = 0, 1, ..., 9")
    fig.tight_layout()
    return fig


def reliability_curves(curves: dict[str, tuple[Tensor, Tensor, Tensor]]) -> Figure:
    """Above, accuracy against mean confidence per confidence bin for each named classifier (confidence, accuracy,
    count; see `bayes.reliability`), bins with no prediction left out, the diagonal perfect calibration; below, how
    many predictions fall in each bin, on a log scale (a bin of a few images says little)."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    top.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="calibrated")
    width = 0.8 / (len(next(iter(curves.values()))[2]) * len(curves))
    for i, (name, (confidence, accuracy, count)) in enumerate(curves.items()):
        seen = count > 0
        top.plot(confidence[seen], accuracy[seen], marker="o", ms=4, label=name)
        bins = len(count)
        centers = (torch.arange(bins) + 0.5) / bins
        bottom.bar(centers + (i - (len(curves) - 1) / 2) * width, count, width=width, label=name)
    top.set_ylabel("accuracy in the bin")
    top.grid(alpha=0.3)
    top.legend()
    bottom.set_yscale("log")
    bottom.set_ylabel("images")
    bottom.set_xlabel("confidence, the largest $p(y \\mid x)$")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    return fig
