"""The settings trial (scripts/sweep.py) and its committed summary agree, and every candidate is a valid CLI call."""

from __future__ import annotations

import importlib.util
import json
import shlex
from pathlib import Path

import pytest

from vae_core.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("sweep", ROOT / "scripts" / "sweep.py")
sweep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sweep)


@pytest.mark.parametrize("name", list(sweep.CANDIDATES))
def test_candidate_is_a_valid_training_command(name: str) -> None:
    args = build_parser().parse_args(sweep.command(name)[2:])
    assert args.command == "train" and args.threads == 1 and args.out == Path("runs/sweep") / name


def test_summary_matches_the_script() -> None:
    rows = json.loads(sweep.SUMMARY.read_text())
    assert [r["name"] for r in rows] == list(sweep.CANDIDATES), "rerun scripts/sweep.py to refresh the summary"
    for row in rows:
        assert row["command"] == "python -m vae_core " + shlex.join(sweep.command(row["name"])[2:])
        assert row["change"] == sweep.CANDIDATES[row["name"]][0]
        assert row["epochs"] == int(row["command"].split("--epochs ")[1].split()[0])
        assert row["valid_elbo"] < row["train_elbo"] < 0


def test_chapter_settings_are_a_candidate() -> None:
    provenance = json.loads((ROOT / "book" / "checkpoints" / "z20" / "provenance.json").read_text())
    chapter = build_parser().parse_args(shlex.split(provenance["command"])[3:])
    trial = build_parser().parse_args(sweep.command("elu-lr2e-3")[2:])
    same = ("activation", "hidden", "z_dim", "epochs", "batch_size", "lr", "schedule", "seed", "dataset")
    assert {k: getattr(chapter, k) for k in same} == {k: getattr(trial, k) for k in same}
