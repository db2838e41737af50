"""`path_energy` sums the segment energies chunk by chunk (memory bounded by a budget), with the values of one call."""

from __future__ import annotations

import torch
from torch import Tensor

from learned_manifold import path_energies
from learned_manifold.metrics.base import CoMetricField
from learned_manifold.path_energies import path_energy, segment_energies, segments_per_call
from learned_manifold.regularised import Regularised, polyline_lengths

F64 = torch.float64
WORK = path_energies.SEGMENT_WORKSPACE  # B · D · r · 8 bytes · WORK per segment of each path


class CountingField(CoMetricField):
    """A rank-2 field whose factor turns with ``x`` (``A(x) = [x-dependent, fixed]``); counts its ``factor`` calls
    and the rows of each."""

    low_rank = True
    rank = 2

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.rows: list[int] = []

    def factor(self, x: Tensor) -> Tensor:
        self.rows.append(x.shape[0])
        e0 = torch.zeros(self.dim, dtype=x.dtype)
        e0[0] = 1.0
        return torch.stack([torch.sin(x) + 1.0, e0.expand_as(x)], dim=-1)


def _paths(b: int = 3, t: int = 9, d: int = 5) -> Tensor:
    return torch.randn(b, t, d, dtype=F64, generator=torch.Generator().manual_seed(0))


def test_path_energy_chunks_by_budget_with_the_values_of_one_call(monkeypatch):
    path = _paths()
    field = CountingField(5)
    whole = segment_energies(field, path)  # one call on all B·(T − 1) segments
    assert field.rows == [3 * 8]
    field.rows.clear()
    energy, length = path_energy(field, path)
    assert field.rows == [3 * 8]  # the default budget holds all of them
    monkeypatch.setattr(path_energies, "SEGMENT_BUDGET_BYTES", 3 * 5 * 2 * 8 * WORK * 3)  # three segments per path
    assert segments_per_call(field, path) == 3
    field.rows.clear()
    energy_c, length_c = path_energy(field, path)
    assert field.rows == [3 * 3, 3 * 3, 3 * 2]
    torch.testing.assert_close(energy_c, whole.sum(-1), rtol=1e-12, atol=0)
    torch.testing.assert_close(length_c, whole.sqrt().sum(-1), rtol=1e-12, atol=0)
    torch.testing.assert_close((energy_c, length_c), (energy, length), rtol=1e-12, atol=0)
    monkeypatch.setattr(path_energies, "SEGMENT_BUDGET_BYTES", 1)  # at least one segment per call
    field.rows.clear()
    torch.testing.assert_close(path_energy(field, path)[0], whole.sum(-1), rtol=1e-12, atol=0)
    assert field.rows == [3] * 8


def test_path_energy_chunks_keep_a_per_pair_delta_and_autograd(monkeypatch):
    path = _paths().requires_grad_(True)
    field = Regularised(CountingField(5), torch.tensor([1e-3, 1e-1, 1.0], dtype=F64))  # rows grouped pair by pair
    whole = segment_energies(field, path).sum(-1)
    (grad_whole,) = torch.autograd.grad(whole.sum(), path)
    monkeypatch.setattr(path_energies, "SEGMENT_BUDGET_BYTES", 1)
    energy = path_energy(field, path)[0]
    (grad,) = torch.autograd.grad(energy.sum(), path)
    torch.testing.assert_close(energy, whole, rtol=1e-12, atol=0)
    torch.testing.assert_close(grad, grad_whole, rtol=1e-10, atol=1e-12)


def test_polyline_lengths_measure_a_flow_chunk_by_chunk(monkeypatch):
    """A flow's metric length (`polyline_lengths`, used by `interpolate` and `gradient_flow`) needed one field call
    on every segment of every path: its memory grew with ``n_points``."""
    path = _paths(b=2, t=7)
    field = Regularised(CountingField(5), 0.1)
    _, whole = polyline_lengths(path, field)
    assert field.inner_field.rows == [2 * 6]
    monkeypatch.setattr(path_energies, "SEGMENT_BUDGET_BYTES", 2 * 5 * 2 * 8 * WORK * 2)  # two segments per path
    field.inner_field.rows.clear()
    _, chunked = polyline_lengths(path, field)
    assert field.inner_field.rows == [2 * 2] * 3
    torch.testing.assert_close(chunked, whole, rtol=1e-12, atol=0)


def test_a_repeated_point_gives_the_length_the_subgradient_zero_not_nan():
    """A path that pauses (``[a, a, b, c]``: one zero-length segment) had NaN length gradients at both copies of
    ``a`` (``sqrt``'s ``inf · 0``); the zero segment now adds the subgradient 0 (as ``LearnedDataManifold.norm`` at
    ``u = 0``), so the gradient is that of ``[a, b, c]`` with a zero row for the pause. NaN energies stay NaN."""
    field = Regularised(CountingField(5), 0.1)
    a, b, c = _paths(b=1, t=3)[0]
    paused = torch.stack([a, a, b, c])[None].requires_grad_(True)
    plain = torch.stack([a, b, c])[None].requires_grad_(True)
    energy, length = path_energy(field, paused)
    (grad,) = torch.autograd.grad(length.sum(), paused)
    (grad_plain,) = torch.autograd.grad(path_energy(field, plain)[1].sum(), plain)
    assert bool(torch.isfinite(grad).all())
    torch.testing.assert_close(grad[0, 0], torch.zeros(5, dtype=F64), rtol=0, atol=0)
    torch.testing.assert_close(grad[0, 1:], grad_plain[0], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(length, path_energy(field, plain)[1], rtol=1e-12, atol=0)
    nan_path = torch.stack([a, torch.full_like(a, float("nan")), b])[None]
    assert bool(torch.isnan(path_energy(field, nan_path)[1]).all())
