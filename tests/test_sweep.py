"""The settings trial (scripts/sweep.py) and its committed summary agree, and every candidate is a valid CLI call."""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict
from pathlib import Path

import pytest

from scripts import sweep
from vae_core.cli import build_parser
from vae_core.model import VAEConfig
from vae_core.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", list(sweep.CANDIDATES))
def test_candidate_command_parses_to_its_settings(name: str) -> None:
    args = build_parser().parse_args(sweep.command(name)[2:])
    assert args.command == "train" and args.threads == 1 and args.out == Path("runs/sweep") / name
    model, train = sweep.configs(name)
    assert all(
        getattr(args, key) == value for key, value in {**asdict(model), **asdict(train)}.items() if key != "x_dim"
    )


def test_summary_matches_the_script() -> None:
    rows = json.loads(sweep.SUMMARY.read_text())
    assert [r["name"] for r in rows] == list(sweep.CANDIDATES), "rerun scripts/sweep.py to refresh the summary"
    for row in rows:
        model, train = sweep.configs(row["name"])
        assert row["command"] == "python -m vae_core " + shlex.join(sweep.command(row["name"])[2:])
        assert row["change"] == sweep.CANDIDATES[row["name"]][0]
        assert VAEConfig(**row["model_config"]) == model and TrainConfig(**row["train_config"]) == train
        assert row["epochs"] == train.epochs and row["seed"] == train.seed
        assert row["valid_elbo"] < row["train_elbo"] < 0


def test_chapter_settings_are_a_candidate() -> None:
    checkpoint = ROOT / "book" / "checkpoints" / "z20"
    chapter_train = TrainConfig(**json.loads((checkpoint / "provenance.json").read_text())["train_config"])
    chapter_model = VAEConfig(**json.loads((checkpoint / "model" / "config.json").read_text())["config"])
    assert (chapter_model, chapter_train) == sweep.configs("elu-lr2e-3")
