"""The flows' settings are checked before any work, each with one error naming it (`flow_inputs`, SPEC §6)."""

import re

import pytest
import torch

from learned_manifold import LearnedDataManifold, gradient_flow, interpolate
from tests.conftest import FixedSubspaceField

Q = torch.linalg.qr(torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)).Q
M = LearnedDataManifold(FixedSubspaceField(Q))
X = torch.randn(2, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


class _Counted:
    """An objective that counts its calls: a refusal before any work never calls it."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        return 0.5 * x.pow(2).sum(-1)


@pytest.mark.parametrize("landing", ["no", float("nan"), -1, 1])
def test_landing_that_is_not_a_bool_is_refused_as_the_manifold_refuses_it(landing):
    """``'no'``, ``nan`` and ``-1`` had switched landing on. ``None`` is the flows' default (the manifold's own
    setting, `flow_inputs._landing_of`), not the manifold's."""
    message = re.escape(f"landing must be True, False or None (the default: a LearnedDataManifold's own setting), "
                        f"got {landing!r}")
    f = _Counted()
    with pytest.raises(TypeError, match=message):
        gradient_flow(M, f, X, landing=landing)
    assert f.calls == 0
    with pytest.raises(TypeError, match=message):
        interpolate(M, X, X.flip(0), landing=landing)
    with pytest.raises(TypeError, match=re.escape(f"landing must be True or False, got {landing!r}")):
        LearnedDataManifold(FixedSubspaceField(Q), landing=landing)


@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
def test_a_step_size_for_an_adaptive_method_is_refused(method):
    """torchdiffeq ignored it: step_size None, 0.5 and 1e-4 gave bit-identical paths with the same evaluations."""
    message = re.escape(f"step_size applies to the fixed-step methods ['euler', 'midpoint', 'rk4']; the adaptive "
                        f"method {method!r} chooses its own steps from rtol/atol")
    f = _Counted()
    with pytest.raises(ValueError, match=message):
        gradient_flow(M, f, X, method=method, step_size=0.5)
    assert f.calls == 0
    with pytest.raises(ValueError, match=message):
        interpolate(M, X, X.flip(0), method=method, step_size=0.5)


@pytest.mark.parametrize("name, value", [("rtol", float("nan")), ("atol", -5.0), ("rtol", "tight"), ("atol", True),
                                         ("rtol", 0.0)])
@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_tolerances_are_checked_for_fixed_step_methods_as_for_adaptive_ones(name, value, method):
    """A fixed-step method does not use rtol/atol, yet ``nan``, ``-5`` and ``'tight'`` are no tolerances: they were
    accepted there while dopri5 refused each by name."""
    message = re.escape(f"{name} must be a finite number > 0, got {value!r}")
    for m in (method, "dopri5"):
        with pytest.raises(ValueError, match=message):
            gradient_flow(M, _Counted(), X, method=m, **{name: value})
        with pytest.raises(ValueError, match=message):
            interpolate(M, X, X.flip(0), method=m, **{name: value})
