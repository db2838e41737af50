"""Bandwidth samplers (SPEC §3)."""

import math

import pytest
import torch

from learned_manifold_training.samplers import LogNormalSampler, make_sampler


@pytest.mark.parametrize("name", ["loguniform", "lognormal", "uniform"])
def test_samples_stay_in_range(name):
    s = make_sampler(name, 1e-3, 4.0)(20000, generator=torch.Generator().manual_seed(0))
    assert s.shape == (20000,) and s.min() >= 1e-3 and s.max() <= 4.0


def test_loguniform_is_uniform_in_log_sigma():
    s = make_sampler("loguniform", 1e-3, 1.0)(40000, generator=torch.Generator().manual_seed(0))
    frac_below = (s < 10**-1.5).float().mean().item()  # halfway in log space
    assert abs(frac_below - 0.5) < 0.01


def test_lognormal_median_and_clipping():
    sampler = LogNormalSampler(1e-4, 16.0, p_mean=-1.2, p_std=1.2)
    s = sampler(40000, generator=torch.Generator().manual_seed(0))
    assert abs(s.median().log().item() + 1.2) < 0.03
    assert LogNormalSampler(0.5, 0.6)(1000).min() >= 0.5


def test_uniform_mean():
    s = make_sampler("uniform", 1.0, 3.0)(40000, generator=torch.Generator().manual_seed(0))
    assert math.isclose(s.mean().item(), 2.0, abs_tol=0.02)


def test_bad_sampler_settings():
    with pytest.raises(ValueError, match="loguniform"):
        make_sampler("gamma", 0.1, 1.0)
    with pytest.raises(ValueError, match="sigma_min"):
        make_sampler("uniform", 1.0, 0.1)
