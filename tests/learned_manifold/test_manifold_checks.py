"""`learned_manifold.manifold_checks.check_decomposition`: the δ = 0 manifold's one look at each decomposition of
the factor, a warning where the gap rule drops a real direction (tester D, item 1) and where the factor is NaN at
finite points (tester D, item 5), at no cost to a cached call."""

import math
import warnings

import pytest
import torch

from learned_manifold import LearnedDataManifold
from learned_manifold.metrics import KNNCDC, CoMetricField


class Polar(CoMetricField):
    """The flat plane in polar coordinates ``(r, θ)``: ``G = diag(1, 1/r²)``, full rank (tester D's field)."""

    low_rank, dim = True, 2

    def factor(self, x):
        scale = torch.stack([torch.ones_like(x[:, 0]), 1 / x[:, 0]], -1)
        return torch.diag_embed(scale)


class Cone(CoMetricField):
    """The cone ``z = ρ`` by its tangent projector: NaN at the tip ``ρ = 0`` (the normal is undefined there)."""

    low_rank, dim = True, 3

    def factor(self, x):
        rho = x[:, :2].norm(dim=-1)
        n = torch.stack([x[:, 0] / rho, x[:, 1] / rho, -torch.ones_like(rho)], -1) / math.sqrt(2)
        return torch.eye(3, dtype=x.dtype) - n.unsqueeze(-1) * n.unsqueeze(-2)


X = torch.tensor([[1.0, 0.0], [1.8, 0.0], [1.2, 0.5]])  # λ₂/λ₁ = 1/r²: 1, 0.309 (gap rule: d = 1), 0.59
E_THETA = torch.tensor([[0.0, 1.0]]).expand(3, 2)


def test_a_dropped_real_direction_warns_once_per_decomposition():
    """Before: ``inner(x, e_θ)`` was 0 at r = 3 (truth 9; here r = 1.8, truth 3.24) and ``proju(x, e_θ)`` was
    0, silently. Now a warning naming ``tangent_dim`` at the first call; the cached calls at the same points say
    nothing more (warnings are errors in this project), and ``tangent_dim=2`` gives the full metric without a
    warning."""
    M = LearnedDataManifold(Polar())
    with torch.no_grad():
        with pytest.warns(UserWarning, match=r"^LearnedDataManifold's proju, egrad2rgrad, inner and norm \(delta = "
                                             r"0\) keep the gap rule's directions .* at 1 of 3 points \(up to 0\.309 "
                                             r"λ₁\).*pass tangent_dim="):
            assert M.inner(X, E_THETA)[1].item() == 0  # the θ direction dropped at r = 1.8
        assert M._cache["checked"]
        M.proju(X, E_THETA), M.egrad2rgrad(X, E_THETA), M.norm(X, E_THETA)  # cached: no second warning
    full = LearnedDataManifold(Polar(), tangent_dim=2)
    torch.testing.assert_close(full.inner(X, E_THETA), X[:, 0] ** 2)


def test_a_factor_that_is_nan_at_finite_points_warns_naming_the_rows():
    """Before: ``inner``, ``proju`` and ``retr`` at a cone's tip returned NaN without a word. A point that is
    itself NaN gives NaN silently, as before (rows are independent)."""
    M = LearnedDataManifold(Cone(), tangent_dim=2)
    x = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    u = torch.tensor([[1.0, 0.0, 1.0]]).expand(3, 3)
    with pytest.warns(RuntimeWarning, match=r"^Cone\.factor is NaN or inf at 1 of 3 finite points \(rows 1\): "
                                            r"LearnedDataManifold's inner, proju, egrad2rgrad and retr are NaN there"):
        out = M.inner(x, u)
    assert out.isnan().tolist() == [False, True, False]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert M.proju(torch.full((1, 3), float("nan")), u[:1]).isnan().all()


def test_decompositions_are_checked_at_the_first_second_fourth_and_eighth(monkeypatch):
    """Each check is one host sync: checking every decomposition added 15–25% to an optimiser step's
    ``egrad2rgrad``; a problem that persists is still named, at a cost that vanishes over a long run."""
    import learned_manifold.manifold_factors as factors_module

    checked = []
    monkeypatch.setattr(factors_module, "check_decomposition", lambda *args, **kwargs: checked.append(args[1]))
    M = LearnedDataManifold(Polar(), tangent_dim=2)
    with torch.no_grad():
        for step in range(1, 10):
            M.egrad2rgrad(X + step, E_THETA)  # new points: a new decomposition
            M.egrad2rgrad(X + step, E_THETA)  # cached: no new one
    assert [int(x[0, 0] - X[0, 0]) for x in checked] == [1, 2, 4, 8]


def test_a_tangent_dim_that_splits_a_cluster_warns_as_curvature_does():
    """Tester C (s30, item 2): ``tangent_dim=1`` on a field whose top eigenvalues form a cluster (a spiral model's
    1.00 and 0.97) kept an arbitrary direction of it (``proju`` kept 0.59 of the true tangent) without a word, while
    `curvature` warned. Now the manifold warns at the user's line, with curvature's figures (λ₂/λ₁ = 1/r²: 1, 0.69
    and 0.83 here, median 0.83), once per checked decomposition (the cached calls say nothing more)."""
    M = LearnedDataManifold(Polar(), tangent_dim=1)
    x = torch.tensor([[1.0, 0.0], [1.2, 0.0], [1.1, 0.5]])
    with torch.no_grad():
        with pytest.warns(RuntimeWarning, match=r"^tangent_dim 1 splits a cluster of eigenvalues: λ_2 / λ_1 is 0\.83 "
                                                r"at the median point \(above 0\.5\), so the tangent space that proju, "
                                                r".*\(the gap rule reads dimension 2 here\)") as record:
            M.proju(x, E_THETA)
        assert record[0].filename == __file__
        M.inner(x, E_THETA), M.egrad2rgrad(x, E_THETA)  # cached: no second warning (warnings are errors here)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LearnedDataManifold(Polar(), tangent_dim=1).proju(X[1:2] * 3, E_THETA[:1])  # λ₂/λ₁ = 0.034: a true split


@pytest.mark.parametrize("c", [1.0, 1e-4, 1e4])
def test_the_point_and_vector_checks_give_the_same_verdict_in_any_units(c):
    """A k-NN unit sphere in units ``c`` (σ = 0.1 c): a landed point passes and one σ/3 off fails; a tangent vector
    passes and one with a normal part of 0.5% of its length fails, at every ``c``. With ``atol = 1e-5`` in data
    units the point off the data and the vector off the tangent space passed at ``c = 1e-4`` (tester E)."""
    g = torch.Generator().manual_seed(0)
    u = torch.nn.functional.normalize(torch.randn(800, 3, generator=g, dtype=torch.float64), dim=-1)
    M = LearnedDataManifold(KNNCDC(u * c, k=32, sigma=0.1 * c), landing=True)
    n = torch.nn.functional.normalize(torch.tensor([[1.0, 2.0, 2.0]], dtype=torch.float64), dim=-1)
    on = M.projx(c * n)
    assert M.check_point_on_manifold(on)
    ok, reason = M.check_point_on_manifold(on + (0.1 * c / 3) * n, explain=True)
    assert not ok and reason.startswith("x is not a fixed point of the landing projection")
    t = M.proju(on, c * torch.tensor([[0.0, 1.0, -1.0]], dtype=torch.float64))
    assert M.check_vector_on_tangent(on, t)
    ok, reason = M.check_vector_on_tangent(on, t + 0.005 * t.norm() * n, explain=True)
    assert not ok and reason.startswith("u is not in the learned tangent space")
