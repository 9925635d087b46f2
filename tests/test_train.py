"""vae_core.train: the loss falls, runs are bit-reproducible, resume equals an uninterrupted run, NaN is caught."""

from __future__ import annotations

import math
from dataclasses import asdict

import pytest
import torch

from vae_core.checkpoint import load_checkpoint
from vae_core.model import VAE, VAEConfig
from vae_core.train import EpochRecord, History, TrainConfig, TrainingError, fit, learning_rate

MODEL = VAEConfig(hidden=(64,), z_dim=4)


def binary_data(n: int, seed: int) -> torch.Tensor:
    """Noisy copies of four random binary prototypes: structured enough that a VAE can learn something fast."""
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.bernoulli(torch.full((4, 784), 0.3), generator=g)
    x = prototypes[torch.randint(0, 4, (n,), generator=g)]
    flip = torch.bernoulli(torch.full((n, 784), 0.05), generator=g)
    return (x + flip) % 2


@pytest.fixture(scope="module")
def data() -> torch.Tensor:
    return binary_data(320, 0)


@pytest.fixture
def train_x(data) -> torch.Tensor:
    return data[:256]


@pytest.fixture
def valid_x(data) -> torch.Tensor:
    return data[256:]


pytestmark = pytest.mark.usefixtures("one_thread")


def new_model(seed: int = 0, config: VAEConfig = MODEL) -> VAE:
    torch.manual_seed(seed)
    return VAE(config)


def without_seconds(history: History) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history.to_list()]


def assert_same_weights(a: VAE, b: VAE) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_loss_falls(train_x, valid_x):
    config = TrainConfig(epochs=5, batch_size=64, lr=3e-3, seed=0)
    history = fit(new_model(), train_x, valid_x, config, progress=False)
    assert history.column("epoch") == [1, 2, 3, 4, 5]
    train = history.column("train_elbo")
    assert train[-1] > train[0] + 50  # nats per example: a clear improvement, not noise
    assert history.column("valid_elbo")[-1] > history.column("valid_elbo")[0] + 50
    for r in history.records:
        assert r.train_elbo < 0 and r.train_kl >= 0
        assert r.train_elbo == pytest.approx(r.train_reconstruction - r.train_kl, rel=1e-6)
        assert r.valid_elbo == pytest.approx(r.valid_reconstruction - r.valid_kl, rel=1e-6)
        assert r.seconds > 0
    # The recorded lr is the cosine schedule at each epoch's first step (4 steps per epoch, 20 in all).
    assert history.column("lr") == [learning_rate(config, 4 * e, 20) for e in range(5)]
    assert history.column("lr")[0] == 3e-3


def test_identical_runs_are_bit_identical(train_x, valid_x):
    config = TrainConfig(epochs=2, batch_size=64, lr=3e-3, seed=7)
    a, b = new_model(), new_model()
    ha = fit(a, train_x, valid_x, config, progress=False)
    hb = fit(b, train_x, valid_x, config, progress=False)
    assert without_seconds(ha) == without_seconds(hb)
    assert_same_weights(a, b)
    # A different training seed gives a different run.
    c = new_model()
    hc = fit(c, train_x, valid_x, TrainConfig(epochs=2, batch_size=64, lr=3e-3, seed=8), progress=False)
    assert without_seconds(hc) != without_seconds(ha)


class Interrupt(Exception):
    pass


def test_resume_equals_uninterrupted_run(tmp_path, train_x, valid_x):
    config = TrainConfig(epochs=4, batch_size=64, lr=3e-3, seed=3)
    full = new_model()
    h_full = fit(full, train_x, valid_x, config, checkpoint=tmp_path / "full.pt", progress=False)

    def stop_after_two(epoch: int, model: VAE, history: History) -> None:
        if epoch == 2:
            raise Interrupt

    part = tmp_path / "part.pt"
    with pytest.raises(Interrupt):
        fit(new_model(), train_x, valid_x, config, checkpoint=part, hook=stop_after_two, progress=False)
    assert load_checkpoint(part)["epoch"] == 2

    resumed = new_model(seed=123)  # fresh, differently initialised weights: all state must come from the file
    calls: list[int] = []
    h_resumed = fit(
        resumed,
        train_x,
        valid_x,
        config,
        checkpoint=part,
        resume=True,
        hook=lambda e, m, h: calls.append(e),
        progress=False,
    )
    assert calls == [3, 4]  # only the remaining epochs run
    assert without_seconds(h_resumed) == without_seconds(h_full)
    assert_same_weights(resumed, full)
    state = load_checkpoint(part)
    assert state["epoch"] == 4 and len(state["history"]) == 4


def test_resume_without_checkpoint_file_starts_fresh(tmp_path, train_x):
    config = TrainConfig(epochs=1, batch_size=64, seed=0)
    a, b = new_model(), new_model()
    ha = fit(a, train_x, None, config, progress=False)
    hb = fit(b, train_x, None, config, checkpoint=tmp_path / "none.pt", resume=True, progress=False)
    assert without_seconds(ha) == without_seconds(hb)
    assert ha.records[0].valid_elbo is None
    assert (tmp_path / "none.pt").is_file()


def test_resume_with_other_settings_is_refused(tmp_path, train_x):
    path = tmp_path / "c.pt"
    fit(new_model(), train_x, None, TrainConfig(epochs=1, batch_size=64), checkpoint=path, progress=False)
    with pytest.raises(TrainingError, match="other settings"):
        fit(new_model(), train_x, None, TrainConfig(epochs=2, batch_size=64), checkpoint=path, resume=True)
    other = VAEConfig(hidden=(32,), z_dim=4)
    with pytest.raises(TrainingError, match="other settings"):
        fit(new_model(config=other), train_x, None, TrainConfig(epochs=1, batch_size=64), checkpoint=path, resume=True)


