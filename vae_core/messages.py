"""Error and warning messages: the first line of an exception's text, cut to fit a one-line message."""

from __future__ import annotations


def first_line(err: BaseException, limit: int) -> str:
    """The first line of an error's message, cut to `limit` characters ('' for an empty message, e.g. EOFError)."""
    return next(iter(str(err).splitlines()), "")[:limit]
