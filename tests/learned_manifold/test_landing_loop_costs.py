"""What a landing iteration costs beyond the field's own work (tester C, s36, items 2 and 3): `land`'s bookkeeping
syncs with the host once per iteration (it had compacted every state tensor by the same mask, one sync each:
about 20 of the 30 syncs of an iteration), and the end check searches the data points again only for the landed
points that the start's distances and how far they moved cannot clear (the triangle inequality)."""

import collections

import pytest
import torch
from torch import Tensor

from learned_manifold import LearnedDataManifold, landing
from learned_manifold.metrics import KNNCDC
from tests.learned_manifold.test_landing_off_data_fixed_points import FieldWithDataPoints

F64 = torch.float64
SIGMA = 0.1


class HalvingPlane(FieldWithDataPoints):
    """Data: the plane ``x₂ = 0`` of R³ (a grid of spacing 0.1 on it as the field's data points). The landing
    projection halves ``x₂`` (each normal-only step halves a point's distance, so points land over many
    iterations); factor ``(B, 3, 2)``: the plane's basis; bandwidths ``(σ, 1)``, accepted and ignored."""

    dim, low_rank, band = 3, True, SIGMA

    def __init__(self):
        super().__init__()
        g = torch.arange(-10, 11, dtype=F64) * 0.1
        grid = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
        self.data_graph = KNNCDC(torch.cat([grid, torch.zeros(grid.shape[0], 1, dtype=F64)], -1), k=2, sigma=1.0)

    def factor(self, x: Tensor, *, sigma: float | Tensor | None = None) -> Tensor:
        return torch.eye(3, dtype=x.dtype)[:, :2].expand(x.shape[0], 3, 2)

    def project(self, x: Tensor, *, sigma: float | Tensor | None = None) -> Tensor:
        return x * x.new_tensor([1.0, 1.0, 0.5])


def _points() -> Tensor:
    """Eight points over the grid, ``x₂`` from 1e-4 to 0.03: they need 1 to 10 iterations each."""
    t = torch.linspace(-0.9, 0.9, 8, dtype=F64)
    return torch.stack([t, -t, torch.logspace(-4, -1.5, 8, dtype=F64)], -1)


def _count_landing_syncs(monkeypatch: pytest.MonkeyPatch) -> collections.Counter:
    """Count host syncs made on `learned_manifold.landing`'s own lines: ``item``/``tolist``/``bool``/``nonzero``
    and boolean-mask indexing (a ``nonzero`` inside, on CUDA a wait for the device)."""
    counts: collections.Counter = collections.Counter()

    def mine() -> bool:
        import sys

        frame = sys._getframe(2)
        return frame.f_code.co_filename == landing.__file__

    def wrap(name: str, fn):
        def counted(t, *args, **kwargs):
            masked = name not in ("__getitem__", "__setitem__") or any(
                isinstance(i, Tensor) and i.dtype == torch.bool for i in (args[0] if isinstance(args[0], tuple)
                                                                         else (args[0],)))
            if masked and mine():
                counts[name] += 1
            return fn(t, *args, **kwargs)
        return counted

    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "nonzero", "__getitem__", "__setitem__"):
        monkeypatch.setattr(Tensor, name, wrap(name, getattr(Tensor, name)))
    return counts


def test_a_landing_iteration_syncs_with_the_host_once_for_its_bookkeeping(monkeypatch):
    field = HalvingPlane()
    M = LearnedDataManifold(field, landing=True, tangent_dim=2)
    x = _points()
    calls = collections.Counter()
    project = field.project
    monkeypatch.setattr(field, "project", lambda y, **kw: (calls.update(["project"]), project(y, **kw))[1])
    counts = _count_landing_syncs(monkeypatch)
    landed = M.projx(x)
    monkeypatch.undo()
    iterations = calls["project"]
    assert iterations >= 8  # the deepest point needs many halvings
    torch.testing.assert_close(landed[:, :2], x[:, :2], rtol=0, atol=0)
    assert bool((landed[:, 2].abs() <= 2e-4 * SIGMA).all())  # its last correction, x₂/2, within landing_tol·σ
    # one per iteration, plus a fixed few around the loop (finite rows, the end check, the cache)
    assert sum(counts.values()) <= iterations + 6, (iterations, counts)  # (173 for 12 iterations before)


def test_the_end_check_searches_only_points_it_cannot_clear(monkeypatch):
    """Points on the data: one search at the start (all 8 rows) and none at the end, the answers unchanged. A point
    that lands far from the data points is still searched again, and refused."""
    field = HalvingPlane()
    M = LearnedDataManifold(field, landing=True, tangent_dim=2)
    rows: list[int] = []
    nearest = KNNCDC.nearest_distance
    monkeypatch.setattr(KNNCDC, "nearest_distance", lambda self, y: (rows.append(y.shape[0]), nearest(self, y))[1])
    M.projx(_points())
    assert rows == [8]
    rows.clear()
    with pytest.raises(ValueError, match="did not land on the data"):  # 0.9 beyond the grid's corner: lands there
        M.projx(torch.tensor([[1.6, 1.6, 0.01], [0.0, 0.0, 0.01]], dtype=F64))
    assert rows == [2, 1]
