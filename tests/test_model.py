"""vae_core.model: shapes, sampling, config validation, the reparameterized sample, and `evaluating`."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import new_model

from vae_core import losses
from vae_core.model import VAE, Decoder, Encoder, VAEConfig, evaluating, mlp, reparameterize


@pytest.fixture
def model() -> VAE:
    return new_model()


@pytest.fixture
def x() -> torch.Tensor:
    return torch.bernoulli(torch.full((10, 784), 0.3), generator=torch.Generator().manual_seed(1))


def test_encoder_decoder_shapes(model, x):
    mu, logvar = model.encoder(x)
    assert mu.shape == logvar.shape == (10, 4)
    logits = model.decoder(mu)
    assert logits.shape == (10, 784)
    out, mu2, logvar2 = model(x)
    assert out.shape == (10, 784)
    assert torch.equal(mu, mu2) and torch.equal(logvar, logvar2)


def test_standalone_modules_and_mlp_layout():
    config = VAEConfig(x_dim=6, hidden=(5, 3), z_dim=2, activation="relu")
    enc, dec = Encoder(config), Decoder(config)
    assert [m.out_features for m in enc.net if isinstance(m, torch.nn.Linear)] == [5, 3, 4]
    assert [m.out_features for m in dec.net if isinstance(m, torch.nn.Linear)] == [3, 5, 6]
    net = mlp([3, 4, 2], "tanh")
    assert [type(m).__name__ for m in net] == ["Linear", "Tanh", "Linear"]  # no activation after the last layer


def test_sample_means_and_binary_draws(model):
    means = model.sample(50, torch.Generator().manual_seed(0))
    assert means.shape == (50, 784)
    assert ((means > 0) & (means < 1)).all()
    means2, draws = model.sample(50, torch.Generator().manual_seed(0), binary=True)
    assert torch.equal(means, means2)  # the same z for the same seed
    assert draws.shape == (50, 784)
    assert set(draws.unique().tolist()) == {0.0, 1.0}
    assert not means2.requires_grad


def test_sample_is_seeded(model):
    a = model.sample(8, torch.Generator().manual_seed(3))
    b = model.sample(8, torch.Generator().manual_seed(3))
    c = model.sample(8, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_reparameterize_moments():
    mu = torch.tensor([1.0, -2.0]).expand(200_000, 2)
    logvar = torch.log(torch.tensor([4.0, 0.25])).expand(200_000, 2)
    z = reparameterize(mu, logvar, torch.Generator().manual_seed(0))
    assert torch.allclose(z.mean(0), torch.tensor([1.0, -2.0]), atol=0.02)
    assert torch.allclose(z.std(0), torch.tensor([2.0, 0.5]), atol=0.02)


def test_reparameterize_with_given_noise_is_the_drawn_sample():
    """Given eps, z = mu + sigma * eps exactly: the sample that the generator's own draw of eps gives, and eps with
    leading sample dimensions gives one z per row."""
    mu, logvar = torch.tensor([[1.0, -2.0]]), torch.log(torch.tensor([[4.0, 0.25]]))
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(3))
    drawn = reparameterize(mu, logvar, torch.Generator().manual_seed(3))
    assert torch.equal(reparameterize(mu, logvar, eps=eps), drawn)
    assert torch.equal(reparameterize(mu, logvar, eps=torch.ones(3, 1, 2)), torch.tensor([[[3.0, -1.5]]] * 3))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"z_dim": 0}, "positive"),
        ({"x_dim": 0}, "positive"),
        ({"hidden": (64, 0)}, "positive"),
        ({"activation": "swish"}, "unknown activation 'swish'"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VAEConfig(**kwargs)


def test_config_round_trips_through_json():
    config = VAEConfig(x_dim=10, hidden=[7, 3], z_dim=2, activation="elu")
    assert config.hidden == (7, 3)  # lists become tuples
    d = json.loads(json.dumps(config.to_dict()))
    assert d == {"x_dim": 10, "hidden": [7, 3], "z_dim": 2, "activation": "elu"} | {
        "architecture": "mlp",
        "channels": [16, 32],
        "classes": 0,
    }
    assert VAEConfig(**d) == config


def test_default_config():
    assert VAE().config == VAEConfig(x_dim=784, hidden=(500, 500), z_dim=20, activation="tanh")


def test_detached_sample_cuts_encoder_gradient(model, x):
    """Control: decoding a detached z leaves the encoder without gradient (the gradient through the sample itself is
    tested in test_losses)."""
    mu, logvar = model.encoder(x)
    z = reparameterize(mu, logvar, torch.Generator().manual_seed(0)).detach()
    (-losses.bernoulli_log_likelihood(model.decoder(z), x).mean()).backward()
    assert all(p.grad is None for p in model.encoder.parameters())


@pytest.mark.parametrize("training", [True, False])
def test_evaluating_sets_eval_mode_and_restores_the_mode_even_on_error(training: bool) -> None:
    model = VAE(VAEConfig(x_dim=4, hidden=(3,), z_dim=2)).train(training)
    with evaluating(model) as inside:
        assert inside is model and not model.training
    assert model.training is training
    with pytest.raises(RuntimeError), evaluating(model):
        raise RuntimeError("boom")
    assert model.training is training
