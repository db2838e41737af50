"""The k-nearest-neighbour carré du champ: the diffusion-geometry baseline of SPEC §7.

For a query ``y`` and its ``k`` nearest data points ``x_j`` (exact brute force, chunked so that memory stays
bounded for millions of points: `nearest_rows`), with weights ``w = softmax_j(−‖y − x_j‖² / (2σ²))``:

* centred (default, SPEC §2: fit for flows and geodesics) ``Γ̂ᶜ(y) = Σ_j w_j (x_j − x̄)(x_j − x̄)ᵀ / σ²``,
  ``x̄ = Σ_j w_j x_j``;
* uncentred (the paper's baseline, for tangent and dimension comparisons)
  ``Γ̂(y) = Σ_j w_j (x_j − y)(x_j − y)ᵀ / σ²``.

Both come as a rank-``k`` factor, so ``apply`` and ``metric`` go through the low-rank functions of
`learned_manifold.geometry`. Cost grows with ``N`` per query. The k-NN graph that geodesics start on
(`KNNCDC.neighbour_graph`) joins at most `KNNCDC.GRAPH_POINTS` of the points (a seeded subsample, as a trained
model's landmarks), so its cost and memory do not grow with ``N``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..checks import Count, NotANumberError, Real
from ..geometry import lowrank_apply, lowrank_solve
from ..precision import full_precision
from .base import CoMetricField, check_count, check_finite_output, check_points, check_vectors
from .knn_index import as_tensor, build_index, data_key, field_data
from .knn_settings import SETTINGS, checked_setting
from .knn_spacing import GRAPH_NUMBERS, GRAPH_POINTS, cached_graph, cached_spacing, graph_rows, warn_if_copies
from .nearest import by_distance, nearest_rows, nearest_set
from .pseudo_inverse import pinv_solve as _pinv_solve

__all__ = ["KNNCDC"]

class KNNCDC(CoMetricField):
    """k-NN carré du champ of the coordinates (SPEC §7), centred or uncentred, with a rank-``k`` factor.

    Args:
        data: ``(N, D)`` or ``(N, *data_shape)`` floating samples, a tensor or a NumPy array, flattened to
            ``(N, D)``; held as the buffer ``data``, so ``.to(device)`` moves it and ``state_dict``/
            ``load_state_dict`` carry it (loading replaces the data, of any ``N ≥ k``, and rebuilds the search;
            the other arguments are not state). A tensor whose rows can be viewed as ``(N, D)`` (a contiguous one)
            is not copied: the field searches the caller's tensor, and a torch in-place edit of it (or of
            ``field.data``), or a new tensor assigned to ``field.data``, rebuilds the search index on the next
            query (`_index_current`; not an edit through ``tensor.numpy()``, which bumps no version counter).
            Copied, so that later edits of the caller's are not seen (`knn_index.field_data`): a NumPy array (its
            edits bump no version counter), an inference tensor (it has none), and a tensor whose layout cannot be
            viewed as ``(N, D)`` (a permuted view, ``channels_last`` images). Their RMS spread
            about their mean must suit the dtype's squares (`knn_scale.check_data_scale`; float32: about 1.7e-18
            to 1.2e18), else a ``ValueError`` says how to rescale them; half-precision data whose squares could
            overflow are searched in float32 (`knn_index.build_index`).
        k: number of neighbours, ``2 ≤ k ≤ N`` for the centred field (one neighbour has no covariance: ``G ≡ 0``),
            ``1 ≤ k ≤ N`` for the uncentred one.
        sigma: bandwidth ``σ > 0`` in data units (a 0-d floating tensor is kept as it is: `knn_settings`).
        centred: mean-centred ``Γ̂ᶜ`` (default) or uncentred ``Γ̂``.
        delta: isotropic part ``δ ≥ 0`` added by ``apply`` and ``metric``.
        chunk_size: data rows per distance block (default ``min(N, 65536)``); query rows per block are chosen
            so that one block holds at most ``2**24`` distances.
        persistent: whether ``state_dict`` carries ``data`` (``False`` for a graph over data its owner stores
            already, e.g. a model's landmarks behind `LearnedCDC`: no copy in the owner's ``state_dict``).

    Neighbours are exact; among equal distances the lower data row comes first (and is kept at the ``k``-th
    place), so the field does not depend on ``chunk_size`` or on the other queries of a batch (`nearest_rows`).

    Attributes:
        dim: ``D``. low_rank: ``True``. centred, k, sigma, delta, chunk_size: as given, as ``bool``/``int``/
        ``float`` (a tensor ``sigma`` kept); they may be set afterwards, checked as by the constructor (`__setattr__`).

    Example:
        >>> field = KNNCDC(torch.randn(1000, 3), k=32, sigma=0.3)
        >>> field.factor(torch.zeros(5, 3)).shape
        torch.Size([5, 3, 32])
    """

    low_rank = True
    dim: int
    data: Tensor  # the buffers (`_index`): data (N, D), search origin (D,), data - origin or None, their |.|² (N,)
    origin: Tensor
    _search_data: Tensor | None
    data_sq: Tensor

    def __init__(
        self,
        data: Tensor | np.ndarray,
        *,
        k: Count = 64,
        sigma: Real | Tensor,
        centred: bool = True,
        delta: Real = 0.0,
        chunk_size: Count | None = None,
        persistent: bool = True,
    ) -> None:
        super().__init__()
        data = as_tensor(data)  # NumPy input copied (`knn_index.field_data`)
        if data.ndim < 2 or data.shape[0] == 0 or data[0].numel() == 0:
            raise ValueError(f"data must have shape (N, D) or (N, ...), N, D >= 1; got {tuple(data.shape)}")
        if not data.is_floating_point():
            raise ValueError(f"data must be a floating-point tensor, got {data.dtype}; convert it first")
        if not bool(torch.isfinite(data).all()):
            raise ValueError("data contains NaN or infinite values")
        if not isinstance(persistent, bool):
            raise NotANumberError(f"persistent must be a bool, got {type(persistent).__name__}")
        self.register_buffer("data", field_data(data), persistent=persistent)
        for name in ("origin", "_search_data", "data_sq"):  # derived from ``data`` by `_index`, not saved
            self.register_buffer(name, None, persistent=False)
        self.dim = self.data.shape[1]
        self.centred = centred  # each setting checked and converted by `__setattr__` (centred first: k reads it)
        self.k = k  # (the uncentred field's one column points at the nearest data point: k = 1 allowed there)
        self.sigma, self.delta, self.chunk_size = sigma, delta, chunk_size
        self._index()

    def __setattr__(self, name: str, value: object) -> None:
        """A setting (`knn_settings.SETTINGS`: ``k``, ``sigma``, ``centred``, ``delta``, ``chunk_size``) is checked
        and converted as the constructor's argument is, whenever it is set (`knn_settings.checked_setting`: e.g.
        ``field.k = np.int64(8)`` stores ``8``; ``field.sigma = 0`` raises a ``ValueError`` naming ``sigma``)."""
        if name in SETTINGS:
            value = checked_setting(self, name, value)
        super().__setattr__(name, value)

    def _data_key(self) -> tuple:
        """What identifies the contents of ``data`` cheaply (`knn_index.data_key`)."""
        return data_key(self.data)

    def _index_current(self) -> bool:
        """Whether the search index was built from ``data`` as it is now (`_data_key`)."""
        return self.__dict__.get("_index_key") == self._data_key()

    def _fresh(self) -> None:
        """Rebuild the index (`_index`) where ``data`` changed since it was built: edited in place (the caller's
        tensor, which the field does not copy) or replaced (``field.data = new``). One cheap key comparison per
        query otherwise; data on the ``meta`` device are left alone (nothing can be searched there)."""
        if not self._index_current() and not self.data.is_meta:
            data = self.data
            if data.ndim != 2 or data.shape[1] != self.dim or data.shape[0] < self.k or not data.is_floating_point():
                raise ValueError(f"KNNCDC data changed to shape {tuple(data.shape)} ({data.dtype}); the field needs "
                                 f"floating (N, {self.dim}) with N >= {self.k}: build a new KNNCDC for other data")
            if not bool(torch.isfinite(data).all()):
                raise ValueError("KNNCDC data changed to contain NaN or infinite values")
            self._index()

    def _apply(self, fn, *args, **kwargs):  # noqa: ANN001, ANN202 (torch.nn.Module's private signature)
        """``.to(...)``, ``.double()``, …: the derived buffers move with ``data``, so an index that was current
        stays current (not rebuilt, the cached spacing kept); a stale one is rebuilt on the next query, and so is
        one cast to half precision (`knn_index.build_index` decides again whether it ranks in float32)."""
        current = self._index_current()
        dtypes = (self.data.dtype, self.data_sq.dtype)
        out = super()._apply(fn, *args, **kwargs)
        recast = dtypes != (self.data.dtype, self.data_sq.dtype)
        if current and not (recast and torch.finfo(self.data.dtype).bits < 32):
            self.__dict__["_index_key"] = self._data_key()
        return out

    def _index(self) -> None:
        """(Re)build what the search derives from ``data`` (`knn_index.build_index`) and drop the cached spacing
        and neighbour graph (after ``__init__``, `load_state_dict` and a change of the data, `_fresh`)."""
        build_index(self)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, local_metadata: dict, strict: bool,
                              missing_keys: list, unexpected_keys: list, error_msgs: list) -> None:
        """`torch.nn.Module.load_state_dict` for the field: the saved ``data`` ``(N', D)`` replace the field's
        (any ``N' ≥ k``, kept in the field's dtype and device) and the search index is rebuilt from them; ``k``,
        ``sigma``, ``centred``, ``delta`` and ``chunk_size`` are the field's own (constructor arguments, not state).
        """
        key = prefix + "data"
        new = state_dict.get(key) if "data" not in self._non_persistent_buffers_set else None
        if isinstance(new, Tensor):
            problem = None
            if new.ndim != 2 or new.shape[1] != self.dim or not new.is_floating_point():
                problem = (f"a floating-point (N, {self.dim}) tensor is needed, got {new.dtype} of shape "
                           f"{tuple(new.shape)}")
            elif new.shape[0] < self.k:
                problem = f"it holds {new.shape[0]} points, fewer than the field's k = {self.k}"
            elif not bool(torch.isfinite(new).all()):
                problem = "it contains NaN or infinite values"
            if problem is not None:
                error_msgs.append(f"KNNCDC cannot load the data {key!r}: {problem}")
                return
            self.data = new.detach().to(device=self.data.device, dtype=self.data.dtype).clone()
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        if isinstance(new, Tensor):
            self._index()  # after the copy into ``data`` above, which bumps its version

    def _check_query(self, y: Tensor, name: str = "x", *, cast: bool = False) -> Tensor:
        """``y`` checked (shape, device; dtype unless ``cast``), returned in the data's dtype."""
        check_points(y, self.dim, name)
        if y.device != self.data.device:
            raise ValueError(
                f"{name} is on {y.device} but the field's data are on {self.data.device}; move the field with "
                f".to(...)"
            )
        if not cast and y.dtype != self.data.dtype:
            raise ValueError(
                f"{name} is {y.dtype} but the field's data are {self.data.dtype}: convert the points "
                f"(e.g. x.to({self.data.dtype})) or the field (field.to({y.dtype}))"
            )
        return y.to(self.data.dtype)

    def _as_query(self, x: Tensor) -> Tensor:
        """``x`` checked and cast to the data's dtype (the field computes in that dtype, answers in ``x``'s)."""
        return self._check_query(x, cast=True)

    def _searched(self) -> Tensor:
        """The rows the search ranks: the data, or their copy centred or in float32 (`knn_index.build_index`)."""
        return self.data if self._search_data is None else self._search_data

    def _ranked(self, y: Tensor) -> Tensor:
        """Queries ``y`` ``(B, D)`` in the dtype the search ranks in (``data_sq``'s: the data's, or float32 for
        half-precision data whose squares could overflow, `knn_index.build_index`); call after `_fresh`."""
        return y.to(self.data_sq.dtype)

    def _index_args(self) -> dict:
        """The search's keyword arguments (`nearest_set`, `nearest_rows`) for the field's index, rebuilt first if
        ``data`` changed (`_fresh`): ranked about ``origin`` (the data's mean where it lies farther out than the
        data spread, else 0) on ``_searched``, by blocks of ``chunk_size`` rows."""
        self._fresh()
        return {"centre": self.origin, "centred": self._searched(), "centred_sq": self.data_sq,
                "data_rows": self.chunk_size}

    def _nearest(self, y: Tensor, k: int | None = None) -> tuple[Tensor, Tensor]:
        """Exact squared distances ``(B, k)`` (float64, ascending) and indices ``(B, k)`` of the ``k`` (default
        ``self.k``) nearest data rows (`nearest_rows`; ties to the lower row)."""
        args = self._index_args()
        return nearest_rows(self._ranked(y), self.data, self.k if k is None else k, **args)

    def _search(self, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Exact squared distances ``(B, k)`` ascending, indices ``(B, k)`` and neighbours ``(B, k, D)``.

        Distances are recomputed from the gathered neighbours (`nearest_set`: no float64 measurement of them):
        exact, and differentiable in ``y``; equal ones put the lower row first (`by_distance`).
        """
        args = self._index_args()
        idx = nearest_set(self._ranked(y), self.data, self.k, **args)
        dist2, order = by_distance((self.data[idx] - y.unsqueeze(1)).pow(2).sum(-1), idx)
        idx = idx.gather(1, order)
        return dist2, idx, self.data[idx]  # gathered again in order (without grad, one (B, k, D) copy stays alive)

    QUERY_NUMBERS = 2**24
    """`project`, `neighbours`, `cutoff_weight` and `effective_neighbours` take their queries in blocks whose
    gathered neighbours ``(rows, k, D)`` hold at most this many numbers (at least one row), so their memory stays
    bounded whatever the batch and ``D`` (500 queries, ``k = 256``, ``D = 1024`` peaked at 1.4 GiB unblocked); with
    ``x`` requiring grad autograd keeps a second block of that size for the backward pass."""

    def _blocks(self, y: Tensor) -> tuple[Tensor, ...]:
        """``y`` ``(B, D)`` split into consecutive blocks of rows (`QUERY_NUMBERS`); one empty block for ``B = 0``.
        Each query's answer depends on it alone (`nearest_rows`), so blocking changes no value."""
        return y.split(max(1, self.QUERY_NUMBERS // (self.k * self.dim)))

    def _distances(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """`_search`'s squared distances ``(B, k)`` and indices ``(B, k)``, by blocks (`_blocks`)."""
        parts = [self._search(block)[:2] for block in self._blocks(y)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    @full_precision
    def neighbours(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """The ``k`` nearest data points of each query, exact brute force.

        Args:
            y: ``(B, D)`` queries (same dtype and device as the data).

        Returns:
            ``(dist2, idx)``: squared Euclidean distances ``(B, k)`` in ascending order and the matching row
            indices into the data ``(B, k)``.
        """
        self._check_query(y, "y")
        return self._distances(y)

    @full_precision
    def cutoff_weight(self, x: Tensor) -> Tensor:
        """``(B, D)`` → ``(B,)``: the kernel weight of the ``k``-th (farthest kept) neighbour relative to the
        nearest's, ``exp(−(d_k² − d_1²)/(2σ²))``. Where it is not negligible the field is a truncated kernel, whose
        derivatives in ``x`` (`learned_manifold.curvature`) turn too little: measured on S² from 4,000 points at
        σ = 0.1, scalar curvature 0.2 at k = 32 (weight ~0.2), 1.8 at k = 128 (~2e-3), 2.05 at k = 512 (truth 2)."""
        y = self._as_query(x)
        with torch.no_grad():
            dist2 = self._distances(y)[0]
        return torch.exp(-(dist2[:, -1] - dist2[:, 0]) / (2 * self.sigma**2)).to(x.dtype)

    @full_precision
    def effective_neighbours(self, x: Tensor) -> Tensor:
        """``(B, D)`` → ``(B,)``: the kernel's effective number of neighbours ``(Σ_j w_j)² / Σ_j w_j²`` over the
        ``k`` kept ones (``w_j = exp(−d_j²/(2σ²))``). Few (σ below the data's spacing) and the tangent planes follow
        single neighbours: on S² from 2,000 points, 7.9 gave scalar curvature 1.67, 2.3 gave 0.2 (truth 2)."""
        y = self._as_query(x)
        with torch.no_grad():
            dist2 = self._distances(y)[0]
            w = torch.exp(-(dist2 - dist2[:, :1]) / (2 * self.sigma**2))  # (B, k), the nearest's weight 1
        return (w.sum(-1).square() / w.square().sum(-1)).to(x.dtype)

    FAR_SPACINGS = 4.0
    """`beyond_data`: a point is off the data beyond this many typical nearest-neighbour spacings (or beyond
    `FAR_QUANTILE_FACTOR` times the 99th percentile of the nearest-neighbour distances, where that is larger)."""

    FAR_QUANTILE_FACTOR = 2.0
    """`beyond_data`: on a curve the largest gaps reach 9-11 median spacings (``ln N / (2N)`` for ``N`` = 500-4,096
    uniform points; 6% of a 500-point circle read "beyond"); twice the 99th percentile (~13 spacings) covers them."""

    SPACING_SAMPLE = 4096
    """Data rows whose nearest other row gives the typical spacing (a seeded sample of larger data sets)."""

    def length_scale(self) -> float:
        """The RMS distance of the data from their mean."""
        self._fresh()
        return self._spread

    def search_origin(self) -> Tensor:
        """``(D,)``: the point the search ranks about and `project` sums about, the data's mean where it lies
        farther from 0 than their spread, else 0 (`knn_index.build_index`; for the current ``data``; a copy)."""
        self._fresh()
        return self.origin.clone()

    @full_precision
    def beyond_data(self, x: Tensor) -> Tensor:
        """``(B, D)`` → ``(B,)``: the distance from each point to its nearest data point where it exceeds
        `far_distance` (`FAR_SPACINGS` times the median distance between a data point and its nearest other one, or
        `FAR_QUANTILE_FACTOR` times the 99th percentile of those distances), else 0.

        A point on the data (not itself a data point) lies within a spacing or two of one; a point several
        spacings away is off the data. Landing (`learned_manifold.landing.land`) starts such points' descent from
        this distance, since a denoiser at a bandwidth far below it may hardly move them."""
        dist = self.nearest_distance(x)
        return torch.where(dist > self.far_distance(), dist, torch.zeros_like(dist))

    @full_precision
    def nearest_distance(self, x: Tensor) -> Tensor:
        """``(B, D)`` → ``(B,)``: the distance from each point to its nearest data point (one exact search; what
        `beyond_data` thresholds, and `learned_manifold.landing.land` compares with `spacing_quantile`)."""
        y = self._as_query(x)
        with torch.no_grad():
            return self._nearest(y, 1)[0][:, 0].sqrt().to(y.dtype).to(x.dtype)

    def spacing_quantile(self) -> float:
        """The 99th percentile of the distances from a data point to its nearest data point of another value
        (computed once, `knn_spacing.cached_spacing`; ``inf`` when the data hold fewer than two distinct points)."""
        return cached_spacing(self)[2]

    def far_distance(self) -> float:
        """The distance from the nearest data point beyond which `beyond_data` calls a point off the data: the
        larger of `FAR_SPACINGS` median nearest-neighbour spacings and `FAR_QUANTILE_FACTOR` times their 99th
        percentile (computed once, `knn_spacing.cached_spacing`)."""
        return cached_spacing(self)[1]

    def median_spacing(self) -> float:
        """Median distance from a data point to its nearest data point of another value (computed once:
        `knn_spacing.spacing_statistics`; ``inf`` when the data hold fewer than two distinct points)."""
        return cached_spacing(self)[0]

    GRAPH_POINTS = GRAPH_POINTS
    """`neighbour_graph` joins at most this many data points (`knn_spacing.graph_point_count`, the rule by which a
    trained model stores landmarks too, with its own floor)."""

    GRAPH_NUMBERS = GRAPH_NUMBERS

    def graph_rows(self) -> Tensor:
        """The data rows ``(M,)`` that `neighbour_graph` joins, ascending: all ``N`` rows, or the
        ``M = knn_spacing.graph_point_count(N, D)`` first of a permutation seeded with 0 (as the trainer picks
        landmarks), so the graph costs ``O(M² D)`` and ``O(M k)`` memory whatever ``N``."""
        return graph_rows(self)

    @full_precision
    def neighbour_graph(self, k: Count = 10) -> tuple[Tensor, Tensor]:
        """The ``k``-nearest-neighbour graph (self excluded) of the data rows `graph_rows` (all rows for up to
        `GRAPH_POINTS` points), computed once per ``k`` and cached; the caller gets copies, so editing them changes no
        later answer (`knn_spacing.cached_graph`).

        Used for shortest paths through the data (the geodesic solver's ``init="graph"``).

        Args:
            k: neighbours per graph point, ``1 ≤ k < M``, ``M`` the number of `graph_rows`.

        Returns:
            ``(idx, dist)``, each ``(M, k)``: neighbour positions in `graph_rows` (data row indices where
            ``M = N``) and Euclidean distances (ascending). Where a point has fewer than ``k`` distinct neighbours
            the missing entries have distance ``inf``.
        """
        self._fresh()  # a changed ``data`` drops the cached graph
        rows = self.graph_rows()
        return cached_graph(self, rows, check_count(k, "k", high=max(1, rows.shape[0] - 1)))

    def _weighted(self, y: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Log-weights ``(B, k)``, neighbours ``(B, k, D)``, their weighted mean ``x̄`` ``(B, D)`` and data rows
        ``(B, k)``. ``x̄ = o + Σ_j w_j (x_j − o)`` about the search origin ``o`` (`search_origin`): its rounding is
        ``~ε |x̄ − o|``, what landing's floor allows (`landing_scale.residual_rounding`), not ``ε |x̄|`` (k = 64
        float32 points at 5,000 summed about 0 missed that floor); the same sum where ``o = 0``."""
        dist2, idx, points = self._search(y)  # (the index, and so ``origin``, current)
        log_w = torch.log_softmax(-dist2 / (2 * self.sigma**2), dim=-1)
        mean = self.origin + (log_w.exp().unsqueeze(-1) * (points - self.origin)).sum(1)
        return log_w, points, mean, idx

    @full_precision
    def factor(self, x: Tensor) -> Tensor:
        """Rank-``k`` factor ``A`` with ``Γ̂ = AAᵀ`` (SPEC §7): ``(B, D)`` → ``(B, D, k)``.

        Columns are ``sqrt(w_j)(x_j − x̄)/σ`` (centred) or ``sqrt(w_j)(x_j − y)/σ`` (uncentred), ordered by
        distance. ``sqrt(w_j)`` is taken as ``exp(½ log w_j)``, so far neighbours whose weight underflows give
        zero columns with finite gradients. Queries of another floating dtype are computed in the data's dtype
        and the factor is returned in the query's.
        """
        xq = self._as_query(x)
        log_w, points, _, idx = self._weighted(xq)
        if self.centred:  # x_j − x̄ as (x_j − x_1) − Σ w_i (x_i − x_1): copies of one point give exact zeros
            rel = points - points[:, :1]  # (their rounded mean once made a tangent line of noise, dimension 1)
            diff = rel - (log_w.exp().unsqueeze(-1) * rel).sum(1, keepdim=True)
            vanish = (rel == 0).flatten(1).all(-1)  # (B,): all k neighbours copies of one row, G = 0 there
        else:
            diff, vanish = points - xq.unsqueeze(1), None
        cols = diff * (0.5 * log_w).exp().unsqueeze(-1) / self.sigma
        if check_finite_output(xq, cols, "k-NN field", also=vanish):  # one sync for both
            warn_if_copies(self, vanish, idx)
        return cols.transpose(1, 2).to(x.dtype)

    @full_precision
    def apply(self, x: Tensor, w: Tensor) -> Tensor:  # type: ignore[override]  # (still nn.Module's: base.py)
        """``(AAᵀ + δI) w``: ``(B, D)``, ``(B, D)`` → ``(B, D)``."""
        check_vectors(x, w, self.dim, "w")
        return lowrank_apply(self.factor(x), w, self.delta)

    @full_precision
    def metric(self, x: Tensor, v: Tensor) -> Tensor:
        """``(AAᵀ + δI)^{-1} v`` by Woodbury (SPEC §5); for ``δ = 0`` the pseudo-inverse on the range of ``A``.

        ``δ = 0`` goes through `pseudo_inverse.pinv_solve` (Cholesky of the ridged ``k × k`` Gram, or of ``G``
        itself for ``k > D``), not through an eigen-decomposition: the Gram of a rank-``k`` factor in ``R^D`` with
        ``k > D`` has ``k − D`` repeated zero eigenvalues, and the backward pass of ``eigh`` there is
        ``0 · ∞ = NaN``, which used to poison geodesic solves (the non-finite iterate then made ``eigh`` itself
        fail to converge).
        """
        check_vectors(x, v, self.dim, "v")
        if self.delta > 0:
            return lowrank_solve(self.factor(x), v, self.delta)
        return _pinv_solve(self.factor(x), v)

    @full_precision
    def project(self, x: Tensor) -> Tensor:
        """Landing projection: the weighted neighbour mean ``x̄ = Σ_j w_j x_j``, ``(B, D)`` → ``(B, D)``, by blocks
        of queries (`QUERY_NUMBERS`: bounded memory), differentiable in ``x``."""
        blocks = self._blocks(self._as_query(x))
        return torch.cat([self._weighted(block)[2] for block in blocks]).to(x.dtype)

    @property
    def can_project(self) -> bool:
        """``True``: `project` lands on the weighted neighbour mean."""
        return True

    def extra_repr(self) -> str:
        return (
            f"N={self.data.shape[0]}, D={self.dim}, k={self.k}, sigma={self.sigma}, centred={self.centred}, "
            f"delta={self.delta}, chunk_size={self.chunk_size}"
        )
