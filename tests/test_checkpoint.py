"""vae_core.checkpoint: weights-only loading that runs no pickled code, clear errors on bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vae_core.checkpoint import (
    FORMAT,
    VERSION,
    CheckpointError,
    load_checkpoint,
    load_model,
    save_checkpoint,
    save_shareable,
)
from vae_core.model import VAE, VAEConfig

CONFIG = VAEConfig(hidden=(64,), z_dim=4)


def make_model(config: VAEConfig = CONFIG, seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    return VAE(config)


def state_of(model: VAE) -> dict:
    return {"model_config": model.config.to_dict(), "model": model.state_dict(), "epoch": 3, "history": []}


def outputs(model: VAE) -> tuple[torch.Tensor, ...]:
    x = torch.bernoulli(torch.full((5, 784), 0.4), generator=torch.Generator().manual_seed(0))
    mu, logvar = model.encoder(x)
    return mu, logvar, model.decoder(mu), model.sample(3, torch.Generator().manual_seed(1))


def test_save_and_load_checkpoint_round_trip(tmp_path):
    model = make_model()
    path = save_checkpoint(tmp_path / "c.pt", state_of(model))
    state = load_checkpoint(path)
    assert state["format"] == FORMAT and state["version"] == VERSION and state["epoch"] == 3
    for key, value in model.state_dict().items():
        assert torch.equal(state["model"][key], value), key
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


def test_training_checkpoint_loads_as_model(tmp_path):
    model = make_model()
    loaded = load_model(save_checkpoint(tmp_path / "checkpoint.pt", state_of(model)))
    assert loaded.config == CONFIG
    for a, b in zip(outputs(model), outputs(loaded), strict=True):
        assert torch.equal(a, b)


class Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))  # unpickling this creates the marker file


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "version": VERSION, "payload": Evil(marker)}, path)
    with pytest.raises(CheckpointError, match="not a readable vae_core checkpoint"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError):
        load_model(path)
    assert not marker.exists()
    # Control: an unsafe load of the same file does run the payload, so the check above is meaningful.
    control = tmp_path / "control"
    torch.save({"payload": Evil(control)}, tmp_path / "control.pt")
    torch.load(tmp_path / "control.pt", weights_only=False)
    assert control.exists()


def test_foreign_torch_file_is_refused(tmp_path):
    torch.save({"a": 1}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a vae_core checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(CheckpointError, match="not a vae_core checkpoint"):
        load_model(tmp_path / "tensor.pt")


def test_truncated_and_garbage_files_are_refused(tmp_path):
    raw = save_checkpoint(tmp_path / "c.pt", state_of(make_model())).read_bytes()
    (tmp_path / "cut.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(tmp_path / "cut.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint at all\n")
    with pytest.raises(CheckpointError, match="not a readable vae_core checkpoint"):
        load_checkpoint(tmp_path / "text.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "empty.pt")


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_model(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="needs config.json and model.safetensors"):
        load_model(tmp_path)  # an existing folder without the files


def test_other_version_is_refused(tmp_path):
    path = tmp_path / "c.pt"
    torch.save({"format": FORMAT, "version": VERSION + 1}, path)
    with pytest.raises(CheckpointError, match=f"version {VERSION + 1}"):
        load_checkpoint(path)


def test_architecture_mismatch(tmp_path):
    state = state_of(make_model())  # weights of z_dim 4
    state["model_config"] = VAEConfig(hidden=(64,), z_dim=5).to_dict()
    path = save_checkpoint(tmp_path / "c.pt", state)
    with pytest.raises(CheckpointError, match="weights do not fit an mlp VAE .*size mismatch"):
        load_model(path)
    state["model_config"] = {**CONFIG.to_dict(), "z_dim": 0}  # an invalid config
    with pytest.raises(CheckpointError, match="cannot build"):
        load_model(save_checkpoint(tmp_path / "d.pt", state))
    state["model_config"] = {**CONFIG.to_dict(), "depth": 3}  # an unknown field
    with pytest.raises(CheckpointError, match="cannot build"):
        load_model(save_checkpoint(tmp_path / "e.pt", state))


def test_shareable_round_trip(tmp_path):
    model = make_model(VAEConfig(hidden=(32, 16), z_dim=2, activation="elu"))
    folder = save_shareable(tmp_path / "model", model, {"provenance": {"seed": 7}})
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    meta = json.loads((folder / "config.json").read_text())
    assert meta["format"] == FORMAT and meta["config"] == model.config.to_dict() and meta["provenance"] == {"seed": 7}
    for loaded in (load_model(folder), load_model(folder / "model.safetensors"), load_model(str(folder))):
        assert loaded.config == model.config
        for a, b in zip(outputs(model), outputs(loaded), strict=True):
            assert torch.equal(a, b)


def test_shareable_errors(tmp_path):
    folder = save_shareable(tmp_path / "model", make_model())
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "config": {**config["config"], "z_dim": 5}}))
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_model(folder)
    (folder / "config.json").write_text(json.dumps({"config": config["config"]}))
    with pytest.raises(CheckpointError, match="not a vae_core model config"):
        load_model(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable model"):
        load_model(folder)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="unreadable model"):
        load_model(folder)
