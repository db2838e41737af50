"""The co-metric field protocol (docs/SPEC.md §5, §7; the `CoMetricField` docstring below): one small interface
every geometry implements.

A co-metric field gives, at a batch of points ``x`` of shape ``(B, D)`` (flattened data), the
co-metric ``G(x)`` (PSD, ``(D, D)`` per point) plus an isotropic part ``δ ≥ 0``, in the forms callers need:

* ``apply(x, w)  -> (G(x) + δ I) w``      raise a covector (e.g. a Euclidean gradient) to a vector;
* ``metric(x, v) -> (G(x) + δ I)^{-1} v`` lower a vector: the Riemannian metric ``g`` applied to ``v``;
  for ``δ = 0`` this is the pseudo-inverse on the range of ``G`` (SPEC §5);
* ``factor(x)    -> A`` of shape ``(B, D, r)``, ``r ≥ 1``, with ``G = A Aᵀ`` when a low-rank form exists (in
  ``x``'s dtype and on its device; checked once for every consumer, `factor_checks`);
* ``dense(x)     -> G(x)`` of shape ``(B, D, D)`` (without ``δ``): small D only, for tests and plots.

All inputs and outputs are flat ``(B, D)`` tensors; `LearnedDataManifold` flattens the data axes before it
calls a field. Fields are ``torch.nn.Module`` so that networks and data they hold follow ``.to()``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..checks import Count, as_index, check_real
from ..geometry import lowrank_apply, lowrank_solve
from ..precision import full_precision
from .factor_checks import checked_factor

__all__ = [
    "CoMetricField",
    "Denoiser",
    "NonFiniteFieldOutput",
    "as_denoiser",
    "as_field",
    "as_points",
    "check_count",
    "check_finite_output",
    "check_finite_points",
    "check_points",
    "check_scalar",
    "check_vectors",
    "rounding_eps",
]

Denoiser = Callable[[Tensor, float], Tensor]
"""A posterior-mean estimate ``x̂(y, σ)``: flat ``(B, D)`` points and a float bandwidth in data units."""


def as_points(x: object, data_shape: tuple[int, ...], name: str = "x", *, convert: bool = False,
              owner: str = "the manifold's", batch_ndim: int | None = None) -> Tensor:
    """The one rule of what a valid batch of points is; returns ``x`` as a tensor or raises one clear error.

    A valid batch is a floating-point tensor of shape ``(*batch, *data_shape)``: any number of leading batch
    axes (exactly ``batch_ndim`` of them when given), including an empty batch. Values are not scanned: a NaN
    row is a valid (if unlucky) point and stays NaN in that row only, as in ``geoopt.Sphere``; finiteness is
    checked where a computation on finite input would otherwise give a silent NaN.

    Args:
        x: the points; with ``convert=True`` also an array-like (numpy array, nested lists), converted by
            ``torch.as_tensor``, and integer points, tensors and arrays alike (e.g. ``uint8`` images in their
            stored units 0..255), become the default float dtype; bool ones are refused (they are masks).
        data_shape: shape of one point.
        name: the argument's name, used in messages.
        convert: accept array-likes and integer dtypes (the public query methods do; the geoopt primitives and
            the fields need floating tensors).
        owner: whose data shape it is, for messages (``"the manifold's"``, ``"the field's"``).
        batch_ndim: the exact number of batch axes, or ``None`` for any.

    Raises:
        TypeError: ``x`` is not a tensor (and ``convert`` is off, or it cannot be converted).
        ValueError: on the ``meta`` device (no values), wrong trailing axes, wrong number of batch axes, or a
            non-floating dtype.
    """
    data_shape = tuple(data_shape)
    if not isinstance(x, Tensor):
        if not convert:
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        try:
            x = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"{name} must be a tensor or an array-like of numbers, got {type(x).__name__}: "
                            f"{err}") from None
    if x.device.type == "meta":
        raise ValueError(f"{name} is on the 'meta' device: meta tensors have shapes but no values; give points "
                         f"with values (e.g. on 'cpu' or 'cuda')")
    if convert and not (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
        x = x.to(torch.get_default_dtype())
    k = len(data_shape)
    if batch_ndim is not None and x.ndim != batch_ndim + k:
        shape = "(B, D)" if (batch_ndim, k) == (1, 1) else f"{batch_ndim} batch axes then {data_shape}"
        raise ValueError(f"{name} must have shape {shape}, got {tuple(x.shape)}")
    if x.ndim < k or tuple(x.shape[x.ndim - k:]) != data_shape:
        last = tuple(x.shape[max(x.ndim - k, 0):])
        raise ValueError(f"{name} has last axes {last} ({math.prod(last)} coordinates), {owner} data shape is "
                         f"{data_shape} (D = {math.prod(data_shape)}); its shape is {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype} (convert it first, e.g. "
                         f"{name}.to(torch.get_default_dtype()))")
    return x


def check_points(x: Tensor, dim: int | None, name: str = "x") -> None:
    """Raise a ``ValueError`` naming the problem if ``x`` is not a ``(B, D)`` floating tensor (`as_points`).

    Values are not scanned for NaN/inf here (that would cost a device sync on every call); public entry
    points that take user data (flows, geodesics, training) check finiteness once.
    """
    width = x.shape[-1] if dim is None and isinstance(x, Tensor) and x.ndim else dim
    as_points(x, (-1 if width is None else width,), name, owner="the field's", batch_ndim=1)


def check_vectors(x: Tensor, v: Tensor, dim: int | None, name: str = "v") -> None:
    """Raise a ``ValueError`` unless ``x`` is a ``(B, D)`` batch of points and ``v`` one vector per point, of
    ``x``'s dtype (fields compute in the points' dtype; `LearnedDataManifold` promotes both before it calls one)."""
    check_points(x, dim)
    check_points(v, x.shape[1], name)
    if v.shape[0] != x.shape[0]:
        raise ValueError(f"{name} has batch size {v.shape[0]} but x has {x.shape[0]}: one vector per point")
    if v.dtype != x.dtype:
        raise ValueError(f"{name} has dtype {v.dtype} but x has {x.dtype}: give both in one dtype (e.g. "
                         f"{name}.to(x.dtype))")


def check_scalar(value: object, name: str, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a float after checking it is a finite real number ``> 0`` (``≥ 0`` with ``allow_zero``):
    `checks.check_real` (NumPy's ``np.float32`` included, bools not), whose ``ValueError`` it raises."""
    return check_real(value, name, positive=not allow_zero, nonnegative=allow_zero)


