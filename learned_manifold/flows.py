"""Gradient flows on the data geometry with torchdiffeq (SPEC §6).

``ẋ = −(G(x) + δI) ∇f(x)`` integrated from ``x0``; Euler with step ``η`` is Riemannian gradient descent.
`interpolate` is the flow of ``f(x) = ½‖x − x₁‖²`` (the paper's interpolation): its paths stay near the data
but are not geodesics and need not reach ``x₁`` exactly. Flows should run on a mean-centred field (SPEC §2).

Like torchdiffeq's ``odeint``: one functional entry point, keyword-only settings, a registry of method names
and a ``ValueError`` listing them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .checks import is_real
from .flow_inputs import (
    FLOW_METHODS,
    _check_objective,
    _check_solver,
    _check_times,
    _field_of,
    _flatten,
    _landing_of,
    _single,
    _solver_dtype,
    _tensor_points,
)
from .flow_reports import STALL_SPEED, pair_reports
from .flow_solver import ObjectiveWatch, _integrate
from .func_transforms import refuse_transforms
from .geodesic_inputs import _common_dtype, _shaped
from .landing import landing_rounding, normal_landing, warn_flow_ends, warn_off_data
from .metrics.field_checks import check_landing
from .precision import full_precision
from .regularised import check_tangent_rank, polyline_lengths, resolve_tangent_dim
from .types import Count, FieldLike, Points, Real

__all__ = ["FLOW_METHODS", "STALL_SPEED", "FlowResult", "gradient_flow", "interpolate", "polyline_lengths"]



@dataclass
class FlowResult:
    """A batch of flow paths.

    Attributes:
        path: ``(B, T, ...)`` points at the output times (``path[:, 0] = x0``), in the layout the start points
            were given in, as `GeodesicResult`'s: ``(B, T, *data_shape)`` for image-shaped ``(B, *data_shape)``
            points, ``(B, T, D)`` for flat ``(B, D)`` ones (on an image manifold too). A single start point (one
            ``(D,)`` or one ``data_shape`` point) drops the batch axis here and in every ``(B,)`` field below:
            ``path`` ``(T, *data_shape)`` (``(T, D)`` for a ``(D,)`` point), 0-d scores, as `GeodesicResult`.
        times: ``(T,)`` flow times.
        final_gap: ``(B,)`` ``‖x(t_end) − x₁‖`` for `interpolate`; ``f(x(t_end))`` for `gradient_flow`.
        length: ``(B,)`` the **Euclidean** polyline length of the path, the same as ``euclidean_length`` (kept
            for compatibility). Not a geodesic's ``length``: `GeodesicResult.length` is the metric length; compare
            ``euclidean_length`` with ``euclidean_length`` and ``metric_length`` with a geodesic's ``length``.
        metric_length: ``(B,)`` length in the metric ``g = (G + δI)^{-1}`` (midpoint rule; for a low-rank field
            with ``δ = 0``, on its learned tangent bundle, with a manifold's ``tangent_dim``, as a geodesic's
            ``length``: SPEC §6, `regularised.polyline_lengths`); NaN where the
            field's metric is undefined (e.g. `ScoreJacobianMetric` with ``δ = 0``).
        euclidean_length: ``(B,)`` the Euclidean polyline length (a property, ``length`` by `GeodesicResult`'s name).
        reached: ``(B,)`` bool, `interpolate` only: ended within ``1.5 · stop_tol`` of the target (the flow
            brakes from ``2 · stop_tol`` and freezes at ``stop_tol``, so an adaptive solver may stop short of it),
            or within the points' rounding, and the gap never grew on the way (else all False; see ``reason``).
        n_evals: number of velocity evaluations (network calls) used.
        gap_closed: ``(B,)``, `interpolate` only (else ``None``): ``1 − final_gap / initial_gap`` (1 for a pair that
            starts at its target).
        stalled: ``(B,)`` bool, `interpolate` only (else ``None``): not reached and no longer moving, i.e. the
            flow's speed at the end ``‖(G + δI)(x − x₁)‖`` is below `STALL_SPEED` times the remaining gap: what is
            left of the gap lies (almost) in the null space of ``G``, normal to the data, where this flow cannot
            move (SPEC §6: the paths need not reach ``x₁``). A longer ``t_end`` does not help such a pair; a
            `learned_manifold.geodesics.geodesic` does. With landing also a pair whose flow still pulls but whose
            landed path moved less than `STALL_SPEED` times the remaining gap per unit time over the last output
            interval: the landing undoes the flow.
        reason: per pair, ``"reached"``, ``"solver error: …"``, ``"stalled: …"`` (with the relative end speed) or
            ``"out of time: …"`` (still moving at ``t_end``: raise ``t_end``); `interpolate` only (else ``None``).
            A solver error: the gap grew along the path by more than ``max(stop_tol, rounding)``, which the exact
            flow never does (``d/dt ½‖x − x₁‖² = −(x − x₁)ᵀ(G + δI)(x − x₁) ≤ 0``; with landing, within an output
            interval), so the path is wrong, e.g. off the data: tighten ``rtol``/``atol`` (or a smaller
            ``step_size``); a longer ``t_end`` made it worse. Such a pair is neither reached nor stalled.

    Example:
        >>> import torch
        >>> from learned_manifold import interpolate
        >>> from learned_manifold.metrics import EuclideanMetric
        >>> res = interpolate(EuclideanMetric(), torch.zeros(2, 3), torch.ones(2, 3), n_points=9)  # G = I: straight
        >>> res.path.shape, res.times.shape, res.final_gap.shape, res.reached.tolist()
        (torch.Size([2, 9, 3]), torch.Size([9]), torch.Size([2]), [True, True])
    """

    path: Tensor
    times: Tensor
    final_gap: Tensor
    length: Tensor
    metric_length: Tensor
    reached: Tensor
    n_evals: int
    gap_closed: Tensor | None = None
    stalled: Tensor | None = None
    reason: list[str] | None = None

    @property
    def euclidean_length(self) -> Tensor:
        """``(B,)`` the Euclidean polyline length of the path (``length``; `GeodesicResult` names it so too)."""
        return self.length


@full_precision
@torch.inference_mode(False)
def gradient_flow(
    manifold: FieldLike,
    f: Callable[[Tensor], Tensor],
    x0: Points,
    *,
    t_end: Real = 1.0,
    n_points: Count = 33,
    method: str = "dopri5",
    rtol: Real = 1e-4,
    atol: Real = 1e-5,
    step_size: Real | None = None,
    landing: bool | None = None,
    tangent_dim: Count | None = None,
) -> FlowResult:
    """Riemannian gradient flow ``ẋ = −(G(x) + δI) ∇f(x)`` of any differentiable objective (SPEC §6).

    Args:
        manifold: a `LearnedDataManifold` or any `CoMetricField`.
        f: objective mapping flat ``(B, D)`` points to ``(B,)`` values (point-wise), differentiable; checked on
            ``x0`` before integrating (an error ``f`` raises there becomes a ``ValueError`` that says so: an image
            objective reshapes its points itself, ``x.view(-1, *data_shape)``).
        x0: ``(B, *data_shape)`` or ``(B, D)`` start points (a tensor, NumPy array or nested lists); a single
            ``(D,)`` or ``data_shape`` point gives a single path ``(T, …)`` and 0-d scores (`FlowResult`).
        t_end: flow time; n_points: output times ``linspace(0, t_end, n_points)``.
        method: a name in `FLOW_METHODS` (adaptive ones use ``rtol``/``atol``, which apply to the deviation from
            the start in units of the field's `length_scale` (a trained model's ``s``, a k-NN field's spread),
            else, for a field without one (`EuclideanMetric`, a hand-made field), of each path's
            ``‖(G + δI)∇f(x₀)‖ · t_end / (n_points − 1)``, the distance its start's velocity covers in one output
            interval (absolute units where that is 0), so the same in any units and at any position, and
            choose their own steps: a ``step_size`` is refused; fixed ones ``step_size``,
            default one output interval; ``"euler"`` is Riemannian gradient descent with ``η = step_size``: the
            returned points are its iterates where the output interval ``t_end / (n_points − 1)`` is a multiple
            of ``η``, and torchdiffeq's linear interpolation between iterates at other output times). ``rtol`` and
            ``atol`` are checked for every method (finite numbers > 0), though fixed-step ones do not use them.
            An adaptive method's step size is shared by the whole batch: see `interpolate` on batch independence.
        landing: after every output interval, land on the data by one normal-only step of the field's denoiser
            (`landing.normal_landing`, SPEC §5: the normal part of ``x̂(x, σ) − x`` only, the normals those of
            ``tangent_dim``, else the gap rule's); needs a low-rank field with a denoiser. ``None``
            (default): the manifold's own ``landing`` for a `LearnedDataManifold`, else ``False``; ``False`` turns
            it off on a landing manifold. A landed end beyond the data warns (`landing.warn_off_data`); without
            landing, so do a start or end beyond it (`landing.warn_flow_ends`); `interpolate` checks its ends
            ``x0`` and ``x1``, either way.
        tangent_dim: the field's tangent dimension, for the reported ``metric_length`` of a low-rank field with
            ``δ = 0`` (`regularised.polyline_lengths`) and landing's normals; ``None``: a manifold's own
            ``tangent_dim``, else the gap rule, which warns where it drops real directions of the field (SPEC §5).
            A value other than a manifold's own is refused. The flow itself moves with the full ``G + δI``.

    Works under ``torch.no_grad()`` and ``torch.inference_mode()`` (it runs under ``inference_mode(False)``: ``f``
    is differentiated; the results are normal tensors). Half-precision points are integrated in float32 (the
    field and ``f`` see the points' dtype; the path is returned in it).

    Returns:
        `FlowResult`; ``final_gap`` holds ``f`` at the end point.

    Raises:
        TypeError, ValueError: before any work, for bad points (bool or complex ones: ``ValueError``, as the
            manifold), ``n_points < 2``, ``t_end`` not a finite number > 0, a ``tangent_dim`` outside ``1..r``,
            an unknown ``method``, ``rtol``/``atol``/``step_size`` not finite numbers > 0, a ``step_size`` with
            an adaptive method, ``landing`` not ``True``/``False``/``None`` or on a field without a projection or a
            low-rank factor, or ``f(x0)`` not of shape ``(B,)``, not depending on the points (a constant, or
            computed from ``x.detach()``), or NaN or inf (the value or its gradient).
        ValueError: the flow became NaN or inf: ``f`` or its gradient is not finite somewhere along it (every
            solver; adaptive ones would otherwise fail with torchdiffeq's "underflow in dt"; ``f`` is checked
            wherever the solver evaluates it and at the end, at no extra call: `flow_solver.ObjectiveWatch`).
        RuntimeError: called inside a ``torch.func`` transform (`func_transforms.refuse_transforms`).

    Example:
        >>> import torch
        >>> from learned_manifold import gradient_flow
        >>> from learned_manifold.metrics import KNNCDC
        >>> g = torch.Generator().manual_seed(0)
        >>> data = torch.nn.functional.normalize(torch.randn(2000, 3, generator=g), dim=-1)  # S² in R³
        >>> field = KNNCDC(data, k=32, sigma=0.1, delta=1e-2)
        >>> res = gradient_flow(field, lambda x: -x[:, 2], torch.tensor([[1.0, 0.0, 0.0]]), t_end=4.0)
        >>> res.path.shape, res.times.shape  # (B, T, D), (T,)
        (torch.Size([1, 33, 3]), torch.Size([33]))
        >>> bool(res.path[0, -1, 2] > 0.5), bool(abs(res.path[0, -1].norm() - 1) < 0.05)  # climbed, still on S²
        (True, True)
    """
    refuse_transforms("gradient_flow")
    n_points = _check_times(t_end, n_points)
    adaptive = _check_solver(method, rtol, atol, step_size)
    field, data_shape = _field_of(manifold, "gradient_flow")
    landing = _landing_of(manifold, landing)
    tangent_dim = resolve_tangent_dim(manifold, tangent_dim)
    check_landing(field, landing)
    landing = bool(landing)
    x0 = _tensor_points(x0, "x0")
    flat0 = _flatten(x0, data_shape, field.dim, "x0")
    check_tangent_rank(field, tangent_dim, flat0)  # 1..r, for every δ, before any work
    _check_objective(f, flat0, data_shape)
    counter, watch = [0], ObjectiveWatch(flat0)  # watch: f NaN or inf where the velocity evaluates it
    base = flat0.to(_solver_dtype(flat0.dtype))  # the solver's state and time grid: at least float32

    def flow(x: Tensor) -> Tensor:  # −(G + δI)∇f at flat points (B, D), in the solver's dtype
        counter[0] += 1
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(watch.note(f(xg)).sum(), xg)
        return -field.apply(x, grad).to(base.dtype)

    # The solver works on the deviation from the start in units of the problem's own length, y = (x − x₀)/L:
    # rtol and atol then mean the same for data in millimetres or metres, at the origin or far from it (in raw
    # coordinates atol was 1% of a sphere of radius 1e-3, and rtol·|x| a tenth of a unit sphere at 1,000).
    # L: the field's `length_scale` (a trained model, k-NN), else each path's own (`_start_unit`; absolute units
    # for a fixed-step method, which has no tolerances).
    scale = field.length_scale()
    unit: float | Tensor = scale or 1.0
    if scale is None and adaptive:
        unit = _start_unit(flow, flat0, t_end / (n_points - 1))  # (B, 1)

    def velocity(y: Tensor) -> Tensor:
        return flow((base + unit * y).to(flat0.dtype)) / unit

    def project(y: Tensor) -> Tensor:
        landed = normal_landing(field, (base + unit * y).to(flat0.dtype), tangent_dim=tangent_dim)
        return (landed.to(base.dtype) - base) / unit

    times = torch.linspace(0.0, t_end, n_points, dtype=base.dtype, device=flat0.device)
    with torch.no_grad():
        y = _integrate(field, velocity, torch.zeros_like(base), times, method=method, rtol=rtol, atol=atol,
                       step_size=step_size, landing=landing, project=project)
        path = (base.unsqueeze(1) + (unit.unsqueeze(1) if isinstance(unit, Tensor) else unit) * y).to(flat0.dtype)
        if path.shape[0]:
            path[:, 0] = flat0  # exactly
        final = watch.final(f, path, times, method)  # f(x(t_end)); a ValueError where f is not finite
        euclid, metric = polyline_lengths(path, manifold if tangent_dim is None else field, tangent_dim=tangent_dim)
        if landing:
            warn_off_data(field, path[:, -1], "gradient_flow")
        else:  # off the data the flow follows the field's extrapolation, landed or not
            warn_flow_ends(field, {"x0": flat0, "the flow's end": path[:, -1]}, "gradient_flow", False)
    return _result(path, times.to(flat0.dtype), final, euclid, metric, torch.zeros_like(final, dtype=torch.bool),
                   counter[0], x0, data_shape)


@full_precision
@torch.inference_mode(False)
def interpolate(
    manifold: FieldLike,
    x0: Points,
    x1: Points,
    *,
    t_end: Real = 8.0,
    n_points: Count = 65,
    method: str = "dopri5",
    rtol: Real = 1e-4,
    atol: Real = 1e-5,
    step_size: Real | None = None,
    stop_tol: Real | None = None,
    landing: bool | None = None,
    tangent_dim: Count | None = None,
) -> FlowResult:
    """Interpolate from ``x0`` towards ``x1`` by the flow of ``½‖x − x₁‖²`` (SPEC §6, the paper's paths).

    ``ẋ = −(G(x) + δI)(x − x₁)``. Stopping rule: the velocity is scaled by ``clamp(gap/stop_tol − 1, 0, 1)``,
    so a path freezes once within ``stop_tol`` of its target (continuous, so adaptive solvers are fine);
    ``stop_tol`` defaults to 1% of the initial gap.

    Args:
        manifold: a `LearnedDataManifold` or any `CoMetricField`.
        x0, x1: ``(B, *data_shape)``/``(B, D)`` batches of pairs, or single ``(D,)``/``data_shape`` points (a
            single path ``(T, …)`` and 0-d scores, `FlowResult`); ends of different dtypes are promoted to their
            common one, as `LearnedDataManifold`'s methods do.
        t_end, n_points, method, rtol, atol, step_size, landing, tangent_dim: as in `gradient_flow`, but the solver
            works on each pair's deviation ``(x − x₁)/‖x₀ − x₁‖``: ``rtol`` and ``atol`` are in units of each pair's
            initial gap, so a pair 1e-4 apart is solved as finely as one 100 apart. Keep ``atol`` well below the
            stopping radius ``stop_tol / ‖x₀ − x₁‖`` (1% by default; the default atol is 1e-3 of it): on a k-NN S² with
            ``t_end = 16`` the gap grew by more than ``stop_tol`` (a solver error: `FlowResult`'s ``reason``) on 5
            of 200 paths with ``atol = 1e-3`` and 45 with 1e-2 (71 reached, 168 with the default). Landing carries
            the ends' offsets from the landing map's image, blended by the fraction of the gap closed (SPEC §6, as
            for geodesics), so ``x0 = x1`` stays put and a data point ``x1`` can be reached; each landing is one
            normal-only step (`landing.normal_landing`), so it does not move the path along the data.

    Batch independence: a fixed-step method (``"euler"``, ``"midpoint"``, ``"rk4"``) takes the same steps for a
    pair alone or in a batch, so its path depends on the batch only through the field's own rounding. An adaptive
    method (the default ``"dopri5"``) chooses one step size for the whole batch from an error norm over all pairs,
    so a pair's path alone and in a batch differ by up to the solver's error, which can be many times
    ``rtol · gap``: 75× (1.5e-2 on a gap of 1.9) for one pair beside 999 short ones on a k-NN circle, a field only
    piecewise smooth; ~1e-4 of the gap on a smooth field. For batch-independent paths solve the pairs one at a
    time, or use a fixed-step method.

    Returns:
        `FlowResult` with ``final_gap = ‖x(t_end) − x₁‖``, ``reached = final_gap ≤ 1.5·stop_tol`` (unless the
        solver erred: the gap grew on the way), the fraction of the gap closed, and which pairs stalled and why
        (``stalled``, ``reason``). Every field is a plain tensor (no autograd graph, even for ends that require
        grad). An empty batch gives empty results.

    Raises:
        TypeError, ValueError: before any work, for bad points, ``n_points < 2``, ``t_end`` not finite and > 0,
            ``stop_tol`` not finite and > 0, and as `gradient_flow` for ``method``, ``rtol``, ``atol``,
            ``step_size`` and ``landing``.
        ValueError: the flow became NaN or inf (the field is not finite along it).
        RuntimeError: called inside a ``torch.func`` transform, as `gradient_flow`.

    Under ``torch.inference_mode()`` and for half-precision points as `gradient_flow`.

    Example:
        >>> import math, torch
        >>> from learned_manifold import interpolate
        >>> from learned_manifold.metrics import KNNCDC
        >>> g = torch.Generator().manual_seed(0)
        >>> data = torch.nn.functional.normalize(torch.randn(2000, 3, generator=g), dim=-1)  # S² in R³
        >>> field = KNNCDC(data, k=32, sigma=0.1, delta=1e-2)  # a mean-centred field with a small isotropic part
        >>> x0, x1 = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 1.0, 0.0]])  # 90° apart
        >>> res = interpolate(field, x0, x1)
        >>> res.path.shape, res.reason
        (torch.Size([1, 65, 3]), ['reached'])
        >>> bool(((res.path.norm(dim=-1) - 1).abs().max() < 0.05))  # the path stays near S²; LERP dips to 0.29
        True
    """
    refuse_transforms("interpolate")
    n_points = _check_times(t_end, n_points)
    adaptive = _check_solver(method, rtol, atol, step_size)
    field, data_shape = _field_of(manifold, "interpolate")
    landing = _landing_of(manifold, landing)
    tangent_dim = resolve_tangent_dim(manifold, tangent_dim)
    check_landing(field, landing)
    landing = bool(landing)
    x0, x1 = _tensor_points(x0, "x0"), _tensor_points(x1, "x1")
    flat0 = _flatten(x0, data_shape, field.dim, "x0")
    flat1 = _flatten(x1, data_shape, field.dim, "x1")
    if flat0.shape != flat1.shape:
        raise ValueError(f"x0 and x1 must hold the same number of points, got {tuple(x0.shape)} and "
                         f"{tuple(x1.shape)}")
    flat0, flat1 = _common_dtype(flat0, flat1)  # promoted, as the manifold's methods: the path ends exactly at x1
    flat1 = flat1.to(flat0.device)
    check_tangent_rank(field, tangent_dim, flat0)  # 1..r, for every δ, before any work
    if stop_tol is not None and (not is_real(stop_tol) or not math.isfinite(stop_tol) or stop_tol <= 0):
        raise ValueError(f"stop_tol must be a finite number > 0 or None (1% of each pair's gap), got {stop_tol!r}")
    dtype, work = flat0.dtype, _solver_dtype(flat0.dtype)  # the points' and the solver's (at least float32)
    flat0, flat1 = flat0.detach().to(work), flat1.detach().to(work)  # every result a plain tensor (gap_closed too)

    def apply(x: Tensor, w: Tensor) -> Tensor:  # the field sees points of their own dtype
        return field.apply(x.to(dtype), w.to(dtype)).to(work)

    gap0 = (flat1 - flat0).norm(dim=-1, keepdim=True)
    tol = 0.01 * gap0 if stop_tol is None else torch.full_like(gap0, stop_tol)
    # The solver works on each pair's deviation from its target in units of its initial gap, y = (x − x₁)/gap₀:
    # rtol and atol then mean the same for a pair 1e-4 apart as for one 100 apart (the step size is still shared
    # by the batch: see the docstring).
    unit = torch.where(gap0 > 0, gap0, torch.ones_like(gap0))
    counter = [0]

    def velocity(y: Tensor) -> Tensor:
        counter[0] += 1
        x = flat1 + unit * y
        brake = (y.norm(dim=-1, keepdim=True) * unit / tol.clamp_min(torch.finfo(tol.dtype).tiny) - 1).clamp(0, 1)
        return -brake * apply(x, y)  # (G + δI)(x − x₁) / gap₀

    project = None
    rise = torch.zeros_like(gap0.squeeze(-1))  # with landing: how far the flow itself pushed each gap up
    if landing and flat0.shape[0]:
        # Landing carries each end's own offset from the landing map's image, blended by the fraction of the gap
        # closed (as the geodesics do, SPEC §6): data points are not fixed points of the denoiser (a point of a
        # curved manifold lies ~dσ²/2R off its image), so plain landing would move x0 = x1 and never reach x1.
        # Each landing is one normal-only step (`landing.normal_landing`): a full denoiser step also moved the
        # path along the data, once per output interval, and froze it short of x1 (SPEC §5).
        with torch.no_grad():
            offset0 = flat0 - field.project(flat0.to(dtype)).to(work)
            offset1 = flat1 - field.project(flat1.to(dtype)).to(work)
        last = [(gap0 > 0).to(work).squeeze(-1)]  # |y| at the start of the output interval: 1 (0 for x0 = x1)

        def project(y: Tensor) -> Tensor:
            # the landing may move the gap either way; the flow within the interval must not raise it
            rise.add_(((y.norm(dim=-1) - last[0]) * unit.squeeze(-1)).clamp_min(0))
            x = flat1 + unit * y
            s = (1 - y.norm(dim=-1, keepdim=True)).clamp(0, 1)
            s = torch.where(gap0 > 0, s, torch.ones_like(s))
            offset = (1 - s) * offset0 + s * offset1
            landed = (normal_landing(field, x.to(dtype), offset.to(dtype), tangent_dim).to(work) - flat1) / unit
            last[0] = landed.norm(dim=-1)
            return landed

    times = torch.linspace(0.0, t_end, n_points, dtype=work, device=flat0.device)
    with torch.no_grad():
        y = _integrate(field, velocity, (flat0 - flat1) / unit, times, method=method, rtol=rtol, atol=atol,
                       step_size=step_size, landing=landing, project=project)
        if not landing:  # the gap's growth above its running minimum, in the solver's own coordinates
            norms = y.norm(dim=-1)
            rise = (norms - norms.cummin(dim=1).values).amax(dim=1) * unit.squeeze(-1)
        path = (flat1.unsqueeze(1) + unit.unsqueeze(1) * y).to(dtype)
        flat0, flat1, gap0, tol, times, rise = (t.to(dtype) for t in (flat0, flat1, gap0, tol, times, rise))
        if path.shape[0]:
            path[:, 0] = flat0  # exactly, not through the change of coordinates
        gap = (path[:, -1] - flat1).norm(dim=-1)
        warn_flow_ends(field, {"x0": flat0, "x1": flat1}, "interpolate", landing)  # a path's end: its reason
        euclid, metric = polyline_lengths(path, manifold if tangent_dim is None else field, tangent_dim=tangent_dim)
        # rounding (relative: a pair 1e-4 apart near the origin is not "reached" by the rounding of a point of norm
        # 1): a few ulps of the points; with landing the landing map's own rounding, as for geodesics
        floor = (landing_rounding(field, flat1, flat1) if landing
                 else 4 * torch.finfo(gap.dtype).eps * flat1.norm(dim=-1))
        end = path[:, -1]
        speed = field.apply(end, end - flat1).norm(dim=-1) if end.shape[0] else gap
        moved = (end - path[:, -2]).norm(dim=-1) / (times[-1] - times[-2])  # over the last interval, landed
    g0 = gap0.squeeze(-1)
    closed = torch.where(g0 > 0, 1 - gap / g0.clamp_min(torch.finfo(g0.dtype).tiny), torch.ones_like(gap))
    rel_speed, rel_moved = (v / gap.clamp_min(torch.finfo(gap.dtype).tiny) for v in (speed, moved))
    remedy = (f"tighten rtol/atol (now {rtol:g}/{atol:g}, in units of the pair's initial gap)" if adaptive
              else f"use a smaller step_size (now {step_size or float(times[1] - times[0]):g})")
    reached, stalled, reason = pair_reports(gap=gap, stop_tol=tol.squeeze(-1), floor=floor, rise=rise,
                                            rel_speed=rel_speed, rel_moved=rel_moved, landing=landing, remedy=remedy)
    res = _result(path, times, gap, euclid, metric, reached, counter[0], x0, data_shape)
    single = _single(x0, data_shape)  # as in _result
    res.gap_closed, res.stalled = (closed[0], stalled[0]) if single else (closed, stalled)
    res.reason = reason
    return res


def _start_unit(flow: Callable[[Tensor], Tensor], flat0: Tensor, interval: float) -> Tensor:
    """``(B, 1)``: each path's length unit for a field without a `length_scale` (SPEC §6), ``‖(G + δI)∇f(x₀)‖ · Δt``,
    how far the start's velocity carries the point in one output interval ``Δt = t_end / (n_points − 1)`` (one
    evaluation of ``flow``, the velocity at flat points ``(B, D)``). It scales with the data's units (``f_c(x) =
    c² h(x/c)`` flows along ``c u(t)``, at ``c`` times the speed) and with the unit of time (``Δt``), and does not
    change with position or orientation, so the solver's ``(x − x₀)/L`` is the same problem for every ``c``; and it
    is each path's own, not the batch's. ``t_end`` alone overshot a path that settles early: a flow that moved 0.42
    in ``t_end = 3`` had ``‖v₀‖ t_end = 10`` and came out 4× less accurate than with the interval. 1 (absolute
    units) where the start's velocity is 0 (a stationary start stays put) or not finite (the flow then fails with
    its own error)."""
    if flat0.shape[0] == 0:
        return flat0.new_ones(0, 1)
    unit = flow(flat0).detach().norm(dim=-1, keepdim=True) * interval  # no graph kept through the solve
    return torch.where(torch.isfinite(unit) & (unit > 0), unit, torch.ones_like(unit))


def _result(path, times, final, euclid, metric, reached, n_evals, x0, data_shape) -> FlowResult:
    """The `FlowResult`: paths in the layout the points ``x0`` were given in (image-shaped points give image-shaped
    paths, flat ones flat paths, `geodesic_inputs._shaped`, as `geodesics.geodesic`); a single point's batch axis
    dropped."""
    if _shaped(x0, data_shape):
        path = path.reshape(path.shape[0], path.shape[1], *data_shape)
    if _single(x0, data_shape):  # a single point in, a single path out
        path, final, euclid, metric, reached = path[0], final[0], euclid[0], metric[0], reached[0]
    return FlowResult(path=path, times=times, final_gap=final, length=euclid, metric_length=metric,
                      reached=reached, n_evals=n_evals)
