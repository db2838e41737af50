"""The scales landing works at (SPEC §5 "Landing, normal-only"): the bandwidth ``σ`` a field lands at
(`landing_sigma`: its own, else its data's scale, else 1), the scale of the stopping tolerance of a field that knows
none (`points_sigma`), the rounding floor of landing's residual
(`residual_rounding`, about the data's centre, `rounding_centre`), the landing map's rounding between two landed
images (`landing_rounding`), the data points a field holds (`data_graph_of`), and the warning where float32
coordinates cannot resolve ``σ`` (`warn_resolution`). Split from `landing`, which re-exports the public names."""

from __future__ import annotations

import math
import weakref
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .metrics.base import CoMetricField, rounding_eps
from .metrics.knn import KNNCDC
from .models import MetricModel
from .precision import full_precision
from .user_warnings import warn_user

if TYPE_CHECKING:
    from .manifold import LearnedDataManifold

__all__ = ["LANDING_NOISE", "RESOLUTION_WARN", "data_centre", "data_graph_of", "data_scale", "field_scale",
           "field_sigma", "landing_rounding", "landing_sigma", "named_sigma", "points_sigma", "residual_rounding",
           "rounding_centre", "warn_resolution"]

RESOLUTION_WARN = 0.1
"""`land` warns (once per manifold) where the spacing of the points' own coordinates exceeds this fraction of σ
(`warn_resolution`). Not ``landing_tol``: at its default 1e-4, float32's rounding exceeds ``landing_tol · σ`` at
the origin already (``64 ε`` = 7.6e-6 against 1.6e-6 for σ = 0.016), and every float32 model would warn."""

_warned_resolution: weakref.WeakSet = weakref.WeakSet()  # manifolds already warned (`warn_resolution`)


def field_sigma(field: CoMetricField) -> float | None:
    """The bandwidth the field itself names: the low end of its `landing_bandwidths`, else its ``sigma`` attribute
    (a wrapper's, `Regularised`, `TangentBundle`: its field's); ``None`` where it names none (hand-made fields)."""
    bands = field.landing_bandwidths()
    if bands is not None:
        return bands[0]
    if hasattr(field, "sigma"):  # (a tensor bandwidth, e.g. a `KNNCDC`'s being learned: its value)
        sigma = field.sigma
        return float(sigma.detach()) if isinstance(sigma, torch.Tensor) else float(sigma)
    inner = getattr(field, "inner_field", None)
    return None if inner is None else field_sigma(inner)


def data_scale(field: CoMetricField) -> float | None:
    """A length in the data's units for a field that names no ``σ``: its `CoMetricField.length_scale` (the RMS
    distance of its data from their mean), else the typical spacing of the data points it holds
    (`data_graph_of`, `KNNCDC.median_spacing`); ``None`` where it knows neither."""
    scale = field.length_scale()
    if scale is not None and math.isfinite(scale) and scale > 0:
        return float(scale)
    graph = data_graph_of(field)
    spacing = None if graph is None else graph.median_spacing()
    return spacing if spacing is not None and math.isfinite(spacing) and spacing > 0 else None


def field_scale(field: CoMetricField) -> float | None:
    """The scale the field itself knows: `field_sigma`, else `data_scale`; ``None`` for a hand-made field that
    knows neither (`land` then takes its stopping tolerance from the points, `points_sigma`)."""
    sigma = field_sigma(field)
    return data_scale(field) if sigma is None else sigma


def landing_sigma(field: CoMetricField) -> float:
    """The ``σ`` landing decides at (SPEC §5 "Landing, normal-only"): which points are near the data (moved at
    most ``σ/2`` by the denoiser) or far, which slid along it (`landing_slide`), where float32 cannot resolve it
    (`warn_resolution`), which landed points it refuses as off the data. `field_scale`, else 1: a scale of the
    field's own, never the points', so a point lands the same alone and in any batch."""
    scale = field_scale(field)
    return 1.0 if scale is None else scale


def named_sigma(field: CoMetricField) -> float:
    """`field_sigma`, else 1: the ``σ`` of the off-data checks of flows and geodesics (`landing.ends_off_data`,
    `landing.off_data_threshold`), which also judge fields that cannot land (a `VAEPullbackMetric` holds codes but
    names no ``σ``: its threshold stays the larger of 1 and their `KNNCDC.far_distance`). For a field that names a
    ``σ`` it equals `landing_sigma`."""
    sigma = field_sigma(field)
    return 1.0 if sigma is None else sigma


@torch.no_grad()
def points_sigma(x: Tensor, moved: Tensor) -> Tensor:
    """The scale ``()`` of `land`'s stopping tolerance (``landing_tol`` times it) for a field that knows none
    (`field_scale` ``None``): the larger of the RMS distance of the finite points ``x`` ``(B, D)`` from their mean
    and of their largest first correction ``moved`` ``(B,)`` (``‖x̂(x) − x‖``, from landing's first iteration: no
    extra denoiser call), or 1 where both are 0 or not finite. A point thus lands to ``landing_tol`` times the size
    of its batch or of its way to the data, whatever the data's units (a sphere of radius 1e-3 too). Only the
    tolerance: near/far and the warnings use `landing_sigma`. No host sync."""
    if x.shape[0] == 0:
        return x.new_ones(())
    spread = (x - x.mean(0)).square().sum(-1).mean().sqrt()
    scale = torch.maximum(spread, moved.amax().to(spread.dtype))
    return torch.where(torch.isfinite(scale) & (scale > 0), scale, torch.ones_like(scale))


