"""The binary draws of ancestral sampling follow their Bernoulli means (step 3 of chapter 1.1's sampler).

This checks `torch.bernoulli`, the library call that `VAE.sample` makes, not the model: for fixed means pi in (0, 1),
N draws per pixel must give frequencies within sampling error of pi. Three checks of increasing sharpness, each with a
false-alarm probability far below one in a thousand for a correct sampler, and each failing for a sampler that is off
by a few standard errors (tested on deliberately biased draws).
"""

from __future__ import annotations

import math

import pytest
import torch

N_DRAWS = 2000
DELTA = 1e-6  # allowed probability that a correct sampler fails the Hoeffding check


@pytest.fixture(scope="module")
def means() -> torch.Tensor:
    """16 x 784 means spread over (0, 1), so that every calibration bin is populated."""
    return torch.rand(16, 784, generator=torch.Generator().manual_seed(0)).clamp(1e-3, 1 - 1e-3)


def frequencies(means: torch.Tensor, seed: int, bias: float = 0.0) -> torch.Tensor:
    """The share of ones in N_DRAWS Bernoulli draws per pixel; `bias` shifts the probabilities (a broken sampler)."""
    probs = (means + bias).clamp(0, 1)
    draws = torch.bernoulli(probs.expand(N_DRAWS, *means.shape), generator=torch.Generator().manual_seed(seed))
    return draws.mean(0)


def hoeffding_bound(n_pixels: int) -> float:
    """t with P(max_m |freq_m - pi_m| >= t) <= DELTA: Hoeffding 2 exp(-2 N t^2) per pixel, union bound over pixels."""
    return math.sqrt(math.log(2 * n_pixels / DELTA) / (2 * N_DRAWS))


def standardized_residuals(freq: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """(freq - pi) / sqrt(pi (1 - pi) / N) over the pixels with N pi (1 - pi) >= 5, where they are nearly normal."""
    enough = N_DRAWS * means * (1 - means) >= 5
    return ((freq - means) / (means * (1 - means) / N_DRAWS).sqrt())[enough]


def calibration_chi2(freq: torch.Tensor, means: torch.Tensor, n_bins: int = 10) -> tuple[float, float]:
    """Pixels binned by their mean: the sum over bins of ((frequency - mean) / standard error)^2, and its p-value."""
    bins = torch.bucketize(means.flatten(), torch.linspace(0, 1, n_bins + 1)[1:-1])
    z = []
    for b in range(n_bins):
        inside = bins == b
        p, f = means.flatten()[inside], freq.flatten()[inside]
        se = math.sqrt((p * (1 - p)).sum().item() / N_DRAWS) / inside.sum().item()
        z.append((f.mean().item() - p.mean().item()) / se)
    chi2 = sum(v * v for v in z)
    p_value = torch.special.gammaincc(torch.tensor(n_bins / 2, dtype=torch.float64), torch.tensor(chi2 / 2)).item()
    return chi2, p_value


def test_every_pixel_within_the_hoeffding_bound(means: torch.Tensor) -> None:
    t = hoeffding_bound(means.numel())
    assert (frequencies(means, seed=1) - means).abs().max().item() < t
    assert (frequencies(means, seed=1, bias=1.5 * t) - means).abs().max().item() > t  # a biased sampler fails


def test_standardized_residuals_are_standard(means: torch.Tensor) -> None:
    r = standardized_residuals(frequencies(means, seed=2), means)
    assert r.numel() > 10_000
    assert abs(r.mean().item()) < 0.05 and abs(r.var().item() - 1) < 0.05  # about 5 standard errors of each
    biased = standardized_residuals(frequencies(means, seed=2, bias=0.005), means)
    assert biased.mean().item() > 0.2  # a 0.005 shift is about half a standard error per pixel: visible in the mean


def test_calibration_chi2_does_not_reject(means: torch.Tensor) -> None:
    chi2, p_value = calibration_chi2(frequencies(means, seed=3), means)
    assert p_value > 1e-3, (chi2, p_value)
    chi2_biased, p_biased = calibration_chi2(frequencies(means, seed=3, bias=0.002), means)
    assert p_biased < 1e-3 < p_value and chi2_biased > chi2
