import pytest

from vae_core.recap import ClaimFailed, check
from vae_core.repro import setup_chapter


def test_check_prints_a_true_claim_with_a_tick(capsys: pytest.CaptureFixture[str]) -> None:
    check("two is more than one", 2 > 1)
    assert capsys.readouterr().out == "\u2713 two is more than one\n"


def test_a_long_claim_is_wrapped_to_the_column_as_one_sentence(capsys: pytest.CaptureFixture[str]) -> None:
    claim = (
        """every line of this claim, written over
        several source lines, is one sentence """
        + "and words " * 12
    )
    check(claim, True)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) > 1 and all(len(line) <= 76 for line in lines)
    assert all(line.startswith("  ") for line in lines[1:])
    assert " ".join(" ".join(lines).split()) == "\u2713 " + " ".join(claim.split())


def test_check_raises_on_a_false_claim_and_names_it() -> None:
    with pytest.raises(ClaimFailed, match="one is more than two"):
        check("one is more than two", 1 > 2)


def test_setup_chapter_seeds_the_same_draws() -> None:
    import torch

    first = torch.randn(3, generator=setup_chapter(threads=None, seed=3))
    second = torch.randn(3, generator=setup_chapter(threads=None, seed=3))
    assert torch.equal(first, second)
