"""The code is ruff clean (lint rules and formatting) and vae_core type-checks with mypy, as pyproject.toml says."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a tool of the environment (ruff, mypy) in the repository root."""
    exe = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if exe is None:
        pytest.fail(f"{name} is not installed; it is pinned in requirements.txt")
    return subprocess.run([exe, *args], cwd=ROOT, capture_output=True, text=True)


def ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return tool("ruff", *args)


def test_ruff_check() -> None:
    result = ruff("check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    result = ruff("format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_no_type_errors_in_vae_core() -> None:
    result = tool("mypy")  # the files and settings are in pyproject.toml's [tool.mypy]
    assert result.returncode == 0, result.stdout + result.stderr
