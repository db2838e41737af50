"""Intrinsic dimension from the eigenvalues of a co-metric (SPEC §5): the pointwise largest-gap rule and its
median over points, and the two checks of a chosen ``d`` shared by `LearnedDataManifold`, `curvature` and the paths:
it drops a real direction (`warn_if_dropping`) or splits a cluster of eigenvalues (`warn_if_splitting`).
Re-exported by `learned_manifold.geometry`."""

from __future__ import annotations

import torch
from torch import Tensor

from .user_warnings import warn_user

__all__ = ["intrinsic_dimension", "global_dimension", "dropped_share", "warn_if_dropping", "split_ratio",
           "warn_if_splitting", "CLUSTER_RATIO", "DROPPED_LIMIT"]

DROPPED_LIMIT = 0.25
"""Largest share ``λ_{d+1}/λ₁`` of an eigenvalue the gap rule may drop silently (`warn_if_dropping`). A trusted
CDC's normal eigenvalues average below 0.1 λ₁ at the data (the trainer's outside limit,
`learned_manifold.diagnostics.OUTSIDE_THRESHOLD`), with single points up to about 0.13 (a trained torus model,
landed: 0.105–0.128 at 4 of 32 points), so 0.25 leaves them alone; a larger dropped eigenvalue is a real direction
of the field (a full-rank metric, a k-NN field reading d = 1 on S² with λ₂ ≈ 0.45 λ₁).

The price of that choice: a real direction whose eigenvalue is at most 0.25 λ₁ is dropped **silently**. The gap rule
reads ``d = 1`` for a full-rank ``G = diag(1, s)`` with ``s < 1/2``, and from ``s ≤ 0.25`` on nothing warns: at
``s = 0.2`` a geodesic from (0, 0) to (1, 1) at δ = 0 reports length 1.00 against the metric's 2.45 (0.41 of the
truth), converged, and the δ = 0 manifold's ``inner``, ``proju`` and ``egrad2rgrad`` ignore that direction alike.
The threshold cannot tell such a direction from a learned field's leftover normal eigenvalue; only the user knows
the field is full-rank: pass ``tangent_dim=`` (its true dimension) or use ``δ > 0`` there."""

CLUSTER_RATIO = 0.5
"""A ``d`` whose ``λ_{d+1} / λ_d`` exceeds this at the median point splits a cluster of tangent eigenvalues (an
estimated field's differ by noise), with a warning (`warn_if_splitting`): the kept ``d`` directions are then an
arbitrary part of the cluster (`LearnedDataManifold`'s ``proju`` kept 0.59 of a spiral model's true tangent with
``tangent_dim=1``, λ₂/λ₁ = 0.97), and `curvature`'s ``II`` divides by ``λ_d − λ_{d+1} < λ_d / 2``, so noise in the
eigenvalues is amplified. Measured: S² asked for ``d = 1``, ``λ₂/λ₁`` has median 0.77 (k-NN, 4,000 points,
k = 512, σ = 0.1; range 0.45–0.995) and 0.99 (a trained model), where |H| reached 309 and 22 (truth 1 at d = 2);
a true tangent/normal split has ``λ_{d+1}/λ_d`` at most 0.02 (k-NN), 0.03 (trained sphere), 0.08 (trained torus)."""


def intrinsic_dimension(values: Tensor) -> Tensor:
    """Pointwise intrinsic dimension by the scale-free largest-gap rule (SPEC §5).

    Sort eigenvalues descending, divide by ``λ₁``, append 0; ``d = argmax_{k=1..r} (λ̃_k − λ̃_{k+1})``.

    The rule is scale-free, so it reads 1..r wherever ``λ₁ > 0``: a 0-dimensional set (tight clusters) whose
    eigenvalues are all tiny (``λ₁ ~ 1e-7``) still reads 1 or more, and a tiny ``λ₁`` is not flagged. To tell "no
    tangent direction" apart, look at the absolute size of ``λ₁``: the CDC's tangent eigenvalues tend to 1 (SPEC
    §2), normal ones to 0. Only an all-zero spectrum (``λ₁ ≤ 0``: ``G = 0``, e.g. a k-NN field whose neighbours
    are all copies of one point) reads 0: there is no direction at all (it read 1, and an optimiser on it never
    moved).

    Args:
        values: ``(B, r)`` eigenvalues (any order).

    Returns:
        ``(B,)`` integer tensor with values in ``0..r`` (0 exactly where ``λ₁ ≤ 0``).
    """
    if values.shape[-1] == 0:
        raise ValueError(f"intrinsic_dimension: values has r = 0 eigenvalues (shape {tuple(values.shape)}): G = 0 "
                         "has no eigen-directions, so no dimension (SPEC §5)")
    v = values.sort(dim=-1, descending=True).values
    top = v[..., 0]
    v = v / v[..., :1].clamp_min(torch.finfo(v.dtype).tiny)
    v = torch.cat([v, torch.zeros_like(v[..., :1])], dim=-1)
    gaps = v[..., :-1] - v[..., 1:]
    dims = gaps.argmax(dim=-1) + 1
    return torch.where(top > 0, dims, torch.zeros_like(dims))


def global_dimension(values: Tensor) -> int:
    """Global intrinsic dimension: the lower median of the pointwise dimensions of ``values`` ``(B, r)``.

    For an even count it is the lower of the two middle dimensions (``torch.median``), not their mean: always a
    dimension some point has, and the conservative one (dimensions ``[1, 1, 2, 2]`` give 1, where
    ``quantile(0.5)`` gives 1.5).
    """
    return int(intrinsic_dimension(values).median().item())


