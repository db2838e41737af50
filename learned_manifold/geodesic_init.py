"""Initial paths for the geodesic solver that follow the data (SPEC §6; `geodesics.geodesic`'s ``init``).

A straight line between two data points runs through empty space, where a data-driven field carries no
information (a k-NN field collapses, a network extrapolates), so the energy minimiser started there may stay
there. These starts follow the data instead:

* ``"graph"``, for fields that hold their data (`KNNCDC`): the shortest path through the data's symmetrised
  k-nearest-neighbour graph (Euclidean edge lengths, Dijkstra), from ``x0`` through the data to ``x1``; the graph
  joins at most `KNNCDC.GRAPH_POINTS` data points (a seeded subsample of larger data, `KNNCDC.graph_rows`).
  `learned_manifold.geodesic_graph` builds it (`graph_paths`, re-exported here with `graph_path` and `resample`);
* ``"landing"``, for fields with a landing projection (a `LearnedCDC` with a denoiser, the score fields): the
  straight line's points pulled onto the data by the denoiser, iterated with a bandwidth annealed from about a
  quarter of the pair's distance down to the field's ``σ`` (a denoiser at small ``σ`` is unreliable far from
  the data), or by ``field.project`` repeated where the bandwidth cannot be chosen;
* ``"linear"``: the straight line (LERP).

Each is resampled to equal Euclidean spacing (`resample`). ``"auto"`` picks the first that applies.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .evaluation import lerp
from .geodesic_graph import GRAPH_BRIDGE, graph_path, graph_paths, resample
from .landing import land
from .landing_scale import landing_sigma
from .metrics.base import CoMetricField
from .metrics.factor_checks import FactorContractError
from .user_warnings import warn_user

__all__ = ["INIT_NAMES", "DisconnectedDataWarning", "auto_init", "denoises", "graph_holder", "graph_path",
           "graph_paths", "landing_anchors", "landing_path", "resample"]


class DisconnectedDataWarning(UserWarning):
    """A ``"graph"`` start found no path through the data between a pair's ends: they lie in different connected
    components of the data's k-NN graph, farther apart than `GRAPH_BRIDGE` times the data's median neighbour
    distance (separate clusters, or a gap that wide in sparse data), and the pair started from the straight line
    through the empty space between them, where a data-driven field carries no information (`graph_paths`).
    ``learned_manifold`` exports it.

    Example:
        >>> import warnings, torch
        >>> from learned_manifold import DisconnectedDataWarning, geodesic
        >>> from learned_manifold.metrics import KNNCDC
        >>> data = torch.cat([0.1 * torch.randn(100, 2), 0.1 * torch.randn(100, 2) + 10])  # two far clusters
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     result = geodesic(KNNCDC(data, k=8, sigma=0.1), data[:1], data[150:151], n_points=8, steps=5)
        >>> result.init, [w.category.__name__ for w in caught if issubclass(w.category, DisconnectedDataWarning)]
        ('linear', ['DisconnectedDataWarning'])
    """

INIT_NAMES = ("auto", "graph", "landing", "linear")
"""Names accepted by ``geodesic(init=...)``."""


LANDING_LEVELS = 8
"""Bandwidths of the annealed landing (geometric), followed by two more denoiser passes at the field's ``σ``."""


def graph_holder(field: CoMetricField) -> CoMetricField | None:
    """The field whose data a ``"graph"`` start walks through: the field itself when it holds data (a ``data``
    tensor and a ``neighbour_graph``, i.e. `KNNCDC`), or its ``data_graph`` (e.g. `VAEPullbackMetric` given the
    latent codes); ``None`` when there is none."""
    for holder in (field, getattr(field, "data_graph", None)):
        if isinstance(getattr(holder, "data", None), Tensor) and hasattr(holder, "neighbour_graph"):
            return holder
    return None


def auto_init(field: CoMetricField) -> str:
    """The start ``init="auto"`` uses: ``"graph"`` for fields holding data (`graph_holder`), else ``"landing"``
    for fields with a landing projection, else ``"linear"``."""
    if graph_holder(field) is not None:
        return "graph"
    if field.can_project:
        return "landing"
    return "linear"




def denoises(field: CoMetricField) -> bool:
    """Whether the field lands points by a denoiser that takes a bandwidth (a `LearnedCDC` with a denoiser, the
    score fields): the fields whose geodesics `geodesic` constrains to the data by default."""
    return _denoiser_at(field) is not None


def _denoiser_at(field: CoMetricField):
    """``(x̂(y, s), σ, σ_max)`` when the field's denoiser takes a bandwidth, else ``None``."""
    denoise_at = getattr(field, "denoise_at", None)  # the score fields
    if callable(denoise_at):
        return denoise_at, float(field.sigma), math.inf
    model = getattr(field, "model", None)  # LearnedCDC
    if getattr(model, "has_denoiser", False) and hasattr(model, "denoise"):
        dtype = model.scale.dtype

        def denoise(y: Tensor, s: float) -> Tensor:
            return model.denoise(y.to(dtype), s).to(y.dtype)

        return denoise, float(field.sigma), float(model.config.sigma_max)
    return None


