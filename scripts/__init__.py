"""The project's scripts, each run as `python scripts/NAME.py`; the tests import them as `scripts.NAME`."""
