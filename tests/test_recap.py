import pytest

from vae_core.recap import ClaimFailed, check
from vae_core.repro import setup_chapter


def test_check_prints_a_true_claim_with_a_tick(capsys: pytest.CaptureFixture[str]) -> None:
    check("two is more than one", 2 > 1)
    assert capsys.readouterr().out == "\u2713 two is more than one\n"


def test_check_raises_on_a_false_claim_and_names_it() -> None:
    with pytest.raises(ClaimFailed, match="one is more than two"):
        check("one is more than two", 1 > 2)


def test_setup_chapter_seeds_the_same_draws() -> None:
    import torch

    first = torch.randn(3, generator=setup_chapter(threads=None, seed=3))
    second = torch.randn(3, generator=setup_chapter(threads=None, seed=3))
    assert torch.equal(first, second)
