"""Discrete geodesics of a co-metric field by energy minimisation (SPEC §6).

A path of ``T`` points ``x_0, …, x_{T−1}`` with fixed ends has the discrete energy

    ``E = Σ_i Δ_iᵀ g(x_{i+½}) Δ_i``,  ``Δ_i = x_{i+1} − x_i``,  ``x_{i+½} = (x_i + x_{i+1}) / 2``,

with ``g = (G + δI)^{-1}`` applied by the field's ``metric`` (Woodbury for low-rank fields, SPEC §5). The
interior points are optimised by autograd through the field. Minimisers have (nearly) equal metric segment
lengths, since ``E ≥ L² / (T − 1)`` with equality exactly for equal segments (Cauchy–Schwarz).

The interior points are written as ``x = x_init + h · L^{-1/2} v`` with ``L = tridiag(−1, 2, −1)`` the path
Laplacian and ``h = ‖x₁ − x₀‖ / (T − 1)`` the straight segment length. The energy's Hessian is about
``2 L ⊗ g``, so this removes the ``O(T²)`` conditioning of the path; the default ``"lbfgs"`` solver (batched, one
independent L-BFGS per pair, so one hard pair does not slow the others) handles the conditioning of ``g`` itself.
On the unit sphere with a projector field it needs about 15–25 energy evaluations per pair for δ from 0.1 to
0.001 and ``T`` from 16 to 64. (Preconditioning by ``G + δI`` at the path points does worse: the radial dip of
a geodesic is governed by how ``g`` varies, not by ``g``.)

Paths that leave the data need a mean-centred field (SPEC §2): with an uncentred one the metric makes leaving the
data cheap and the geodesic cuts through empty space.

Usage (`geodesic`'s docstring has an example that runs)::

    res = geodesic(field, x0, x1, n_points=32)          # x0, x1: (B, D); init="auto" by default
    res.path.shape, res.length, res.euclidean_length     # (B, 32, D), (B,), (B,)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .evaluation import lerp
from .flow_inputs import _solver_dtype
from .func_transforms import refuse_transforms
from .geodesic_checks import unresolved, zero_length
from .geodesic_init import (
    INIT_NAMES,
    DisconnectedDataWarning,
    auto_init,
    denoises,
    landing_anchors,
    named_path,
    resample,
)
from .geodesic_inputs import (
    _as_points,
    _check_count,
    _check_positive,
    _common_dtype,
    _float32_field,
    _given_path,
    _shaped,
)
from .geodesic_saddles import solve_verified
from .geodesic_solvers import GEODESIC_METHODS, GeodesicMethod, _Energy, path_energy, segment_energies
from .landing import LANDING_NOISE, ends_off_data, landing_rounding  # noqa: F401  (names geodesics had)
from .manifold import LearnedDataManifold
from .metrics.base import CoMetricField, as_field, check_points
from .metrics.field_checks import autograd_ready, check_landing
from .precision import full_precision
from .regularised import (
    Regularised,
    check_delta,
    check_tangent_rank,
    recording,
    regularising_delta,
    reporting_metric,
    resolve_tangent_dim,
    warn_dropped,
    warn_uncentred,
)
from .types import Count, FieldLike, Points, Real

__all__ = [
    "COARSE_POINTS",
    "GEODESIC_METHODS",
    "DisconnectedDataWarning",
    "GeodesicMethod",
    "GeodesicResult",
    "geodesic",
    "path_energy",
    "regularising_delta",
    "segment_energies",
]


@dataclass
class GeodesicResult:
    """A batch of discrete geodesics (SPEC §6). A single pair given as ``(D,)`` vectors drops the batch axis.

    Attributes:
        path: ``(B, T, D)`` points, ends equal to ``x0`` and ``x1``; detached.
        energy: ``(B,)`` discrete energy ``Σ_i Δ_iᵀ g(x_{i+½}) Δ_i``, also where the solver minimised that of
            ``G + δI`` (``delta``), in the field's own metric ``g`` (as the flows' ``metric_length``); for a low-rank
            field with ``δ = 0``, on its learned tangent bundle (`regularised.TangentBundle`, SPEC §6: why; its
            dimension a `LearnedDataManifold`'s ``tangent_dim`` where set, so ``M.inner`` agrees, else the gap rule).
        length: ``(B,)`` metric length ``Σ_i sqrt(Δ_iᵀ g(x_{i+½}) Δ_i)``, likewise.
        euclidean_length: ``(B,)`` Euclidean polyline length ``Σ_i ‖Δ_i‖``.
        initial_energy: ``(B,)`` energy of the initial path (the given ``init``, or the start ``init`` names,
            at ``T`` points; with landing, landed as the solver sees it), in the metric of ``energy``.
        converged: ``(B,)`` bool: the solver stopped on its criterion (the relative change of the pair's energy
            fell below ``tol``) *and* the result passed `geodesic_solvers.verify_minimum` (finite energy and
            gradient, no short descent step lowers the energy by more than ``verify_tol``, and a small seeded kick
            re-optimised a few steps does not either: `geodesic_saddles.refute_saddles`, which takes a saddle such as
            the chord between antipodal points on to the lower path) *and* the path resolves
            the metric (`geodesic_checks.unresolved`) *and*, between distinct ends, its length is not 0
            (`geodesic_checks.zero_length`) *and* neither end lies beyond the data (``ends_off_data``), each with a
            warning otherwise. Never true for a pair that ran out of
            ``steps``, whose line search failed on a non-finite value, or that sits on a slope.
        steps: optimiser iterations performed (the most any pair needed), summed over the coarse-to-fine levels
            and, at the last level, the saddle check's kicks and re-solves (`geodesic_saddles.solve_verified`):
            it can exceed the ``steps`` asked for.
        method: the solver's name in `GEODESIC_METHODS`.
        init: the start actually used: ``"graph"``, ``"landing"``, ``"linear"`` or ``"path"`` (a given tensor).
            A ``"graph"`` start whose pairs' ends the data graph does not join (separate clusters) is the straight
            line: ``"linear"`` when that holds for every pair, with a `geodesic_init.DisconnectedDataWarning`
            naming the pairs either way.
        delta: the isotropic part the solver added to ``G`` for its energy: by default one per pair, ``(B,)``
            (`regularising_delta`, from the pair's own ends, so a pair's path does not depend on its batch mates;
            0 where none); the ``delta`` given to `geodesic`, repeated for every pair, where one was given. A 0-d
            tensor for a single pair of ``(D,)`` ends, like the other scores.
        ends_off_data: ``(B,)`` how far the pair's ends lie beyond the data the field holds (the larger of the two
            distances to the nearest data point, where farther than `landing.off_data_threshold`; else 0, and 0 for
            fields that hold no data): the learned metric is extrapolation there, so such a pair is not converged.

    Example:
        >>> import torch
        >>> from learned_manifold import geodesic
        >>> from learned_manifold.metrics import EuclideanMetric
        >>> res = geodesic(EuclideanMetric(), torch.zeros(2, 3), torch.ones(2, 3), n_points=8)  # the straight line
        >>> res.path.shape, res.length.shape, res.init
        (torch.Size([2, 8, 3]), torch.Size([2]), 'linear')
        >>> torch.allclose(res.length, torch.full((2,), 3**0.5))
        True
    """

    path: Tensor
    energy: Tensor
    length: Tensor
    euclidean_length: Tensor
    initial_energy: Tensor
    converged: Tensor
    steps: int
    method: str
    init: str = "linear"
    delta: Tensor | float = 0.0  # a (B,) tensor from `geodesic`; the float default only for hand-built results
    ends_off_data: Tensor | float = 0.0  # likewise


VERIFY_TOL_MAX = 1e-3
"""The largest default ``verify_tol``: a claimed minimum is refuted when a short gradient step lowers its energy by
more than 0.1% (`geodesic_solvers.verify_minimum`), however loose the solver's ``tol``."""