def data_graph_of(field: CoMetricField) -> KNNCDC | None:
    """The data points the field holds as a `KNNCDC` (the field itself, or a model's landmarks), else ``None``."""
    inner = getattr(field, "inner_field", None)  # a wrapper's (`Regularised`, `TangentBundle`): its field's
    if isinstance(field, KNNCDC):
        graph = field
    elif callable(getattr(field, "off_data_graph", None)):  # a `LearnedCDC`: its landmarks, or a subsample of data
        graph = field.off_data_graph()
    else:  # e.g. a `VAEPullbackMetric`'s codes
        graph = getattr(field, "data_graph", None)
    return graph if isinstance(graph, KNNCDC) else (data_graph_of(inner) if inner is not None else None)


def residual_rounding(field: CoMetricField, x: Tensor, eps: float) -> Tensor:
    """The rounding floor of landing's residual at points ``x`` ``(B, D)``, ``(B,)``: ``64 ε |x − c|_∞`` for the
    field's arithmetic plus ``2 √D ε |x|_∞`` for the points' own coordinates (``ε``: `rounding_eps`).

    ``c`` is the centre the field computes about (`rounding_centre`: a `MetricModel`'s ``mean``, or the search
    origin of the data points the field holds), else the origin. The second term is a few ulps of each coordinate
    of ``x`` and of ``x̂``, summed over ``D`` coordinates: what a step ``x + n`` can resolve. Before, the floor was
    ``64 ε |x|_∞``: for a float32 circle translated by 1,000 that is 7.6e-3, half its σ, and points σ/3 off the
    circle counted as landed before their first step (a float32 `KNNCDC` at 5,000 too, until its centre was used)."""
    centre = rounding_centre(field, x)
    spread = x.abs().amax(-1) if centre is None else (x - centre).abs().amax(-1)
    return 64 * eps * spread + 2 * x.shape[-1] ** 0.5 * eps * x.abs().amax(-1)


def data_centre(field: CoMetricField, x: Tensor) -> Tensor | None:
    """The point ``(D,)`` a learned model's networks standardise about (its ``mean``), else ``None``."""
    model = getattr(field, "model", None)
    if not isinstance(model, MetricModel) or model.mean.numel() != x.shape[-1]:
        return None
    return model.mean.reshape(-1).to(device=x.device, dtype=x.dtype)


def rounding_centre(field: CoMetricField, x: Tensor) -> Tensor | None:
    """The point ``(D,)`` the field's arithmetic is relative to: a learned model's ``mean`` (`data_centre`), else
    the search origin of the data points it holds (`data_graph_of`; `KNNCDC` ranks distances about its data's
    mean where that lies beyond their spread, and sums its `KNNCDC.project` about it: its rounding scales with the
    distance from there), else ``None``."""
    centre = data_centre(field, x)
    if centre is not None:
        return centre
    graph = data_graph_of(field)
    if graph is None or graph.dim != x.shape[-1]:
        return None
    return graph.search_origin().reshape(-1).to(device=x.device, dtype=x.dtype)


def warn_resolution(manifold: LearnedDataManifold, x: Tensor, eps: float, sigma: float) -> None:
    """Warn once per manifold where points ``x`` ``(B, D)`` lie so far from the origin that the spacing of their
    coordinates, over ``D`` coordinates (``√D`` ulps of ``|x|_∞``), exceeds `RESOLUTION_WARN` ``· σ``: landing
    cannot bring them closer to the data than about that (a float32 unit circle at 1e4: 1.7e-3 against σ = 0.016)."""
    if x.shape[0] == 0 or manifold in _warned_resolution or eps <= torch.finfo(torch.float64).eps:
        return
    offset = float(x.abs().max())
    spacing = eps * 2.0 ** math.floor(math.log2(offset)) if offset > 0 else 0.0  # one ulp of the largest coordinate
    grid = x.shape[-1] ** 0.5 * spacing
    if grid > RESOLUTION_WARN * sigma:
        _warned_resolution.add(manifold)
        name = next((str(t).removeprefix("torch.") for t in (torch.float32, torch.bfloat16, torch.float16)
                     if torch.finfo(t).eps == eps), f"eps = {eps:.2g}")
        warn_user(f"landing: points lie up to {offset:.3g} from the origin, where {name} coordinates are "
                  f"{spacing:.2g} apart ({grid:.2g} over D = {x.shape[-1]}), more than {RESOLUTION_WARN:g} sigma "
                  f"(sigma = {sigma:.3g}): they land no closer to the data than about that; use float64 points "
                  "and a float64 field (field.double()), or data centred near the origin")


LANDING_NOISE = 1e3
"""With landing, pairs closer than the landing map's rounding, `landing_rounding`, get the straight segment: the
landed interior would be rounding noise there."""


@full_precision
def landing_rounding(field: CoMetricField, x0: Tensor, x1: Tensor) -> Tensor:
    """``(B,)``: how far apart landed images of the same point may come out by rounding alone,
    ``ε (LANDING_NOISE · L + 8 max(‖x₀‖, ‖x₁‖))`` for points ``(B, D)``.

    ``ε`` is the coarsest of the points' dtype and the field's parameters' (`metrics.base.rounding_eps`: a float32
    network rounds float64 points); ``L`` the field's `length_scale` (a network computes in units of the data's
    scale and adds back their mean: its error is relative to ``L``, and the mean's rounding to ``‖x‖``), or
    ``max(‖x₀‖, ‖x₁‖)`` for a field without one. Data far from the origin (a unit sphere at 5,000) are then
    judged by their own scale, not by their distance from the origin."""
    eps = rounding_eps(field, x0.dtype)
    norm = torch.maximum(x0.norm(dim=-1), x1.norm(dim=-1))
    scale = field.length_scale()
    return eps * (LANDING_NOISE * (norm if scale is None else torch.full_like(norm, scale)) + 8 * norm)
