"""The IWAE training objective (losses.iw_objective) and the fit options around it: keep_best and KL warm-up."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import binary64, float64_vae, gen
from torch.distributions import Bernoulli, Independent, Normal

from vae_core import losses
from vae_core.model import VAE, VAEConfig
from vae_core.train import TrainConfig, fit, kl_weight

F64 = torch.float64

pytestmark = pytest.mark.usefixtures("one_thread")


def test_k_one_reconstruction_is_the_elbo_s_and_the_bound_equals_the_elbo_in_expectation() -> None:
    model = float64_vae(x_dim=12, hidden=(8,), z_dim=2)
    x = binary64(1, 12, seed=1).expand(20000, 12)
    with torch.no_grad():
        bound, terms = losses.iw_objective(*model.forward_k(x, 1, gen(2)), x)
        elbo = losses.elbo(*model(x, gen(2)), x)
    torch.testing.assert_close(terms.reconstruction, elbo.reconstruction, rtol=0, atol=0)  # the same z
    torch.testing.assert_close(terms.elbo, elbo.elbo, rtol=0, atol=0)
    se = math.sqrt(bound.var().item() / bound.numel())
    assert abs(bound.mean().item() - elbo.elbo.mean().item()) < 4 * se


def test_gradient_matches_a_direct_implementation_with_torch_distributions() -> None:
    model, x, k = float64_vae(seed=3, x_dim=12, hidden=(8,), z_dim=2), binary64(5, 12, seed=4), 7
    eps = torch.randn((k, 5, 2), generator=gen(5), dtype=F64)
    losses.iw_objective(*model.forward_k(x, k, gen(5)), x)[0].sum().backward()
    ours = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    mu, logvar = model.encoder(x)
    std = torch.exp(0.5 * logvar)
    log_w = []
    for i in range(k):  # one importance sample at a time, densities from torch.distributions
        z = mu + std * eps[i]
        log_px = Independent(Bernoulli(logits=model.decoder(z)), 1).log_prob(x)
        log_pz = Independent(Normal(torch.zeros_like(z), torch.ones_like(z)), 1).log_prob(z)
        log_qz = Independent(Normal(mu, std), 1).log_prob(z)
        log_w.append(log_px + log_pz - log_qz)
    (torch.logsumexp(torch.stack(log_w), 0) - math.log(k)).sum().backward()
    for a, p in zip(ours, model.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad, rtol=1e-9, atol=1e-11)


def test_trained_iwae_bound_grows_with_k() -> None:
    torch.manual_seed(6)
    x = binary64(256, 12, seed=7).float()
    model = VAE(VAEConfig(x_dim=12, hidden=(16,), z_dim=2))
    fit(model, x, config=TrainConfig(epochs=30, batch_size=64, lr=1e-2, objective="iwae", k=5), progress=False)
    with torch.no_grad():
        xs = x.repeat(20, 1)
        bounds = [losses.iw_objective(*model.forward_k(xs, k, gen(8)), xs)[0].mean().item() for k in (1, 5, 50)]
    assert bounds[0] < bounds[1] < bounds[2]


def test_the_iwae_objective_trains_and_records_its_bound() -> None:
    torch.manual_seed(9)
    x = binary64(256, 12, seed=10).float()
    model = VAE(VAEConfig(x_dim=12, hidden=(16,), z_dim=2))
    history = fit(model, x, config=TrainConfig(epochs=4, batch_size=64, lr=1e-2, objective="iwae", k=5), progress=False)
    bounds = history.column("train_objective")
    assert bounds[-1] > bounds[0]
    gaps = [b - e for b, e in zip(bounds, history.column("train_elbo"), strict=True)]
    assert sum(gaps) / len(gaps) > 0  # the k = 5 bound lies above the one-sample ELBO on average


@pytest.mark.parametrize(
    "kwargs",
    [
        {"objective": "vae"},
        {"objective": "elbo", "k": 5},
        {"objective": "iwae", "k": 0},
        {"kl_warmup_epochs": -1},
        {"objective": "iwae", "k": 5, "beta": 0.5},
        {"objective": "iwae", "k": 5, "kl_warmup_epochs": 2},
    ],
)
def test_bad_objective_settings_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        TrainConfig(**kwargs)


def test_kl_warmup_ramps_beta_linearly_then_holds() -> None:
    config = TrainConfig(beta=1.0, kl_warmup_epochs=2)
    assert [kl_weight(config, s, 10) for s in (0, 5, 10, 15, 20, 35)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert kl_weight(TrainConfig(beta=0.5), 0, 10) == 0.5


def test_keep_best_returns_the_best_validation_epoch_and_needs_validation_data() -> None:
    torch.manual_seed(11)
    x = binary64(320, 12, seed=12).float()
    train_x, valid_x = x[:64], x[64:]  # a small training set that overfits at a high learning rate
    model = VAE(VAEConfig(x_dim=12, hidden=(64,), z_dim=4))
    config = TrainConfig(epochs=40, batch_size=16, lr=1e-2, keep_best=True, schedule="constant")
    history = fit(model, train_x, valid_x, config, progress=False)
    valid = history.column("valid_elbo")
    best = max(range(len(valid)), key=valid.__getitem__)
    assert best < len(valid) - 1, "the run should overfit, so the best epoch is not the last"
    from vae_core.evaluate import evaluate_elbo

    again = evaluate_elbo(model, valid_x, config.eval_batch_size, seed=config.seed + best + 1).elbo
    assert again == pytest.approx(valid[best], abs=1e-6)
    with pytest.raises(ValueError, match="validation split"):
        fit(model, train_x, None, config, progress=False)


def test_keep_best_survives_a_resume(tmp_path) -> None:
    x = binary64(320, 12, seed=13).float()
    config = TrainConfig(epochs=12, batch_size=16, lr=1e-2, keep_best=True, schedule="constant")

    def run(epochs: int) -> VAE:
        torch.manual_seed(14)
        model = VAE(VAEConfig(x_dim=12, hidden=(64,), z_dim=4))
        fit(
            model,
            x[:64],
            x[64:],
            config,
            checkpoint=tmp_path / "c.pt",
            resume=True,
            progress=False,
            hook=lambda e, m, h: None if e < epochs else (_ for _ in ()).throw(KeyboardInterrupt),
        )
        return model

    with pytest.raises(KeyboardInterrupt):
        run(5)
    resumed = run(99)
    (tmp_path / "c.pt").unlink()
    whole = run(99)
    for a, b in zip(resumed.state_dict().values(), whole.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_the_history_records_the_elbo_itself_during_kl_warmup() -> None:
    torch.manual_seed(15)
    x = binary64(128, 12, seed=16).float()
    model = VAE(VAEConfig(x_dim=12, hidden=(16,), z_dim=2))
    history = fit(model, x, config=TrainConfig(epochs=2, batch_size=32, kl_warmup_epochs=2), progress=False)
    for record in history.records:
        assert record.train.elbo == pytest.approx(record.train.reconstruction - record.train.kl, abs=1e-4)
        assert record.train_objective > record.train.elbo  # the down-weighted KL makes the trained bound larger
