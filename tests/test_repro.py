"""vae_core.repro: seeding, determinism switches and device choice."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from vae_core.repro import make_deterministic, pick_device, seed_everything

NO_CUDA = not torch.cuda.is_available()
NO_MPS = not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available())


def test_seed_everything_seeds_all_generators():
    g = seed_everything(42)
    first = (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=g).item())
    g = seed_everything(42)
    assert (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=g).item()) == first
    assert g.initial_seed() == 42
    seed_everything(43)
    assert random.random() != first[0]


def test_seed_everything_accepts_large_seeds():
    g = seed_everything(2**40 + 5)
    assert g.initial_seed() == 2**40 + 5


def test_make_deterministic_sets_threads_and_algorithms():
    threads, enabled = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        make_deterministic(1)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.get_num_threads() == 1
        make_deterministic(None)  # leaves the thread count alone
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(enabled)


def test_pick_device_cpu():
    assert pick_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(not (NO_CUDA and NO_MPS), reason="an accelerator is present")
@pytest.mark.parametrize("requested", [None, "auto"])
def test_pick_device_auto_is_cpu_here(requested):
    assert pick_device(requested) == torch.device("cpu")


@pytest.mark.skipif(not NO_CUDA, reason="CUDA is present")
@pytest.mark.parametrize("requested", ["cuda", "cuda:0", "cuda:1"])
def test_pick_device_cuda_without_cuda(requested):
    with pytest.raises(ValueError, match="no CUDA GPU"):
        pick_device(requested)


@pytest.mark.skipif(not NO_MPS, reason="MPS is present")
def test_pick_device_mps_without_mps():
    with pytest.raises(ValueError, match="MPS was asked for"):
        pick_device("mps")


@pytest.mark.parametrize("requested", ["gpu", "tpu0", "", "cuda:x"])
def test_pick_device_unknown_name(requested):
    with pytest.raises(ValueError, match="unknown device"):
        pick_device(requested)


@pytest.mark.parametrize("requested", ["meta", "xpu"])
def test_pick_device_unsupported_torch_device(requested):
    with pytest.raises(ValueError, match="unsupported device"):
        pick_device(requested)
