"""vae_core.diagram: the widths it reads are the model's, and the picture labels every one of them."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest
from matplotlib.patches import FancyBboxPatch
from torch import nn

from vae_core.diagram import layer_widths, model_diagram
from vae_core.model import VAE, VAEConfig

pytestmark = pytest.mark.usefixtures("close_figures")


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


def test_plate_diagram_draws_the_graphical_model():
    from matplotlib.patches import Circle
    from matplotlib.text import Annotation

    from vae_core.diagram import plate_diagram

    ax = plate_diagram().axes[0]
    labels = {t.get_text(): t.get_position() for t in ax.texts if t.get_text()}
    for label in ("$z$", "$x$", "$N$", "$\\theta$", "$\\phi$", "$q_\\phi(z \\mid x)$", "$p_\\theta(x \\mid z)$"):
        assert label in labels, label
    # z is an open circle above the shaded x, each labelled at its centre, both inside the plate
    circles = {c.center: c for c in ax.patches if isinstance(c, Circle)}
    z, x = circles[labels["$z$"]], circles[labels["$x$"]]
    assert len(circles) == 2 and z.center[1] > x.center[1]
    assert z.get_facecolor()[:3] == (1.0, 1.0, 1.0) and max(x.get_facecolor()[:3]) < 0.9
    (plate,) = [p for p in ax.patches if isinstance(p, FancyBboxPatch)]
    inside = plate.get_path().transformed(plate.get_patch_transform())
    assert inside.contains_point(z.center) and inside.contains_point(x.center)
    assert inside.contains_point(labels["$N$"])
    assert not inside.contains_point(labels["$\\theta$"]) and not inside.contains_point(labels["$\\phi$"])
    # arrows: z -> x and theta -> x solid, into x; x -> z dashed (inference), ending at z
    arrows = [(a.xy, a.xyann, a.arrow_patch.get_linestyle()) for a in ax.texts if isinstance(a, Annotation)]

    def near(point, circle):
        return (point[0] - circle.center[0]) ** 2 + (point[1] - circle.center[1]) ** 2 <= (1.01 * circle.radius) ** 2

    solid = [(head, tail) for head, tail, style in arrows if style == "solid"]
    dashed = [(head, tail) for head, tail, style in arrows if style == "--"]
    assert any(near(head, x) and near(tail, z) for head, tail in solid), "no solid arrow z -> x"
    assert sum(near(head, x) for head, _ in solid) == 2, "theta's arrow does not reach x"
    assert any(near(head, z) and near(tail, x) for head, tail in dashed), "no dashed arrow x -> z"
