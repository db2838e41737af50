"""Batched conjugate gradients for the score fields' ``metric`` solves (`metrics.score`, SPEC §7): one SPD system
``K_i x_i = b_i`` per point, each row with its own step sizes and stopping test.

The solve works under ``torch.func.vmap`` (e.g. over the vectors at fixed points, `LearnedDataManifold`): its
stopping test and error checks read a mask's values, which ``vmap`` forbids for a batched tensor, so they read the
tensor under every ``torch.func`` wrapper (`func_transforms.unwrapped`), with all the vmapped rows in it; the loop
then runs until every row of every vmapped problem has stopped, rows that have stopped staying put (masked updates)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..func_transforms import unwrapped
from ..user_warnings import warn_user

__all__ = ["LinearMap", "batched_cg"]

LinearMap = Callable[[Tensor], Tensor]


def batched_cg(matvec: LinearMap, b: Tensor, *, iters: int, tol: float) -> Tensor:
    """Solve ``K_i x_i = b_i`` for every row ``i`` by conjugate gradients, with SPD operators ``K_i``.

    Each row runs its own step sizes and stops once ``‖r_i‖ ≤ tol · ‖b_i‖``; the loop ends when every row has
    stopped or after ``iters`` iterations (the current iterate is returned either way, with a ``RuntimeWarning``
    naming the worst residual when some row had not converged). Under ``torch.func.vmap`` the same: the loop
    stops once every row of every vmapped problem has stopped, and the checks count the rows of all of them.

    Args:
        matvec: ``(B, D)`` → ``(B, D)``, row ``i`` multiplied by ``K_i``.
        b: ``(B, D)`` right-hand sides.
        iters: maximum number of iterations (one ``matvec`` each).
        tol: relative residual tolerance.

    Returns:
        ``(B, D)`` solutions.

    Raises:
        ValueError: if some ``K_i`` shows a non-positive curvature ``pᵀ K_i p ≤ 0`` (not positive definite).
    """
    x = torch.zeros_like(b)
    r, p = b, b
    rr = (r * r).sum(-1)
    stop = tol**2 * rr
    indefinite = torch.zeros_like(rr, dtype=torch.bool)
    for _ in range(iters):
        active = (rr > stop) & ~indefinite
        if not bool(unwrapped(active).any()):
            break
        kp = matvec(p)
        pkp = (p * kp).sum(-1)
        indefinite = indefinite | (active & (pkp <= 0))
        active = active & ~indefinite
        alpha = torch.where(active, rr / torch.where(active, pkp, 1.0), 0.0).unsqueeze(-1)
        x = x + alpha * p
        r = r - alpha * kp
        rr_next = (r * r).sum(-1)
        beta = torch.where(active, rr_next / torch.where(active, rr, 1.0), 0.0).unsqueeze(-1)
        p = r + beta * p
        rr = rr_next
    indefinite = unwrapped(indefinite)
    if bool(indefinite.any()):
        count = int(indefinite.sum())  # read first (`metrics.base.check_finite_points`: torch.compile)
        raise ValueError(
            f"conjugate gradients met a matrix that is not positive definite at {count} "
            "point(s); increase the regulariser (delta or eps)"
        )
    left = (rr > stop) & (rr > 0)
    relative = torch.where(left, rr / torch.where(left, stop / tol**2, 1.0), 0.0) if tol > 0 else None
    left = unwrapped(left)
    if bool(left.any()):  # out of iterations: say so rather than return an unconverged solve as if it were one
        worst = float(unwrapped(relative).max().sqrt().detach()) if relative is not None else float("nan")
        count = int(left.sum())  # read first (`metrics.base.check_finite_points`: torch.compile)
        warn_user(f"conjugate gradients stopped after cg_iters={iters} iterations at {count} point(s) "
                  f"with relative residual up to {worst:.2g} > cg_tol={tol:g}: the solve is approximate; raise "
                  "cg_iters (an ill-conditioned G at small sigma needs more) or the regulariser", RuntimeWarning)
    return x
