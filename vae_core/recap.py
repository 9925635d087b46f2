"""The Checks cell of every chapter: each claim is asserted, then printed with a tick, so the cell reads as a recap."""

from __future__ import annotations

HEADING = "What this chapter showed"


class ClaimFailed(AssertionError):
    """A claim the chapter's prose makes no longer holds for the executed outputs."""


def check(claim: str, holds: bool) -> None:
    """Assert `holds`; print `claim` with a tick. A false claim raises ClaimFailed naming it."""
    if not holds:
        raise ClaimFailed(f"the chapter claims: {claim}; the outputs say otherwise")
    print(f"\u2713 {claim}")
