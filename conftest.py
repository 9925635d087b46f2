"""Session set-up shared by the unit tests and the nbval notebook runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Make relative data folders absolute: nbval starts each notebook's kernel in book/, not here."""
    for name in ("VAE_DATA_MIRROR", "VAE_DATA_DIR"):
        value = os.environ.get(name, "")
        if value and "://" not in value and not Path(value).is_absolute():
            os.environ[name] = str(Path(value).resolve())
