"""vae_core.images and vae_core.plots: the tile geometry exactly, and every figure renders without error (Agg)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from vae_core.images import show_grid, tile
from vae_core.model import VAE, VAEConfig
from vae_core.plots import (
    elbo_curves,
    gaussian_ellipse,
    iw_curve,
    latent_scatter,
    manifold,
    posterior_vs_diagonal,
    prior_samples_over_posterior,
    reconstructions,
    reparameterization_graphs,
    sample_figure,
)

pytestmark = pytest.mark.usefixtures("close_figures")


def test_tile_geometry_and_values():
    images = torch.arange(5 * 4, dtype=torch.float32).reshape(5, 4) / 20  # five 2x2 images
    out = tile(images, nrow=3, side=2, pad=1)
    assert out.shape == (2 * 3 - 1, 3 * 3 - 1) and out.dtype == np.float32
    for i in range(5):
        r, c = divmod(i, 3)
        np.testing.assert_array_equal(out[3 * r : 3 * r + 2, 3 * c : 3 * c + 2], images[i].reshape(2, 2).numpy())
    assert (out[2, :] == 1).all() and (out[:, 2] == 1).all() and (out[:, 5] == 1).all()  # padding is white (1)
    assert (out[3:5, 6:8] == 1).all()  # the sixth, empty slot is blank
    assert out.sum() == pytest.approx(images.sum().item() + (out.size - 20))


def test_tile_default_mnist_size_and_no_pad():
    out = tile(torch.zeros(64, 784), nrow=8)
    assert out.shape == (8 * 29 - 1, 8 * 29 - 1)
    assert tile(torch.zeros(3, 784), nrow=3, pad=0).shape == (28, 84)
    assert (tile(torch.zeros(3, 784), nrow=3, pad=0) == 0).all()
    assert tile(torch.zeros(1, 784, requires_grad=True), nrow=4).shape == (28, 4 * 29 - 1)


def test_show_grid_inverts_for_black_ink():
    fig, ax = plt.subplots()
    show_grid(ax, torch.ones(4, 784), nrow=2, title="ink")
    data = ax.get_images()[0].get_array()
    assert data.shape == (57, 57)
    assert (data[:28, :28] == 0).all()  # ink (1) is drawn as 0, black in the gray colormap
    assert (data[28, :] == 0).all()  # the padding (1 in tile) is drawn black too: lines between white tiles
    assert ax.get_title() == "ink"


@pytest.fixture(scope="module")
def model2() -> VAE:
    torch.manual_seed(0)
    return VAE(VAEConfig(hidden=(32,), z_dim=2))


def test_sample_figure(model2):
    means, draws = model2.sample(16, torch.Generator().manual_seed(0), binary=True)
    fig = sample_figure(means, draws, nrow=4, title="samples")
    assert len(fig.axes) == 2
    assert fig.axes[0].get_images()[0].get_array().shape == (4 * 29 - 1, 4 * 29 - 1)
    assert fig._suptitle.get_text() == "samples"
    fig.canvas.draw()


def test_elbo_curves():
    ax = elbo_curves([1, 2, 3], [-190.0, -180.0, -170.0], [-186.0, -177.0, -168.0], label="z=2")
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["train z=2", "validation z=2"]
    np.testing.assert_array_equal(lines[0].get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(lines[0].get_ydata(), [-190.0, -180.0, -170.0])
    np.testing.assert_array_equal(lines[1].get_ydata(), [-186.0, -177.0, -168.0])
    _, ax2 = plt.subplots()
    assert elbo_curves([1], [-150.0], [None], ax=ax2) is ax2
    assert [line.get_label() for line in ax2.get_lines()] == ["train"]
    ax.figure.canvas.draw()


def test_manifold(model2):
    ax = manifold(model2, n=5)
    image = ax.get_images()[0].get_array()
    assert image.shape == (5 * 29 - 1, 5 * 29 - 1)
    tiles = image[:28, :28]
    assert 0 < tiles.min() and tiles.max() < 1  # 1 - sigmoid(logits): strictly inside (0, 1)
    assert (image[28, :] == 0).all()
    ax.figure.canvas.draw()


def test_manifold_needs_two_latent_dims():
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="z_dim=4"):
        manifold(VAE(VAEConfig(hidden=(32,), z_dim=4)))


def test_latent_scatter(model2):
    x = torch.bernoulli(torch.full((40, 784), 0.3), generator=torch.Generator().manual_seed(0))
    mu = model2.encoder(x)[0]
    ax = latent_scatter(mu, torch.arange(40) % 10)
    offsets = ax.collections[0].get_offsets()
    np.testing.assert_allclose(offsets, mu.detach().numpy(), rtol=1e-6)
    assert len(ax.figure.axes) == 2  # the colorbar
    ax.figure.canvas.draw()
    ax = latent_scatter(mu)
    assert len(ax.figure.axes) == 1 and ax.get_xlabel() == "$\\mu_1$"
    ax.figure.canvas.draw()


def test_reconstructions(model2):
    x = torch.bernoulli(torch.full((8, 784), 0.3), generator=torch.Generator().manual_seed(0))
    model2.train()
    fig = reconstructions(model2, x, nrow=4)
    assert model2.training  # the mode is restored
    left, right = (ax.get_images()[0].get_array() for ax in fig.axes)
    assert left.shape == right.shape == (2 * 29 - 1, 4 * 29 - 1)
    np.testing.assert_array_equal(left[:28, :28], 1 - x[0].reshape(28, 28).numpy())
    expected = torch.sigmoid(model2.decoder(model2.encoder(x[:1])[0]))  # decoded at the posterior mean, no noise
    np.testing.assert_allclose(right[:28, :28], 1 - expected.detach().reshape(28, 28).numpy(), atol=1e-6)
    fig.canvas.draw()


def test_iw_curve():
    ax = iw_curve([1, 10, 100], [-100.0, -98.0, -97.5], [0.5, 0.4, 0.3])
    line = ax.get_lines()[0]
    np.testing.assert_array_equal(line.get_xdata(), [1, 10, 100])
    np.testing.assert_array_equal(line.get_ydata(), [-100.0, -98.0, -97.5])
    assert ax.get_xscale() == "log"
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].min() == pytest.approx(-101.0) and band[:, 1].max() == pytest.approx(-96.9)
    with pytest.raises(ValueError):
        iw_curve([1, 10], [-100.0], [0.5, 0.4])
    ax.figure.canvas.draw()


def test_prior_samples_over_posterior():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(300, 2, generator=gen, dtype=torch.float64)
    log_w = -0.5 * ((z - 1.0) / 0.2).pow(2).sum(-1)  # weights peaked at (1, 1)
    mean, cov = torch.ones(2, dtype=torch.float64), 0.04 * torch.eye(2, dtype=torch.float64)
    ax = prior_samples_over_posterior(z, log_w, mean, cov)
    scatter = ax.collections[0]
    shares = scatter.get_array()
    assert len(shares) == 300 and shares.max() <= 1.0 and shares.min() >= 1e-6
    drawn = scatter.get_offsets()
    heaviest = np.asarray(drawn[-1])  # drawn last, on top
    np.testing.assert_allclose(heaviest, z[log_w.argmax()].numpy())
    rings = ax.patches
    assert len(rings) == 5  # the prior's two circles, the posterior's three ellipses
    assert rings[1].center == (0.0, 0.0) and (rings[1].width, rings[1].height) == pytest.approx((4.0, 4.0))
    assert rings[2].center == (1.0, 1.0) and (rings[2].width, rings[2].height) == pytest.approx((0.4, 0.4))
    ax.figure.canvas.draw()


def test_gaussian_ellipse_axes_follow_the_covariance():
    _, ax = plt.subplots()
    cov = torch.tensor([[4.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    patch = gaussian_ellipse(ax, torch.tensor([1.0, -1.0]), cov, n_std=2.0)
    assert patch.center == (1.0, -1.0)
    assert (patch.width, patch.height) == pytest.approx((8.0, 4.0))  # 2 n_std sd along the major, then minor axis
    assert patch.angle % 180 == pytest.approx(0.0, abs=1e-9)
    tilted = gaussian_ellipse(ax, torch.zeros(2), torch.tensor([[1.0, 0.8], [0.8, 1.0]]))
    assert tilted.angle % 180 == pytest.approx(45.0) and tilted.width > tilted.height


def test_posterior_vs_diagonal_draws_three_gaussians_at_two_levels():
    _, ax = plt.subplots()
    posterior_vs_diagonal(ax, torch.tensor([[1.0, 0.8], [0.8, 1.0]]), title="t")
    assert len(ax.patches) == 6 and ax.get_title() == "t"
    labels = [p.get_label() for p in ax.patches if not p.get_label().startswith("_")]
    assert len(labels) == 3 and any("best diagonal" in label for label in labels)
    # the best diagonal q (dashed) is narrower than the marginal-variance one (dotted): 1 / Lambda_ii < Sigma_ii
    widths = {p.get_linestyle(): p.width for p in ax.patches[::2]}
    assert widths["--"] < widths[":"]


def test_reparameterization_graphs_has_both_panels_and_the_noise_node():
    fig = reparameterization_graphs()
    top, bottom = fig.axes
    top_texts = [t.get_text() for t in top.texts]
    bottom_texts = [t.get_text() for t in bottom.texts]
    assert any("sim" in t for t in top_texts) and not any("varepsilon" in t for t in top_texts)
    assert any("varepsilon \\sim" in t for t in bottom_texts)
    # gradient arrows: one on top (stopped at z), three below (back to phi)
    red = "#c0392b"
    count = [
        sum(
            1
            for c in ax.texts
            if getattr(c, "arrow_patch", None)
            and c.arrow_patch.get_edgecolor() is not None
            and matplotlib.colors.to_hex(c.arrow_patch.get_edgecolor()) == red
        )
        for ax in (top, bottom)
    ]
    assert count == [1, 3]