def check_count(value: Count, name: str, *, low: int = 1, high: int | None = None) -> int:
    """Return ``value`` as an ``int`` after checking it is an integer (Python's or NumPy's, a 0-d integer tensor;
    not a bool: `checks.as_index`) in ``low..high`` (``high = None``: no upper bound). A ``TypeError`` for a
    non-integer (as `checks.check_int` and PyTorch give), a ``ValueError`` out of range; both name ``name``."""
    number = as_index(value)
    if number is None:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if number < low or (high is not None and number > high):
        span = f"{low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must lie in {span}, got {number}")
    return number


def check_finite_points(x: Tensor, name: str, why: str = "") -> None:
    """Raise a ``ValueError`` if any point of ``x`` ``(N, ...)`` holds NaN/inf, naming ``name``, how many points and
    the first; for entry points whose whole answer one bad point would spoil (a check's verdict, a training run).
    ``why`` is appended to the message. One device sync."""
    finite = torch.isfinite(x).flatten(1).all(-1) if x.ndim > 1 else torch.isfinite(x)
    if not bool(finite.all()):
        # The numbers are read before the message is built: under torch.compile a host sync (a graph break) inside
        # an f-string, after a number that varies between calls, left that number among the pieces the resumed
        # frame joins ("TypeError: sequence item 1: expected str instance, int found", s37; torch 2.13's dynamo).
        count, first = int((~finite).sum()), int((~finite).nonzero()[0])
        raise ValueError(f"{name} holds NaN or inf at {count} point(s) (the first: {first}){why}")


def rounding_eps(field: nn.Module, dtype: torch.dtype) -> float:
    """The machine epsilon a field's values carry for points of ``dtype``: the coarsest of ``dtype`` and the
    floating dtypes of the field's parameters and buffers (a float32 network rounds float64 points to float32)."""
    eps = torch.finfo(dtype).eps
    for t in (*field.parameters(), *field.buffers()):
        if t.is_floating_point():
            eps = max(eps, torch.finfo(t.dtype).eps)
    return eps


class NonFiniteFieldOutput(ValueError):
    """A field gave NaN/inf at finite points (`check_finite_output`): a ``ValueError``, so callers that catch those
    still do; the geodesic solver's line search catches this one and takes a shorter step."""


