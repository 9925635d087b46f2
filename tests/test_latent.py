"""vae_core.latent: interpolations, traversals and the ELBO of binarized grey images."""

from __future__ import annotations

import pytest
import torch
from helpers import new_model

from vae_core import losses
from vae_core.latent import binarized_elbo, interpolate, traverse
from vae_core.model import VAE, VAEConfig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> VAE:
    return new_model(config=VAEConfig(hidden=(32,), z_dim=3))


def test_interpolate_ends_at_the_two_images(model):
    g = torch.Generator().manual_seed(0)
    x = torch.bernoulli(torch.full((2, 784), 0.4), generator=g)
    latent, blend = interpolate(model, x[0], x[1], n=5)
    assert latent.shape == blend.shape == (5, 784)
    torch.testing.assert_close(blend[0], x[0])
    torch.testing.assert_close(blend[-1], x[1])
    torch.testing.assert_close(blend[2], 0.5 * (x[0] + x[1]))
    with torch.no_grad():
        mu = model.encoder(x)[0]
        ends = torch.sigmoid(model.decoder(torch.stack([mu[0], mu.mean(0), mu[1]])))
    torch.testing.assert_close(latent[[0, 2, 4]], ends)


def test_traverse_moves_one_coordinate(model):
    z = torch.tensor([0.3, -1.0, 2.0])
    values = torch.tensor([-2.0, 0.3, 2.0])
    out = traverse(model, z, 0, values)
    with torch.no_grad():
        expected = torch.sigmoid(model.decoder(torch.tensor([[-2.0, -1.0, 2.0], [0.3, -1.0, 2.0], [2.0, -1.0, 2.0]])))
    torch.testing.assert_close(out, expected)
    assert z.tolist() == pytest.approx([0.3, -1.0, 2.0])  # the code itself is not changed


def test_binarized_elbo_of_a_binary_image_is_its_mean_elbo(model):
    image = torch.bernoulli(torch.full((1, 784), 0.3), generator=torch.Generator().manual_seed(2))
    got = binarized_elbo(model, image, draws=400, seed=1)
    with torch.no_grad():
        images = image.expand(4000, -1)
        samples = losses.elbo(*model(images, torch.Generator().manual_seed(7)), images).elbo
    se = samples.std() / 4000**0.5 + samples.std() / 400**0.5
    assert abs(got.item() - samples.mean().item()) < 3 * se
    rows = torch.cat([image, torch.full((1, 784), 0.5)])
    assert binarized_elbo(model, rows, draws=8).shape == (2,)