COARSE_POINTS = 9
"""Points of the first, coarse solve of the coarse-to-fine refinement (used when ``n_points ≥ 2·9 − 1``)."""


def _solve(field: CoMetricField, x0: Tensor, x1: Tensor, path0: Tensor, spec: GeodesicMethod, *, steps: int,
           lr: float, tol: float, verify_tol: float, landing: bool, anchors: Tensor | None,
           problem: _Energy | None = None, kick: bool = True) -> tuple[Tensor, Tensor, Tensor, int]:
    """One solve from ``path0`` (or from the ready ``problem`` built on it): ``(path, initial energy, converged,
    iterations)``; saddles refuted with ``kick`` (`geodesic_saddles.solve_verified`)."""
    problem = _Energy(field, x0, x1, path0, landing=landing, anchors=anchors) if problem is None else problem
    v = torch.zeros_like(problem.base)
    if path0.shape[1] > 2 and steps > 0:  # verified, saddles refuted (`geodesic_saddles`)
        v, converged, done = solve_verified(problem, spec, steps=steps, lr=lr, tol=tol, rtol=verify_tol, kick=kick)
    else:  # nothing to optimise (two points) or nothing done (steps = 0)
        converged = torch.full((x0.shape[0],), path0.shape[1] == 2, dtype=torch.bool, device=x0.device)
        done = 0
    return problem.path(v).detach(), problem.initial, converged, done


