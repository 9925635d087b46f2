"""vae_core.cli: every user error exits 2 with a clear message; train, evaluate, sample and download work end to end.

The data is a tiny fake binarized MNIST (200/50/50 random rows) served from a mirror folder, with its md5s patched in.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import fields, replace

import numpy as np
import pytest
import torch
from helpers import amat, assert_same_weights, dead_url, files_under, holding, idx_gz, without_seconds

from vae_core import cli, data
from vae_core.checkpoint import load_checkpoint, load_model
from vae_core.cli import build_parser
from vae_core.model import VAEConfig
from vae_core.train import TrainConfig

ROWS = {"train": 200, "valid": 50, "test": 50}
TRAIN = ["train", "--dataset", "binarized-mnist", "--epochs", "2", "--hidden", "32", "--z-dim", "2"]
TRAIN += ["--device", "cpu", "--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A mirror of fake .amat files, a cache folder, patched md5s, unreachable public URLs, and one trained run."""
    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    md5s = {}
    mnist = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (40, 28, 28)),
        "train-labels-idx1-ubyte.gz": np.arange(40) % 10,
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (10, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": np.arange(10) % 10,
    }
    (root / "mirror" / "mnist").mkdir(parents=True)
    for name, array in mnist.items():
        raw = idx_gz(array)
        (root / "mirror" / "mnist" / name).write_bytes(raw)
        md5s[name] = hashlib.md5(raw).hexdigest()
    for split, n in ROWS.items():
        name = f"binarized_mnist_{split}.amat"
        raw = amat((rng.random((n, 784)) < 0.2).astype(np.uint8))
        (root / "mirror" / "binarized_mnist").mkdir(parents=True, exist_ok=True)
        (root / "mirror" / "binarized_mnist" / name).write_bytes(raw)
        md5s[name] = hashlib.md5(raw).hexdigest()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VAE_DATA_MIRROR", str(root / "mirror"))
        mp.setenv("VAE_DATA_DIR", str(root / "cache"))
        mp.setenv("NO_PROXY", "127.0.0.1,localhost")
        for name, value in md5s.items():
            mp.setitem(data.file_spec(name).md5, name, value)
        for dataset, spec in data.SPECS.items():
            mp.setitem(data.SPECS, dataset, replace(spec, urls=(dead_url(),)))
        mp.setattr(data, "TIMEOUT_S", 5)
        mp.setattr(data, "MNIST_VALID_SIZE", 10)
        threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
        assert cli.main([*TRAIN, "--out", str(root / "run")]) == 0
        yield root
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


pytestmark = pytest.mark.usefixtures("one_thread")


def fails(capsys, argv: list[str], message: str) -> str:
    """Run the CLI in-process; it must exit with code 2 and print `message` on stderr."""
    try:
        code = cli.main(argv)
    except SystemExit as exit_:  # argparse errors
        code = exit_.code
    captured = capsys.readouterr()
    assert code == 2, captured
    assert message in captured.err, captured.err
    assert "Traceback" not in captured.err
    return captured.err


# ---------------------------------------------------------------- success paths


