"""Batched conjugate gradients (`metrics.conjugate_gradients.batched_cg`), also under ``torch.func.vmap``, and the
CG-based solves of the score fields (SPEC §7) vmapped over vectors at fixed points."""

import pytest
import torch
from torch import nn

from learned_manifold import LearnedDataManifold
from learned_manifold.metrics.conjugate_gradients import batched_cg
from learned_manifold.metrics.score import ScoreJacobianMetric, TangentialMetric

F64 = torch.float64


def spd_matrices(n: int, d: int, seed: int = 0) -> torch.Tensor:
    """``(n, d, d)`` symmetric positive definite matrices with condition numbers up to about 10."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, d, dtype=F64, generator=g)
    return a @ a.transpose(-1, -2) / d + 0.5 * torch.eye(d, dtype=F64)


def test_solves_every_row_and_vmap_over_right_hand_sides_equals_a_loop():
    """``K_i x_i = b_i`` to the tolerance, and ``vmap`` over several right-hand sides per row gives the answers of a
    Python loop (the stopping test had raised torch's "data-dependent control flow" error under vmap; tester B)."""
    K = spd_matrices(4, 6)
    B = torch.randn(3, 4, 6, dtype=F64, generator=torch.Generator().manual_seed(1))

    def solve(b: torch.Tensor) -> torch.Tensor:
        return batched_cg(lambda p: (K @ p.unsqueeze(-1)).squeeze(-1), b, iters=50, tol=1e-10)

    looped = torch.stack([solve(b) for b in B])
    torch.testing.assert_close(looped, torch.linalg.solve(K, B.unsqueeze(-1)).squeeze(-1), atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(torch.func.vmap(solve)(B), looped, atol=1e-12, rtol=1e-12)


def test_under_vmap_an_indefinite_matrix_and_running_out_of_iterations_are_still_reported():
    """The checks after the loop keep working under ``vmap``: an indefinite ``K_i`` is the ``ValueError``, an
    unconverged solve the ``RuntimeWarning`` naming its residual, as outside."""
    K = spd_matrices(2, 5)
    B = torch.randn(3, 2, 5, dtype=F64, generator=torch.Generator().manual_seed(2))
    indefinite = K.clone()
    indefinite[1] = -indefinite[1]
    with pytest.raises(ValueError, match="not positive definite at 3 point"):  # row 1 of each of the 3 vmapped
        torch.func.vmap(lambda b: batched_cg(lambda p: (indefinite @ p.unsqueeze(-1)).squeeze(-1), b,
                                             iters=20, tol=1e-8))(B)
    with pytest.warns(RuntimeWarning, match=r"cg_iters=1 iterations at 6 point\(s\) with relative residual up to"):
        torch.func.vmap(lambda b: batched_cg(lambda p: (K @ p.unsqueeze(-1)).squeeze(-1), b, iters=1, tol=1e-8))(B)


def test_a_singular_positive_semidefinite_matrix_is_refused():
    """Zero curvature ``pᵀ K p = 0`` (``K`` PSD but singular, ``b`` with a part in its null space) is refused as
    "not positive definite": a step ``α = ‖r‖² / 0`` would return inf/NaN, silently (report A, s36, #3). Only the
    singular row is counted; regularised, it is solved."""
    K = torch.stack([torch.diag(torch.tensor([1.0, 0.0, 2.0], dtype=F64)), spd_matrices(1, 3)[0]])
    b = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0]], dtype=F64)  # row 0: b in K's null space, p₀ = b

    def matvec(p: torch.Tensor) -> torch.Tensor:
        return (K @ p.unsqueeze(-1)).squeeze(-1)

    with pytest.raises(ValueError, match="not positive definite at 1 point"):
        batched_cg(matvec, b, iters=20, tol=1e-8)
    K[0] += torch.eye(3, dtype=F64) * 1e-3  # regularised, as the error says: solved
    torch.testing.assert_close(batched_cg(matvec, b, iters=20, tol=1e-12), torch.linalg.solve(K, b), atol=1e-9,
                               rtol=1e-9)


class LayerNormDenoiser(nn.Module):
    """``x̂ = y + 0.1 W₂ tanh(LayerNorm(W₁ y))``, float64: near the identity, so ``G + δI`` is positive definite."""

    data_shape = (3,)

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(3, 8), nn.LayerNorm(8), nn.Tanh(), nn.Linear(8, 3)).double()

    def denoise(self, y: torch.Tensor, sigma: float) -> torch.Tensor:
        return y + 0.1 * self.net(y)


@pytest.mark.parametrize("cls, method", [(ScoreJacobianMetric, "inner"), (ScoreJacobianMetric, "norm"),
                                         (TangentialMetric, "egrad2rgrad")])
def test_manifold_methods_of_cg_fields_vmap_over_vectors_at_fixed_points(cls, method):
    """``vmap`` over vectors at fixed points works for the fields whose methods run CG (`ScoreJacobianMetric`'s
    ``metric``, `TangentialMetric`'s ``apply``), as `LearnedDataManifold` says: the answers of a loop."""
    kwargs = {"delta": 0.1} if cls is ScoreJacobianMetric else {}
    M = LearnedDataManifold(cls(LayerNormDenoiser(), 0.3, **kwargs))
    g = torch.Generator().manual_seed(3)
    x, V = torch.randn(3, 3, dtype=F64, generator=g), torch.randn(4, 3, 3, dtype=F64, generator=g)
    looped = torch.stack([getattr(M, method)(x, v) for v in V])
    torch.testing.assert_close(torch.func.vmap(lambda v: getattr(M, method)(x, v))(V), looped, atol=1e-10, rtol=1e-8)
