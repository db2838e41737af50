"""The regularised metric geodesics are solved in (SPEC §5, §6): a low-rank field with ``δ = 0`` has a singular
metric, so `geodesic` adds ``δ = 10⁻³ λ₁`` by default, one per pair from its own ends (`regularising_delta`), and
solves in ``G = AAᵀ + δI`` (`Regularised`); lengths and energies are reported in the metric of the field's learned
tangent bundle (`TangentBundle`, SPEC §5's ``δ = 0`` geometry, with a `LearnedDataManifold`'s ``tangent_dim`` where
it sets one), or in the field's own metric for other fields (`reporting_metric`, `polyline_lengths`).
`warn_uncentred`: the paths' warning for a field that is not mean-centred (SPEC §2)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from .checks import as_index, is_real
from .dimension import warn_if_dropping
from .geometry import (
    eigenpairs,
    intrinsic_dimension,
    lowrank_apply,
    lowrank_solve,
    spectral_apply,
    truncate_basis,
    zero_safe_sqrt,
)
from .metrics.base import CoMetricField, as_field, check_count
from .metrics.factor_checks import FactorContractError
from .path_energies import path_energy
from .precision import full_precision
from .user_warnings import warn_user

__all__ = ["Regularised", "TangentBundle", "UncentredFieldWarning", "check_delta", "check_tangent_rank",
           "polyline_lengths", "recording", "reporting_metric", "regularising_delta", "resolve_tangent_dim",
           "tangent_dim_of", "warn_dropped", "warn_uncentred"]


class UncentredFieldWarning(UserWarning):
    """A path (`geodesic`, `interpolate`, `gradient_flow`) computed on a field that is not mean-centred (SPEC §2);
    a comparison of geometries that means to show such paths can filter this category (``learned_manifold``
    exports it).

    Example:
        >>> import warnings, torch
        >>> from learned_manifold import UncentredFieldWarning, geodesic
        >>> from learned_manifold.metrics import KNNCDC
        >>> t = torch.linspace(0, 6.2832, 201)[:-1]
        >>> data = torch.stack([t.cos(), t.sin()], 1)  # a circle (random planar points warned of the gap rule too)
        >>> field = KNNCDC(data, k=16, sigma=0.5, centred=False)
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     _ = geodesic(field, data[:1], data[10:11], n_points=8, steps=5)
        >>> [w.category.__name__ for w in caught if issubclass(w.category, UncentredFieldWarning)]
        ['UncentredFieldWarning']
        >>> with warnings.catch_warnings():  # a deliberate comparison: this category filtered, the others kept
        ...     warnings.filterwarnings("ignore", category=UncentredFieldWarning)
        ...     _ = geodesic(field, data[:1], data[10:11], n_points=8, steps=5)
    """


def warn_uncentred(field: CoMetricField, caller: str) -> None:
    """Warn once (`UncentredFieldWarning`) when ``field.centred`` is False: SPEC §2, paths that leave the data need a
    mean-centred field. Called from the public path functions; the warning points at the user's line
    (`user_warnings.warn_user`)."""
    if getattr(field, "centred", True) is False:
        warn_user(f"{caller}: the field {type(field).__name__} is not mean-centred (centred=False); paths that "
                  "leave the data need a mean-centred field (SPEC §2): with an uncentred one leaving the data is "
                  "cheap and the path may cut through empty space. Use a centred field (e.g. KNNCDC(centred=True), "
                  "a model trained without --uncentred)", UncentredFieldWarning)


def tangent_dim_of(field_or_manifold: object) -> int | None:
    """The ``tangent_dim`` a manifold (e.g. `LearnedDataManifold`) fixes for its ``δ = 0`` geometry, or ``None``
    (the gap rule) for a bare field or a manifold without one."""
    if isinstance(field_or_manifold, CoMetricField):
        return None
    return getattr(field_or_manifold, "tangent_dim", None)


def resolve_tangent_dim(field_or_manifold: object, tangent_dim: object) -> int | None:
    """The ``tangent_dim`` lengths are reported with: the given one (an integer ``≥ 1``: anything `operator.index`
    takes, NumPy's included, not a bool; returned as an ``int``), else the manifold's own (`tangent_dim_of`), else
    ``None`` (the gap rule). A given one that differs from the manifold's is refused."""
    if tangent_dim is not None:
        number = as_index(tangent_dim)
        if number is None:
            raise TypeError(f"tangent_dim must be an int or None, got {type(tangent_dim).__name__}")
        if number < 1:
            raise ValueError(f"tangent_dim must be >= 1 (the field's tangent dimension) or None, got {number}")
        tangent_dim = number
    own = tangent_dim_of(field_or_manifold)
    if tangent_dim is not None and own is not None and tangent_dim != own:
        raise ValueError(f"tangent_dim={tangent_dim} conflicts with the manifold's own tangent_dim={own}: leave "
                         "tangent_dim out (the manifold's is used) or pass the bare field")
    return own if tangent_dim is None else tangent_dim


def check_tangent_rank(field: CoMetricField, tangent_dim: int | None, x: Tensor) -> None:
    """Refuse a ``tangent_dim`` outside ``1..D`` (the message of `LearnedDataManifold`: ``tangent_dim must lie in
    1..D``; a sphere in R³ with ``tangent_dim = 5`` had run to ``converged=True``), or above the rank ``r`` of a
    low-rank ``field``'s factor at the point ``x[0]`` of
    ``(B, D)`` (where the tangent bundle, `reporting_metric`, or landing's normals would keep more directions than
    ``G`` has), for every ``δ``: with ``δ > 0`` a ``tangent_dim = 7`` on a rank-2 field was accepted and ignored.
    For a full-rank field ``r = D``. One factor call at ``x[:1]``, the points the caller evaluates anyway."""
    if tangent_dim is None:
        return
    check_count(tangent_dim, "tangent_dim", high=x.shape[-1])
    if x.shape[0] == 0:
        return
    if field.low_rank:
        with torch.no_grad():
            r = eigenpairs(field.factor(x[:1])).values.shape[-1]
    else:
        r = x.shape[-1]
    if tangent_dim > r:
        raise ValueError(f"tangent_dim = {tangent_dim} exceeds the rank r = {r} of the field's factor "
                         f"({type(field).__name__}): the learned tangent bundle has at most r directions; pass "
                         f"tangent_dim <= {r}")


@contextmanager
def recording(metric: CoMetricField) -> Iterator[list[Tensor]]:
    """Collect, while open, the eigenvalues ``(n, r)`` a `TangentBundle` on the gap rule's directions (no
    ``tangent_dim``) meets in its ``metric`` calls (e.g. at the midpoints of a `path_energy`), for `warn_dropped`:
    the length's own decompositions, not a second pass of the factor over the path. Collects nothing otherwise."""
    seen: list[Tensor] = []
    bundle = isinstance(metric, TangentBundle) and metric.tangent_dim is None
    if bundle:
        metric.seen = seen
    try:
        yield seen
    finally:
        if bundle:
            metric.seen = None


def warn_dropped(seen: list[Tensor], what: str) -> bool:
    """Warn (`dimension.warn_if_dropping`) where the eigenvalues ``seen`` (`recording`) of a `TangentBundle` on the
    gap rule's directions drop an eigenvalue above `dimension.DROPPED_LIMIT` ``· λ₁``: a full-rank field read as
    lower-dimensional, whose lengths then ignore real directions (polar coordinates: 2–4 times short)."""
    if not seen:
        return False
    values = torch.cat(seen)
    return warn_if_dropping(values, intrinsic_dimension(values), what)


@full_precision
def regularising_delta(field: CoMetricField, x0: Tensor, x1: Tensor) -> Tensor:
    """The default ``δ`` of `geodesic`, one per pair: ``(B,)`` ``10⁻³ λ₁`` for a low-rank field with ``δ = 0``
    (``λ₁``: the mean top eigenvalue of ``G`` at the pair's own ends ``x0[b]``, ``x1[b]``, of ``(B, D)``), so the
    normal directions cost ``10³`` times the tangent ones instead of nothing; zeros for other fields (their ``δ``
    or their full-rank metric decides), and ``0`` for a pair whose ends give no finite positive ``λ₁``.

    Per pair, so that a pair's metric, and its geodesic, do not depend on its batch mates (one batch-wide mean
    let a pair where ``λ₁ = 100`` cut a unit sphere's arc short by 1%)."""
    zero = x0.new_zeros(x0.shape[0])
    if not field.low_rank or field.delta > 0 or x0.shape[0] == 0:
        return zero
    with torch.no_grad():
        top = eigenpairs(field.factor(torch.cat([x0, x1]))).values[:, 0].reshape(2, -1).to(zero)
    finite = torch.isfinite(top)
    count = finite.sum(0)
    mean = torch.where(finite, top, torch.zeros_like(top)).sum(0) / count.clamp_min(1)
    return torch.where((count > 0) & (mean > 0), 1e-3 * mean, zero)


def check_delta(delta: object) -> float:
    """``delta`` as a float: any finite real number ``≥ 0`` (`checks.is_real`, ``np.float32`` included)."""
    if not is_real(delta) or not math.isfinite(delta) or delta < 0:
        raise ValueError(f"delta must be a finite number >= 0 or None, got {delta!r}")
    return float(delta)


class Regularised(CoMetricField):
    """A low-rank ``field`` with ``δ`` added: ``G = AAᵀ + δI`` (SPEC §5); its landing projection, bandwidths and
    start paths are the field's own.

    ``delta`` is a float (`lowrank_apply`/`lowrank_solve`), or a tensor ``(P,)`` of one ``δ`` per pair of paths
    (`regularising_delta`): ``apply`` and ``metric`` then take points ``(P·k, D)`` grouped pair by pair, ``k``
    consecutive rows per pair, as `path_energies.segment_energies` flattens the ``(P, T − 1)`` segments of ``P``
    paths (and `path_energies.path_energy` each chunk of them); `for_pairs` gives the field of some of the pairs."""

    low_rank = True

    def __init__(self, field: CoMetricField, delta: float | Tensor):
        super().__init__()
        self.inner_field = field
        self.delta = delta.detach() if isinstance(delta, Tensor) else float(delta)
        self.dim, self.centred = field.dim, field.centred

    def factor(self, x: Tensor, **kwargs) -> Tensor:
        return self.inner_field.factor(x, **kwargs)

    def for_pairs(self, idx: Tensor) -> Regularised:
        """The field of the pairs ``idx`` ``(k,)`` alone (their ``δ``; the same field for a float ``δ``)."""
        return Regularised(self.inner_field, self.delta[idx]) if isinstance(self.delta, Tensor) else self

    def _row_delta(self, x: Tensor) -> Tensor:
        """``(N,)``: each row's ``δ`` for points ``(N, D)``, ``N`` a multiple of the pairs ``P``."""
        pairs, rows = self.delta.shape[0], x.shape[0]
        if pairs == 0 or rows % pairs:
            raise ValueError(f"Regularised with one delta per pair ({pairs} pairs) needs points grouped pair by "
                             f"pair, a multiple of {pairs} rows; got {rows}")
        return self.delta.to(device=x.device, dtype=x.dtype).repeat_interleave(rows // pairs)

    @full_precision
    def apply(self, x: Tensor, w: Tensor) -> Tensor:
        """``(AAᵀ + δI) w``: ``(N, D)``, ``(N, D)`` → ``(N, D)`` (class docstring: ``δ`` per pair)."""
        if not isinstance(self.delta, Tensor):
            return super().apply(x, w)
        return lowrank_apply(self.factor(x), w) + self._row_delta(x).unsqueeze(-1) * w

    @full_precision
    def metric(self, x: Tensor, v: Tensor) -> Tensor:
        """``(AAᵀ + δI)^{-1} v``: ``(N, D)``, ``(N, D)`` → ``(N, D)``. With ``δ`` per pair, by the scaling
        ``(AAᵀ + δI)^{-1} = δ^{-1} (A'A'ᵀ + I)^{-1}``, ``A' = A / √δ`` (the same Woodbury solve row by row);
        rows with ``δ = 0`` get the pseudo-inverse (`lowrank_solve`)."""
        if not isinstance(self.delta, Tensor):
            return super().metric(x, v)
        a, delta = self.factor(x), self._row_delta(x)
        positive = delta > 0
        scale = torch.where(positive, delta, torch.ones_like(delta))
        out = lowrank_solve(a / scale.sqrt().view(-1, 1, 1), v, 1.0) / scale.unsqueeze(-1)
        if not bool(positive.all()):
            rows = (~positive).nonzero().squeeze(-1)
            out = out.index_copy(0, rows, lowrank_solve(a[rows], v[rows]).to(out))
        return out

    def project(self, x: Tensor, **kwargs) -> Tensor:
        return self.inner_field.project(x, **kwargs)

    def length_scale(self) -> float | None:
        return self.inner_field.length_scale()

    def beyond_data(self, x: Tensor) -> Tensor | None:
        return self.inner_field.beyond_data(x)

    def landing_bandwidths(self) -> tuple[float, float] | None:
        return self.inner_field.landing_bandwidths()

    @property
    def can_project(self) -> bool:
        return self.inner_field.can_project


class TangentBundle(CoMetricField):
    """A low-rank ``field`` with ``δ = 0`` as SPEC §5's learned tangent bundle: ``metric`` is ``G_d^+ v =
    Û Λ_d^{-1} Ûᵀ v`` on the top-``d`` eigen-directions of ``G = AAᵀ`` (``d = tangent_dim`` where given, as
    `LearnedDataManifold`'s ``inner`` with its ``tangent_dim``, else the gap rule at each point; `spectral_apply`
    with ``power = -1``; ``(B, D)`` → ``(B, D)``), ``apply`` the restricted ``G_d w``.

    `geodesic` reports such a field's lengths and energies in it: the field's own ``metric``, the pseudo-inverse of
    ``G`` over every eigenvalue above ``10⁻⁶ λ₁``, also inverts the small but nonzero learned normal eigenvalues
    (~10⁻⁴ λ₁), so it charged a path's normal wobbles of 10⁻⁴–10⁻³ some 10⁴ times (a unit circle's arc of 3.0
    read 3.5–4.9, growing with ``n_points``)."""

    low_rank = True

    def __init__(self, field: CoMetricField, tangent_dim: int | None = None):
        super().__init__()
        self.inner_field, self.tangent_dim = field, tangent_dim
        self.dim, self.centred = field.dim, field.centred
        self.seen: list[Tensor] | None = None  # where `recording` collects the eigenvalues ``metric`` meets

    @full_precision
    def factor(self, x: Tensor, **kwargs) -> Tensor:
        """``(B, D)`` → ``(B, D, r)``: a factor of the restricted ``G_d = Û_d Λ_d Û_dᵀ`` that ``apply`` applies
        (columns past each point's ``d`` zero), not the wrapped field's ``A``, whose ``AAᵀ`` is all of ``G``.

        ``√λ`` is taken of the positive eigenvalues only (0 for the others, whose eigenvector columns are zero): at
        an eigenvalue of exactly 0 (a plane projector, a zero column) ``sqrt``'s backward had been ``0 · ∞ = NaN``,
        so every gradient through this factor (a manifold on `reporting_metric`, a geodesic in it) was NaN."""
        pairs = eigenpairs(self.inner_field.factor(x, **kwargs))
        d = (intrinsic_dimension(pairs.values) if self.tangent_dim is None
             else torch.full(pairs.values.shape[:1], self.tangent_dim, device=x.device))
        root = zero_safe_sqrt(pairs.values.clamp_min(0.0))  # (B, r); a NaN row's vectors are NaN and stay so
        return truncate_basis(pairs.vectors * root.unsqueeze(-2), d)

    @full_precision
    def apply(self, x: Tensor, w: Tensor) -> Tensor:
        pairs = eigenpairs(self.inner_field.factor(x))
        d = intrinsic_dimension(pairs.values) if self.tangent_dim is None else self.tangent_dim
        return spectral_apply(pairs, w, d, power=1, check_range=self.tangent_dim is not None)  # gap rule: no sync

    @full_precision
    def metric(self, x: Tensor, v: Tensor) -> Tensor:
        pairs = eigenpairs(self.inner_field.factor(x))
        if self.seen is not None:
            self.seen.append(pairs.values.detach())
        return spectral_apply(pairs, v, self.tangent_dim, power=-1)

    def length_scale(self) -> float | None:
        return self.inner_field.length_scale()

    def beyond_data(self, x: Tensor) -> Tensor | None:
        return self.inner_field.beyond_data(x)


def reporting_metric(field: CoMetricField, tangent_dim: int | None = None) -> CoMetricField:
    """The metric `geodesic` reports lengths and energies of ``field`` in: `TangentBundle` for a low-rank field with
    ``δ = 0`` (SPEC §5; on the top ``tangent_dim`` eigen-directions where given, e.g. `tangent_dim_of` a
    `LearnedDataManifold`, so lengths agree with its ``inner``; else the gap rule), the field itself otherwise."""
    return TangentBundle(field, tangent_dim) if field.low_rank and field.delta == 0 else field


@full_precision
def polyline_lengths(path: Tensor, field: CoMetricField | object | None = None, *, tangent_dim: int | None = None
                     ) -> tuple[Tensor, Tensor | None]:
    """Euclidean and (if ``field`` is given) metric lengths of flat paths ``(B, T, D)`` → ``(B,)`` each.

    The metric length is `path_energies.path_energy`'s midpoint rule ``Σ sqrt(Δᵀ g(x_{i+½}) Δ)`` in the metric a
    geodesic's ``length`` uses (`reporting_metric`: for a low-rank field with ``δ = 0`` its learned tangent bundle,
    SPEC §6, with the ``tangent_dim`` of a `LearnedDataManifold` given as ``field``); it is NaN for a field whose
    ``metric`` refuses these points (a flow only needs ``apply``). It is summed over chunks of segments
    (`path_energies.segments_per_call`), so its memory does not grow with ``T``. On the gap rule's directions
    (no ``tangent_dim``: given, or a manifold's, `resolve_tangent_dim`) it warns where they drop real directions of
    the field (`warn_dropped`); a ``tangent_dim`` above the factor's rank is refused (`check_tangent_rank`), not read
    as NaN. A path not of shape ``(B, T, D)`` is refused (``ValueError``), a one-point path has length 0. The
    warning points at the user's line (`user_warnings.warn_user`).
    """
    if not isinstance(path, Tensor) or path.ndim != 3 or path.shape[1] == 0:
        got = tuple(path.shape) if isinstance(path, Tensor) else type(path).__name__
        raise ValueError(f"path must have shape (B, T, D) with T >= 1, got {got}")
    euclid = (path[:, 1:] - path[:, :-1]).norm(dim=-1).sum(-1)
    if field is None or path.shape[0] == 0 or path.shape[1] == 1:  # one point: no segment, length 0 in any metric
        return euclid, None if field is None else euclid.clone()
    metric, tangent_dim = as_field(field), resolve_tangent_dim(field, tangent_dim)
    check_tangent_rank(metric, tangent_dim, path[:, 0])  # a configuration error: raised, not hidden as NaN
    own = reporting_metric(metric, tangent_dim)
    try:
        with recording(own) as seen:
            length = path_energy(own, path)[1]
    except FactorContractError:  # a mistake in the field itself, named by its own message
        raise
    except (ValueError, NotImplementedError):  # the field's metric undefined here (a score Jacobian at δ = 0) or not
        # at all; the path's own shape was checked above, so this is the field's refusal, not a mistake in the call
        return euclid, torch.full_like(euclid, float("nan"))
    warn_dropped(seen, "the reported metric lengths (metric_length, regularised.polyline_lengths)")
    return euclid, length