def test_train_writes_all_outputs(world):
    run = world / "run"
    assert sorted(p.name for p in run.iterdir()) == [
        ".lock",
        "checkpoint.pt",
        "history.json",
        "model",
        "provenance.json",
    ]
    assert sorted(p.name for p in (run / "model").iterdir()) == ["config.json", "model.safetensors"]
    history = json.loads((run / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2]
    assert all(r["train_elbo"] < 0 and r["valid_elbo"] < 0 for r in history)
    provenance = json.loads((run / "provenance.json").read_text())
    assert provenance["command"] == "python -m vae_core " + " ".join([*TRAIN, "--out", str(run)])
    assert provenance["seed"] == 0 and provenance["dataset"] == "binarized-mnist" and provenance["device"] == "cpu"
    assert provenance["train_config"]["epochs"] == 2
    assert VAEConfig(**provenance["model_config"]) == VAEConfig(hidden=(32,), z_dim=2)
    assert provenance["versions"]["torch"] == torch.__version__
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["config"] == VAEConfig(hidden=(32,), z_dim=2).to_dict()
    assert config["config"]["architecture"] == "mlp" and config["config"]["classes"] == 0  # the kind is recorded
    assert config["provenance"] == provenance
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["epoch"] == 2 and state["history"] == history
    assert_same_weights(load_model(run / "model"), load_model(run / "checkpoint.pt"))


def test_evaluate_json(world, capsys):
    argv = ["evaluate", "--checkpoint", str(world / "run" / "checkpoint.pt"), "--split", "test", "--iw-samples", "5"]
    assert cli.main([*argv, "--json", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["dataset"] == "binarized-mnist" and result["split"] == "test" and result["n"] == 50
    assert result["elbo"] < 0
    assert result["elbo"] == pytest.approx(result["reconstruction"] - result["kl"], rel=1e-6)
    assert result["iw_samples"] == 5 and result["log_likelihood_stderr"] > 0
    assert result["log_likelihood_nats"] > result["elbo"] - 3 * result["log_likelihood_stderr"]
    assert result["bits_per_dim"] == pytest.approx(-result["log_likelihood_nats"] / (784 * np.log(2)))
    # The shareable folder gives the same numbers, and --limit evaluates a prefix.
    shareable = [*argv, "--json", "--device", "cpu"]
    shareable[shareable.index("--checkpoint") + 1] = str(world / "run" / "model")
    assert cli.main(shareable) == 0
    assert json.loads(capsys.readouterr().out) == result
    assert cli.main([*argv, "--limit", "10", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "n: 10" in text and "\nelbo: -" in text


def test_evaluate_saves_per_example_values_and_active_units(world, tmp_path, capsys):
    out = tmp_path / "eval.json"
    argv = ["evaluate", "--checkpoint", str(world / "run" / "model"), "--iw-samples", "5", "--device", "cpu"]
    assert cli.main([*argv, "--json", "--save", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads(out.read_text())
    assert {k: saved[k] for k in printed} == printed
    assert 0 <= printed["active_units"] <= 2
    values = saved["per_example_log_likelihood"]
    assert len(values) == printed["n"] == 50
    assert np.mean(values) == pytest.approx(printed["log_likelihood_nats"], abs=1e-3)
    assert saved["command"] == "python -m vae_core " + " ".join([*argv, "--json", "--save", str(out)])
    assert saved["device"] == "cpu" and saved["seconds"] >= 0


def test_train_records_the_selected_epoch_with_keep_best(world, tmp_path, capsys):
    run = tmp_path / "best"
    assert cli.main([*TRAIN, "--keep-best", "--objective", "iwae", "--k", "3", "--out", str(run)]) == 0
    provenance = json.loads((run / "provenance.json").read_text())
    history = json.loads((run / "history.json").read_text())
    best = max(history, key=lambda r: r["valid_elbo"])["epoch"]
    assert provenance["selected_epoch"] == best
    assert provenance["train_config"]["objective"] == "iwae" and provenance["train_config"]["k"] == 3
    assert all(r["train_objective"] is not None for r in history)


def test_sample_writes_png(world, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert cli.main(["sample", "--checkpoint", str(world / "run" / "model"), "-n", "16", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {out}" in capsys.readouterr().out
    binary = tmp_path / "binary.png"
    assert (
        cli.main(["sample", "--checkpoint", str(world / "run" / "checkpoint.pt"), "--binary", "--out", str(binary)])
        == 0
    )
    assert binary.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["binary.png", "grid.png"]


def test_grey_mnist_trains_and_evaluates_with_dynamic_binarization(world, tmp_path, capsys):
    argv = [*TRAIN, "--out", str(tmp_path / "run")]
    argv[argv.index("binarized-mnist")] = "mnist"
    assert cli.main(argv) == 0
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(history) == 2 and all(r["train_elbo"] < 0 for r in history)
    evaluate = ["evaluate", "--checkpoint", str(tmp_path / "run" / "model"), "--dataset", "mnist", "--split", "valid"]
    evaluate += ["--device", "cpu", "--json", "--iw-samples", "3"]
    assert cli.main(evaluate) == 0 and cli.main(evaluate) == 0
    first, second = (json.loads(line) for line in capsys.readouterr().out.strip().splitlines()[-2:])
    assert first == second  # the binarization is seeded
    assert first["n"] == 10 and first["elbo"] < 0
    assert cli.main([*evaluate, "--seed", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["elbo"] != first["elbo"]


def test_interrupted_train_resumes_to_the_same_result(world, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    real_fit = cli.fit

    def interrupted_fit(*args, **kwargs):
        def hook(epoch, model, history):
            if epoch == 1:
                raise KeyboardInterrupt

        return real_fit(*args, **kwargs, hook=hook)

    monkeypatch.setattr(cli, "fit", interrupted_fit)
    assert cli.main([*TRAIN, "--out", str(out)]) == 130
    assert "rerun with --resume" in capsys.readouterr().err
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1
    monkeypatch.setattr(cli, "fit", real_fit)
    assert cli.main([*TRAIN, "--out", str(out), "--resume"]) == 0
    capsys.readouterr()

    reference = json.loads((world / "run" / "history.json").read_text())
    assert without_seconds(json.loads((out / "history.json").read_text())) == without_seconds(reference)
    assert_same_weights(load_model(out / "model"), load_model(world / "run" / "model"))


def test_no_cuda_graph_flag_reaches_fit(world, tmp_path, capsys, monkeypatch):
    seen = []
    real_fit = cli.fit
    monkeypatch.setattr(cli, "fit", lambda *a, **kw: seen.append(kw["cuda_graph"]) or real_fit(*a, **kw))
    assert cli.main([*TRAIN, "--out", str(tmp_path / "a")]) == 0
    assert cli.main([*TRAIN, "--out", str(tmp_path / "b"), "--no-cuda-graph"]) == 0
    capsys.readouterr()
    assert seen == [True, False]


def test_resume_with_other_settings_fails(world, tmp_path, capsys):
    out = tmp_path / "run"
    (out).mkdir()
    (out / "checkpoint.pt").write_bytes((world / "run" / "checkpoint.pt").read_bytes())
    argv = [*TRAIN, "--out", str(out), "--resume"]
    argv[argv.index("--epochs") + 1] = "3"
    fails(capsys, argv, "other settings")


def test_download_from_mirror(world, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VAE_DATA_DIR", str(tmp_path / "cache"))
    assert cli.main(["download", "--dataset", "binarized-mnist"]) == 0
    out = capsys.readouterr().out
    assert out.count("binarized-mnist: ") == 3
    assert files_under(tmp_path / "cache") == [
        f"binarized_mnist/binarized_mnist_{s}.amat" for s in ("test", "train", "valid")
    ]
    for split in ROWS:
        name = f"binarized_mnist_{split}.amat"
        assert (tmp_path / "cache" / "binarized_mnist" / name).read_bytes() == (
            world / "mirror" / "binarized_mnist" / name
        ).read_bytes()


def test_download_all(world, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VAE_DATA_DIR", str(tmp_path / "cache"))
    assert cli.main(["download"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["binarized-mnist"] * 3 + ["mnist"] * 4
    assert len(files_under(tmp_path / "cache")) == 7


def test_corrupt_dataset_fails_cleanly(world, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VAE_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(data.file_spec("binarized_mnist_valid.amat").md5, "binarized_mnist_valid.amat", "0" * 32)
    err = fails(capsys, ["download", "--dataset", "binarized-mnist"], "binarized_mnist_valid.amat")
    assert "checksum mismatch" in err
    assert "binarized_mnist/binarized_mnist_valid.amat" not in files_under(tmp_path / "cache")
    assert not any(".tmp" in f or "valid" in f for f in files_under(tmp_path / "cache"))
    fails(capsys, [*TRAIN, "--out", str(tmp_path / "run")], "checksum mismatch")
    assert not any("valid" in f for f in files_under(tmp_path / "cache"))


# ---------------------------------------------------------------- errors: exit code 2 and a message


@pytest.mark.parametrize(
    "change, message",
    [
        (["--z-dim", "0"], "z_dim and hidden sizes must be positive"),
        (["--epochs", "-1"], "epochs must be >= 0, got -1"),
        (["--hidden", "0,5"], "z_dim and hidden sizes must be positive"),
        (["--hidden", "a,b"], "sizes are comma-separated integers"),
        (["--lr", "0"], "lr must be a positive number"),
        (["--eval-batch-size", "0"], "batch sizes must be >= 1"),
        (["--dataset", "cifar"], "invalid choice: 'cifar'"),
        (["--activation", "swish"], "unknown activation 'swish'"),
        (["--objective", "vae"], "objective must be 'elbo' or 'iwae'"),
        (["--k", "5"], "k must be 1 for the elbo objective"),
    ],
)
def test_train_argument_errors(capsys, tmp_path, change, message):
    fails(capsys, ["train", "--out", str(tmp_path), *change], message)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "device, message",
    [("gpu", "unknown device 'gpu'"), ("tpu", "unknown device")]
    + ([("cuda", "no CUDA GPU")] if not torch.cuda.is_available() else []),
)
def test_bad_device(capsys, tmp_path, device, message):
    fails(capsys, ["train", "--out", str(tmp_path / "run"), "--device", device], message)
    assert not (tmp_path / "run").exists()
    fails(capsys, ["evaluate", "--checkpoint", str(tmp_path / "c.pt"), "--device", device], message)


def test_train_flags_are_the_config_fields_with_their_defaults():
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    flags = {a.dest: a.default for a in train._actions}
    for config, skip in ((VAEConfig, {"x_dim"}), (TrainConfig, set())):
        for field in fields(config):
            if field.name not in skip:
                assert flags[field.name] == field.default, field.name
    parsed = build_parser().parse_args(["train", "--out", "o", "--keep-best", "--hidden", "3,4", "--lr", "0.5"])
    assert (parsed.keep_best, parsed.hidden, parsed.lr) == (True, (3, 4), 0.5)


def test_bad_train_config_fails(world, capsys, tmp_path):
    fails(capsys, [*TRAIN, "--out", str(tmp_path / "run"), "--beta", "-1"], "beta must be a finite number >= 0")
    fails(capsys, [*TRAIN, "--out", str(tmp_path / "run"), "--final-lr-fraction", "2"], "final_lr_fraction must be")


def test_missing_checkpoint(capsys, tmp_path):
    fails(capsys, ["evaluate", "--checkpoint", str(tmp_path / "none.pt"), "--device", "cpu"], "no checkpoint at")
    fails(
        capsys, ["sample", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "a.png")], "no checkpoint"
    )
    assert not (tmp_path / "a.png").exists()


def test_foreign_checkpoint(capsys, tmp_path):
    torch.save({"a": 1}, tmp_path / "foreign.pt")
    fails(
        capsys,
        ["evaluate", "--checkpoint", str(tmp_path / "foreign.pt"), "--device", "cpu"],
        "not a vae_core checkpoint",
    )
    fails(
        capsys,
        ["sample", "--checkpoint", str(tmp_path / "foreign.pt"), "--out", str(tmp_path / "a.png")],
        "not a vae_core checkpoint",
    )
    assert not (tmp_path / "a.png").exists()


def test_unwritable_out_fails_cleanly(world, capsys, tmp_path):
    (tmp_path / "taken").write_text("a file, not a folder")
    fails(capsys, [*TRAIN, "--out", str(tmp_path / "taken")], "File exists")
    fails(capsys, [*TRAIN, "--out", str(tmp_path / "taken" / "run")], "Not a directory")
    assert (tmp_path / "taken").read_text() == "a file, not a folder"


def test_sample_needs_png(world, capsys, tmp_path):
    fails(
        capsys,
        ["sample", "--checkpoint", str(world / "run" / "model"), "--out", str(tmp_path / "x.jpg")],
        "must name a .png file",
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "the following arguments are required: command"),
        (["fly"], "invalid choice: 'fly'"),
        (["train"], "the following arguments are required: --out"),
        (["sample", "--checkpoint", "c.pt", "--out", "a.png", "-n", "0"], "must be a positive integer"),
        (["evaluate", "--checkpoint", "c.pt", "--split", "dev"], "invalid choice: 'dev'"),
        (["download", "--dataset", "cifar"], "invalid choice: 'cifar'"),
    ],
)
def test_usage_errors(capsys, argv, message):
    err = fails(capsys, argv, message)
    assert err.startswith("usage: python -m vae_core")


def test_module_help_in_a_subprocess():
    done = subprocess.run([sys.executable, "-m", "vae_core", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m vae_core")
    for command in ("download", "train", "evaluate", "sample"):
        assert command in done.stdout


def test_a_second_train_on_a_held_folder_fails_naming_the_other_run(world, tmp_path, capsys):
    out = tmp_path / "busy"
    with holding(out) as holder:
        err = fails(capsys, [*TRAIN, "--out", str(out)], f"{out} is in use by another run")
        assert f"process {holder.pid}" in err and "--out" in err
    assert not (out / "checkpoint.pt").exists(), "the refused run wrote nothing"
    assert cli.main([*TRAIN, "--out", str(out)]) == 0, "once the holder has exited the folder is free"