def dropped_share(values: Tensor, d: int | Tensor) -> Tensor:
    """``(B,)`` share ``λ_{d+1}/λ₁`` of the largest eigenvalue that keeping ``d`` directions drops (0 where
    ``d = r``, and where ``λ₁ = 0``).

    Args:
        values: ``(B, r)`` eigenvalues (any order).
        d: the kept count, an int or ``(B,)`` integers in ``0..r`` (0 only where ``λ₁ = 0``).
    """
    v = values.sort(dim=-1, descending=True).values.clamp_min(0)
    v = torch.cat([v, torch.zeros_like(v[..., :1])], dim=-1)
    kept = torch.as_tensor(d, device=v.device).long().expand(v.shape[:-1])
    nxt = v.gather(-1, kept.unsqueeze(-1)).squeeze(-1)
    top = v[..., 0]
    return torch.where(top > 0, nxt / top.clamp_min(torch.finfo(v.dtype).tiny), torch.zeros_like(top))


def warn_if_dropping(values: Tensor, d: int | Tensor, what: str) -> bool:
    """Warn once where keeping ``d`` directions drops an eigenvalue above `DROPPED_LIMIT` ``· λ₁`` at some point.

    The gap rule (`intrinsic_dimension`) reads the dimension of a CDC, whose normal eigenvalues tend to 0 (SPEC §5).
    On a field whose weaker directions are real (a full-rank metric, a k-NN field where ``λ₂/λ₁ < 1/2``), it drops
    them, and a length, a projection or a curvature on the kept directions is not the field's. One host sync.

    A dropped eigenvalue at or below `DROPPED_LIMIT` ``· λ₁`` is dropped **without a warning**, real or not (a
    deliberate threshold: a trained CDC's leftover normal eigenvalues reach about 0.13 λ₁): ``G = diag(1, 0.2)``
    reads ``d = 1`` and its geodesic lengths come out 0.41 of the truth, silently. For a field known to be
    full-rank, pass ``tangent_dim=`` or use ``δ > 0``.

    Args:
        values: ``(B, r)`` eigenvalues; d: the kept count (int or ``(B,)``); what: the result affected, for the
            message (e.g. ``"geodesic: the reported lengths"``). The warning points at the user's line
            (`user_warnings.warn_user`).

    Returns:
        whether it warned.
    """
    if values.numel() == 0:
        return False
    share = dropped_share(values.detach(), d)
    bad = share > DROPPED_LIMIT
    n_bad = int(bad.sum())
    if n_bad == 0:
        return False
    # Every number is read from the tensors and turned into a str before the message is built: under torch.compile
    # a host sync (a graph break) inside an f-string, after an int that varies between calls, left that int among
    # the pieces the resumed frame joins ("TypeError: sequence item 4: expected str instance, int found", tester C
    # s37; torch 2.13's dynamo).
    bad_count, point_count = str(n_bad), str(share.numel())
    largest = f"{float(share.max()):.3g}"
    warn_user(f"{what} keep the gap rule's directions (SPEC §5), which drop an eigenvalue above "
              f"{DROPPED_LIMIT:g} λ₁ at {bad_count} of {point_count} points (up to {largest} λ₁). "
              "On data, or for a full-rank or k-NN metric, those are real directions of the field: pass "
              "tangent_dim= (the field's true dimension) to keep them. At points off the data (a path through "
              "empty space) a learned field is no projector and this is expected there.")
    return True


def split_ratio(values: Tensor, d: int) -> Tensor:
    """``(B,)`` ratio ``λ_{d+1} / λ_d`` of the eigenvalues ``values`` ``(B, r)`` (any order; ``d`` in ``1..r``): near
    1 where keeping ``d`` directions splits a cluster (`CLUSTER_RATIO`). 0 where ``d = r``; NaN where ``λ_d ≤ 0``
    (no direction to keep: the ratio says nothing) and in non-finite rows."""
    v = values.sort(dim=-1, descending=True).values.clamp_min(0)
    kept = v[..., d - 1]
    after = v[..., d] if d < v.shape[-1] else torch.zeros_like(kept)
    return torch.where(kept > 0, after / torch.where(kept > 0, kept, 1), float("nan"))


def warn_if_splitting(ratio: float, d: int, values: Tensor, consequence: str, *, given: bool) -> bool:
    """Warn (``RuntimeWarning``) where ``d`` splits a cluster of eigenvalues: ``ratio``, the median over points of
    `split_ratio`, above `CLUSTER_RATIO`. ``values`` ``(B, r)`` give the gap rule's own (global) dimension for the
    message, read only when it warns (a host sync then); ``consequence`` says what follows the noise (e.g.
    ``"the tangent projector of dimension 1 follows ..."``); ``given``: whether the caller chose ``d``
    (``tangent_dim``) or the gap rule did. The warning points at the user's line (`user_warnings.warn_user`).

    Returns:
        whether it warned.
    """
    if not ratio > CLUSTER_RATIO:  # (NaN: no point to judge)
        return False
    kept, after, ratio = str(int(d)), str(int(d) + 1), float(ratio)
    rule = str(global_dimension(values))  # a host sync: read before the message is built (`warn_if_dropping`)
    asked = (f"tangent_dim {kept} splits a cluster of eigenvalues" if given else
             f"the field's eigenvalues show no clear tangent/normal split at the gap rule's dimension {kept}")
    warn_user(f"{asked}: λ_{after} / λ_{kept} is {ratio:.2g} at the median point (above "
              f"{CLUSTER_RATIO:g}), so {consequence} (the gap rule reads dimension {rule} here)", RuntimeWarning)
    return True
