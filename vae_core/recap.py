"""The Checks cell of every chapter: each claim is asserted, then printed with a tick, so the cell reads as a recap."""

from __future__ import annotations

import textwrap

HEADING = "What this chapter showed"
WIDTH = 76  # the book's text column holds about 88 monospace characters at 1280 px; a phone fewer


class ClaimFailed(AssertionError):
    """A claim the chapter's prose makes no longer holds for the executed outputs."""


def check(claim: str, holds: bool) -> None:
    """Assert `holds`; print `claim` with a tick, wrapped to the text column. A false claim raises ClaimFailed."""
    claim = " ".join(claim.split())  # a claim written over several source lines reads as one sentence
    if not holds:
        raise ClaimFailed(f"the chapter claims: {claim}; the outputs say otherwise")
    print(textwrap.fill(f"\u2713 {claim}", WIDTH, subsequent_indent="  ", break_on_hyphens=False))
