"""`KNNCDC.cutoff_weight` and `KNNCDC.effective_neighbours` in closed form: the two numbers by which `curvature`
judges whether a k-NN kernel (SPEC §7, ``w_j ∝ exp(−‖y − x_j‖²/(2σ²))``) is truncated or too thin (SPEC §12)."""

import math

import torch

from learned_manifold.curvature import CUTOFF_LIMIT
from learned_manifold.metrics import KNNCDC

F64 = torch.float64
DATA = torch.tensor([[0.1 * j, 0.0] for j in range(1, 11)], dtype=F64)  # 0.1, 0.2, …, 1.0 on a line


def test_cutoff_weight_is_the_kth_kernel_weight_over_the_nearest():
    """From the query 0 with ``k = 4`` and ``σ = 0.2`` the kept neighbours are at ``d = 0.1 … 0.4``, so the weight of
    the farthest kept one relative to the nearest is ``exp(−(0.4² − 0.1²)/(2 · 0.2²)) = exp(−1.875) = 0.1534`` (the
    kernel's ``2σ²``; without the 2 it would be 0.0235). Well above `CUTOFF_LIMIT`: a truncated kernel."""
    field = KNNCDC(DATA, k=4, sigma=0.2)
    got = field.cutoff_weight(torch.zeros(1, 2, dtype=F64))
    torch.testing.assert_close(got, torch.tensor([math.exp(-(0.4**2 - 0.1**2) / (2 * 0.2**2))], dtype=F64),
                               rtol=1e-12, atol=0)
    assert float(got) > CUTOFF_LIMIT


def test_effective_neighbours_is_the_inverse_participation_of_the_kernel_weights():
    """Same kernel: ``(Σ_j w_j)² / Σ_j w_j²`` with ``w_j = exp(−(0.1 j)²/(2 · 0.2²))``, ``j = 1 … 4`` (2.990)."""
    field = KNNCDC(DATA, k=4, sigma=0.2)
    w = torch.tensor([math.exp(-(0.1 * j) ** 2 / (2 * 0.2**2)) for j in range(1, 5)], dtype=F64)
    want = w.sum() ** 2 / w.square().sum()
    torch.testing.assert_close(field.effective_neighbours(torch.zeros(1, 2, dtype=F64)), want.reshape(1), rtol=1e-12,
                               atol=0)
