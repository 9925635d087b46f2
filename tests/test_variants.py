"""The convolutional and the label-conditional VAE (VAEConfig.architecture and .classes) through the package: shapes,
gradients and label checks of the networks, labels that carry information, training with labels (fit, resume,
CapturedEpoch), checkpoints that record and enforce the kind, and the command line's --architecture, --classes and
--labels.

The labelled data is synthetic: ten fixed binary patterns, one per class, with a few pixels flipped, so the label
determines the image. The command-line tests use test_cli's fake MNIST mirror (`world`), whose `mnist` has labels.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import test_cli
import torch
from helpers import assert_same_weights, gen, new_model, without_seconds
from test_cli import TRAIN, fails
from test_cuda_graph import FakeGraphs

from vae_core import cli, data, losses
from vae_core.checkpoint import CheckpointError, describe, load_checkpoint, load_model, save_checkpoint, save_shareable
from vae_core.cuda_graph import CapturedEpoch
from vae_core.data import DataError, Split
from vae_core.evaluate import active_units, evaluate_elbo, iw_log_likelihood, posterior_means, sample_log_weights
from vae_core.model import VAE, ConvDecoder, ConvEncoder, VAEConfig, reparameterize
from vae_core.train import History, TrainConfig, TrainState, fit, train_epoch

world = test_cli.world  # the fake data mirror and cache, with one trained unconditional MLP run in world / "run"

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = 10
CONV = VAEConfig(z_dim=3, architecture="conv", channels=(4, 8))
CONFIGS = {
    "conv": CONV,
    "mlp-conditional": VAEConfig(hidden=(16,), z_dim=3, classes=CLASSES),
    "conv-conditional": replace(CONV, classes=CLASSES),
}
CONDITIONAL = {"mlp": CONFIGS["mlp-conditional"], "conv": CONFIGS["conv-conditional"]}
PATTERNS = torch.bernoulli(torch.full((CLASSES, 784), 0.3), generator=gen(100))


def labelled(n: int, seed: int, flip: float = 0.02, dynamic: bool = False) -> Split:
    """n examples cycling through the ten classes: the class's fixed binary pattern with each pixel flipped with
    probability `flip` (as grey values 0.1 / 0.9 for a dynamic split, binarized afresh each batch)."""
    labels = torch.arange(n) % CLASSES
    x = (PATTERNS[labels] + torch.bernoulli(torch.full((n, 784), flip), generator=gen(seed))) % 2
    return Split(x * 0.8 + 0.1 if dynamic else x, labels, dynamic)


def images(n: int = 10, seed: int = 1) -> torch.Tensor:
    return torch.bernoulli(torch.full((n, 784), 0.3), generator=gen(seed))


def wrong(labels: torch.Tensor) -> torch.Tensor:
    """Every label replaced by another class."""
    return (labels + 1) % CLASSES


# ---------------------------------------------------------------- the networks


@pytest.mark.parametrize("channels", [(4,), (4, 8)], ids=["one-conv", "two-convs"])
def test_conv_shapes_and_layout(channels):
    model = new_model(config=replace(CONV, channels=channels))
    assert isinstance(model.encoder, ConvEncoder) and isinstance(model.decoder, ConvDecoder)
    convs = [m.out_channels for m in model.encoder.conv if isinstance(m, torch.nn.Conv2d)]
    deconvs = [m.out_channels for m in model.decoder.deconv if isinstance(m, torch.nn.ConvTranspose2d)]
    assert convs == list(channels) and deconvs == [*reversed(channels[:-1]), 1]  # the decoder mirrors the encoder
    assert model.decoder.shape == (channels[-1], 28 >> len(channels), 28 >> len(channels))
    x = images()
    mu, logvar = model.encoder(x)
    assert mu.shape == logvar.shape == (10, 3)
    assert model.decoder(mu).shape == (10, 784)
    z = torch.randn(5, 10, 3, generator=gen(0))
    logits = model.decoder(z)
    assert logits.shape == (5, 10, 784)
    torch.testing.assert_close(logits[2], model.decoder(z[2]))  # leading sample dims: one decoding per row
    out, mu2, logvar2 = model(x, gen(0))
    assert out.shape == (10, 784) and torch.equal(mu, mu2) and torch.equal(logvar, logvar2)
    logits_k, z_k, _, _ = model.forward_k(x, 4, gen(0))
    assert logits_k.shape == (4, 10, 784) and z_k.shape == (4, 10, 3)
    means, draws = model.sample(6, gen(0), binary=True)
    assert means.shape == draws.shape == (6, 784)
    assert ((means > 0) & (means < 1)).all() and set(draws.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("name", CONFIGS)
def test_every_parameter_gets_a_finite_nonzero_gradient(name):
    model = new_model(config=CONFIGS[name])
    y = torch.arange(CLASSES) if model.conditional else None  # every class once, so every label weight is used
    x = images()
    losses.loss(*model(x, gen(0), y), x).backward()
    for key, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), key
        assert p.grad.abs().sum() > 0, key


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"architecture": "conv", "x_dim": 100}, "x_dim 784, got 100"),
        ({"architecture": "conv", "channels": ()}, "one or two positive sizes"),
        ({"architecture": "conv", "channels": (4, 8, 16)}, "one or two positive sizes"),
        ({"architecture": "conv", "channels": (4, 0)}, "one or two positive sizes"),
        ({"architecture": "resnet"}, "unknown architecture 'resnet'; choose one of mlp, conv"),
        ({"classes": -1}, "classes must be 0 .* got -1"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VAEConfig(**kwargs)


def test_config_checks_that_only_apply_to_conv():
    """Control: an MLP takes any x_dim and ignores channels; the defaults build a conv VAE."""
    assert VAEConfig(x_dim=100, channels=(4, 8, 16)).architecture == "mlp"
    assert VAEConfig(architecture="conv").channels == (16, 32)


def test_channels_last_decoder_path_is_the_plain_computation():
    """The decoder hands its transposed convolutions a channels_last feature map; the same layers on a contiguous
    one give the same logits (float32 tolerance; float64 to 1e-12)."""
    model = new_model(config=CONFIGS["conv-conditional"])
    z, y = torch.randn(4, 6, 3, generator=gen(2)), torch.tensor([0, 3, 9, 3, 1, 5])
    seen: list[torch.Tensor] = []
    model.decoder.deconv.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    for dtype, tol in ((torch.float32, 1e-5), (torch.float64, 1e-12)):
        model.to(dtype)
        seen.clear()
        logits = model.decoder(z.to(dtype), y)
        h = seen[0]  # control: the path under test really is channels_last
        assert h.is_contiguous(memory_format=torch.channels_last) and not h.is_contiguous()
        code = torch.nn.functional.one_hot(y, CLASSES).to(dtype).expand(4, 6, CLASSES)
        plain = model.decoder.dense(torch.cat([z.to(dtype), code], -1)).reshape(-1, 8, 7, 7).contiguous()
        expected = model.decoder.deconv(plain).reshape(4, 6, 784)
        torch.testing.assert_close(logits, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("arch", CONDITIONAL)
def test_conditional_shapes_and_labels_change_the_output(arch):
    model = new_model(config=CONDITIONAL[arch])
    x, y = images(), torch.arange(10) % CLASSES
    mu, logvar = model.encoder(x, y)
    assert mu.shape == logvar.shape == (10, 3)
    z = torch.randn(5, 10, 3, generator=gen(0))
    logits = model.decoder(z, y)
    assert logits.shape == (5, 10, 784)
    torch.testing.assert_close(logits[1], model.decoder(z[1], y))
    out, _, _ = model(x, gen(0), y)
    assert out.shape == (10, 784)
    torch.testing.assert_close(out, model.decoder(reparameterize(mu, logvar, gen(0)), y))  # y reaches both networks
    logits_k, z_k, _, _ = model.forward_k(x, 4, gen(0), y)
    assert logits_k.shape == (4, 10, 784) and z_k.shape == (4, 10, 3)
    torch.testing.assert_close(logits_k, model.decoder(z_k, y))
    assert model.sample(10, gen(0), y=y).shape == (10, 784)
    # Other labels change every row of q(z|x, y), of p(x|z, y) and of the samples; the same labels (also as int32
    # or uint8) change nothing.
    other = wrong(y)
    assert (model.encoder(x, other)[0] != mu).any(dim=1).all()
    assert (model.decoder(z, other) != logits).any(dim=2).all()
    assert (model.sample(10, gen(0), y=other) != model.sample(10, gen(0), y=y)).any(dim=1).all()
    for same in (y.clone(), y.int(), y.to(torch.uint8)):
        assert torch.equal(model.encoder(x, same)[0], mu)
        assert torch.equal(model.decoder(z, same), logits)
        assert torch.equal(model(x, gen(0), same)[0], out)
        assert torch.equal(model.sample(10, gen(0), y=same), model.sample(10, gen(0), y=y))


@pytest.mark.parametrize("arch", CONDITIONAL)
def test_label_errors(arch):
    conditional, plain = new_model(config=CONDITIONAL[arch]), new_model(config=replace(CONDITIONAL[arch], classes=0))
    x, z, y = images(3), torch.zeros(3, 3), torch.tensor([0, 1, 2])
    missing = "conditional on 10 classes: pass the integer labels y"
    for call in (
        lambda: conditional(x),
        lambda: conditional.encoder(x),
        lambda: conditional.decoder(z),
        lambda: conditional.forward_k(x, 2),
        lambda: conditional.sample(3),
    ):
        with pytest.raises(ValueError, match=missing):
            call()
    for call in (
        lambda: plain(x, None, y),
        lambda: plain.encoder(x, y),
        lambda: plain.decoder(z, y),
        lambda: plain.sample(3, y=y),
    ):
        with pytest.raises(ValueError, match=r"not conditional: pass no labels \(y=None\)"):
            call()
    for bad in (torch.tensor([0, 1, 10]), torch.tensor([-1, 0, 1])):
        with pytest.raises(ValueError, match=r"must lie in 0\.\.9, got"):
            conditional(x, None, bad)
        with pytest.raises(ValueError, match=r"must lie in 0\.\.9"):
            conditional.sample(3, y=bad)
    with pytest.raises(ValueError, match="must be integers in 0..9, got dtype torch.float32"):
        conditional.encoder(x, y.float())
    with pytest.raises(ValueError, match="sample n=4 needs n labels, got 3"):
        conditional.sample(4, y=y)
    # Control: the same calls with good labels, and the unconditional ones without, work.
    conditional(x, None, y), conditional.sample(3, y=y), plain(x), plain.sample(3)


# ---------------------------------------------------------------- labels carry information


def test_wrong_labels_score_worse_than_the_right_ones():
    """A conditional MLP VAE trained with fit (300 steps) on data whose label determines the image: given the right
    labels, log p(x|y) (K = 20) and the ELBO are hundreds of nats higher than given wrong ones, for every example.

    Controls: the scores are seeded (the same twice), the IW estimate is at least the ELBO (up to noise), and an
    unconditional model trained alike lies in between: it beats the misled model but loses to the informed one."""
    train, test = labelled(400, 1), labelled(100, 2)
    config = TrainConfig(epochs=15, batch_size=20, lr=1e-2, schedule="constant", seed=0)
    model = new_model(config=VAEConfig(hidden=(16,), z_dim=2, classes=CLASSES))
    fit(model, train, None, config, progress=False)
    right = iw_log_likelihood(model, test.x, 20, y=test.labels)
    misled = iw_log_likelihood(model, test.x, 20, y=wrong(test.labels))
    assert right.mean > misled.mean + 200
    assert (right.per_example > misled.per_example).all()
    elbo_right = evaluate_elbo(model, test.x, y=test.labels).elbo
    assert elbo_right > evaluate_elbo(model, test.x, y=wrong(test.labels)).elbo + 200
    assert iw_log_likelihood(model, test.x, 20, y=test.labels).mean == right.mean
    assert right.mean > elbo_right - 1
    plain = new_model(config=VAEConfig(hidden=(16,), z_dim=2))
    fit(plain, Split(train.x), None, config, progress=False)
    unconditional = iw_log_likelihood(plain, test.x, 20).mean
    assert right.mean > unconditional + 50 and unconditional > misled.mean + 50


@pytest.mark.parametrize("arch", CONDITIONAL)
def test_the_evaluation_functions_pass_the_labels_on(arch):
    """Each evaluation function uses the labels it is given, in every batch: the IW estimate is the logsumexp of the
    stored log weights (the same draws), the posterior means are the encoder's for those labels, and the results
    change with the labels. An unconditional model given labels refuses them."""
    model, test = new_model(config=CONDITIONAL[arch]), labelled(30, 8)
    x, y = test.x, test.labels
    estimate = iw_log_likelihood(model, x, 6, batch_size=8, chunk=4, y=y)
    log_w = sample_log_weights(model, x, 6, batch_size=8, chunk=4, y=y)
    torch.testing.assert_close(estimate.per_example, torch.logsumexp(log_w, 1) - math.log(6), rtol=1e-6, atol=0)
    assert (sample_log_weights(model, x, 6, batch_size=8, chunk=4, y=wrong(y)) != log_w).any(dim=1).all()
    means = posterior_means(model, x, batch_size=8, y=y)
    torch.testing.assert_close(means, model.encoder(x, y)[0])
    assert (posterior_means(model, x, batch_size=8, y=wrong(y)) != means).any(dim=1).all()
    torch.testing.assert_close(active_units(model, x, batch_size=8, y=y)[1], means.double().var(dim=0))
    assert evaluate_elbo(model, x, batch_size=8, y=y).elbo != evaluate_elbo(model, x, batch_size=8, y=wrong(y)).elbo
    plain = new_model(config=replace(CONDITIONAL[arch], classes=0))
    with pytest.raises(ValueError, match="not conditional"):
        evaluate_elbo(plain, x, y=y)


# ---------------------------------------------------------------- training with labels


class Interrupt(Exception):
    pass


def test_fit_trains_a_conditional_model_and_resumes_exactly(tmp_path):
    """A conditional model on a dynamic labelled split (a partial last batch, a labelled validation split): stopped
    after two of four epochs and resumed into a differently initialised model, the same history and weights as the
    uninterrupted run. Control: the same run with other labels is another run."""
    train, valid = labelled(120, 3, dynamic=True), labelled(30, 4, dynamic=True)
    config = TrainConfig(epochs=4, batch_size=48, lr=3e-3, seed=3)
    cvae = CONFIGS["mlp-conditional"]
    full = new_model(config=cvae)
    h_full = fit(full, train, valid, config, checkpoint=tmp_path / "full.pt", progress=False)
    assert all(r.valid is not None and r.valid.elbo < 0 for r in h_full.records)
    assert h_full.column("train_elbo")[-1] > h_full.column("train_elbo")[0]

    def stop_after_two(epoch: int, model: VAE, history: History) -> None:
        if epoch == 2:
            raise Interrupt

    part = tmp_path / "part.pt"
    with pytest.raises(Interrupt):
        fit(new_model(config=cvae), train, valid, config, checkpoint=part, hook=stop_after_two, progress=False)
    assert load_checkpoint(part)["epoch"] == 2
    resumed = new_model(seed=123, config=cvae)
    h_resumed = fit(resumed, train, valid, config, checkpoint=part, resume=True, progress=False)
    assert without_seconds(h_resumed) == without_seconds(h_full)
    assert_same_weights(resumed, full)
    assert load_model(part).config == cvae

    other = new_model(config=cvae)
    relabelled = Split(train.x, wrong(train.labels), dynamic=True)
    h_other = fit(other, relabelled, valid, config, progress=False)
    assert without_seconds(h_other) != without_seconds(h_full)


def test_fit_refuses_a_conditional_model_on_data_without_labels(tmp_path):
    unlabelled, valid = Split(labelled(40, 5).x), labelled(20, 6)
    config = TrainConfig(epochs=1, batch_size=20)
    checkpoint = tmp_path / "c.pt"
    cvae = CONFIGS["mlp-conditional"]
    with pytest.raises(DataError, match="the training split has no labels.*use --dataset mnist"):
        fit(new_model(config=cvae), unlabelled, valid, config, checkpoint=checkpoint, progress=False)
    with pytest.raises(DataError, match="the validation split has no labels.*--dataset mnist"):
        fit(new_model(config=cvae), valid, Split(valid.x), config, checkpoint=checkpoint, progress=False)
    with pytest.raises(DataError, match="holds labels 0..9, but the model knows the 5 classes 0..4"):
        fit(new_model(config=replace(cvae, classes=5)), valid, None, config, checkpoint=checkpoint, progress=False)
    assert not checkpoint.exists()  # refused before the first step
    # Control: an unconditional model trains on the unlabelled split, and ignores the labels of a labelled one.
    assert len(fit(new_model(config=replace(cvae, classes=0)), unlabelled, valid, config, progress=False).records) == 1


@pytest.mark.parametrize("arch", CONDITIONAL)
def test_captured_epoch_with_labels_trains_as_train_epoch(arch):
    """CapturedEpoch (on the CPU stand-ins of test_cuda_graph) takes each step's labels as train_epoch does: two
    epochs of 3 steps (the last one partial), bit for bit. Control: with other labels the weights differ."""
    config = TrainConfig(epochs=2, batch_size=40, lr=2**-9, schedule="constant", seed=3)
    split = labelled(100, 7, dynamic=True)
    cvae = replace(CONDITIONAL[arch], channels=(2, 4))
    eager = TrainState.create(new_model(config=cvae), config, len(split))
    graphed = TrainState.create(new_model(config=cvae), config, len(split))
    relabelled = TrainState.create(new_model(config=cvae), config, len(split))
    run = CapturedEpoch(graphed, split, FakeGraphs())
    run_other = CapturedEpoch(relabelled, Split(split.x, wrong(split.labels), dynamic=True), FakeGraphs())
    for _ in range(config.epochs):
        assert run() == train_epoch(eager, split)
        run_other()
    assert torch.equal(graphed.generator.get_state(), eager.generator.get_state())
    assert_same_weights(graphed.model, eager.model)
    first = [next(state.model.decoder.parameters()) for state in (relabelled, eager)]  # the layer that reads y
    assert not torch.equal(*first)


# ---------------------------------------------------------------- checkpoints


def outputs(model: VAE) -> tuple[torch.Tensor, ...]:
    y = torch.tensor([0, 9, 4, 4, 2]) if model.conditional else None
    mu, logvar = model.encoder(images(5), y)
    return mu, logvar, model.decoder(mu, y), model.sample(5, gen(1), y=y)


def state_of(model: VAE) -> dict:
    return {"model_config": model.config.to_dict(), "model": model.state_dict(), "epoch": 1, "history": []}


@pytest.mark.parametrize("name", CONFIGS)
def test_checkpoints_round_trip(name, tmp_path):
    model = new_model(config=CONFIGS[name])
    pt = save_checkpoint(tmp_path / "checkpoint.pt", state_of(model))
    folder = save_shareable(tmp_path / "model", model)
    assert json.loads((folder / "config.json").read_text())["config"]["architecture"] == model.config.architecture
    kind = model.config.architecture
    for loaded in (
        load_model(pt),
        load_model(folder),
        load_model(pt, architecture=kind),
        load_model(folder, "cpu", kind),
    ):
        assert loaded.config == model.config
        for a, b in zip(outputs(model), outputs(loaded), strict=True):
            assert torch.equal(a, b)


def test_a_checkpoint_of_the_other_architecture_is_refused(tmp_path):
    conv, mlp = new_model(config=CONV), new_model(config=CONFIGS["mlp-conditional"])
    for model, asked, message in (
        (conv, "mlp", r"holds a conv VAE \(unconditional\), not an mlp VAE; load it as architecture 'conv'"),
        (mlp, "conv", "holds an mlp VAE conditional on 10 classes, not a conv VAE; load it as architecture 'mlp'"),
    ):
        kind = model.config.architecture
        pt = save_checkpoint(tmp_path / f"{kind}.pt", state_of(model))
        folder = save_shareable(tmp_path / kind, model)
        for path in (pt, folder, folder / "model.safetensors"):
            with pytest.raises(CheckpointError, match=message):
                load_model(path, architecture=asked)
    assert describe(CONFIGS["conv-conditional"]) == "a conv VAE conditional on 10 classes"


def test_a_config_that_does_not_fit_the_weights_is_refused(tmp_path):
    for model, edit, message in (
        (new_model(config=CONV), {"architecture": "mlp"}, r"weights do not fit an mlp VAE \(unconditional\)"),
        (new_model(config=CONFIGS["mlp-conditional"]), {"classes": 0}, "weights do not fit an mlp VAE .*size mismatch"),
        (new_model(config=CONFIGS["conv-conditional"]), {"classes": 4}, "weights do not fit a conv VAE conditional"),
    ):
        folder = save_shareable(tmp_path / "model", model)
        meta = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**meta, "config": {**meta["config"], **edit}}))
        with pytest.raises(CheckpointError, match=message):
            load_model(folder)
        state = {**state_of(model), "model_config": {**model.config.to_dict(), **edit}}
        with pytest.raises(CheckpointError, match=message):
            load_model(save_checkpoint(tmp_path / "c.pt", state))


def test_an_old_config_without_the_new_keys_loads_as_an_unconditional_mlp(tmp_path):
    model = new_model()
    old = {k: v for k, v in model.config.to_dict().items() if k not in ("architecture", "channels", "classes")}
    assert old == {"x_dim": 784, "hidden": [64], "z_dim": 4, "activation": "tanh"}
    loaded = load_model(save_checkpoint(tmp_path / "old.pt", {**state_of(model), "model_config": old}), "cpu", "mlp")
    assert loaded.config == model.config and not loaded.conditional
    assert_same_weights(loaded, model)
    with pytest.raises(CheckpointError, match="holds an mlp VAE"):
        load_model(tmp_path / "old.pt", architecture="conv")


def test_a_run_checkpointed_before_the_new_config_keys_resumes(tmp_path):
    x, config = labelled(64, 9).x, TrainConfig(epochs=2, batch_size=32, seed=1)
    full = new_model()
    fit(full, x, None, config, progress=False)

    def stop(epoch: int, model: VAE, history: History) -> None:
        raise Interrupt

    part = tmp_path / "part.pt"
    with pytest.raises(Interrupt):
        fit(new_model(), x, None, config, checkpoint=part, hook=stop, progress=False)
    state = load_checkpoint(part)
    state["model_config"] = {
        k: v for k, v in state["model_config"].items() if k in ("x_dim", "hidden", "z_dim", "activation")
    }
    save_checkpoint(part, state)  # as the code before the architecture and classes options wrote it
    resumed = new_model(seed=5)
    fit(resumed, x, None, config, checkpoint=part, resume=True, progress=False)
    assert_same_weights(resumed, full)


# ---------------------------------------------------------------- the command line


def mnist_train(out, *flags: str) -> list[str]:
    """test_cli's small training command on the labelled (dynamic) fake MNIST, for one epoch."""
    argv = [*TRAIN, *flags, "--out", str(out)]
    argv[argv.index("binarized-mnist")] = "mnist"
    argv[argv.index("--epochs") + 1] = "1"
    return argv


