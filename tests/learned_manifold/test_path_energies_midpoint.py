"""The discrete curve energy of SPEC §6, ``E = Σ_i Δ_iᵀ g(x_{i+½}) Δ_i``, evaluates the metric at each segment's
MIDPOINT: closed form on a metric that varies along the path."""

import math

import torch

from learned_manifold.metrics.base import CoMetricField
from learned_manifold.path_energies import path_energy, segment_energies

F64 = torch.float64


class Warped(CoMetricField):
    """``g(x) = (1 + x₂²) I`` in ``R²`` (co-metric ``G = g^{-1}``), full rank."""

    dim, low_rank = 2, False

    def apply(self, x, w):
        return w / (1 + x[:, 1:2] ** 2)

    def metric(self, x, v):
        return v * (1 + x[:, 1:2] ** 2)


def test_segment_energies_evaluate_the_metric_at_the_segment_midpoints():
    """The path ``(0, 0) → (0, ½) → (0, 1)`` has ``Δ = ½`` and midpoints ``x₂ = ¼, ¾``: ``E_i = ¼ (1 + x₂²)``, i.e.
    ``0.265625`` and ``0.390625``, total ``0.65625`` and length ``½ (√(1 + 1/16) + √(1 + 9/16))``. The metric at the
    left ends (``x₂ = 0, ½``) would give ``0.25`` and ``0.3125``."""
    path = torch.tensor([[[0.0, 0.0], [0.0, 0.5], [0.0, 1.0]]], dtype=F64)
    want = torch.tensor([[0.25 * (1 + 0.25**2), 0.25 * (1 + 0.75**2)]], dtype=F64)
    torch.testing.assert_close(segment_energies(Warped(), path), want, rtol=1e-12, atol=0)
    energy, length = path_energy(Warped(), path)
    torch.testing.assert_close(energy, torch.tensor([0.65625], dtype=F64), rtol=1e-12, atol=0)
    want_length = 0.5 * (math.sqrt(1 + 1 / 16) + math.sqrt(1 + 9 / 16))
    torch.testing.assert_close(length, torch.tensor([want_length], dtype=F64), rtol=1e-12, atol=0)
