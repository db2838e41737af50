"""`manifold_cache.FactorCache.PIN_BYTES`: the entries pinned to optimiser parameters are bounded in bytes as well as
in number (tester report: 20 parameters of 4,096 MNIST images at ``r = 10`` pinned 5 GB, where the fixed 8-entry
cache had held at most 8 entries). A pin is made only while the pinned entries hold less than the budget, so they
hold at most the budget plus one entry; beyond it the pins held stay, no new one is made, and one warning says so."""

import warnings

import pytest
import torch

from learned_manifold import LearnedDataManifold, RiemannianAdam
from learned_manifold import manifold_cache as mc
from tests.learned_manifold.test_manifold_cache_capacity import CountedPolar, _evaluations, _parameters, _pinned, _steps


def _entry(B, D, r, device="cpu", dtype=torch.float64):
    """A cache entry's tensors as `cache_entry` makes them (no eigenpairs yet), without a field."""
    return {"point": torch.zeros(B, D, device=device, dtype=dtype), "A": torch.zeros(B, D, r, device=device,
                                                                                      dtype=dtype), "pairs": None}


def test_an_entry_counts_its_points_its_factor_and_the_eigenpairs_to_come():
    """``(1 + 3r) B D + B r`` numbers: the points, the factor, the eigenvectors and the gap rule's basis (each the
    factor's size) and the eigenvalues, and two ``(B,)`` int64 counts (kept columns, the gap rule's dimensions),
    before the eigenpairs are made."""
    B, D, r = 5, 7, 3
    assert mc.entry_bytes(_entry(B, D, r)) == 8 * ((1 + 3 * r) * B * D + B * r) + 2 * 8 * B
    assert mc.entry_bytes(_entry(B, D, r, dtype=torch.float32)) == 4 * ((1 + 3 * r) * B * D + B * r) + 2 * 8 * B


def test_an_entry_counts_the_tensors_it_holds_once_its_eigenpairs_are_made_as_before():
    M = LearnedDataManifold(CountedPolar())  # (tangent_dim None: the gap rule's basis is made too)
    x = torch.rand(6, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 1
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (the gap rule's note on the plane's unequal eigenvalues)
        M.proju(x, torch.ones_like(x))
    entry = M._factors().latest
    pairs = entry["pairs"]
    assert pairs is not None and pairs.gap is not None
    held = [entry["point"], entry["A"], pairs.values, pairs.vectors, pairs.kept, *pairs.gap]
    assert mc.entry_bytes(entry) == sum(t.numel() * t.element_size() for t in held)
    entry["pairs"] = None  # (as before they were made: the same count)
    assert mc.entry_bytes(entry) == sum(t.numel() * t.element_size() for t in held)


def test_a_view_counts_the_storage_it_holds():
    """A factor that is a view of a larger tensor keeps all of it."""
    entry = _entry(2, 3, 1)
    whole = torch.zeros(10, 3, 1, dtype=torch.float64)
    entry["A"] = whole[:2]
    assert mc.entry_bytes(entry) == mc.entry_bytes(_entry(2, 3, 1)) + 8 * 8 * 3


def test_the_default_budget_pins_six_mnist_sized_entries():
    """The class docstring's numbers: an entry of 4,096 MNIST images at ``r = 10`` in float32 counts 398 MB (meta
    tensors: no memory), and the 2 GiB budget pins six of them (2.4 GB; before: one per parameter)."""
    entry = _entry(4096, 784, 10, device="meta", dtype=torch.float32)
    one = mc.entry_bytes(entry)
    assert one == pytest.approx(398.4e6, rel=1e-3)
    assert mc.FactorCache.PIN_BYTES == 2 * 2**30
    held = 0
    pins = 0
    while held < mc.FactorCache.PIN_BYTES:  # (`find`'s rule: pin while the pins hold less than the budget)
        held, pins = held + one, pins + 1
    assert pins == 6


def _one_entry_bytes():
    """What one parameter's pinned entry counts in these tests (`_parameters`: 4 points in the plane)."""
    M = LearnedDataManifold(CountedPolar(), tangent_dim=2)
    params = _parameters(1)
    opt = RiemannianAdam(params, lr=1e-2, manifold=M)  # (held: a pin ends with its optimiser)
    _steps(opt, params, 2)
    (entry,) = _pinned(M)
    return mc.entry_bytes(entry)


@pytest.mark.parametrize("tangent_dim", [2, None])
def test_a_budget_reached_before_the_count_pins_no_more_and_warns_once(monkeypatch, tangent_dim):
    """16 parameters, a budget of 3.5 entries: the first 4 pinned keep one factor evaluation per step, the 12 others
    cycle through the 8 unpinned places (two each), the pinned bytes stay within the budget plus one entry at every
    step (also where the eigenpairs and the gap rule's basis are made after the pin: ``tangent_dim=None``), and
    one warning names the bytes and the budget."""
    one = _one_entry_bytes()
    monkeypatch.setattr(mc.FactorCache, "PIN_BYTES", int(3.5 * one))
    field = CountedPolar()
    M = LearnedDataManifold(field, tangent_dim=tangent_dim)
    params = _parameters(16)
    opt = RiemannianAdam(params, lr=1e-2, manifold=M)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(5):
            if step == 2:
                field.calls[0] = 0
            _steps(opt, params, 1)
            pinned = _pinned(M)
            assert sum(map(mc.entry_bytes, pinned)) <= mc.FactorCache.PIN_BYTES + max(map(mc.entry_bytes, pinned))
    budget = [str(w.message) for w in caught if "PIN_BYTES" in str(w.message)]
    assert len(budget) == 1 and f"PIN_BYTES = {int(3.5 * one)}" in budget[0]
    assert not [w for w in caught if "PIN_LIMIT" in str(w.message)]
    assert len(_pinned(M)) == 4 and len(M._factors().entries) <= 4 + mc.FactorCache.CAPACITY + 1
    assert field.calls[0] == 3 * (4 + 2 * 12)


def test_within_the_budget_every_parameter_keeps_its_pin_silently(monkeypatch):
    """A budget just above what 16 parameters hold: hits as without a budget, one evaluation per step each."""
    monkeypatch.setattr(mc.FactorCache, "PIN_BYTES", 16 * _one_entry_bytes() + 1)
    field = CountedPolar()
    M = LearnedDataManifold(field, tangent_dim=2)
    params = _parameters(16)
    opt = RiemannianAdam(params, lr=1e-2, manifold=M)
    assert _evaluations(field, opt, params, 3) == 3 * 16
    assert len(_pinned(M)) == 16


def test_a_budget_of_zero_pins_nothing(monkeypatch):
    monkeypatch.setattr(mc.FactorCache, "PIN_BYTES", 0)
    M = LearnedDataManifold(CountedPolar(), tangent_dim=2)
    params = _parameters(3)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        opt = RiemannianAdam(params, lr=1e-2, manifold=M)  # (held: a pin ends with its optimiser)
        _steps(opt, params, 2)
    assert not _pinned(M)