def test_hook_sees_each_epoch(train_x):
    seen: list[tuple[int, int, bool]] = []

    def hook(epoch: int, model: VAE, history: History) -> None:
        seen.append((epoch, len(history.records), model.training))

    fit(new_model(), train_x, None, TrainConfig(epochs=3, batch_size=128), hook=hook, progress=False)
    assert [s[:2] for s in seen] == [(1, 1), (2, 2), (3, 3)]


def test_nan_data_raises_and_keeps_last_good_checkpoint(tmp_path, train_x):
    path = tmp_path / "checkpoint.pt"
    config = TrainConfig(epochs=3, batch_size=64, seed=0)
    poisoned = train_x.clone()

    def poison(epoch: int, model: VAE, history: History) -> None:
        if epoch == 1:
            poisoned[:] = float("nan")  # the data goes bad after the first epoch

    model = new_model()
    with pytest.raises(TrainingError, match=r"at epoch 2, step 0") as err:
        fit(model, poisoned, None, config, hook=poison, checkpoint=path, progress=False)
    assert "nan" in str(err.value)
    state = load_checkpoint(path)
    assert state["epoch"] == 1 and len(state["history"]) == 1
    assert math.isfinite(state["history"][0]["train_elbo"])
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left behind


def test_nan_error_names_the_step(train_x):
    """One NaN row: the error names the epoch and the step whose minibatch holds it (the first draw is the shuffle)."""
    config = TrainConfig(epochs=1, batch_size=32, seed=4)
    order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(config.seed))
    row = int(order[5 * 32 + 3])  # lands in step 5 of epoch 1
    poisoned = train_x.clone()
    poisoned[row, 10] = float("nan")
    with pytest.raises(TrainingError, match=r"at epoch 1, step 5;"):
        fit(new_model(), poisoned, None, config, progress=False)


def test_data_on_another_device_is_refused(train_x):
    with pytest.raises(ValueError, match="must live on the model's device"):
        fit(new_model(), torch.empty(8, 784, device="meta"), None, TrainConfig(epochs=1), progress=False)
    with pytest.raises(ValueError, match="must live on the model's device"):
        fit(new_model(), train_x, torch.empty(8, 784, device="meta"), TrainConfig(epochs=1), progress=False)


def test_huge_learning_rate_raises_training_error(train_x):
    config = TrainConfig(epochs=3, batch_size=32, lr=1e6, schedule="constant")
    with pytest.raises(TrainingError, match=r"at epoch \d+, step \d+"):
        fit(new_model(), train_x, None, config, progress=False)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"epochs": -1},
        {"batch_size": 0},
        {"eval_batch_size": 0},
        {"lr": 0.0},
        {"lr": -1e-3},
        {"lr": float("nan")},
        {"lr": float("inf")},
        {"schedule": "linear"},
        {"final_lr_fraction": -0.1},
        {"final_lr_fraction": 1.5},
        {"beta": -1.0},
        {"beta": float("nan")},
        {"beta": float("inf")},
    ],
)
def test_train_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        TrainConfig(**kwargs)


def test_learning_rate_schedule():
    cosine = TrainConfig(lr=1e-3, final_lr_fraction=0.1)
    assert learning_rate(cosine, 0, 100) == pytest.approx(1e-3, rel=1e-12)
    assert learning_rate(cosine, 50, 100) == pytest.approx(0.55e-3, rel=1e-12)
    assert learning_rate(cosine, 100, 100) == pytest.approx(1e-4, rel=1e-12)
    assert learning_rate(cosine, 150, 100) == pytest.approx(1e-4, rel=1e-12)  # clamped at the floor
    rates = [learning_rate(cosine, s, 100) for s in range(101)]
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))
    assert learning_rate(TrainConfig(lr=2e-3), 100, 100) == pytest.approx(0.0, abs=1e-18)
    assert learning_rate(TrainConfig(lr=1e-3, schedule="constant"), 77, 100) == 1e-3
    assert learning_rate(cosine, 0, 0) == 1e-3


def test_dynamic_binarization_trains_deterministically(train_x, valid_x):
    g = torch.Generator().manual_seed(5)
    grey = (train_x * 0.8 + 0.1 * torch.rand(train_x.shape, generator=g)).clamp(0, 1)
    grey_valid = (valid_x * 0.8 + 0.1).clamp(0, 1)
    assert ((grey > 0) & (grey < 1)).any()
    config = TrainConfig(epochs=3, batch_size=64, lr=3e-3, seed=1)
    a, b = new_model(), new_model()
    ha = fit(a, grey, grey_valid, config, dynamic=True, progress=False)
    hb = fit(b, grey, grey_valid, config, dynamic=True, progress=False)
    assert without_seconds(ha) == without_seconds(hb)
    assert_same_weights(a, b)
    assert ha.records[-1].train_elbo > ha.records[0].train_elbo
    assert all(math.isfinite(r.valid_elbo) for r in ha.records)
    # Binarizing afresh differs from training on the grey values directly.
    hc = fit(new_model(), grey, grey_valid, config, dynamic=False, progress=False)
    assert hc.column("train_elbo") != ha.column("train_elbo")


def test_history_round_trip():
    rec = EpochRecord(1, -100.0, -90.0, 10.0, None, None, None, seconds=0.5, lr=1e-3)
    h = History([rec])
    assert History.from_list(h.to_list()) == h
    assert h.to_list() == [asdict(rec)]
    assert h.column("train_kl") == [10.0]


def test_zero_epochs_returns_empty_history(train_x):
    model = new_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    history = fit(model, train_x, None, TrainConfig(epochs=0), progress=False)
    assert history.records == []
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
