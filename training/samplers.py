"""Bandwidth samplers (SPEC §3): draw σ per sample, in data units."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["SAMPLERS", "LogNormalSampler", "LogUniformSampler", "Sampler", "UniformSampler", "make_sampler"]


@dataclass
class LogUniformSampler:
    """``log σ ~ U(log σ_min, log σ_max)`` (the best measured sampler, SPEC §8)."""

    sigma_min: float
    sigma_max: float

    def __call__(self, n: int, *, generator: torch.Generator | None = None, device=None,
                 dtype=torch.float32) -> Tensor:
        u = torch.rand(n, generator=generator, device=device, dtype=dtype)
        lo, hi = math.log(self.sigma_min), math.log(self.sigma_max)
        return torch.exp(lo + (hi - lo) * u)


@dataclass
class LogNormalSampler:
    """``log σ ~ N(P_mean, P_std²)`` clipped to ``[σ_min, σ_max]`` (the paper's sphere configuration)."""

    sigma_min: float
    sigma_max: float
    p_mean: float = -1.2
    p_std: float = 1.2

    def __call__(self, n: int, *, generator: torch.Generator | None = None, device=None,
                 dtype=torch.float32) -> Tensor:
        z = torch.randn(n, generator=generator, device=device, dtype=dtype)
        return torch.exp(self.p_mean + self.p_std * z).clamp(self.sigma_min, self.sigma_max)


@dataclass
class UniformSampler:
    """``σ ~ U(σ_min, σ_max)`` (the paper's image configuration)."""

    sigma_min: float
    sigma_max: float

    def __call__(self, n: int, *, generator: torch.Generator | None = None, device=None,
                 dtype=torch.float32) -> Tensor:
        u = torch.rand(n, generator=generator, device=device, dtype=dtype)
        return self.sigma_min + (self.sigma_max - self.sigma_min) * u


Sampler = LogUniformSampler | LogNormalSampler | UniformSampler
"""A training bandwidth sampler: ``sampler(n, generator=, device=, dtype=)`` gives ``n`` values of σ."""

SAMPLERS = {"loguniform": LogUniformSampler, "lognormal": LogNormalSampler, "uniform": UniformSampler}


def make_sampler(name: str, sigma_min: float, sigma_max: float, **kwargs: float) -> Sampler:
    """Build a sampler by name; unknown names and bad ranges raise ``ValueError``."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown bandwidth sampler {name!r}; valid names: {sorted(SAMPLERS)}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got [{sigma_min}, {sigma_max}]")
    return SAMPLERS[name](sigma_min, sigma_max, **kwargs)