@pytest.fixture(scope="module")
def cvae_run(world):
    """A conditional MLP trained for one epoch by the command line."""
    out = world / "cvae"
    assert cli.main(mnist_train(out, "--classes", "10")) == 0
    return out


def evaluate_json(capsys, checkpoint, *flags: str) -> dict:
    argv = ["evaluate", "--checkpoint", str(checkpoint), "--dataset", "mnist", "--split", "valid", "--device", "cpu"]
    capsys.readouterr()
    assert cli.main([*argv, "--json", *flags]) == 0
    return json.loads(capsys.readouterr().out)


def test_train_conv_records_the_kind(world, tmp_path, capsys):
    out = tmp_path / "conv"
    assert cli.main(mnist_train(out, "--architecture", "conv", "--channels", "2,4")) == 0
    config = json.loads((out / "model" / "config.json").read_text())["config"]
    assert (config["architecture"], config["channels"], config["classes"]) == ("conv", [2, 4], 0)
    assert json.loads((out / "provenance.json").read_text())["model_config"] == config
    assert isinstance(load_model(out / "model", architecture="conv").encoder, ConvEncoder)
    with pytest.raises(CheckpointError, match="not an mlp VAE"):
        load_model(out / "checkpoint.pt", architecture="mlp")
    result = evaluate_json(capsys, out / "model")
    assert result["model"] == "a conv VAE (unconditional)" and result["quantity"] == "log p(x)"
    assert result["elbo"] < 0


