"""Fixtures shared by the unit tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread():
    """One CPU thread: tiny models gain nothing from two, and on a busy machine threads only wait."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def close_figures():
    """Close every matplotlib figure a test opened."""
    yield
    import matplotlib.pyplot as plt  # here, not at the top: the figure tests choose the backend first

    plt.close("all")


BROWSER_TESTS = {"test_browser.py", "test_pdf.py"}  # they drive Chromium over the built book


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that need the built book and Chromium `browser`, so `-m "not browser"` runs the unit tests."""
    for item in items:
        if item.path.name in BROWSER_TESTS:
            item.add_marker(pytest.mark.browser)