def check_finite_output(x: Tensor, out: Tensor, what: str, *, also: Tensor | None = None) -> bool:
    """Raise `NonFiniteFieldOutput` (a ``ValueError``) if a field's output ``out`` ``(B, ...)`` is NaN/inf at a
    finite row of ``x`` ``(B, D)``; return whether any entry of the boolean ``also`` is set (False without it),
    read in the same device sync (a field's own rare-case test, e.g. `KNNCDC`'s copies, costs no second one).

    The one place that refuses non-finite results from finite points (one device sync per call); rows of ``x``
    that are already NaN/inf pass (they give NaN rows, SPEC §5 per-row behaviour)."""
    bad = ~torch.isfinite(out.flatten(1)).all(-1) & torch.isfinite(x).all(-1)
    flags = torch.stack([bad.any(), also.any() if also is not None else bad.new_zeros(())]).tolist()
    if flags[0]:
        count, worst = int(bad.sum()), x[bad].abs().max().item()  # read first (`check_finite_points`)
        raise NonFiniteFieldOutput(f"the {what} gave NaN/inf at {count} finite point(s) of x (largest "
                                   f"|coordinate| {worst:.3g}): its arithmetic in {x.dtype} over- or underflowed, "
                                   "either because these points lie too far outside the data's range, or because "
                                   "the data (or the bandwidth) sit at a scale whose squares leave that dtype's "
                                   "range; rescale the data, or compute in float64")
    return bool(flags[1])


_NOT_GIVEN = object()


def _also_module_apply(apply: Callable) -> Callable:
    """A field's ``apply(x, w)`` that also serves `torch.nn.Module.apply`'s ``apply(fn)``: called with one
    callable (not a tensor) it applies ``fn`` to every submodule and the field, as ``nn.Module.apply`` does, so
    ``model.apply(init_fn)`` on a user's module holding a field (or a manifold) recurses through it."""

    @functools.wraps(apply)
    def both(self, x, w=_NOT_GIVEN, *args, **kwargs):
        if w is _NOT_GIVEN and not args and not kwargs and callable(x) and not isinstance(x, Tensor):
            return nn.Module.apply(self, x)
        return apply(self, x, *(() if w is _NOT_GIVEN else (w,)), *args, **kwargs)

    both._also_module_apply = True  # type: ignore[attr-defined]  # (a marker on the wrapper function)
    return both


