"""`LearnedDataManifold`: a data geometry (any co-metric field) as a ``geoopt.Manifold`` (SPEC §5).

Two readings of the same field, chosen by the isotropic part ``δ``:

* ``δ > 0``: the manifold is ``R^D`` with the metric ``g = (G + δI)^{-1}``. Every vector is tangent;
  ``proju`` and ``transp`` are the identity, ``retr(x, u) = x + u``, ``egrad2rgrad(x, u) = (G + δI) u`` and
  ``inner`` is the Woodbury form.
* ``δ = 0``: the learned tangent bundle. ``proju = ÛÛᵀ`` (top-``d`` eigenvectors, ``d`` fixed or each
  point's gap-rule dimension), ``egrad2rgrad(x, u) = G_d u`` (``G`` on those directions),
  ``retr(x, u) = x + proju(x, u)`` (so geoopt's momentum seed, a raw Euclidean gradient, is handled) and
  ``transp(x, y, v) = proju(y, v)``. A warning says (at the 1st, 2nd, 4th, … decomposition of the factor at
  each point set, so a new parameter's first step is checked: `learned_manifold.manifold_factors`) where the gap
  rule's ``d`` drops an eigenvalue above ``0.25 λ₁`` (`dimension.DROPPED_LIMIT`; a real direction: pass
  ``tangent_dim``; smaller ones are dropped silently), where a given ``tangent_dim`` splits a cluster of
  eigenvalues (`dimension.CLUSTER_RATIO`) and where the factor is NaN at finite points. This reading needs a low-rank
  field (``low_rank = True``); a field that is not low-rank is read at ``δ = 0`` as for ``δ > 0`` (``R^D`` with
  the metric ``G^{-1}``, its own ``apply``/``metric``), right for a full-rank ``G`` (`EuclideanMetric`, the VAE
  pullback, Stein, Tangential). Construction refuses the fields for
  which that reading is wrong (`metrics.field_checks.check_full_space`): a field that implements ``factor``
  without ``low_rank = True`` and `ScoreJacobianMetric` with ``δ = 0``.

With ``landing=True`` (low-rank fields that have a denoiser), the manifold is the set of fixed points of the
*normal-only* landing map ``x ← x + (I − P_x)(x̂(x, σ) − x)``, ``P_x`` the projector onto the learned tangent
space (top-``d`` eigenvectors of ``G(x)``). ``projx`` iterates that map until the normal correction is below a
tolerance (annealing ``σ`` down from the correction's size for points far from the data), so it never moves a
point along the data: a point that is already a fixed point is returned unchanged (bit for bit), ``projx`` is
idempotent and ``retr(x, 0) = x``. Without landing, ``projx`` is the identity and every finite point of the
right shape is on the manifold (the geometry is defined everywhere; the data are where it is meaningful).

Points may have any number of leading batch axes; the last ``ndim`` axes are the data axes. What a valid
point is decides `learned_manifold.metrics.base.as_points`. Rows are independent, as in ``geoopt.Sphere``: a
NaN row (e.g. from a NaN gradient) stays NaN in that row and leaves the other rows untouched.

Cost: for low-rank fields the manifold evaluates the factor (and, for ``δ = 0``, its eigenpairs) once per point and
reuses it across the calls an optimiser step makes at that point (``egrad2rgrad``, ``component_inner``, ``retr``,
and ``transp`` at the new point, where the next step starts; with landing, the last landing iterate provides it):
a cache of private copies of the points (`learned_manifold.manifold_cache.FactorCache`), hit only by a query of
equal values (exact, one host sync per lookup however many entries, two where a parameter's own entry misses:
in-place edits such as ``x.data.add_()`` never read a stale factor) to a field in the same state, used only under
``torch.no_grad()`` (as in geoopt's ``step``) and outside forward-mode AD. It keeps one entry per point set in use:
every parameter on one manifold, or of several optimisers sharing it, up to `FactorCache.PIN_LIMIT` = 64 and
`FactorCache.PIN_BYTES` = 2 GiB of pinned entries, keeps the one-evaluation-per-step cost (a parameter's next point
replaces its last, and the entry a parameter's update reuses stays while the parameter's storage and the optimiser
stepping it live), plus up to eight others, least recently used first out (a loop of queries at fresh points of one
shape holds one entry). Each entry holds about ``(1 + 3r) B D`` numbers (points, factor, eigenvectors, the gap
rule's basis: `manifold_cache.entry_bytes`);
`LearnedDataManifold.clear_cache` frees them. The state is what the key reads (`learned_manifold.manifold_cache`):
the field's parameters and buffers and its own tensor attributes (the same tensors, none changed in place or
swapped since: ``load_state_dict``, in torch's swap mode too, or an optimiser step on the network, fused ones
included, compute afresh), and its own plain attributes by value (``sigma``, ``k``, ``centred``, ``precision``,
...: numbers, NumPy scalars included, strings, bools, enum members). A custom field must keep the state its
factor depends on there, or call `LearnedDataManifold.clear_cache` after changing other state (a list, tuple,
dict or array attribute, a submodule's plain attribute, an in-place write through ``tensor.data`` or through a
tensor sharing a field tensor's memory but not its version counter: ``W`` after ``w.data = W``, a NumPy or
DLPack alias; an in-place edit by another process through shared memory). Pickles and copies leave it out.
Threads may share a manifold: each query uses the entry it found or made.

A manifold built or loaded under ``torch.inference_mode()`` answers every query, but where a method would
differentiate through a field holding inference tensors (points that require grad) it raises one ``RuntimeError``
naming the field and the fix (`manifold_factors.inference_built`) instead of torch's; `curvature` and `geodesic`
copy such a field.

Every public method runs outside any autocast the caller has on (`learned_manifold.precision.full_precision`):
float32 points give float32 answers, the same as outside autocast.

geoopt's ``expmap``, ``logmap``, ``dist`` and ``random`` raise ``NotImplementedError`` (no closed forms:
`learned_manifold.manifold_no_closed_form`; `learned_manifold.geodesic` gives paths and lengths).

``torch.func.vmap`` over the points is not supported (the factor's finiteness check, the eigen step and the k-NN
search branch on the data): a method that needs the factor at vmapped points raises one ``RuntimeError`` saying so;
pass the points as one batch instead. ``vmap`` over the vectors at fixed points works, and so do ``δ > 0``'s
``proju``/``transp``/``retr``, which never read the factor.
"""