def test_train_and_evaluate_a_conditional_model(world, cvae_run, capsys):
    """evaluate reports log p(x|y) with the split's labels: its ELBO is the one evaluate_elbo gives with those labels,
    not with others."""
    config = json.loads((cvae_run / "model" / "config.json").read_text())["config"]
    assert (config["architecture"], config["classes"]) == ("mlp", 10)
    result = evaluate_json(capsys, cvae_run / "model", "--iw-samples", "3")
    assert result["model"] == "an mlp VAE conditional on 10 classes" and result["quantity"] == "log p(x|y)"
    assert result["n"] == 10 and result["elbo"] < 0 and result["iw_samples"] == 3
    model, split = load_model(cvae_run / "model"), data.load("mnist", "valid")
    x = split.binarized(0)
    assert split.labels is not None and len(split.labels.unique()) == 10
    assert result["elbo"] == pytest.approx(evaluate_elbo(model, x, y=split.labels).elbo, rel=1e-6)
    assert result["elbo"] != pytest.approx(evaluate_elbo(model, x, y=wrong(split.labels)).elbo, rel=1e-6)
    # Larochelle's static binarized MNIST has no labels to condition on.
    argv = ["evaluate", "--checkpoint", str(cvae_run / "model"), "--device", "cpu"]
    fails(capsys, argv, "has no labels, and a conditional model needs them")


