"""The batched L-BFGS geodesic solver (`geodesic_solvers._solve_lbfgs`) reads the device once per iteration (which
pairs still run) and once per line-search trial (which pairs still search), and nothing else: on a GPU every read
is a host sync. Boolean-mask indexing in the Armijo search had cost about nine reads per trial."""

from __future__ import annotations

import torch
from torch import Tensor

from learned_manifold.geodesic_solvers import _solve_lbfgs

_READS = ("__bool__", "item", "tolist", "nonzero", "__int__", "__float__", "__index__", "numpy", "cpu")


class _Bowls:
    """``B`` independent energies ``E_b(v) = 1 + Σ w_b (v − c)² + (v − c)⁴`` of ``v`` ``(B, m, D)``, with the
    attributes `_solve_lbfgs` reads (``norm``, ``gamma``); pure tensor arithmetic, so every device read counted
    during a solve is the solver's own. The quartic term makes full steps overshoot far from the minimum."""

    def __init__(self, b: int, m: int, d: int) -> None:
        gen = torch.Generator().manual_seed(0)
        self.w = torch.logspace(-1, 1, b, dtype=torch.float64)
        self.c = torch.randn(b, m, d, generator=gen, dtype=torch.float64)
        self.norm = torch.ones(b, dtype=torch.float64)
        self.norm = self.value_and_grad(torch.zeros(b, m, d, dtype=torch.float64))[0]  # (the energy at v = 0)
        self.gamma = self.norm.clone()  # (a first step of minus the gradient of E: far too long for the quartic)
        self.evaluations = 0

    def value_and_grad(self, v: Tensor, idx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Each pair's energy ``(B,)`` and the gradient of energy / norm ``(B, m, D)``, for the pairs ``idx``."""
        self.evaluations = getattr(self, "evaluations", 0) + 1  # (also called once from __init__)
        w, c, norm = (self.w, self.c, self.norm) if idx is None else (self.w[idx], self.c[idx], self.norm[idx])
        r = v - c
        energy = 1 + (w.view(-1, 1, 1) * r**2 + r**4).sum(dim=(1, 2))
        grad = (2 * w.view(-1, 1, 1) * r + 4 * r**3) / norm.view(-1, 1, 1)
        return energy, grad


def _count_reads(monkeypatch) -> list[int]:
    """Count every way a tensor's values reach the host: the reading methods and boolean-mask indexing."""
    count = [0]

    def counted(fn):
        def wrapper(self, *args, **kwargs):
            count[0] += 1
            return fn(self, *args, **kwargs)
        return wrapper

    def mask_counted(fn):
        def wrapper(self, index, *args):
            items = index if isinstance(index, tuple) else (index,)
            if any(isinstance(i, Tensor) and i.dtype == torch.bool and i.ndim > 0 for i in items):
                count[0] += 1
            return fn(self, index, *args)
        return wrapper

    for name in _READS:
        monkeypatch.setattr(Tensor, name, counted(getattr(Tensor, name)))
    for name in ("__getitem__", "__setitem__"):
        monkeypatch.setattr(Tensor, name, mask_counted(getattr(Tensor, name)))
    return count


def test_lbfgs_reads_the_device_once_per_iteration_and_once_per_line_search_trial(monkeypatch):
    problem = _Bowls(b=6, m=5, d=2)
    v0 = torch.zeros_like(problem.c)
    count = _count_reads(monkeypatch)
    v, converged, iterations = _solve_lbfgs(problem, v0, steps=200, lr=1.0, tol=1e-12)
    monkeypatch.undo()
    trials = problem.evaluations - 1  # (the first evaluation is of v0)
    assert bool(converged.all()) and iterations < 200
    assert trials > iterations  # some line searches backtracked: the count covers that path too
    # one read per iteration (which pairs still run; one more finds none left) and one per line-search trial
    # (which pairs still search)
    assert count[0] == iterations + 1 + trials
    torch.testing.assert_close(v, problem.c, rtol=0, atol=1e-5)


def test_lbfgs_on_independent_pairs_gives_each_pair_its_own_solve():
    """Pairs are independent problems: solving them together gives each the answer it gets alone, whatever the
    others' line searches do (results are merged row by row with ``torch.where``)."""
    problem = _Bowls(b=4, m=3, d=2)
    v_all, conv_all, _ = _solve_lbfgs(problem, torch.zeros_like(problem.c), steps=200, lr=1.0, tol=1e-12)
    for i in range(4):
        alone = _Bowls(b=4, m=3, d=2)
        keep = torch.tensor([i])
        alone.w, alone.c, alone.norm, alone.gamma = alone.w[keep], alone.c[keep], alone.norm[keep], alone.gamma[keep]
        v_one, conv_one, _ = _solve_lbfgs(alone, torch.zeros_like(alone.c), steps=200, lr=1.0, tol=1e-12)
        torch.testing.assert_close(v_all[i], v_one[0], rtol=0, atol=0)
        assert bool(conv_all[i]) == bool(conv_one[0])