from __future__ import annotations

import math
import os

import torch
from torch import Tensor

from .checks import is_real
from .geometry import eigenpairs, intrinsic_dimension, lowrank_apply, lowrank_inner, spectral_apply
from .landing import ends_off_data, land
from .manifold_cache import vmapped
from .manifold_checks import CheckedManifold, check_tangent_dim
from .manifold_factors import CachedFactors, inference_built
from .manifold_no_closed_form import NoClosedForms
from .metrics.base import CoMetricField, as_points, check_count, check_scalar
from .metrics.field_checks import check_full_space, check_landing
from .metrics.learned import LearnedCDC
from .model_file import _load_model
from .models import MetricModel, check_data_shape
from .precision import full_precision
from .types import Count, Real, Shape
from .user_warnings import warn_user

__all__ = ["LearnedDataManifold"]


class LearnedDataManifold(CachedFactors, NoClosedForms, CheckedManifold):
    """The data's own geometry as a geoopt manifold.

    A `MetricModel` given (directly or in a `LearnedCDC`) is frozen **in place**: `LearnedCDC` calls
    ``model.requires_grad_(False).eval()`` on the very module, so a model still being trained stops receiving
    gradients. To keep training it, pass ``copy.deepcopy(model)``.

    Args:
        source: a model file path, a loaded `MetricModel` (frozen in place, above), or any `CoMetricField`.
        sigma: evaluation bandwidth in data units (models only; ``None``: the model's default).
        delta: isotropic part ``δ ≥ 0`` (models only; a field carries its own).
        data_shape: shape of one point, a tuple or a list (default: the model's data shape, or ``(D,)`` for a
            field; needed for a field that does not fix ``D``, such as `EuclideanMetric` or a score field on a plain
            function).
        landing: make ``projx`` the normal-only landing projection and land after every ``retr`` (low-rank
            fields with a denoiser).
        tangent_dim: for ``δ = 0`` (and for landing's normal space), the top-``d`` eigenvectors, ``d`` an integer
            (an int, a NumPy integer or a 0-d integer tensor; stored as the int) at most ``D`` and the factor's rank
            ``r`` (checked here where the field tells its rank, a `LearnedCDC`'s or a `KNNCDC`'s ``k``, else at the
            first query); a ``d`` that splits a cluster of eigenvalues (``λ_{d+1}/λ_d`` above 0.5 at the median
            point, `dimension.CLUSTER_RATIO`) gets a warning at each point set's 1st, 2nd, 4th, … decomposition
            (`manifold_factors`). ``None`` uses each point's gap-rule dimension (SPEC §5), which is scale-free and
            needs no threshold (a warning, at the same decompositions, names points where it drops an eigenvalue
            above ``0.25 λ₁``: pass the true dimension there; one at or below ``0.25 λ₁`` is dropped silently,
            `dimension.DROPPED_LIMIT`). With ``δ > 0`` and no landing it acts only in `curvature` and the flows' and
            geodesics' ``landing=True`` (a warning says so).
        landing_tol: landing stops when the normal correction is below ``landing_tol · σ`` plus the rounding
            of the residual (`landing.residual_rounding`: ``64 ε |x − μ|_∞ + 2 √D ε |x|_∞``, ``μ`` a learned
            model's mean, else the search origin of the data points the field holds (a `KNNCDC`'s or landmarks'),
            else 0). ``σ`` is the field's, else its data's scale, else 1 (`landing_scale.landing_sigma`: never the
            points', so a point lands the same in any batch); a field that knows no scale at all takes only the
            tolerance's scale from the points (`landing_scale.points_sigma`).
        landing_steps: the most landing iterations; points that have not converged by then raise.

    Example:
        >>> import torch
        >>> from learned_manifold import LearnedDataManifold
        >>> from learned_manifold.metrics import KNNCDC
        >>> g = torch.Generator().manual_seed(0)
        >>> data = torch.nn.functional.normalize(torch.randn(2000, 3, generator=g), dim=-1)  # S² in R³
        >>> M = LearnedDataManifold(KNNCDC(data, k=32, sigma=0.1))  # or LearnedDataManifold("model.lmm")
        >>> x = data[:5]
        >>> values, vectors = M.tangent_space(x)  # descending eigenvalues, eigenvectors as columns
        >>> values.shape, vectors.shape
        (torch.Size([5, 32]), torch.Size([5, 3, 32]))
        >>> M.intrinsic_dimension(x)
        tensor([2, 2, 2, 2, 2])
        >>> normal = x  # on the unit sphere the normal at x is x itself
        >>> bool((vectors[..., :2].transpose(1, 2) @ normal.unsqueeze(-1)).abs().max() < 0.05)
        True
    """

    name = "LearnedData"
    reversible = False
    ndim = 1

    def __init__(
        self,
        source: str | os.PathLike | MetricModel | CoMetricField,
        *,
        sigma: Real | None = None,
        delta: Real = 0.0,
        data_shape: Shape | None = None,
        landing: bool = False,
        tangent_dim: Count | None = None,
        landing_tol: Real = 1e-4,
        landing_steps: Count = 200,
    ):
        super().__init__()
        if isinstance(source, CoMetricField):
            if not is_real(delta):
                raise TypeError(f"delta must be a number, got {type(delta).__name__}")
            if sigma is not None or delta:
                raise ValueError("sigma and delta belong to the field when a field is given; set them there")
            field = source
        elif isinstance(source, (MetricModel, str, os.PathLike)):
            if not isinstance(source, MetricModel):  # the file's cautions point at the caller's line
                source = _load_model(source, "cpu", default_sigma=sigma is None)
            field = LearnedCDC(source, sigma, delta=delta)
        else:
            raise TypeError(f"expected a model file path, a MetricModel or a CoMetricField, "
                            f"got {type(source).__name__}")
        self.field = field
        shape: tuple[int, ...]
        if data_shape is not None:
            shape = check_data_shape(data_shape)
        else:
            model = getattr(field, "model", None)
            if model is not None:
                shape = tuple(model.data_shape)
            elif field.dim is not None:
                shape = (field.dim,)
            else:
                raise ValueError(f"data_shape is needed: {type(field).__name__} does not fix the dimension of its "
                                 f"points (e.g. data_shape=(3,) for points in R³, (1, 28, 28) for images)")
        if field.dim is not None and math.prod(shape) != field.dim:
            raise ValueError(f"data_shape {tuple(shape)} has {math.prod(shape)} entries, "
                             f"the field expects D = {field.dim}")
        self.data_shape = tuple(shape)
        self.ndim = len(self.data_shape)
        tangent_dim = check_tangent_dim(field, tangent_dim)  # (the int: a NumPy or 0-d tensor integer converted)
        check_landing(field, landing)
        check_full_space(field)
        landing = bool(landing)
        self.landing, self.tangent_dim = landing, tangent_dim
        self.landing_tol = check_scalar(landing_tol, "landing_tol")
        self.landing_steps = check_count(landing_steps, "landing_steps")
        self._decompositions = 0  # grad-enabled decompositions, for `_factor_and_pairs_at`'s checks (1, 2, 4, ...)
        if tangent_dim is not None and field.delta > 0 and not landing:
            warn_user(f"tangent_dim = {tangent_dim} does not change inner, norm, proju, egrad2rgrad, retr or "
                      f"transp: with delta = {field.delta:.3g} > 0 and landing=False every vector is tangent and "
                      f"the metric is (G + delta I)^-1 on all of R^D; it acts only in curvature(M, x) and in the "
                      f"landing of gradient_flow, interpolate and geodesic with landing=True")

    # -- shapes -------------------------------------------------------------------------------------------
    @property
    def delta(self) -> float:
        return self.field.delta

    @property
    def dim(self) -> int:
        return math.prod(self.data_shape)

    def _points(self, x: object, name: str = "x", *, convert: bool = False) -> Tensor:
        return as_points(x, self.data_shape, name, convert=convert)

    def _flat(self, *tensors: Tensor, names: str = "xuv") -> tuple[tuple[int, ...], list[Tensor]]:
        """Validate, promote to a common dtype, broadcast, flatten: the batch shape and ``(B, D)`` tensors."""
        points = [self._points(t, n) for t, n in zip(tensors, names, strict=False)]  # geoopt's: tensors only
        dtype = points[0].dtype
        for t in points[1:]:
            dtype = torch.promote_types(dtype, t.dtype)
        try:  # (equal shapes, an optimiser's case, skip torch.broadcast_shapes: a quarter of a cached proju)
            shape = points[0].shape if all(t.shape == points[0].shape for t in points) else \
                torch.broadcast_shapes(*(t.shape for t in points))
        except RuntimeError:
            given = ", ".join(f"{n} {tuple(t.shape)}" for t, n in zip(points, names, strict=False))
            raise ValueError(f"the batch shapes of {given} do not broadcast against each other") from None
        batch = tuple(shape[: len(shape) - self.ndim])
        return batch, [t.to(dtype).expand(shape).reshape(-1, self.dim) for t in points]

    def _unflat(self, batch: tuple[int, ...], t: Tensor) -> Tensor:
        return t.reshape(*batch, *self.data_shape)

    # -- what the manifold is -----------------------------------------------------------------------------
    @full_precision
    def projx(self, x: Tensor) -> Tensor:
        """Identity, or the normal-only landing projection when ``landing=True`` (module docstring): points
        ``(..., *data_shape)`` → the same shape.

        The landing result is not differentiable (it is computed under ``no_grad``), like geoopt's use of it.

        Raises:
            ValueError: a finite point that does not land within ``landing_steps`` iterations (too far from the
                data, or where the data's normal space is ill-defined).
        """
        x = self._points(x)
        if not self.landing:
            return x
        batch, (xf,) = self._flat(x)
        return self._unflat(batch, land(self, xf))

    @full_precision
    def proju(self, x: Tensor, u: Tensor) -> Tensor:
        """``δ > 0``: ``u``; ``δ = 0``: ``Û Ûᵀ u`` onto the learned tangent space (low-rank fields).

        Points ``x`` and vectors ``u`` ``(..., *data_shape)``, broadcast against each other → vectors of the broadcast
        shape (``egrad2rgrad`` and ``retr`` likewise)."""
        if self.delta > 0 or not self.field.low_rank:
            batch, (_, uf) = self._flat(x, u)
            return self._unflat(batch, uf)
        batch, (xf, uf) = self._flat(x, u)
        _, pairs = self._factor_and_pairs_at(xf)
        return self._unflat(batch, spectral_apply(pairs, uf, self.tangent_dim, power=0))

    @full_precision
    def egrad2rgrad(self, x: Tensor, u: Tensor) -> Tensor:
        """Riemannian gradient: ``(G + δI) u`` for ``δ > 0``; ``G_d u = Û Λ_d Ûᵀ u`` for ``δ = 0``.

        SPEC §5 writes ``G u`` for ``δ = 0``. Here ``G`` is restricted to the ``d`` eigen-directions that
        ``proju`` keeps (the same ``Û``), so the gradient is tangent (``proju(egrad2rgrad(u)) = egrad2rgrad(u)``)
        and is the Riemannian gradient of the metric ``inner`` defines on that tangent space. The discarded
        ``r − d`` directions carry the learned normal eigenvalues (small but not zero, ~0.03 on S²); keeping them
        gave a normal component of up to 0.045 that ``check_vector_on_tangent`` rejected.
        """
        batch, (xf, uf) = self._flat(x, u)
        if not self.field.low_rank:
            with inference_built(self.field):
                return self._unflat(batch, self.field.apply(xf, uf))
        if self.delta > 0:
            return self._unflat(batch, lowrank_apply(self._factor_at(xf), uf, self.delta))
        _, pairs = self._factor_and_pairs_at(xf)
        return self._unflat(batch, spectral_apply(pairs, uf, self.tangent_dim, power=1))

    @full_precision
    def retr(self, x: Tensor, u: Tensor) -> Tensor:
        """``x + proju(x, u)``, then the landing projection when enabled (``retr(x, 0) = projx(x)``).

        With landing the result is not differentiable (no ``grad_fn``: the landing runs under ``no_grad``, as
        `projx` says), like geoopt's use of it in optimiser steps; without landing it is.
        """
        return self.projx(x + self.proju(x, u))

    @full_precision
    def transp(self, x: Tensor, y: Tensor, v: Tensor) -> Tensor:
        """Vector transport by projection at ``y`` (identity for ``δ > 0``): points ``x``, ``y`` and a vector ``v``
        ``(..., *data_shape)`` → ``proju(y, v)``, of the shape of ``y`` and ``v`` broadcast (``x`` is not read)."""
        return self.proju(y, v)

    @full_precision
    def inner(self, x: Tensor, u: Tensor, v: Tensor | None = None, *, keepdim: bool = False) -> Tensor:
        """``uᵀ (G + δI)^{-1} v`` (Woodbury), reduced over the data axes: ``x``, ``u``, ``v`` ``(..., *data_shape)``
        → ``(...)``, or ``(..., 1, …, 1)`` (one 1 per data axis) with ``keepdim``; ``v = None`` gives ``|u|²``.

        For ``δ = 0``: ``uᵀ Û Λ_d^{-1} Ûᵀ v``, the metric on the tangent space ``proju`` keeps (the inverse of the
        restricted ``egrad2rgrad``).
        """
        same = v is None
        batch, (xf, uf, vf) = self._flat(x, u, u if v is None else v)
        if not self.field.low_rank:
            with inference_built(self.field):
                out = self.field.inner(xf, uf, vf)
        elif self.delta > 0:
            out = lowrank_inner(self._factor_at(xf), uf, vf, self.delta)
        else:
            _, pairs = self._factor_and_pairs_at(xf)
            out = (uf * spectral_apply(pairs, vf, self.tangent_dim, power=-1)).sum(-1)
        out = out.reshape(batch)
        if same:  # a squared norm: clamp the rounding of Woodbury's difference (Adam takes its square root)
            out = out.clamp_min(0)
        return out.reshape(*batch, *([1] * self.ndim)) if keepdim else out

    @full_precision
    def norm(self, x: Tensor, u: Tensor, *, keepdim: bool = False) -> Tensor:
        """``sqrt(inner(x, u))``, reduced over the data axes: ``x``, ``u`` ``(..., *data_shape)`` → ``(...)``
        (``keepdim``: as `inner`), with gradient 0 at ``u = 0`` (the subgradient ``torch.linalg.vector_norm`` gives;
        geoopt's ``inner ** 0.5`` gives NaN there). NaN rows stay NaN."""
        squared = self.inner(x, u, keepdim=keepdim)
        zero = squared == 0
        return torch.where(zero, 0.0, torch.where(zero, 1.0, squared).sqrt())

    # -- geometry queries ---------------------------------------------------------------------------------
    @full_precision
    def factor(self, x: object) -> Tensor:
        """Low-rank factor of ``G`` at ``x``: ``(..., *data_shape)`` → ``(B, D, r)`` (batch axes flattened).

        ``x`` may be any array-like (numpy array, nested lists); it is converted by ``torch.as_tensor``.
        """
        _, (xf,) = self._flat(self._points(x, convert=True))
        return self._field_factor(xf)

    @full_precision
    def tangent_space(self, x: object) -> tuple[Tensor, Tensor]:
        """Eigenpairs of ``G`` at ``x`` via the ``r × r`` Gram: ``(values (..., r) descending, vectors (..., D, r))``
        for points ``(..., *data_shape)`` (the batch axes kept, as `proju` keeps them; a single point gives
        ``(r,)`` and ``(D, r)``). Points beyond the data the field holds warn (`_query`).

        A field without a low-rank factor (the score fields) goes through its dense ``G`` (``D`` applications
        and a ``D × D`` ``eigh`` per point, ``r = D``: small ``D`` only; `evaluation.field_eigenpairs`)."""
        return self._tangent_space(*self._query(x, "LearnedDataManifold.tangent_space"))

    def _tangent_space(self, batch: tuple[int, ...], xf: Tensor) -> tuple[Tensor, Tensor]:
        """`tangent_space` of the flat points ``xf`` ``(B, D)``, unchecked."""
        if not self.field.low_rank:
            from .evaluation import field_eigenpairs

            pairs = field_eigenpairs(self.field, xf)
        else:
            pairs = eigenpairs(self._field_factor(xf))
        r = pairs.values.shape[-1]
        return pairs.values.reshape(*batch, r), pairs.vectors.reshape(*batch, self.dim, r)

    @full_precision
    def intrinsic_dimension(self, x: object) -> Tensor:
        """Pointwise intrinsic dimension by the scale-free gap rule (SPEC §5): integers of the batch shape of
        ``x`` (``()`` for a single point). Points beyond the data the field holds warn (`_query`)."""
        values = self._tangent_space(*self._query(x, "LearnedDataManifold.intrinsic_dimension"))[0]
        return intrinsic_dimension(values.reshape(-1, values.shape[-1])).reshape(values.shape[:-1])

    def _query(self, x: object, caller: str) -> tuple[tuple[int, ...], Tensor]:
        """A point-wise query's batch shape and flat points ``(B, D)``, with one warning where any lies beyond the
        data the field holds (`landing.ends_off_data`, as `geodesic` and the flows check): points in other units got
        silent answers. One nearest-point search per query call; never in `proju` (the optimisers' hot path)."""
        batch, (xf,) = self._flat(self._points(x, convert=True))
        if vmapped(xf):
            self._field_factor(xf)  # its one clear refusal, before the search's internal torch error
        with torch.no_grad():
            ends_off_data(self.field, {"x": xf.detach()}, caller, "are they in other units than the data (0..1 vs "
                          "0..255, standardised vs raw)? The geometry there is extrapolation without meaning")
        return batch, xf

    def extra_repr(self) -> str:
        return (f"data_shape={self.data_shape}, delta={self.delta:.3g}, landing={self.landing}, "
                f"field={type(self.field).__name__}")
