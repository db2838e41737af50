"""The ``d`` of `range_project` and `spectral_apply` (SPEC §5, `learned_manifold.spectral_dims.check_dims`): a
per-point tensor is checked as an int is (tester D, s35: entries above ``r``, negative or fractional ones were used
silently and a wrong length failed inside torch), before any work and with one host sync at most."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from learned_manifold import LearnedDataManifold
from learned_manifold import geometry as geo
from learned_manifold.landing import normal_landing
from learned_manifold.regularised import TangentBundle
from tests.conftest import FixedSubspaceField

B, D, R = 3, 4, 3


def factor() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(B, D, R, generator=g, dtype=torch.float64), torch.randn(B, D, generator=g, dtype=torch.float64)


BAD = {
    "above r": (torch.tensor([4, 4, 4]), r"d must lie in 0\.\.r = 0\.\.3 at every point, got values from 4 to 4"),
    "negative": (torch.tensor([-2, 1, 1]), r"d must lie in 0\.\.r = 0\.\.3 at every point, got values from -2 to 1"),
    "fractional": (torch.tensor([1.5, 2.5, 0.2]), r"d must hold integer dimensions, got a tensor of dtype"),
    "integral floats": (torch.tensor([2.0, 2.0, 2.0]), r"d must hold integer dimensions"),
    "bools": (torch.tensor([True, True, False]), r"d must hold integer dimensions"),
    "wrong length": (torch.tensor([2, 2]), r"d must have one dimension per point, shape \(3,\), got shape \(2,\)"),
    "two axes": (torch.full((B, 1), 2), r"d must be an int or a \(B,\) tensor"),
    "0-d float": (torch.tensor(2.0), r"d must hold integer dimensions"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_per_point_dimension_is_refused_by_name_before_any_work(case, monkeypatch):
    d, message = BAD[case]
    A, u = factor()
    pairs = geo.eigenpairs(A)
    with pytest.raises(ValueError, match=rf"^{message}"):
        geo.spectral_apply(pairs, u, d, power=1)
    monkeypatch.setattr(geo, "eigenpairs", lambda *a, **k: pytest.fail("decomposed before d was checked"))
    with pytest.raises(ValueError, match=rf"^{message}"):
        geo.range_project(A, u, d)


def test_good_per_point_dimensions_and_integers_of_any_kind_project_as_before():
    """0..r per point (0: no direction, as the gap rule reads where G = 0); NumPy and 0-d tensor integers read as
    the int."""
    A, u = factor()
    U = geo.eigenpairs(A).vectors
    d = torch.tensor([0, 2, 3])
    expected = torch.stack([torch.zeros(D, dtype=A.dtype)] + [U[b, :, :k] @ (U[b, :, :k].T @ u[b])
                                                              for b, k in ((1, 2), (2, 3))])
    torch.testing.assert_close(geo.range_project(A, u, d), expected)
    torch.testing.assert_close(geo.spectral_apply(geo.eigenpairs(A), u, d.int(), power=0), expected)
    for two in (np.int64(2), torch.tensor(2)):
        torch.testing.assert_close(geo.range_project(A, u, two), geo.range_project(A, u, 2))


def count_syncs(monkeypatch) -> list[str]:
    """Spy on the tensor methods that read a value on the host; returns the list they append their names to.

    A call is counted once: under a torch-function mode (a default device set with ``torch.set_default_device``,
    or ``with torch.device(...)``) torch re-enters the patched method through the mode, and a plain spy counted
    that one sync twice (the s35 suite run: ``['tolist', 'tolist']`` after a test left a default device set)."""
    syncs: list[str] = []
    inside: list[str] = []

    def spy(t, *args, _f, _n):
        if inside:  # re-entered for the same call
            return _f(t, *args)
        syncs.append(_n)
        inside.append(_n)
        try:
            return _f(t, *args)
        finally:
            inside.pop()

    for name in ("__bool__", "item", "tolist", "__int__"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda t, *a, _f=original, _n=name: spy(t, *a, _f=_f, _n=_n))
    return syncs


@pytest.mark.parametrize("mode", ["plain", "default device"])
def test_a_per_point_dimension_costs_one_host_sync(monkeypatch, mode):
    """Its range is read with one ``tolist``; its dtype and length need none. Also counted right under a
    torch-function mode (a default device)."""
    A, u = factor()
    pairs = geo.eigenpairs(A)
    syncs = count_syncs(monkeypatch)
    with torch.device("cpu") if mode == "default device" else contextlib.nullcontext():
        geo.spectral_apply(pairs, u, torch.tensor([1, 2, 3]), power=-1)
    assert syncs == ["tolist"]


def test_check_range_false_skips_only_the_range_read():
    """``check_range=False`` (for dimensions in range by construction) skips the host sync of the range, not the
    free checks of dtype and length, and gives the same result as the checked call."""
    A, u = factor()
    pairs = geo.eigenpairs(A)
    dims = geo.intrinsic_dimension(pairs.values)
    torch.testing.assert_close(geo.spectral_apply(pairs, u, dims, power=1, check_range=False),
                               geo.spectral_apply(pairs, u, dims, power=1), rtol=0, atol=0)
    for case in ("integral floats", "wrong length", "two axes"):
        d, message = BAD[case]
        with pytest.raises(ValueError, match=rf"^{message}"):
            geo.spectral_apply(pairs, u, d, check_range=False)


class Plane(FixedSubspaceField):
    """The plane ``z = 0`` in R³ as a field with a landing projection (its exact denoiser)."""

    can_project = True

    def project(self, x: torch.Tensor, *, sigma: object = None) -> torch.Tensor:
        return x * x.new_tensor([1.0, 1.0, 0.0])


def test_the_librarys_own_gap_rule_dimensions_cost_no_range_read(monkeypatch):
    """Landing (`land`, `normal_landing`) and `TangentBundle.apply` pass ``intrinsic_dimension`` of the same
    eigenvalues, in range by construction: no range read (a host sync) per call or per landing iteration (s35
    review, finding 7: each had paid one since the range check)."""
    field = Plane(torch.eye(3, dtype=torch.float64)[:, :2].contiguous())
    x = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 0.25]], dtype=torch.float64)
    reads = []
    aminmax = torch.aminmax
    monkeypatch.setattr(torch, "aminmax", lambda t, *a, **k: reads.append(t.shape) or aminmax(t, *a, **k))
    landed = LearnedDataManifold(field, landing=True).projx(x)
    stepped = normal_landing(field, x)
    applied = TangentBundle(field).apply(x, x)
    assert reads == []
    on_plane = x * x.new_tensor([1.0, 1.0, 0.0])
    for out in (landed, stepped, applied):
        torch.testing.assert_close(out, on_plane)
    geo.spectral_apply(geo.eigenpairs(field.factor(x)), x, torch.tensor([2, 2]))  # a caller's d: read once
    assert reads == [(2,)]


def test_points_where_g_is_zero_are_not_counted_as_cut():
    """The warning where an explicit ``d`` exceeds the directions above the rounding cut counts only points that
    have a direction (``λ₁ > 0``): a point with ``G = 0`` (a k-NN field whose neighbours are copies) has none to cut,
    and counted it read "at 2 point(s) (λ_d/λ₁ up to nan)" (report A, s36, #8)."""
    A = torch.zeros(3, 3, 2, dtype=torch.float64)
    A[0, 0, 0] = A[0, 1, 1] = 1.0  # point 0: two directions
    A[1, 0, 0] = 1.0  # point 1: one, so d = 2 cuts it; point 2: G = 0
    u = torch.ones(3, 3, dtype=torch.float64)
    with pytest.warns(UserWarning, match=r"d = 2 asks for more directions .* at 1 point\(s\) \(λ_d/λ₁ up to 0\)"):
        projected = geo.range_project(A, u, 2)
    assert projected.tolist() == [[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
