"""The discrete path energy of SPEC §6 and the metric length that reports a path, in memory bounded by a budget.

The energy of a path ``x_0, …, x_{T−1}`` is ``E = Σ_i Δ_iᵀ g(x_{i+½}) Δ_i`` (`segment_energies`: one field call on
every segment, which the solvers' gradient steps need). `path_energy`, which measures a finished path (a geodesic's
energy and length, its `geodesic_solvers.resolution` on 4 sub-segments per segment, a flow's metric length through
`regularised.polyline_lengths`), sums it over chunks of segments instead (`segments_per_call`), so that its peak
memory without a gradient does not grow with the number of points: one call on all 2 × 64 segments of two 65-point
paths through a k-NN CDC at D = 65,536 needed 5.2 GiB after a flow that had fit in 0.4 GiB.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .metrics.base import CoMetricField
from .precision import full_precision

__all__ = ["SEGMENT_BUDGET_BYTES", "SEGMENT_WORKSPACE", "UNKNOWN_RANK", "path_energy", "segment_energies",
           "segments_per_call"]

SEGMENT_BUDGET_BYTES = 256 * 2**20
"""Bytes that one field call of `path_energy` may take, estimated by `segments_per_call`."""

SEGMENT_WORKSPACE = 8
"""Bytes a field call takes per point, in units of its factor ``(D, r)``: a k-NN CDC (k = 32, float32, D = 16,384
and 65,536) took 5 to 6 times its factor per point (the factor, the neighbour search, the solve's temporaries)."""

UNKNOWN_RANK = 64
"""The factor width ``r`` assumed by `segments_per_call` for a field that names none (``rank`` or ``k``)."""


@full_precision
def segment_energies(field: CoMetricField, path: Tensor) -> Tensor:
    """Squared metric lengths ``Δ_iᵀ g(x_{i+½}) Δ_i`` of the segments of a batch of paths.

    All segments of all paths go through one call of ``field.metric`` on ``(B·(T−1), D)`` points, unless the
    field defines its own curve energy ``field.segment_energies(path)`` (e.g. `VAEPullbackMetric`, SPEC §11).
    `path_energy` calls it on chunks of segments.

    Args:
        field: the co-metric field; ``g = (G + δI)^{-1}`` is ``field.metric``.
        path: ``(B, T, D)`` points, ``T ≥ 2``.

    Returns:
        ``(B, T − 1)``.
    """
    if path.ndim != 3 or path.shape[1] < 2:
        raise ValueError(f"path must have shape (B, T, D) with T >= 2, got {tuple(path.shape)}")
    own = getattr(field, "segment_energies", None)
    if own is not None:
        return own(path)
    b, t, d = path.shape
    step = (path[:, 1:] - path[:, :-1]).reshape(-1, d)
    mid = (0.5 * (path[:, 1:] + path[:, :-1])).reshape(-1, d)
    return (step * field.metric(mid, step)).sum(-1).reshape(b, t - 1)


def _factor_width(field: object) -> int:
    """``r``: the ``rank`` (a learned field) or ``k`` (a k-NN CDC) of ``field`` or of the field it wraps
    (``inner_field``: `regularised.Regularised`, `regularised.TangentBundle`), else `UNKNOWN_RANK`."""
    for _ in range(8):  # wrappers nest a few deep at most
        for name in ("rank", "k"):
            value = getattr(field, name, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
        field = getattr(field, "inner_field", None)
        if field is None:
            break
    return UNKNOWN_RANK


def segments_per_call(field: CoMetricField, path: Tensor) -> int:
    """Segments of each path that one field call of `path_energy` takes: the most whose ``B·segments`` points fit in
    `SEGMENT_BUDGET_BYTES` at `SEGMENT_WORKSPACE` factors ``(D, r)`` each (``r``: `_factor_width`), at least 1.

    Args:
        field: the co-metric field.
        path: ``(B, T, D)``.
    """
    b, _, d = path.shape
    per_segment = max(1, SEGMENT_WORKSPACE * b * d * _factor_width(field) * path.element_size())
    return max(1, SEGMENT_BUDGET_BYTES // per_segment)


@full_precision
def path_energy(field: CoMetricField, path: Tensor) -> tuple[Tensor, Tensor]:
    """Discrete energy and metric length of a batch of paths (SPEC §6).

    `segment_energies` on consecutive chunks of `segments_per_call` segments of every path (the sub-paths
    ``path[:, i : j + 1]``), so without a gradient (the reporting passes) peak memory does not grow with ``T``;
    the same values as one call, to rounding, and differentiable in ``path`` (with a gradient every chunk's graph
    lives until the backward pass, so memory then grows with ``T`` as one call's would).

    Args:
        field: the co-metric field.
        path: ``(B, T, D)``, ``T ≥ 2``.

    Returns:
        ``(energy, length)``, each ``(B,)``: ``Σ_i Δ_iᵀ g Δ_i`` and ``Σ_i sqrt(Δ_iᵀ g Δ_i)``. A zero-length segment (a
        repeated point) adds the subgradient 0 to the length's gradient, as ``LearnedDataManifold.norm`` at ``u = 0``
        (``sqrt``'s own derivative there is ``inf · 0 = NaN``, for both of the segment's ends); NaN stays NaN.
    """
    if path.ndim != 3 or path.shape[1] < 2:
        raise ValueError(f"path must have shape (B, T, D) with T >= 2, got {tuple(path.shape)}")
    per_call, segments = segments_per_call(field, path), path.shape[1] - 1
    seg = torch.cat([segment_energies(field, path[:, i: min(i + per_call, segments) + 1])
                     for i in range(0, segments, per_call)], dim=1)
    squared = seg.clamp_min(0.0)  # rounding can make a zero segment's energy slightly negative
    zero = squared == 0
    return seg.sum(-1), torch.where(zero, 0.0, torch.where(zero, 1.0, squared).sqrt()).sum(-1)