def landing_path(field: CoMetricField, x0: Tensor, x1: Tensor, n_points: int) -> Tensor:
    """Straight line from ``x0`` to ``x1`` landed on the data by the field's denoiser, resampled (module doc).

    Args:
        field: a field with ``can_project``.
        x0, x1: ``(B, D)``.
        n_points: points of the result, both ends included.

    Returns:
        ``(B, n_points, D)``, ends exactly ``x0`` and ``x1``.
    """
    m = max(2 * n_points, 17)
    line = lerp(x0, x1, m)
    b, _, d = line.shape
    y = line[:, 1:-1].reshape(-1, d)
    with torch.no_grad():
        found = _denoiser_at(field)
        if found is None:
            for _ in range(LANDING_LEVELS + 2):
                y = field.project(y)
        else:
            denoise, sigma, sigma_max = found
            top = min(sigma_max, max(sigma, 0.25 * float((x1 - x0).norm(dim=-1).max())))
            levels = np.geomspace(top, sigma, LANDING_LEVELS).tolist() + [sigma, sigma]
            for s in levels:
                y = denoise(y, s)
    inner = y.reshape(b, m - 2, d)
    bad = ~torch.isfinite(inner).all(-1).all(-1)
    inner = torch.where(bad.view(-1, 1, 1), line[:, 1:-1], inner)  # a failed landing falls back to the line
    return resample(torch.cat([x0.unsqueeze(1), inner, x1.unsqueeze(1)], dim=1), n_points)


def landing_anchors(field: CoMetricField, x0: Tensor, x1: Tensor, tangent_dim: int | None = None) -> Tensor:
    """``(2B, D)``: the points whose landing ``P(P(·))`` a landed geodesic's end offsets are measured from
    (`geodesic_solvers.end_offsets`), for ends ``x0``, ``x1`` ``(B, D)`` stacked: each end itself, or where the
    normal-only landing `landing.land` moves it farther than the field's ``σ`` (an end off the data), its landed
    point. Two denoiser steps bring an end 0.4 off a learned unit sphere (σ = 0.06) only 0.1 closer, and the short
    offset made a pair 0.01 apart at radius 0.6 detour to the sphere and back (Euclidean length 0.63), converged.
    Ends of a field without a factor stay, and all ends stay where `land` refuses any of them."""
    ends = torch.cat([x0, x1])
    if not field.low_rank or not field.can_project:
        return ends
    from .manifold import LearnedDataManifold  # here: the manifold's module imports the metrics

    sigma = landing_sigma(field)
    try:
        landed = land(LearnedDataManifold(field, tangent_dim=tangent_dim), ends).to(ends)
    except FactorContractError:  # a mistake in the field itself, named by its own message
        raise
    except ValueError:  # an end that does not land (too far, no normal space): its own offset as before
        return ends
    far = torch.isfinite(landed).all(-1) & ((landed - ends).norm(dim=-1) > sigma)
    return torch.where(far.unsqueeze(-1), landed, ends)


def named_path(field: CoMetricField, name: str, x0: Tensor, x1: Tensor, n: int) -> tuple[Tensor, str]:
    """The start path ``(B, n, D)`` that ``name`` (an `INIT_NAMES` entry) gives between ``x0``, ``x1`` ``(B, D)``,
    and the name actually used (a graph start joining no pair is ``"linear"``)."""
    name = auto_init(field) if name == "auto" else name
    if name == "graph":
        holder = graph_holder(field)
        if holder is None:
            raise ValueError(f"init='graph' needs a field that holds data to build its neighbour graph from: a "
                             "KNNCDC, a LearnedCDC whose model stores at least 2 landmarks or built with "
                             f"data=points, or a VAEPullbackMetric built with codes=; this {type(field).__name__} "
                             "holds none: give it data, or use init='landing' or 'linear'")
        path, joined = graph_paths(holder, x0, x1, n)
        if not bool(joined.all()):  # ends in different components of the data graph: the straight line
            cut = (~joined).nonzero().flatten().tolist()
            name = "linear" if not bool(joined.any()) else name
            warn_user(f"geodesic: the data graph does not join the ends of {len(cut)} of {len(joined)} pair(s) "
                      f"{cut[:10]}: they lie in different connected components of its k-NN graph, separated "
                      f"by a gap wider than {GRAPH_BRIDGE:g} times the data's median neighbour distance "
                      "(separate clusters, data this sparse between them, or coordinates that wrap around "
                      "(angles: give them as (cos, sin), README 'Your data's coordinates')), and start from the "
                      "straight line through the empty space between them, where the field carries no "
                      "information: the result is no path along the data", DisconnectedDataWarning)
        return path, name
    if name == "landing":
        if not field.can_project:
            raise ValueError(f"init='landing' needs a field with a landing projection; {type(field).__name__} "
                             "has none")
        return landing_path(field, x0, x1, n), name
    return lerp(x0, x1, n), name
