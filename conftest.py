"""Session set-up shared by the unit tests and the nbval notebook runs."""

from __future__ import annotations

import pytest

from vae_core.data import absolutize_env


def pytest_configure(config: pytest.Config) -> None:
    """Make relative data folders absolute: nbval starts each notebook's kernel in book/, not here."""
    absolutize_env()
