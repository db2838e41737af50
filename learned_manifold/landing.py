"""Normal-only landing of points on a co-metric field's data (SPEC §5): `land`, the fixed-point iteration behind
`LearnedDataManifold`'s ``projx`` and ``retr`` with ``landing=True``, the off-data checks of flows and geodesics
(`ends_off_data`), and the landing map's rounding (`residual_rounding`, `landing_rounding`).

Landing corrects a step's normal part only. Its tangent part is the objective's gradient projected on the learned
tangent space, whose small error passes a share of the gradient's normal part along the data (1e-3 to 1e-2 of it on
a learned circle), so an objective that pulls far off the data biases optimisers and flows along it in proportion
to its pull: a target 50 above a learned circle, RiemannianAdam with landing ended 0.133 rad from the constrained
minimiser (a target 5 above: 0.012). Keep targets near the data (land them first, ``projx``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .func_transforms import reverse_wrapped
from .geometry import Eigenpairs, eigenpairs, intrinsic_dimension, spectral_apply
from .landing_scale import (  # noqa: F401  (LANDING_NOISE, RESOLUTION_WARN: names landing had)
    LANDING_NOISE,
    RESOLUTION_WARN,
    data_centre,
    data_graph_of,
    field_scale,
    landing_rounding,
    landing_sigma,
    named_sigma,
    points_sigma,
    residual_rounding,
    warn_resolution,
)
from .landing_slide import warn_slide
from .metrics.base import CoMetricField, rounding_eps
from .metrics.knn import KNNCDC
from .precision import full_precision
from .user_warnings import warn_user

if TYPE_CHECKING:
    from .manifold import LearnedDataManifold

__all__ = ["data_centre", "ends_off_data", "land", "landing_rounding", "normal_landing", "off_data_threshold",
           "residual_rounding", "warn_flow_ends", "warn_off_data"]

WARN_SIGMAS = 3.0
"""`land` warns of landed points farther than this many ``σ`` from the nearest data point the field holds (and
farther than `WARN_QUANTILE_FACTOR` times the 99th percentile of those points' spacing, `_warn_distance`). On a
learned swiss roll (``σ = 0.372``, 4,096 landmarks, refusal at 1.74), 700 points on the data landed within 1.01 of a
landmark (edges included; 0.1% of all points on the roll lie beyond 1.08, the largest 1.64), while points landed
0.7, 1.1 and 1.2 off the roll at its inner edge lay 1.16, 1.55 and 1.55 from one."""

WARN_QUANTILE_FACTOR = 1.5
"""`_warn_distance`: the largest gaps of a random sample reach 1.5-2.3 times the 99th percentile of its
nearest-neighbour distances (of points on the data, the share farther than 1.5 times it from the nearest landmark:
1e-4 on a swiss roll, 1.6e-4 on a 4,096-point circle, none on a 500-point circle, a sphere or a disc; farther than
1 times it: about 1%)."""

END_CHECK_MARGIN = 0.9
"""`_check_landed` searches again only the landed points whose bound on their distance from the nearest data point
the field holds (from before landing, plus how far they moved) exceeds this fraction of the distance that would
refuse or warn: 10% of margin for the searches' rounding (exact re-ranked distances, far smaller). On a learned
circle (1,600 landmarks) an optimiser step at B = 64 then searches none to a few points at the end."""


@torch.no_grad()
def land(manifold: LearnedDataManifold, xf: Tensor) -> Tensor:
    """Normal-only landing of flat points ``xf`` ``(B, D)`` on ``manifold``'s field; returns ``(B, D)``.

    Each point iterates ``x ← x + n``, ``n = (I − P_x)(x̂(x, σ) − x)``, until ``‖n‖ ≤ tol``; a point already
    there is returned unchanged. A point far from the data is first brought close: there the learned tangent
    space is meaningless (its gap-rule dimension may even be ``r``, leaving no normal to move along) and moving
    along the data does no harm. Far means that the denoiser at ``σ`` moves it by more than ``σ/2``, or that it
    lies several spacings from the data points the field holds (`CoMetricField.beyond_data`, a model's
    landmarks): at a small ``σ`` a denoiser barely moves a point inside a sphere, which then passed as landed.
    A given point whose learned tangent space is all of ``R^D`` (no normal space: data that fill ``R^D``, or the
    centre of a sphere) has nothing to land along where it lies near the data: within ``σ`` of the landmarks (and
    moved less than ``σ/2`` by the denoiser), or for a field without bandwidths, it is returned unchanged at once.
    Otherwise (no landmarks to tell) it descends from ``σ_max``, and if it still sees no normal space at ``σ``
    afterwards it is returned unchanged too (the descent would pull data filling ``R^D`` towards their mean).
    The centre of a sphere or circle, and points in such a hole generally, land only where the descent leaves the
    hole: on an exact hand-made sphere it does, but on trained models the denoiser's flow from a nearly symmetric
    point stays near the centre, and a field with landmarks then refuses it (``ValueError``, "did not land"; a
    learned unit sphere with ``σ_max = 4``: radius 0.001 to 0.3 refused, 0.5 landed). Land points off the
    data's holes, or start from data points.
    For fields whose bandwidth can vary (`CoMetricField.landing_bandwidths`) it follows the deterministic
    probability-flow ODE of the denoiser, ``dx/dσ = (x − x̂(x, σ))/σ``, by Euler steps
    ``x ← x + (1 − σ'/σ_k)(x̂(x, σ_k) − x)`` from ``σ_0 = clamp(‖x̂(x, σ) − x‖, σ, σ_max)`` (the distance to the
    field's data where that is larger) down to ``σ`` (``σ' = max(σ, σ_k/2)``): each bandwidth is used where the
    denoiser was trained and, unlike a full posterior-mean step at a large ``σ``, the path does not collapse onto
    the data's centre. Otherwise (or when ``σ_0 < 2σ``) it takes full steps ``x ← x̂(x, σ)``. Non-finite rows
    pass through unchanged. The factor and eigenpairs at the landed points seed the manifold's cache (the next
    ``transp``/``egrad2rgrad`` there needs them). The stopping tolerance is ``landing_tol · σ`` plus the rounding
    of the residual (`residual_rounding`); where the points' coordinates alone round by more than
    `RESOLUTION_WARN` ``· σ`` (float32 data far from the origin), a warning says so once per manifold. ``σ`` is
    the field's (`landing_scale.landing_sigma`): its data's scale for a field that names none, else 1, never the
    points' (a point lands the same alone or in a batch). A field that knows no scale at all takes its tolerance's
    scale from the points (`landing_scale.points_sigma`), so the tolerance is relative to the data's units for
    every field.
    Where the field holds data points it searches them twice: all given points at the start and, at the end, the
    landed points that their start distance plus how far they moved cannot clear (`_check_landed`); each search
    reads every landmark. The loop syncs with the host once per iteration for its own bookkeeping. Points that
    started near the data (moved at most ``σ/2`` by the denoiser, or within ``σ/2`` of the data points the field
    holds) should move only along the normals: where landing moved them along the data (their moves' part in the
    learned tangent space at the start, from the first iteration's eigenpairs), beyond `landing_slide.SLIDE_WARN`
    ``σ`` or for a share of them, a warning says so once per manifold (`landing_slide.warn_slide`).

    Raises:
        ValueError: some finite points did not converge within ``manifold.landing_steps`` iterations, or points
            found far from the field's data are still far from it afterwards (farther than `off_data_threshold`).
        RuntimeError: ``xf`` depends on the input of a reverse-mode ``torch.func`` transform (``grad``, ``jacrev``,
            ``vjp``: `func_transforms.reverse_wrapped`), which would turn the ``no_grad`` landing into a silent zero
            gradient (plain autograd refuses too: no ``grad_fn``).
    """
    if reverse_wrapped(xf):
        raise RuntimeError("LearnedDataManifold.projx and retr with landing=True are not differentiable by "
                           "reverse-mode torch.func transforms (grad, jacrev, vjp): the landing runs under no_grad, "
                           "so its gradient would come out as zeros; differentiate outside the landing "
                           "(landing=False: retr is then differentiable), or use forward mode (torch.func.jvp, "
                           "jacfwd), which differentiates the landing iterations")
    field = manifold.field
    bands = field.landing_bandwidths()
    out = xf.clone()
    if xf.shape[0] == 0:
        return out
    eps = rounding_eps(field, xf.dtype)  # a float32 network rounds float64 points to float32
    idx = finite = torch.isfinite(xf).all(-1).nonzero().squeeze(-1)  # idx: the rows still landing
    x, s = xf[idx], None  # s: per-point bandwidths while annealing; None: all at σ
    sigma = landing_sigma(field)  # near/far, refusals, warnings: the field's own scale, never the points'
    tol_sigma = field_scale(field)  # the tolerance's scale; None: the given points' (`points_sigma`, first pass)
    warn_resolution(manifold, x, eps, sigma)
    # points far from the data the field holds (its landmarks): at a small σ the denoiser may barely move them;
    # with a data graph its distances are kept (`_start_distances`): they bound the distances after landing
    beyond, start_dist = _start_distances(field, x) if bands is not None and idx.numel() else (None, None)
    check_end = beyond is not None  # every landed point is checked again once landed
    descended = torch.zeros(idx.shape, dtype=torch.bool, device=xf.device)
    start_x, undo = x, torch.zeros_like(descended)  # undo: given points descending for lack of a normal space
    seen: dict = {}
    first = None  # the start's tangent spaces, and which given points started near the data (`warn_slide`)
    res = tol = xf.new_zeros(0)
    for step_no in range(manifold.landing_steps):
        if idx.numel() == 0:
            break
        kw: dict[str, Tensor] = {} if s is None else {"sigma": s}
        d = field.project(x, **kw) - x
        A = field.factor(x, **kw)
        manifold._check_tangent_dim(A.shape[-1])
        pairs = eigenpairs(A)
        dims = intrinsic_dimension(pairs.values) if manifold.tangent_dim is None else manifold.tangent_dim
        n = d - spectral_apply(pairs, d, dims, power=0, check_range=False)  # in range: the gap rule's or checked
        dist, res = d.norm(dim=-1), n.norm(dim=-1)
        if tol_sigma is None:  # a field that knows no scale: the given points' (no extra denoiser call)
            tol_sigma = points_sigma(x, dist)
        away = torch.zeros_like(dist, dtype=torch.bool)
        near = dist <= 0.5 * sigma  # (first pass) the denoiser barely moves it, and it lies within σ of the landmarks
        settled = torch.zeros_like(near)  # given points that need no landing (below)
        if beyond is not None:  # first pass: such a point is far, and its descent starts from that distance
            near = near & (beyond <= sigma)  # as landing's acceptance afterwards (`_beyond`)
            settled = near  # the landmarks tell "near the data" apart from e.g. a sphere's centre
            dist, away, beyond = torch.maximum(dist, beyond), beyond > 0, None
        at_target = torch.ones_like(dist, dtype=torch.bool) if s is None else s <= s.new_tensor(sigma)
        no_normal = torch.as_tensor(dims, device=d.device) >= d.shape[-1]  # P = I: nothing to land along
        # no normal space (P = I) near the data: first try a descent from σ_max (e.g. the sphere's centre, where
        # x̂ barely moves); a given point that still sees none afterwards has nothing to land along (data filling
        # R^D): it goes back to where it was given, and is accepted there on the next pass (the descent would have
        # pulled it towards the data's mean). A point that reaches such a place while landing is not taken back.
        # Given points near the data with no normal space are accepted at once where that is known: near the
        # landmarks (a model's), or without bandwidths (there is no descent to try).
        settled = no_normal & (settled | (near if bands is None and step_no == 0 else torch.zeros_like(near)))
        far = at_target & ~settled & ((dist > 0.5 * sigma) | (no_normal & ~descended))
        if step_no == 0:  # given points near the data (by the denoiser, or within σ/2 of the data points held)
            close = near if start_dist is None else near | (start_dist <= 0.5 * sigma)
            first = (pairs, dims, close & ~no_normal)  # and their tangent spaces, for `warn_slide`
        back = at_target & no_normal & undo
        tol = manifold.landing_tol * tol_sigma + residual_rounding(field, x, eps)  # of the iterate: same on re-entry
        done = at_target & ~far & ~back & (res <= tol)
        if bands is None:  # no bandwidth to anneal: full denoiser steps while far, then normal steps
            step = torch.where(far.unsqueeze(-1), d, n)
            s_next = None
        else:
            s_now = dist.new_full(dist.shape, sigma) if s is None else s
            # σ_0 for points found far at σ: their distance, or σ_max where the field sees no normal space
            # (once per point: a point still far after one descent takes full steps at σ, which keep moving it)
            start = torch.where(no_normal & ~away, bands[1], dist.clamp(bands[0], bands[1]))
            start = torch.where(descended, bands[0], start)
            # given points without a normal space descend in finer steps (ratio 0.9, not 0.5): near a sphere's
            # centre the flow is unstable and halving steps under-integrate it (radius 0.001 ended at 0.002, with
            # still no normal space, where 0.9 reaches 0.2 and lands)
            ratio = torch.where(undo, 0.9, 0.5).to(s_now.dtype)
            s_next = torch.where(far, start, torch.where(at_target, s_now, (ratio * s_now).clamp_min(sigma)))
            # Euler step of the probability-flow ODE from s_now to s_next (a point starting the descent does
            # not move yet, unless it is within 2σ: then it takes the full step x̂(x, σ) and stays at σ).
            frac = torch.where(far, (start < 2 * sigma).to(d.dtype), 1 - s_next / s_now)
            s_next = torch.where(far & (start < 2 * sigma), s_now, s_next)
            step = torch.where(at_target & ~far, 1.0, frac).unsqueeze(-1) * torch.where(
                at_target.unsqueeze(-1) & ~far.unsqueeze(-1), n, d)
            starts = far & (start >= 2 * sigma)  # rows that begin their descent now
            if step_no == 0:  # the given points only
                undo = starts & no_normal & near
            descended = descended | starts
        x_next = torch.where(back.unsqueeze(-1), start_x, x + step)
        # one host sync per iteration for the bookkeeping: how many rows stay, and whether all of them are at σ
        landing = (s_next > s_next.new_tensor(sigma)) & ~done if s_next is not None else torch.zeros_like(done)
        n_keep, annealing = torch.stack([(~done).sum(), landing.any().long()]).tolist()
        order = torch.argsort(done.to(torch.uint8), stable=True)  # the rows still landing first, then the landed
        keep, fin = order[:n_keep], order[n_keep:]
        if fin.numel():
            rows = idx.index_select(0, fin)
            out[rows] = x.index_select(0, fin).to(out.dtype)  # (index_put_: vmap has no rule for index_copy_)
            if not seen:
                seen = {"A": A.new_full((xf.shape[0], *A.shape[1:]), float("nan")),
                        "values": A.new_full((xf.shape[0], A.shape[-1]), float("nan")),
                        "vectors": A.new_full((xf.shape[0], *A.shape[1:]), float("nan")),
                        "kept": torch.zeros(xf.shape[0], dtype=torch.long, device=A.device)}
            for name, value in (("A", A), ("values", pairs.values), ("vectors", pairs.vectors)):
                seen[name][rows] = value.index_select(0, fin)
            # (`eigenpairs` counts them: the cut check reads no vectors)
            seen["kept"][rows] = pairs.kept.to(torch.long).index_select(0, fin)
        idx, x, res, tol = (t.index_select(0, keep) for t in (idx, x_next, res, tol))
        descended, undo, start_x = (t.index_select(0, keep) for t in (descended, undo & ~back, start_x))
        if s_next is not None:
            s = s_next.index_select(0, keep) if annealing else None
    if idx.numel():
        correction, tolerance = res.max().item(), tol.max().item()  # read first (*)
        raise ValueError(f"x: {idx.numel()} of {xf.shape[0]} point(s) did not land on the data in "
                         f"{manifold.landing_steps} steps (largest normal correction {correction:.3g}, tolerance "
                         f"{tolerance:.3g}): too far from the data, or where its normal space is ill-defined; start "
                         "from data points or raise landing_steps")
    if check_end and finite.numel():  # every landed point, not only those found far: a fixed point of the
        landed = out[finite]  # denoiser at a large σ may lie far off the data
        bound = None if start_dist is None else start_dist + (landed - xf[finite]).norm(dim=-1)
        _check_landed(field, landed, xf.shape[0], sigma, bound)
    if first is not None:
        warn_slide(manifold, xf[finite], out[finite], *first, sigma, xf.shape[0])
    if seen and bool(torch.isfinite(xf).all()):
        pairs = Eigenpairs(seen["values"], seen["vectors"], kept=seen["kept"])
        manifold._cache = manifold._cache_entry(out, seen["A"], pairs)
    return out


def _start_distances(field: CoMetricField, x: Tensor) -> tuple[Tensor | None, Tensor | None]:
    """`CoMetricField.beyond_data` of the given points ``x`` ``(B, D)``, ``(B,)`` (``None`` for a field that holds
    no data), and, where the field holds its data as a `KNNCDC` (`landing_scale.data_graph_of`), each point's
    distance to the nearest of them, ``(B,)``, from the same single search (else ``None``): it bounds the
    distance after landing (`_check_landed`)."""
    graph = data_graph_of(field)
    if graph is None:
        return field.beyond_data(x), None
    dist = graph.nearest_distance(x)
    return torch.where(dist > graph.far_distance(), dist, torch.zeros_like(dist)), dist


def _check_landed(field: CoMetricField, x: Tensor, total: int, sigma: float,
                  bound: Tensor | None = None) -> None:
    """Refuse landed points ``x`` ``(B, D)`` (of ``total`` given) that lie beyond the data the field holds
    (`off_data_threshold`: ``ValueError``), and warn once where some lie nearer than that but farther than
    `_warn_distance` from the nearest of those points. One search (`KNNCDC.nearest_distance`), of the rows whose
    ``bound`` ``(B,)`` on that distance (their distance before landing plus how far they moved: the triangle
    inequality) exceeds `END_CHECK_MARGIN` times the lower of those two distances, of all rows
    without ``bound``: the others are neither refused nor warned of. A landing step of an optimiser mostly
    searches none (each search reads every landmark: a fifth to a third of the step at B ≥ 64)."""
    graph = data_graph_of(field)
    dist = None
    if graph is not None:
        threshold = max(sigma, graph.far_distance())
        limit = END_CHECK_MARGIN * min(threshold, _warn_distance(graph, sigma))
        rows = None if bound is None else (bound > limit).nonzero()
        if rows is None or rows.numel() == x.shape[0]:
            dist = graph.nearest_distance(x)
        else:  # the rows within the bound cannot reach either distance: 0 for them changes no count or maximum
            rows = rows.squeeze(-1)
            dist = x.new_zeros(x.shape[0])
            if rows.numel():
                dist[rows] = graph.nearest_distance(x.index_select(0, rows))
    if dist is None:  # a field whose ``beyond_data`` has no `KNNCDC` behind it
        gap = _beyond(field, x, sigma)
        gap = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device) if gap is None else gap
    else:  # as `_beyond`: beyond `far_distance` and beyond σ
        gap = torch.where(dist > threshold, dist, torch.zeros_like(dist))
    still = gap > 0
    if bool(still.any()):
        count, largest, threshold_text = int(still.sum()), gap.max().item(), _threshold_text(field, sigma)  # (*)
        raise ValueError(f"x: {count} of {total} point(s) did not land on the data: after landing they are up "
                         f"to {largest:.3g} from the nearest data point the field holds (a model's landmarks), "
                         f"farther than {threshold_text}: start nearer the data, "
                         "or use another sigma: a smaller one where sigma is large against the data (the "
                         "denoiser's fixed points then lie off the data), a larger one where the data are "
                         "noisy at this scale (below the noise the denoiser barely moves points)")
    if dist is not None:
        _warn_far_landed(graph, dist, total, sigma)


def _warn_distance(graph: KNNCDC, sigma: float) -> float:
    """The distance from the nearest data point the field holds beyond which `land` warns of a landed point: the
    larger of `WARN_SIGMAS` ``σ`` and `WARN_QUANTILE_FACTOR` times the 99th percentile of those points' spacing
    (`KNNCDC.spacing_quantile`)."""
    return max(WARN_SIGMAS * sigma, WARN_QUANTILE_FACTOR * graph.spacing_quantile())


def _warn_far_landed(graph: KNNCDC, dist: Tensor, total: int, sigma: float) -> None:
    """Warn once where landed points lie ``dist`` ``(B,)`` from the nearest data point the field holds, farther
    than `_warn_distance` (``dist`` below the refusal's threshold: `_check_landed` refused the others)."""
    limit = _warn_distance(graph, sigma)
    warned = dist > limit
    if not bool(warned.any()):
        return
    # Every number is read from the tensors before the message is built: under torch.compile a host sync (a graph
    # break) inside an f-string, after a number that varies between calls, left that number among the pieces the
    # resumed frame joins ("TypeError: sequence item 1: expected str instance, int found" from a compiled
    # optimiser step with landing, s37; torch 2.13's dynamo). The module's other messages (marked (*)) do the same.
    count, largest, spacing = int(warned.sum()), dist.max().item(), graph.spacing_quantile()
    warn_user(f"landing: {count} of {total} landed point(s) lie up to {largest:.3g} from "
              f"the nearest data point the field holds (a model's landmarks), farther than {limit:.3g} (the "
              f"larger of {WARN_SIGMAS:g} sigma = {WARN_SIGMAS * sigma:.3g} and {WARN_QUANTILE_FACTOR:g} times the "
              f"{spacing:.3g} 99th-percentile spacing of those points): they may have landed off "
              "the data, on a fixed point of the denoiser beside it (as at the inner edge of a learned swiss "
              "roll), or lie in one of the rare wide gaps between those points (about 1 in 10,000 points on "
              "the data do); check them (field.beyond_data, the distance to your data), start nearer the data, "
              "or use a smaller sigma")


@full_precision
@torch.no_grad()
def normal_landing(field: CoMetricField, x: Tensor, offset: Tensor | None = None,
                   tangent_dim: int | None = None) -> Tensor:
    """One normal-only landing step of points ``x`` ``(B, D)``: ``x + (I − P_x)(x̂(x, σ) − x + offset)``, ``(B, D)``.

    What a flow with ``landing=True`` applies after every output interval (SPEC §5 "Landing, normal-only", §6).
    ``P_x`` projects onto the learned tangent space at ``x``: the top-``tangent_dim`` eigenvectors of the field's
    factor, or the gap rule's (`geometry.intrinsic_dimension`) for ``None``. A full denoiser step ``x ← x̂`` also
    moves points *along* the data (curvature terms, model error); repeated once per output interval this became a
    drift that grew with the number of output points (a flow started at its objective's minimiser on a trained
    sphere moved 0.007, 0.078, 0.41 with 2, 33, 257 points) and froze `interpolate` short of its target. Only the
    normal part is kept here, so a point on the data moves only towards it. ``offset`` ``(B, D)`` (default 0): a
    displacement from the landing map's image to keep, ``y − x̂(y, σ)`` for a point ``y`` that should stay put
    (`flows.interpolate` carries its ends' offsets); ``x = y`` then does not move. A point with no normal space
    (``P_x = I``), and a non-finite row, are returned unchanged.

    Args:
        field: a low-rank `CoMetricField` with a landing projection (``can_project``).
    """
    out = x.clone()
    rows = torch.isfinite(x).all(-1).nonzero().squeeze(-1)
    if rows.numel() == 0:
        return out
    xr = x[rows]
    d = field.project(xr) - xr
    if offset is not None:
        d = d + offset[rows]
    pairs = eigenpairs(field.factor(xr))
    dims = intrinsic_dimension(pairs.values) if tangent_dim is None else tangent_dim
    # no host sync for the gap rule's own dims (in range by construction); a given tangent_dim is checked
    out[rows] = xr + d - spectral_apply(pairs, d, dims, power=0, check_range=tangent_dim is not None)
    return out


def warn_off_data(field: CoMetricField, x: Tensor, caller: str) -> None:
    """Warn where points ``x`` ``(B, D)`` that a landing map produced lie farther than σ beyond the data the field
    holds (`CoMetricField.beyond_data`: a model's landmarks): a flow with ``landing=True`` lands by one
    normal-only denoiser step per interval (`normal_landing`) and cannot refuse its path as `land` refuses a
    point (a circle with noise 0.1 at a σ below the noise: a linear objective's flow ended 8.7 off the circle).
    The warning points at the user's line (`user_warnings.warn_user`)."""
    ends_off_data(field, {"landed end points": x}, caller, "the denoiser at this sigma does not bring them back to "
                  "the data (a larger sigma where the data are noisy at this scale, or a shorter flow, may)")


def ends_off_data(field: CoMetricField, ends: dict[str, Tensor], caller: str, advice: str) -> Tensor | None:
    """``(B,)``: for each row, the largest distance of the points ``ends`` (name → ``(B, D)``) from the nearest data
    point the field holds where it lies beyond the data (as `land` refuses afterwards, `off_data_threshold`),
    else 0; ``None`` for a field that holds no data (`CoMetricField.beyond_data`; hand-made fields). Warns once
    where any lies beyond, naming which (e.g. ``x0``, ``x1``), how far, and ``advice``: the learned geometry is
    extrapolation there (SPEC §6: a geodesic to a point 2 above a learned circle came out 5 times the straight
    segment, "converged"). The warning points at the user's line (`user_warnings.warn_user`)."""
    sigma = named_sigma(field)
    gaps = {name: _beyond(field, x, sigma) for name, x in ends.items() if x.shape[0]}
    if not gaps or any(gap is None for gap in gaps.values()):
        return None
    counts = {name: int((gap > 0).sum()) for name, gap in gaps.items()}  # read first (*)
    named = [f"{name} ({count} of {gaps[name].shape[0]})" for name, count in counts.items() if count]
    worst = torch.stack(list(gaps.values())).amax(0)
    if named:
        listed, largest, threshold_text = ", ".join(named), worst.max().item(), _threshold_text(field, sigma)  # (*)
        warn_user(f"{caller}: points beyond the data: {listed}, up to {largest:.3g} from the nearest data point the "
                  f"field holds (its data or a model's landmarks), farther than {threshold_text}: the learned "
                  f"geometry is only defined near the data; {advice}")
    return worst


def warn_flow_ends(field: CoMetricField, ends: dict[str, Tensor], caller: str, landing: bool) -> None:
    """`ends_off_data` for a flow (`flows.gradient_flow`, `flows.interpolate`) with or without ``landing``: its
    advice names ``landing=True`` where the flow has it off and the field can land."""
    land_too = not landing and getattr(field, "can_project", False)
    ends_off_data(field, ends, caller, "move the points onto the data first (e.g. manifold.projx)"
                  + (" or use landing=True" if land_too else "") + ", or expect paths without meaning")


def off_data_threshold(field: CoMetricField) -> float | None:
    """The distance from the nearest data point the field holds beyond which a point is off the data (what `land`
    refuses afterwards, `warn_off_data` and `ends_off_data` report): the larger of the landing ``σ`` and
    `KNNCDC.far_distance` of those points (`KNNCDC.beyond_data`; a model's landmarks: a few typical spacings,
    more where the data hold wide gaps, as curves do), e.g. 66 pixels on the 8×8 digits at ``σ = 17.3``. ``None``
    where the field holds no `KNNCDC` data graph."""
    graph = data_graph_of(field)
    return None if graph is None else max(named_sigma(field), graph.far_distance())


def _threshold_text(field: CoMetricField, sigma: float) -> str:
    """The off-data threshold `_beyond` applies, in words (`off_data_threshold`)."""
    graph = data_graph_of(field)
    if graph is None:
        return f"sigma = {sigma:.3g} and than a point on the data can be"
    far, spacing = graph.far_distance(), graph.median_spacing()
    return (f"{max(sigma, far):.3g} (the larger of sigma = {sigma:.3g} and {far:.3g}, {far / spacing:.3g} times the "
            f"{spacing:.3g} typical spacing of those points, beyond which a point is off them)")


def _beyond(field: CoMetricField, x: Tensor, sigma: float) -> Tensor | None:
    """`CoMetricField.beyond_data` where it exceeds ``σ``, else 0: what landing refuses afterwards. The
    denoiser's fixed points at ``σ`` lie ``~dσ²/(2R)`` off the data, at a large ``σ`` more than the landmarks' few
    spacings (a landed point landed again had been refused); the descent before still starts for every point
    farther than those spacings (`CoMetricField.beyond_data`), as at a small ``σ`` the denoiser barely moves it."""
    beyond = field.beyond_data(x)
    return None if beyond is None else torch.where(beyond > sigma, beyond, torch.zeros_like(beyond))