class CoMetricField(nn.Module):
    """Base class of co-metric fields (SPEC §5, §7).

    Subclasses implement ``apply`` and ``metric`` (each natively in one direction and by Woodbury,
    Sherman–Morrison or a matrix-free solve in the other), and ``factor`` where a low-rank form exists. A field
    that implements only ``factor`` (as `learned_manifold.curvature`'s examples do) gets ``apply``, ``metric``
    and ``dense`` from it by the low-rank formulas.

    ``low_rank = True`` is not a speed hint: it declares that ``G = AAᵀ`` *is* the field's geometry, and it changes
    what the field means. With it, `LearnedDataManifold` at ``δ = 0`` is the learned tangent bundle (``proju`` onto
    the top eigenvectors of ``AAᵀ``), and ``tangent_dim``, landing and `curvature` accept the field. Without it the
    field is a metric on all of ``R^D`` (every vector tangent), which is right only for a full-rank ``G``
    (`EuclideanMetric`, the score and VAE fields, which also implement ``apply`` and ``metric``). So a field whose
    ``factor`` returns ``A`` with ``G = AAᵀ`` must set ``low_rank = True``; `LearnedDataManifold` refuses one that
    implements only ``factor`` without it at ``δ = 0``.

    Every subclass's own ``factor`` is wrapped once (`factor_checks.checked_factor`): what it returns for points
    ``x`` ``(B, D)`` must be a tensor ``(B, D, r)`` with ``r ≥ 1``, in ``x``'s dtype and on its device, or one
    ``ValueError`` names ``<FieldClass>.factor`` (shapes only: no host sync).
    ``apply(x, w)`` is the co-metric; a field's ``apply(fn)`` with one callable is still `torch.nn.Module.apply`
    (every subclass's ``apply`` is wrapped so, e.g. for ``model.apply(init_fn)`` on a module holding a field).

    State that ``factor`` or ``apply`` reads should live in parameters, buffers, tensor attributes or plain
    number / string / bool attributes of the field itself: those are what `LearnedDataManifold`'s factor cache
    keys on (`learned_manifold.manifold_cache`). After changing other state (a list, a dict, a submodule's plain
    attribute, a write through ``tensor.data``), call the manifold's ``clear_cache()``.

    Attributes:
        dim: ambient dimension ``D`` (``None`` when any ``D`` is accepted, as for `EuclideanMetric`).
        delta: the isotropic part ``δ`` added to ``G`` by ``apply`` and ``metric``.
        centred: whether the field is mean-centred (fit for moving points, SPEC §2).
        low_rank: whether ``G = AAᵀ`` of ``factor`` is the field's geometry (above; not a speed hint).

    Example:
        >>> import torch
        >>> from learned_manifold.metrics import CoMetricField
        >>> class Diagonal(CoMetricField):
        ...     '''G(x) = diag(w): a constant field (for illustration).'''
        ...     def __init__(self, w):
        ...         super().__init__()
        ...         self.w, self.dim = w, w.numel()
        ...     def apply(self, x, w):
        ...         return self.w * w
        ...     def metric(self, x, v):
        ...         return v / self.w
        >>> field = Diagonal(torch.tensor([1.0, 2.0, 4.0]))
        >>> field.dense(torch.zeros(1, 3))
        tensor([[[1., 0., 0.],
                 [0., 2., 0.],
                 [0., 0., 4.]]])
        >>> field.inner(torch.zeros(1, 3), torch.ones(1, 3), torch.ones(1, 3))  # uᵀ G⁻¹ v = 1 + 1/2 + 1/4
        tensor([1.7500])
    """

    dim: int | None = None
    delta: float = 0.0
    centred: bool = True
    low_rank: bool = False

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("apply")
        if own is not None and not getattr(own, "_also_module_apply", False):
            cls.apply = _also_module_apply(own)  # type: ignore[method-assign]  # (on purpose: docstring above)
        factor = cls.__dict__.get("factor")
        if callable(factor) and not getattr(factor, "_checked_factor", False):
            cls.factor = checked_factor(factor)  # type: ignore[method-assign]  # (the one factor check: above)

    @full_precision
    def factor(self, x: Tensor) -> Tensor:
        """Low-rank factor ``A`` with ``G(x) = A Aᵀ``: ``(B, D)`` → ``(B, D, r)``."""
        raise NotImplementedError(f"{type(self).__name__} has no low-rank factor")

    def _has_own(self, name: str) -> bool:
        """Whether the field's class implements ``name`` itself (rather than inheriting `CoMetricField`'s)."""
        return getattr(type(self), name) is not getattr(CoMetricField, name)

    def _missing(self, name: str) -> NotImplementedError:
        """The error for a field that implements neither ``name`` nor ``factor``, saying what to implement."""
        return NotImplementedError(
            f"{type(self).__name__} implements neither {name}() nor factor(): implement apply(x, w) -> (G + delta I) w "
            "and metric(x, v) -> (G + delta I)^{-1} v, or factor(x) -> A (B, D, r) with G = A Aᵀ (apply and metric "
            "then follow from it)")

    @_also_module_apply
    @full_precision
    def apply(self, x: Tensor, w: Tensor) -> Tensor:
        """``(G(x) + δ I) w`` for ``x, w`` of shape ``(B, D)``; returns ``(B, D)``.

        The base class derives it from ``factor`` where the field implements one: ``(AAᵀ + δI) w``
        (`learned_manifold.geometry.lowrank_apply`, ``O(D r)``).

        Raises:
            NotImplementedError: the field implements neither ``apply`` nor ``factor`` (the message says so).
        """
        if not self._has_own("factor"):
            raise self._missing("apply")
        check_vectors(x, w, self.dim, "w")
        return lowrank_apply(self.factor(x), w, self.delta)

    @full_precision
    def metric(self, x: Tensor, v: Tensor) -> Tensor:
        """``(G(x) + δ I)^{-1} v`` for ``x, v`` of shape ``(B, D)``; returns ``(B, D)``.

        The base class derives it from ``factor`` where the field implements one: ``(AAᵀ + δI)^{-1} v`` by
        Woodbury, for ``δ = 0`` the pseudo-inverse on the range of ``A`` (SPEC §5;
        `learned_manifold.geometry.lowrank_solve`).

        Raises:
            NotImplementedError: the field implements neither ``metric`` nor ``factor`` (the message says so).
        """
        if not self._has_own("factor"):
            raise self._missing("metric")
        check_vectors(x, v, self.dim, "v")
        return lowrank_solve(self.factor(x), v, self.delta)

    @full_precision
    def dense(self, x: Tensor) -> Tensor:
        """Dense ``G(x)`` (without δ), ``(B, D, D)``, built column by column from ``apply``. Small D only.

        `evaluation.field_eigenpairs` (and so `LearnedDataManifold.tangent_space` and ``intrinsic_dimension`` for a
        field without a low-rank factor) goes through it and then a ``D × D`` ``eigh`` per point.

        Raises:
            ValueError: ``D`` exceeds `metrics.euclidean.MAX_DENSE_DIM` (4096), before any work: a 64×64×3 image
                (``D = 12288``) would take 576 MiB per point in float32, ``D`` field applications and a ``D × D``
                ``eigh`` per point; a low-rank field (`LearnedCDC`, `KNNCDC`) has an ``O(D r²)`` spectrum.
        """
        from .euclidean import MAX_DENSE_DIM  # (euclidean imports this module)

        check_points(x, self.dim)
        b, d = x.shape
        if d > MAX_DENSE_DIM:
            raise ValueError(f"{type(self).__name__}.dense builds the D x D co-metric from D field applications per "
                             f"point (then a D x D eigh for its spectrum); D = {d} > MAX_DENSE_DIM = {MAX_DENSE_DIM}: "
                             "for large D use a low-rank field (LearnedCDC, KNNCDC), whose spectrum costs O(D r^2)")
        eye = torch.eye(d, dtype=x.dtype, device=x.device)
        cols = [self.apply(x, eye[i].expand(b, d)) - self.delta * eye[i] for i in range(d)]
        return torch.stack(cols, dim=-1)

    @full_precision
    def inner(self, x: Tensor, u: Tensor, v: Tensor) -> Tensor:
        """Riemannian inner product ``uᵀ (G + δI)^{-1} v`` per point: ``(B, D)`` ×2 → ``(B,)``."""
        return (u * self.metric(x, v)).sum(-1)

    @full_precision
    def project(self, x: Tensor) -> Tensor:
        """Landing projection towards the data (e.g. the denoiser ``x̂(x, σ)``); identity if the field has none."""
        return x

    def beyond_data(self, x: Tensor) -> Tensor | None:
        """``(B, D)`` → ``(B,)``: each point's distance to the nearest data point the field holds where that is
        farther than a point on the data can be (`KNNCDC.beyond_data`), else 0; ``None`` for a field that holds
        no data. Landing uses it to find points far from the data that a denoiser at a small σ barely moves."""
        return None

    def length_scale(self) -> float | None:
        """A length in the data's units, the RMS distance of the data from their mean (SPEC §1's ``s``), by which
        solvers make their tolerances unit-free (`gradient_flow`, the landing's rounding); ``None`` where the
        field does not know its data (tolerances then in absolute units)."""
        return None

    def landing_bandwidths(self) -> tuple[float, float] | None:
        """``(σ, σ_max)`` when ``project`` and ``factor`` accept a keyword ``sigma`` (a float or one bandwidth
        per point, ``(B,)``), so landing can anneal the bandwidth for points far from the data; else ``None``.
        """
        return None

    @property
    def can_project(self) -> bool:
        """Whether `project` is a real landing projection rather than the identity."""
        return False

    def forward(self, x: Tensor, w: Tensor) -> Tensor:  # pragma: no cover - alias
        return self.apply(x, w)


