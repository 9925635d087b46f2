"""Atomic checkpoints: full training state as a weights-only torch file, or shareable safetensors + JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from vae_core.io import atomic_write, atomic_write_text
from vae_core.messages import first_line
from vae_core.model import VAE, VAEConfig

FORMAT = "vae_core-checkpoint"
VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read as a vae_core checkpoint of the expected architecture."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """Save a training state (plain tensors, numbers, strings, lists and dicts) atomically."""
    return atomic_write(path, lambda tmp: torch.save({"format": FORMAT, "version": VERSION, **state}, tmp))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a training state with `weights_only=True`, so no pickled code can run; check that it is ours."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; pass the checkpoint.pt written by `python -m vae_core train`")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # a foreign pickle, a truncated file, or not a torch file at all
        raise CheckpointError(
            f"{path} is not a readable vae_core checkpoint ({type(err).__name__}: {first_line(err, 200)}); "
            "it may be truncated or come from another program. Re-create it with `python -m vae_core train`."
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a torch file but not a vae_core checkpoint (no '{FORMAT}' marker)")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {state.get('version')}, this vae_core reads {VERSION}")
    return state


def describe(config: VAEConfig) -> str:
    """The kind of VAE a config builds, in words: e.g. "a conv VAE conditional on 10 classes"."""
    label = f" conditional on {config.classes} classes" if config.classes else " (unconditional)"
    return f"a{'n' if config.architecture == 'mlp' else ''} {config.architecture} VAE{label}"


def model_from_state(
    config: dict[str, Any],
    weights: dict[str, torch.Tensor],
    source: Path | str,
    architecture: str | None = None,
) -> VAE:
    """Build a VAE from a config dict and load its weights, with a clear error on an architecture mismatch.

    The config records the architecture ("mlp" where an older checkpoint records none). With `architecture`, a
    checkpoint of the other kind is refused before any weight is read.
    """
    try:
        model_config = VAEConfig(**config)
    except (TypeError, ValueError) as err:
        raise CheckpointError(
            f"{source} records a model config this vae_core cannot build: {first_line(err, 300)}"
        ) from None
    if architecture is not None and model_config.architecture != architecture:
        raise CheckpointError(
            f"{source} holds {describe(model_config)}, not a{'n' if architecture == 'mlp' else ''} {architecture} VAE; "
            f"load it as architecture {model_config.architecture!r}, or pick a checkpoint of the kind you want."
        )
    model = VAE(model_config)
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise CheckpointError(
            f"{source}: its weights do not fit {describe(model_config)}, the architecture its config records "
            f"({' '.join(str(err).split())[:300]}); the files may come from different models."
        ) from None
    return model


def save_shareable(directory: Path, model: VAE, extra: dict[str, Any] | None = None) -> Path:
    """Write `model.safetensors` and `config.json` into `directory`: loading them never involves pickle."""
    directory = Path(directory)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(directory / "model.safetensors", lambda tmp: save_file(weights, str(tmp)))
    meta = {"format": FORMAT, "version": VERSION, "config": model.config.to_dict(), **(extra or {})}
    atomic_write_text(directory / "config.json", json.dumps(meta, indent=2) + "\n")
    return directory


def load_model(path: Path | str, map_location: str | torch.device = "cpu", architecture: str | None = None) -> VAE:
    """Load a VAE from a training checkpoint (.pt) or a shareable folder / .safetensors file.

    With `architecture` ("mlp" or "conv"), a checkpoint of the other kind is refused with a CheckpointError.
    """
    path = Path(path)
    if path.is_dir() or path.suffix == ".safetensors":
        directory = path if path.is_dir() else path.parent
        config_path, weights_path = directory / "config.json", directory / "model.safetensors"
        if not config_path.is_file() or not weights_path.is_file():
            raise CheckpointError(f"{directory} needs config.json and model.safetensors (see save_shareable)")
        try:
            meta = json.loads(config_path.read_text())
            weights = load_file(str(weights_path), device=str(map_location))
        except Exception as err:
            raise CheckpointError(f"{directory} holds an unreadable model: {type(err).__name__}: {err}") from None
        if meta.get("format") != FORMAT:
            raise CheckpointError(f"{config_path} is not a vae_core model config (no '{FORMAT}' marker)")
        return model_from_state(meta["config"], weights, directory, architecture)
    state = load_checkpoint(path, map_location)
    return model_from_state(state["model_config"], state["model"], path, architecture)