@full_precision
@torch.inference_mode(False)
def geodesic(
    field_or_manifold: FieldLike,
    x0: Points,
    x1: Points,
    *,
    n_points: Count | None = None,
    init: Tensor | str = "auto",
    steps: Count = 500,
    lr: Real | None = None,
    tol: Real | None = None,
    verify_tol: Real | None = None,
    landing: bool | None = None,
    method: str = "lbfgs",
    delta: Real | None = None,
    tangent_dim: Count | None = None,
) -> GeodesicResult:
    """Discrete geodesics between pairs of points by minimising the path energy (SPEC §6).

    The interior points are optimised in whitened, segment-length units (module docstring) and each pair's energy
    is divided by its initial value, so ``lr`` and ``tol`` are scale-free. Each evaluation sends all segments of
    all pairs still running through one batched ``field.metric`` call; gradients flow through the field by
    autograd (``torch.autograd.grad``, so the field's own parameters get no ``.grad``). Works under
    ``torch.no_grad()`` and ``torch.inference_mode()`` (it runs under ``inference_mode(False)`` on copies of the
    points; the results are normal tensors), also with a field built or loaded inside it (then on a copy of the
    field with normal tensors, `metrics.field_checks.autograd_ready`: autograd cannot differentiate through inference
    tensors; the copy costs the field's memory once more). Half-precision points are solved and verified in float32
    and the results returned in their dtype, and a half-precision field on a float32 copy
    (`geodesic_inputs._float32_field`), as the flows integrate: in bfloat16 paths stopped 1–14% long, "converged".

    Starts (``init``), see `learned_manifold.geodesic_init`: a straight line through empty space is where
    data-driven fields carry no information, so the default ``"auto"`` starts on the data:

    * fields that hold data (`KNNCDC`; a `LearnedCDC` whose model stores at least 2 landmarks, as
      `learned-manifold train` writes them, or given ``data``; a `VAEPullbackMetric` given codes): ``"graph"``,
      the shortest path through the data's k-NN graph;
    * other fields with a landing projection (a `LearnedCDC` with a denoiser, the score fields): ``"landing"``,
      the straight line landed on the data by the denoiser with an annealed bandwidth (on a swiss roll this
      start jumps between layers: landmarks avoid it);
    * any other field (`EuclideanMetric`, closed-form fields, a model without denoiser): ``"linear"``.

    The landing and linear starts are then refined coarse to fine: solved on `COARSE_POINTS` points, resampled to
    ``n_points`` by arc length and solved again (when ``n_points ≥ 2·COARSE_POINTS − 1``). A graph start and a
    given tensor path are solved as they are: a graph path already follows the data point by point, and its
    coarse version's long chords can cross the gap between sheets (swiss roll, 32 points: one pair of three ended
    2.9 off the roll through the coarse level, 0.06 without it).

    Args:
        field_or_manifold: a `CoMetricField`, or an object whose ``.field`` is one (e.g. `LearnedDataManifold`,
            whose ``tangent_dim`` the reported lengths then use). Use a mean-centred field (SPEC §2): an uncentred
            one (``field.centred`` False) gets an `regularised.UncentredFieldWarning`, and its path is computed.
        x0: ``(B, D)`` start points, or ``(D,)`` for a single pair (NumPy arrays and nested lists are converted,
            integer points to the default float dtype); ``B = 0`` gives an empty result. With a manifold of images, also
            ``(B, *data_shape)`` or one ``data_shape`` point: then ``path`` comes back as ``(B, T, *data_shape)``
            (``(T, *data_shape)``).
        x1: end points, same shape as ``x0``; ends of different dtypes are promoted to their common one
            (``torch.promote_types``, as `LearnedDataManifold`'s methods), so the path ends exactly at both.
        n_points: points per path, both ends included, ``≥ 2``; default 16 for a named ``init``, else the length
            of ``init`` (which must then agree).
        init: ``"auto"`` (default), ``"graph"``, ``"landing"``, ``"linear"`` (LERP), or an initial path
            ``(B, T, D)`` (``(T, D)`` for a single pair), e.g. from a gradient flow; its ends must equal ``x0``
            and ``x1``.
        steps: maximum solver iterations (per coarse-to-fine level).
        lr: the solver's step; default from `GEODESIC_METHODS`.
        tol: a pair stops when one iteration changes its energy by less than ``tol`` relatively (for
            ``"lbfgs"``: a full, not backtracked, step); default from `GEODESIC_METHODS`, raised to ``10 ε`` of
            the dtype (``1.2e-6`` in float32).
        verify_tol: relative energy decrease by a short gradient step that refutes convergence
            (`geodesic_solvers.verify_minimum`); default ``1e3 · tol`` within ``[1e-6, VERIFY_TOL_MAX]`` (a loose
            ``tol`` must not make the check unable to refute anything: no energy falls by more than 100%).
        landing: constrain the interior points to the data by the field's landing projection: they are written ``x =
            field.project(field.project(z))`` (`geodesic_solvers.LANDING_STEPS`) and the energy is minimised over ``z``
            (SPEC §6, landing), so the path lies on the learned data manifold (the denoiser's image), offset by the
            ends' own distances from it blended along the path (`geodesic_solvers.end_offsets`, measured from the
            landed end where an end lies off the data, `geodesic_init.landing_anchors`: ``x0 = x1`` gives the
            constant path; pairs within the landing's rounding, `landing.LANDING_NOISE`, the chord). ``None``
            (default): on for a `LearnedDataManifold` built with ``landing=True``, when the start is ``"landing"``,
            or ``"graph"`` on a field with a denoiser (`geodesic_init.denoises`: a `LearnedCDC` with landmarks); a
            manifold's ``landing=False`` does not turn it off (give ``landing=False`` here). Without it a learned
            field whose normal eigenvalue leaks off the data (0.05–0.75 inside the tube of the test torus) has its
            energy minimum cutting through empty space, whatever the start (the torus fixture, graph start without
            landing: 4.5% short).
        method: a key of `GEODESIC_METHODS`: ``"lbfgs"`` (batched per-pair L-BFGS, the default) or ``"adam"``.
        delta: isotropic part ``δ`` added to a low-rank field's ``G`` (on top of the field's own) for the energy
            only (`regularising_delta`); refused for fields without a factor.
            ``None`` (default): per pair, ``10⁻³ λ₁`` (``λ₁`` the mean top eigenvalue of ``G`` at the pair's two
            ends: a pair's path does not depend on its batch mates; ``GeodesicResult.delta`` ``(B,)``) for a low-rank
            field with ``δ = 0``, whose metric is otherwise the pseudo-inverse of ``G``: every direction outside
            the range of ``A`` costs nothing, and the energy is minimised by paths that leave the data (measured on
            8×8 blob images with rank 4: "converged" paths 10–15 off the data, of metric length 10⁻⁴); ``0``
            for every other field. Give ``0.0`` to keep the singular metric. A pair's settings (δ, the saddle
            kick) do not depend on its batch mates; its solve does only through rounding, which float32 L-BFGS can
            amplify on a k-NN field's piecewise-smooth energy into another local minimum (tester N: a noisy
            circle's pair, energy 3.446 alone and 3.465 in a batch; float64 agreed to 4e-10).
        tangent_dim: the dimension ``d`` of a low-rank field with ``δ = 0`` whose lengths are reported on its
            learned tangent bundle (``energy``); default a manifold's own ``tangent_dim`` (a different one is
            refused), else the gap rule at each point, with a warning where it drops an eigenvalue above
            `dimension.DROPPED_LIMIT` ``· λ₁`` (a full-rank field read as lower-dimensional: polar coordinates'
            lengths came out 2–4 times short). Must lie in ``1..r``, ``r`` the factor's rank.

    Returns:
        `GeodesicResult` with ``path`` ``(B, T, D)`` and per-pair energy, metric and Euclidean lengths.

    Raises:
        TypeError: if no co-metric field can be found, for points that are no tensor, array or nested lists, a
            non-integer count or ``tangent_dim``, or a ``landing`` that is not a bool or ``None``.
        ValueError: for an unknown ``method`` or ``init``, ``n_points < 2``, a ``tangent_dim`` outside ``1..r`` (for
            every ``δ``) or unlike the manifold's, bool or complex points (as the manifold), a ``lr``, ``tol``,
            ``verify_tol`` or ``delta`` that is not a real number, ``steps < 0``, ``lr ≤ 0``, ``tol < 0``,
            ``verify_tol ≤ 0`` (or not finite), ``landing=True`` on a field without a landing projection, NaN or
            inf points, bad shapes, or an ``init`` path whose ends are not ``x0``, ``x1``.
        RuntimeError: called inside a ``torch.func`` transform (`func_transforms.refuse_transforms`): the results
            are detached, not differentiable.

    Example:
        >>> import math, torch
        >>> from learned_manifold import geodesic
        >>> from learned_manifold.metrics import KNNCDC
        >>> g = torch.Generator().manual_seed(0)
        >>> data = torch.nn.functional.normalize(torch.randn(2000, 3, generator=g), dim=-1)  # S² in R³
        >>> field = KNNCDC(data, k=32, sigma=0.1, delta=1e-2)
        >>> x0, x1 = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 1.0, 0.0]])
        >>> res = geodesic(field, x0, x1, n_points=16)  # starts from the k-NN graph path (init="auto")
        >>> res.path.shape, res.init, bool(res.converged.all())
        (torch.Size([1, 16, 3]), 'graph', True)
        >>> abs(float(res.euclidean_length[0]) - math.pi / 2) < 0.05  # the quarter great circle
        True
    """
    if method not in GEODESIC_METHODS:
        raise ValueError(
            f'Invalid method "{method}". Must be one of {{"' + '", "'.join(GEODESIC_METHODS) + '"}.'
        )
    spec = GEODESIC_METHODS[method]
    lr = spec.lr if lr is None else _check_positive(lr, "lr")
    tol = None if tol is None else _check_positive(tol, "tol", zero=True)
    verify_tol = None if verify_tol is None else _check_positive(verify_tol, "verify_tol")
    steps = _check_count(steps, "steps", 0)
    if n_points is not None:
        n_points = _check_count(n_points, "n_points (both ends included)", 2)
    if isinstance(init, str) and init not in INIT_NAMES:
        raise ValueError(f"init must be one of {INIT_NAMES} or a tensor path, got {init!r}")
    refuse_transforms("geodesic")
    field = as_field(field_or_manifold)
    check_landing(field, landing, allow_none=True, low_rank=False)  # before any work; a resolved None: below

    data_shape = getattr(field_or_manifold, "data_shape", None)
    shaped = isinstance(x0, (Tensor, np.ndarray)) and _shaped(torch.as_tensor(x0), data_shape)
    x0, x1 = _as_points(x0, "x0", data_shape), _as_points(x1, "x1", data_shape)
    if x1.shape != x0.shape:
        raise ValueError(f"x0 and x1 must have the same shape, got {tuple(x0.shape)} and {tuple(x1.shape)}")
    x0, x1 = _common_dtype(x0, x1)  # promoted, as the manifold's methods: the path ends exactly at x0 and x1
    single = x0.ndim == 1
    if single:
        x0, x1 = x0.unsqueeze(0), x1.unsqueeze(0)
    check_points(x0, field.dim, "x0")
    check_points(x1, field.dim, "x1")
    warn_uncentred(field, "geodesic")
    off = ends_off_data(field, {"x0": x0, "x1": x1}, "geodesic", "move the ends onto the data first (e.g. "
                        "manifold.projx) or expect lengths and paths without meaning; such pairs are not converged "
                        "(ends_off_data)")
    field = autograd_ready(field, "geodesic")  # a field built under torch.inference_mode(): a copy with normal tensors
    field = _float32_field(field)  # a half-precision model: solved and verified on a float32 copy
    tangent_dim = resolve_tangent_dim(field_or_manifold, tangent_dim)
    dtype = x0.dtype  # the points' dtype, of the results; solved and verified in at least float32 (as the flows)
    x0, x1 = x0.to(_solver_dtype(dtype)), x1.to(_solver_dtype(dtype))
    tol = max(spec.tol, 10.0 * torch.finfo(x0.dtype).eps) if tol is None else tol
    verify_tol = min(VERIFY_TOL_MAX, max(1e-6, 1e3 * tol)) if verify_tol is None else verify_tol

    chosen = (auto_init(field) if init == "auto" else init) if isinstance(init, str) else "path"  # `used` may differ
    if isinstance(init, str):
        n = 16 if n_points is None else n_points
        path0, used = (named_path(field, init, x0, x1, n) if x0.shape[0] else (lerp(x0, x1, n), "linear"))
    else:
        if isinstance(init, Tensor) and shaped and init.ndim == len(data_shape) + (1 if single else 2):
            init = init.reshape(*init.shape[:init.ndim - len(data_shape)], -1)  # a path in the data's shape
        path0, used = _given_path(init, x0, x1, n_points, single), "path"
    if x0.shape[0] == 0:
        if delta is not None:
            check_delta(delta)
        empty = _empty(path0.to(dtype), method, used, path0.new_zeros(0, dtype=dtype))
        if shaped:
            empty.path = empty.path.reshape(*empty.path.shape[:-1], *data_shape)
        return empty
    if landing is None:  # on for a landing manifold, a landing start, and a graph start on a field with a denoiser
        landing = (used == "landing" or (chosen == "graph" and denoises(field))
                   or (isinstance(field_or_manifold, LearnedDataManifold) and field_or_manifold.landing))
    landing = bool(landing)
    delta = regularising_delta(field, x0, x1) if delta is None else check_delta(delta)  # default: (B,), per pair
    check_tangent_rank(field, tangent_dim, x0)
    own = reporting_metric(field, tangent_dim)  # δ = 0 low-rank: the learned tangent bundle
    check_landing(field, landing, low_rank=False)  # the user's field, before any `Regularised` wrapper
    # ends off the data: offsets measured from their landed points (`geodesic_init.landing_anchors`)
    anchors = landing_anchors(field, x0, x1, tangent_dim) if landing else None
    if bool(torch.as_tensor(delta).gt(0).any()):
        if not field.low_rank:
            raise ValueError(f"delta regularises low-rank fields (G = AAᵀ) only; {type(field).__name__} has no "
                             "factor: leave delta out, or give it to the field itself")
        field = Regularised(field, field.delta + delta)  # a default δ per pair: on a field with δ = 0

    start = _Energy(field, x0, x1, path0, landing=landing, anchors=anchors)
    initial = start.initial  # of the start as the solver sees it
    path, total = path0, 0
    n = path0.shape[1]
    opts: dict[str, Any] = dict(steps=steps, lr=lr, tol=tol, verify_tol=verify_tol, landing=landing, anchors=anchors)
    if isinstance(init, str) and used != "graph" and n >= 2 * COARSE_POINTS - 1 and steps > 0:
        coarse, _, _, total = _solve(field, x0, x1, resample(path0, COARSE_POINTS), spec, **opts, kick=False)
        path = resample(coarse, n)
    path, _, converged, done = _solve(field, x0, x1, path, spec, **opts, problem=start if path is path0 else None)
    off = torch.zeros(x0.shape[0], dtype=x0.dtype, device=x0.device) if off is None else off.to(x0)
    converged = converged & ~(off > 0)  # warned above; the checks below then look at the other pairs only
    # x0 = x1: the constant path is the exact minimiser (energy 0; relative tests cannot see it). With landing, also
    # pairs within the landing's rounding (`landing.landing_rounding`): there the landed interior is noise (a pair 1e-6
    # apart on a float32 model came out 4.9 times as long), and the chord is the geodesic to O(gap²).
    floor = 0.0
    if landing:
        floor = landing_rounding(own, x0, x1)
    straight = (x1 - x0).norm(dim=-1) <= floor
    if bool(straight.any()):
        path = torch.where(straight.view(-1, 1, 1), lerp(x0, x1, path.shape[1]), path)
        converged = converged | (straight & ~(off > 0))
    with torch.enable_grad():
        with recording(own) as seen:  # the eigenvalues at the path's midpoints, for warn_dropped
            energy, length = (t.detach() for t in path_energy(own, path))
        if own is not field:
            initial = path_energy(own, start.path(torch.zeros_like(start.base)).detach())[0].detach()
    warn_dropped(seen, "geodesic: the reported lengths and energies")
    # resolved in the metric the solver minimised (the reporting metric ignores the normal directions)
    with torch.enable_grad():
        solved = length if own is field else path_energy(field, path)[1].detach()
    lengths = [(field, solved)] + ([] if own is field else [(own, length)])
    converged = converged & ~unresolved(field, path, lengths, converged & ~straight, delta, landing)
    converged = converged & ~zero_length(length, solved, converged & ~straight)
    euclid = (path[:, 1:] - path[:, :-1]).norm(dim=-1).sum(-1)
    result = GeodesicResult(path=path, energy=energy, length=length, euclidean_length=euclid,
                            initial_energy=initial, converged=converged, steps=total + done, method=method,
                            init=used,
                            delta=delta if isinstance(delta, Tensor) else energy.new_full(energy.shape, delta),
                            ends_off_data=off)
    if dtype != path.dtype:  # half-precision points: solved in float32, returned in their dtype
        for name in ("path", "energy", "length", "euclidean_length", "initial_energy", "delta", "ends_off_data"):
            setattr(result, name, getattr(result, name).to(dtype))
    if shaped:  # points given in the manifold's data shape: the path comes back in it
        result.path = result.path.reshape(*result.path.shape[:2], *data_shape)
    if single:
        names = ["path", "energy", "length", "euclidean_length", "initial_energy", "converged"]
        for name in names + ["delta", "ends_off_data"]:
            setattr(result, name, getattr(result, name).squeeze(0))
    return result


def _empty(path0: Tensor, method: str, used: str, delta: Tensor) -> GeodesicResult:
    """The result for an empty batch: ``(0, T, D)`` paths and ``(0,)`` scores."""
    z = path0.new_zeros(0)
    return GeodesicResult(path=path0, energy=z, length=z, euclidean_length=z, initial_energy=z,
                          converged=torch.zeros(0, dtype=torch.bool, device=path0.device), steps=0, method=method,
                          init=used, delta=delta, ends_off_data=z)
