"""Scores for paths, tangent estimates and cost: the numbers every comparison reports (SPEC §5, §6, §8).

Plain functions of tensors and co-metric fields; results are small dataclasses of per-pair or per-point tensors.
Nothing here trains or changes a field.

* Paths (SPEC §6): `path_quality` (distance to the data or to a known manifold, Euclidean length, gap to the
  target, ratio to the true geodesic length) and `lerp`, the straight-line reference shown beside every path.
* Tangent spaces and dimension (SPEC §5): `field_eigenpairs` (defined in `learned_manifold.field_spectrum`,
  importable from here), `tangent_error`, `dimension_accuracy`.
* Cost (SPEC §8): `time_per_query`, `peak_memory` (defined in `learned_manifold.cost`, importable from here).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from .checks import as_index
from .cost import peak_memory, time_per_query
from .field_spectrum import field_eigenpairs
from .geometry import Eigenpairs, intrinsic_dimension, projector_error, truncate_basis, zero_safe_sqrt
from .metrics.base import as_points, check_count, check_finite_points
from .metrics.nearest import nearest_rows
from .precision import full_precision
from .types import FieldLike

__all__ = [
    "PathQuality",
    "path_quality",
    "nearest_distance",
    "lerp",
    "field_eigenpairs",
    "tangent_error",
    "basis_deviation",
    "dimension_accuracy",
    "bandwidth_grid",
    "spectral_report",
    "time_per_query",
    "peak_memory",
]


@dataclass
class PathQuality:
    """Per-pair scores of a batch of paths (SPEC §6). Entries that cannot be computed are ``None``.

    Attributes:
        max_distance: ``(B,)`` largest distance of a path point to the manifold (or to the nearest data point).
        mean_distance: ``(B,)`` mean of those distances over the path's points.
        length: ``(B,)`` Euclidean polyline length ``Σ_i ‖x_{i+1} − x_i‖``.
        endpoint_gap: ``(B,)`` ``‖x_{T−1} − target‖``; ``None`` without a target.
        geodesic_length: ``(B,)`` true geodesic distance from the start to the target (or to the path's end when
            no target is given), ``inf`` where no geodesic joins them (ends on different pieces of a union);
            ``None`` unless the manifold implements ``geodesic_distance``.
        length_ratio: ``(B,)`` ``length / geodesic_length`` (1 for a perfect polyline of an exact geodesic,
            slightly below 1 from the chords); NaN where ``geodesic_length`` is not finite and positive (no geodesic:
            the ratio read 0, "better than perfect"; coincident ends: nothing to compare with); ``None`` with
            ``geodesic_length``.
    """

    max_distance: Tensor | None
    mean_distance: Tensor | None
    length: Tensor
    endpoint_gap: Tensor | None = None
    geodesic_length: Tensor | None = None
    length_ratio: Tensor | None = None

    def summary(self) -> dict[str, float | int]:
        """Means over pairs of every available score, as plain floats (for tables and JSON).

        Only finite entries are averaged (an ``inf`` geodesic length or a NaN ratio was averaged in silently); a
        score that left some out says how many under ``"<score>_left_out"`` (the reasons: `PathQuality`), and one
        with no finite entry reads NaN."""
        out: dict[str, float | int] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                value = value.float()
                finite = value.isfinite()
                out[f.name] = float(value[finite].mean()) if bool(finite.any()) else float("nan")
                if not bool(finite.all()):
                    out[f"{f.name}_left_out"] = int((~finite).sum())
        return out


@full_precision
def lerp(x0: Tensor, x1: Tensor, n_points: int) -> Tensor:
    """Straight line from ``x0`` to ``x1`` with ``n_points`` equally spaced points, both ends included and exact.

    Args:
        x0: ``(B, D)`` or ``(D,)``.
        x1: same shape as ``x0``.
        n_points: number of points, an integer ``≥ 2``.

    Returns:
        ``(B, n_points, D)`` (or ``(n_points, D)`` for ``(D,)`` inputs).

    Raises:
        TypeError: ``n_points`` is not an integer (a bool or a float, ``4.0`` included, is not one: as every count
            of the library, `metrics.base.check_count`).
        ValueError: ``n_points`` is below 2; ``x0`` and ``x1`` differ in shape.
    """
    n_points = check_count(n_points, "n_points (both ends counted)", low=2)
    if x0.shape != x1.shape:
        raise ValueError(f"x0 and x1 must have the same shape, got {tuple(x0.shape)} and {tuple(x1.shape)}")
    t = torch.linspace(0.0, 1.0, n_points, dtype=x0.dtype, device=x0.device).unsqueeze(-1)
    return torch.lerp(x0.unsqueeze(-2), x1.unsqueeze(-2), t)


@full_precision
def nearest_distance(x: Tensor, data: Tensor, *, chunk: int = 1024) -> Tensor:
    """Euclidean distance of each point to its nearest data point, by chunked brute force (exact).

    `learned_manifold.metrics.knn.nearest_rows` in ``x``'s dtype, about the data's mean ``c``: candidates from
    ``‖y − c‖² − 2 (x − c)·(y − c)`` over blocks of ``chunk`` queries by ``2²⁴ / chunk`` data points (a block holds
    at most 16M distances; without centring, float32 data far from the origin lost the digits that tell neighbours
    apart), measured directly in float64; where that ranking's rounding may exceed the gaps between the nearest
    points (a dense float32 sample: 10⁶ points on a circle gave 1.7× the distance before) the query is ranked again
    in float64. ``data`` may live on another device (e.g. a large set on the CPU); it is moved block by block.

    Args:
        x: ``(n, D)`` or ``(n, *data_shape)`` queries (a tensor, a NumPy array or nested lists).
        data: ``(N, D)`` or ``(N, *data_shape)`` data points, ``N ≥ 1``; trailing axes are flattened where the
            two give the same ``D``.
        chunk: queries per block.

    Returns:
        ``(n,)`` distances.

    Raises:
        TypeError: ``x`` or ``data`` is neither a tensor nor an array-like of numbers.
        ValueError: mismatched or too few axes, empty or non-finite ``data``.
    """
    x, data = _points(x, "x"), _points(data, "data")
    if (x.ndim >= 2 and data.ndim >= 2 and x.shape[1:].numel() == data.shape[1:].numel()
            and (x.ndim > 2 or data.ndim > 2)):  # image-shaped points: flattened as the rest of the API does
        x, data = x.reshape(x.shape[0], -1), data.reshape(data.shape[0], -1)
    if x.ndim != 2 or data.ndim != 2 or data.shape[1] != x.shape[1] or data.shape[0] == 0:
        raise ValueError(
            f"need x (n, D) and non-empty data (N, D), got {tuple(x.shape)}, {tuple(data.shape)}"
        )
    chunk = check_count(chunk, "chunk")
    check_finite_points(data, "data", ": the distances to the others would be wrong (the ranking centres the data)")
    dist2, _ = nearest_rows(x, data, 1, centre=data.mean(0), data_rows=max(1, 2**24 // chunk), query_rows=chunk)
    return zero_safe_sqrt(dist2[:, 0]).to(x.dtype)


def _points(x: object, name: str) -> Tensor:
    """Points as a floating tensor: a tensor, a NumPy array or nested lists (integers become the default float
    dtype), else one ``TypeError`` naming ``name`` (`learned_manifold.metrics.base.as_points`)."""
    return as_points(x, (), name, convert=True)


@full_precision
def path_quality(
    path: Tensor,
    *,
    manifold: object | None = None,
    data: Tensor | None = None,
    target: Tensor | None = None,
) -> PathQuality:
    """Score a batch of paths against the data (SPEC §6: report distances and Euclidean lengths).

    Distances along the path use ``manifold.distance`` when a manifold is given (any object with
    ``distance(x: (n, D)) -> (n,)``, e.g. the built-in synthetic manifolds), else the distance to the nearest of
    the ``data`` points (`nearest_distance`); without either they are ``None``.

    Args:
        path: ``(B, T, D)`` paths (``(T, D)`` for one path: a batch of one), or ``(B, T, *data_shape)`` (the paths
            `learned_manifold.flows.interpolate` returns on an image model), whose trailing axes are flattened to
            ``D``; a tensor, a NumPy array or nested lists.
        manifold: optional ground truth with ``distance`` and, optionally, ``geodesic_distance(x0, x1) -> (B,)``
            (raising ``NotImplementedError`` where unknown).
        data: optional ``(N, D)`` or ``(N, *data_shape)`` data points.
        target: optional ``(B, D)`` or ``(B, *data_shape)`` intended end points (``x1``).

    Returns:
        `PathQuality` of ``(B,)`` tensors.

    Raises:
        TypeError: an argument is neither a tensor nor an array-like of numbers (named).
        ValueError: ``path`` of fewer than 2 axes or no points; ``target`` or ``data`` not of the paths' ``D``.
    """
    path = _points(path, "path")
    data = None if data is None else _points(data, "data")
    target = None if target is None else _points(target, "target")
    lead = 2  # batch axes of an image-shaped path: (B, T), or (T,) where image data show one path's shape
    if data is not None and data.ndim > 2:
        if path.ndim == data.ndim and path.shape[1:] == data.shape[1:]:
            lead = 1
        data = data.reshape(data.shape[0], -1)
    if path.ndim > lead + 1:  # (B, T, *data_shape) or (T, *data_shape): flattened, and the targets with them
        path = path.reshape(*path.shape[:lead], -1)
        if target is not None and target.ndim > 3 - lead:
            target = target.reshape(*target.shape[:lead - 1], -1)
    if path.ndim == 2:
        path = path.unsqueeze(0)
        if target is not None and target.ndim == 1:
            target = target.unsqueeze(0)
    if path.ndim != 3 or path.shape[1] < 1:
        raise ValueError(f"path must have shape (B, T, D) with T >= 1 points, got {tuple(path.shape)}")
    b, t, d = path.shape
    flat = path.reshape(-1, d)
    if manifold is not None:
        dist = torch.as_tensor(manifold.distance(flat)).to(path).reshape(b, t)  # type: ignore[attr-defined]
    elif data is not None:
        dist = nearest_distance(flat, data).reshape(b, t)
    else:
        dist = None
    length = (path[:, 1:] - path[:, :-1]).norm(dim=-1).sum(-1)
    end = path[:, -1]
    gap = None
    if target is not None:
        if target.shape != end.shape:
            raise ValueError(f"target must have shape {tuple(end.shape)}, got {tuple(target.shape)}")
        target = target.to(path)
        gap = (end - target).norm(dim=-1)
        end = target
    geo = ratio = None
    geodesic_distance = getattr(manifold, "geodesic_distance", None)
    if geodesic_distance is not None:
        try:
            geo = torch.as_tensor(geodesic_distance(path[:, 0], end)).to(path).reshape(b)
        except NotImplementedError:
            geo = None
        if geo is not None:  # no finite, positive geodesic distance: no ratio (PathQuality)
            ok = geo.isfinite() & (geo > 0)  # (the left-out rows divide 1: their 0 / 0 had given NaN gradients)
            ratio = torch.where(ok, length / torch.where(ok, geo, 1.0), torch.full_like(geo, torch.nan))
    return PathQuality(
        max_distance=None if dist is None else dist.amax(-1),
        mean_distance=None if dist is None else dist.mean(-1),
        length=length,
        endpoint_gap=gap,
        geodesic_length=geo,
        length_ratio=ratio,
    )


@full_precision
def tangent_error(field: FieldLike, x: Tensor, true_basis: Tensor) -> Tensor:
    """Tangent-projector error ``‖Û Ûᵀ − P_T‖_F`` per point (SPEC §5; §8 reports its mean).

    ``Û`` holds the top-``d`` eigenvectors of the field's ``G(x)`` (`field_eigenpairs`; dense ``eigh`` for
    fields without a low-rank factor, small ``D`` only), with ``d`` the true dimension at that point: the number
    of nonzero columns of ``true_basis`` (zero columns are padding, so ``d`` may vary from point to point).
    A uniformly random ``d``-plane in ``R^D`` scores ``sqrt(2d(1 − d/D))`` in root mean square (its squared error
    has mean ``2d(1 − d/D)``); the mean score is lower for small ``D`` (about 0.90 against 1 for a line in
    ``R²``, 1.11 against 1.15 in ``R³``) and close to it for large ``D``.

    Args:
        field: any co-metric field, or a `LearnedDataManifold` (its field, as `field_eigenpairs`).
        x: ``(B, D)`` points (on the data).
        true_basis: ``(B, D, k)`` orthonormal tangent bases, zero-padded to ``k`` columns.

    Returns:
        ``(B,)`` errors, differentiable (in ``x`` and the field's parameters), with derivative 0 where an error is
        exactly 0 (its minimum; `geometry.zero_safe_sqrt`).

    Raises:
        ValueError: ``true_basis`` of the wrong shape, or whose nonzero columns are not orthonormal (to 10⁻³).
    """
    if true_basis.ndim != 3 or true_basis.shape[:2] != x.shape:
        raise ValueError(
            f"true_basis must have shape (B, D, k) with (B, D) = {tuple(x.shape)}, "
            f"got {tuple(true_basis.shape)}"
        )
    true_basis = true_basis.to(x)
    d = _check_basis(true_basis).sum(-1)  # (B,)
    return projector_error(truncate_basis(field_eigenpairs(field, x).vectors.to(x), d), true_basis)


def basis_deviation(basis: Tensor) -> tuple[Tensor, Tensor]:
    """Which columns of the zero-padded bases ``basis`` ``(B, D, k)`` are used ``(B, k)`` (nonzero), and how far the
    used ones are from orthonormal ``(B,)``: ``max |VᵀV − I|`` over the used columns (zero columns are padding)."""
    used = basis.abs().amax(dim=-2) > 0
    gram = basis.transpose(-1, -2) @ basis
    return used, (gram - torch.diag_embed(used.to(gram.dtype))).abs().flatten(1).amax(-1)


def _check_basis(true_basis: Tensor) -> Tensor:
    """Which columns of ``true_basis`` ``(B, D, k)`` are used ``(B, k)``, after checking the used ones are
    orthonormal to 10⁻³ (an unnormalised basis made the projector error negative, clamped to a "perfect" 0)."""
    used, off = basis_deviation(true_basis)
    if bool((off > 1e-3).any()):
        i = int(off.argmax())
        worst = float(off[i])  # read before the message (torch.compile: `landing._warn_far_landed`)
        raise ValueError(f"true_basis must have orthonormal (or zero) columns; at point {i} |VᵀV − I| reaches "
                         f"{worst:.3g} (orthonormalise it, e.g. with torch.linalg.qr)")
    return used


def bandwidth_grid(scale: float) -> list[float]:
    """The evaluation bandwidths of SPEC §8, ``s · 2^(i−6)`` for ``i = 0..10``, in data units."""
    return [scale * 2.0 ** (i - 6) for i in range(11)]


@full_precision
def spectral_report(pairs: Eigenpairs, *, true_basis: Tensor | None = None, true_dim: Tensor | None = None) -> dict:
    """Summary figures of a batch of spectra of ``G`` (SPEC §5, §8), as plain numbers for logs and reports.

    Always: the median gap-rule dimension, the mean clearest normalised eigengap ``max_k λ̃_k − λ̃_{k+1}`` and the
    mean of the top-10 eigenvalues. With the truth (``true_basis (B, D, k)`` and ``true_dim (B,)``): the mean
    tangent-projector error with each point's true dimension, and the fraction of points whose dimension is right.
    """
    values = pairs.values
    if values.ndim != 2 or values.shape[0] == 0:
        raise ValueError(f"spectral_report needs a non-empty batch of spectra (B, r), got {tuple(values.shape)}")
    if (true_basis is None) != (true_dim is None):
        raise ValueError("give true_basis and true_dim together (the tangent error needs both), or neither")
    dims = intrinsic_dimension(values)
    rel = values / values[:, :1].clamp_min(torch.finfo(values.dtype).tiny)
    rel = torch.cat([rel, torch.zeros_like(rel[:, :1])], -1)
    out = {
        "median_dimension": int(dims.float().median().item()),
        "mean_gap": float((rel[:, :-1] - rel[:, 1:]).max(-1).values.mean()),
        "top_eigenvalues": [round(float(v), 4) for v in values.mean(0)[:10]],
    }
    if true_basis is not None and true_dim is not None:
        _check_basis(true_basis)
        true_dim = _true_dims(true_dim, dims)  # one integer for all points too
        est = truncate_basis(pairs.vectors, true_dim)
        out["tangent_error"] = float(projector_error(est, true_basis.to(est.dtype)).mean())
        out["dimension_accuracy"] = float((dims == true_dim).float().mean())
    return out


@full_precision
def dimension_accuracy(field: FieldLike, x: Tensor, true_dim: Tensor | int) -> float:
    """Fraction of points whose largest-gap intrinsic dimension (SPEC §5) equals the true one.

    Args:
        field: any co-metric field (dense ``eigh`` without a low-rank factor: small ``D`` only), or a
            `LearnedDataManifold`: its field's gap rule is scored (a ``tangent_dim`` fixed on the manifold is not).
        x: ``(B, D)`` points.
        true_dim: ``(B,)`` integer dimensions (a tensor of an integer dtype), or one integer for all points (not a
            bool or a float, ``2.0`` included, as for every count of the library).

    Returns:
        A float in ``[0, 1]``.

    Raises:
        ValueError: ``true_dim`` is neither one integer nor one per point (a float, a bool, a tensor of a
            non-integer dtype or of the wrong shape), or negative; before any work.
    """
    if isinstance(x, Tensor) and x.ndim >= 1:  # checked before the eigen step (the shape is known without it)
        _true_dims(true_dim, x.new_zeros(x.shape[0], dtype=torch.long))
    values = field_eigenpairs(field, x).values
    estimate = intrinsic_dimension(values)
    return float((estimate == _true_dims(true_dim, estimate)).float().mean())


def _true_dims(true_dim: Tensor | int, dims: Tensor) -> Tensor:
    """``true_dim`` (one integer, or one per point) as a ``(B,)`` tensor beside the estimated ``dims`` ``(B,)``.

    One integer is Python's or NumPy's or a 0-d integer tensor, as every count of the library (`checks.as_index`:
    not a bool, not a float, ``2.0`` included); one per point a ``(B,)`` tensor of an integer dtype. Dimensions are
    ``≥ 0``. Anything else is one ``ValueError`` (`dimension_accuracy`'s promise): ``2.7``, ``tensor(2.5)`` or a
    float tensor of 1.9s had scored 0 and ``True`` as 1, silently (tester D, s35)."""
    n = dims.shape[0]
    if isinstance(true_dim, Tensor) and true_dim.ndim:
        if true_dim.dtype == torch.bool or true_dim.is_floating_point() or true_dim.is_complex():
            raise ValueError(f"true_dim must hold integer dimensions, got a tensor of dtype {true_dim.dtype} (give "
                             "a long tensor, e.g. true_dim.round().long() if its values are whole numbers)")
        if true_dim.ndim > 1 or true_dim.shape[0] != n:
            raise ValueError(f"true_dim must be one integer or one per point, shape ({n},), got shape "
                             f"{tuple(true_dim.shape)}")
        truth = true_dim.to(dims.device)
    else:
        number = as_index(true_dim)
        if number is None:
            raise ValueError(f"true_dim must be one integer or one per point, shape ({n},), got "
                             f"{type(true_dim).__name__} {true_dim!r:.40}")
        truth = torch.tensor(number, device=dims.device)
    if bool((truth < 0).any()):
        raise ValueError(f"true_dim must be >= 0, got {int(truth.min())}")
    return truth.expand_as(dims)