def test_train_conditional_on_binarized_mnist_fails_before_training(world, tmp_path, capsys):
    out = tmp_path / "run"
    err = fails(capsys, [*TRAIN, "--classes", "10", "--out", str(out)], "use --dataset mnist")
    assert "the training split has no labels" in err
    assert not (out / "checkpoint.pt").exists() and not (out / "model").exists()


def test_sample_with_labels(world, cvae_run, tmp_path, capsys, monkeypatch):
    """One row of -n samples per label: the model's own samples for those labels, in order."""
    import vae_core.images

    shown, show_grid = [], vae_core.images.show_grid
    monkeypatch.setattr(
        vae_core.images, "show_grid", lambda ax, grid, nrow: shown.append((grid, nrow)) or show_grid(ax, grid, nrow)
    )
    out = tmp_path / "grid.png"
    argv = ["sample", "--checkpoint", str(cvae_run / "model"), "-n", "3", "--seed", "5", "--out", str(out)]
    assert cli.main([*argv, "--labels", "0,3"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ((grid, nrow),) = shown
    expected = load_model(cvae_run / "model").sample(6, gen(5), y=torch.tensor([0, 0, 0, 3, 3, 3]))
    assert nrow == 3 and torch.equal(grid, expected)
    assert cli.main(argv) == 0  # every class by default
    assert shown[1][0].shape == (30, 784)


def test_sample_label_errors(world, cvae_run, tmp_path, capsys):
    out = tmp_path / "grid.png"
    plain = ["sample", "--checkpoint", str(world / "run" / "model"), "--out", str(out), "--labels", "1"]
    fails(capsys, plain, "holds an mlp VAE (unconditional): it takes no --labels")
    conditional = ["sample", "--checkpoint", str(cvae_run / "model"), "--out", str(out), "--labels", "1,12"]
    fails(capsys, conditional, "--labels must lie in 0..9 for this model, got [1, 12]")
    assert not out.exists()


@pytest.mark.parametrize(
    "change, message",
    [
        (["--architecture", "foo"], "argument --architecture: invalid choice: 'foo'"),
        (["--channels", "a,b"], "sizes are comma-separated integers like 500,500, got a,b"),
        (["--classes", "two"], "invalid int value: 'two'"),
    ],
)
def test_train_usage_errors(capsys, tmp_path, change, message):
    err = fails(capsys, ["train", "--out", str(tmp_path), *change], message)
    assert err.startswith("usage: python -m vae_core")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "change, message",
    [
        (["--architecture", "conv", "--channels", "4,8,16"], "conv channels are one or two positive sizes"),
        (["--classes", "-1"], "classes must be 0 (unconditional) or the number of labels, got -1"),
    ],
)
def test_train_config_errors(capsys, tmp_path, change, message):
    fails(capsys, ["train", "--out", str(tmp_path), *change], message)
    assert list(tmp_path.iterdir()) == []


def test_sample_labels_usage_error(capsys, tmp_path):
    err = fails(capsys, ["sample", "--checkpoint", "c.pt", "--out", "a.png", "--labels", "a"], "labels are comma")
    assert err.startswith("usage: python -m vae_core")