def as_denoiser(obj: object) -> Denoiser:
    """Turn a trained model with a ``denoise(y, sigma)`` method, or any callable, into a flat `Denoiser`.

    A model whose data have another shape (images) is called with ``y`` reshaped to its ``data_shape`` and the
    result is flattened again, so baselines can always work on ``(B, D)`` tensors.

    Example:
        >>> import torch
        >>> from learned_manifold.metrics import as_denoiser
        >>> denoise = as_denoiser(lambda y, sigma: 0.5 * y)  # any callable x̂(y, sigma) passes through
        >>> denoise(torch.ones(2, 3), 0.1)
        tensor([[0.5000, 0.5000, 0.5000],
                [0.5000, 0.5000, 0.5000]])
    """
    denoise = getattr(obj, "denoise", None)
    if denoise is not None:
        shape = tuple(getattr(obj, "data_shape", ()))
        dtype = getattr(getattr(obj, "scale", None), "dtype", None)  # a model's own dtype: points are cast to it

        def flat(y: Tensor, sigma: float) -> Tensor:
            ys = y if dtype is None else y.to(dtype)
            out = denoise(ys.reshape(y.shape[0], *shape) if shape else ys, sigma)
            return out.reshape(y.shape).to(y.dtype)  # (reshape(B, -1) fails on an empty batch)

        return flat
    if callable(obj):
        return obj  # type: ignore[return-value]
    raise TypeError(f"expected a model with a denoiser or a callable x̂(y, sigma), got {type(obj).__name__}")


def as_field(obj: object) -> CoMetricField:
    """The co-metric field of ``obj``: a `CoMetricField` itself, or the ``.field`` of e.g. `LearnedDataManifold`."""
    field = getattr(obj, "field", obj)
    if not isinstance(field, CoMetricField):
        raise TypeError(
            "expected a CoMetricField or an object with a `.field` holding one (e.g. LearnedDataManifold), "
            f"got {type(obj).__name__}"
        )
    return field
