"""Digit images as one grid: `tile` arranges them into an array, `show_grid` draws it, black ink on white.

The library's part of the figures: `python -m vae_core sample` draws its PNG with `show_grid`, and so do the book's
figures in `vae_core.plots`.
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from torch import Tensor


def tile(images: Tensor, nrow: int, side: int = 28, pad: int = 1) -> np.ndarray:
    """Arrange (N, side*side) images into one (rows*side, nrow*side) array with `pad` pixels between tiles."""
    squares = images.detach().float().cpu().reshape(-1, side, side).numpy()
    n = squares.shape[0]
    ncol = nrow
    nrows = -(-n // ncol)
    out = np.ones((nrows * (side + pad) - pad, ncol * (side + pad) - pad), dtype=np.float32)
    for i, img in enumerate(squares):
        r, c = divmod(i, ncol)
        out[r * (side + pad) : r * (side + pad) + side, c * (side + pad) : c * (side + pad) + side] = img
    return out


def show_grid(ax: Axes, images: Tensor, nrow: int = 8, title: str | None = None) -> Axes:
    """Draw a grid of images in [0, 1], black digits on white (1 = ink)."""
    ax.imshow(1.0 - tile(images, nrow), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax
