"""vae_core.diagram: the widths it reads are the model's, and the picture labels every one of them."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
from matplotlib.patches import FancyBboxPatch
from torch import nn

from vae_core.diagram import layer_widths, model_diagram
from vae_core.model import VAE, VAEConfig


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_layer_widths_follow_the_config():
    model = VAE(VAEConfig(x_dim=6, hidden=(5, 3), z_dim=2))
    assert layer_widths(model.encoder.net) == [6, 5, 3, 4]
    assert layer_widths(model.decoder.net) == [2, 3, 5, 6]


def test_layer_widths_needs_a_linear_layer():
    with pytest.raises(ValueError, match="no linear layer"):
        layer_widths(nn.Sequential(nn.ELU()))


def test_diagram_labels_every_width_and_scales_the_bars():
    model = VAE(VAEConfig(x_dim=30, hidden=(12,), z_dim=3, activation="elu"))
    fig = model_diagram(model)
    text = " ".join(t.get_text() for t in fig.axes[0].texts)
    for label in ("30 pixels", "12", "$\\mu$ (3)", "$\\log\\sigma^2$ (3)", "$z$ (3)", "linear\nELU", ", 30"):
        assert label in text, label
    # x, hidden, mu, log-variance, z, hidden, output: one bar per layer, as tall as its units (the 3s at the minimum)
    heights = [p.get_height() for p in fig.axes[0].patches if isinstance(p, FancyBboxPatch)]
    assert len(heights) == 7
    assert heights[0] == pytest.approx(heights[-1]) and heights[1] == pytest.approx(heights[0] * 12 / 30)
    assert max(heights[2:5]) < heights[1]
