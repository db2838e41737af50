"""The spacing of a k-NN field's data and its neighbour graph (`KNNCDC.median_spacing`, `KNNCDC.neighbour_graph`): how
far apart the data points lie, which decides where a point is off the data (`KNNCDC.far_distance`, SPEC §6
landing), and the graph of nearest neighbours that geodesics start on. Split from ``knn.py``; plain functions of
the field.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..checks import check_int
from ..user_warnings import warn_user
from .nearest import nearest_rows

if TYPE_CHECKING:
    from .knn import KNNCDC

__all__ = ["GRAPH_FLOOR", "GRAPH_NUMBERS", "GRAPH_POINTS", "LANDMARK_FLOOR", "graph_point_count"]

GRAPH_POINTS = 4096
"""A neighbour graph joins (and a trained model stores as landmarks) at most this many data points."""

GRAPH_NUMBERS = 2**21
"""... and at most this many numbers ``M · D`` (8 MB in float32), down to `GRAPH_FLOOR` points."""

GRAPH_FLOOR = 256
"""... but a k-NN field's graph never fewer than this many points (the whole data where they hold fewer): its rows
are the field's own data, held in memory anyway."""

LANDMARK_FLOOR = 2
"""A trained model's default landmarks: never fewer than this many (one point makes no graph) where the data hold
two, so the 8 MB of `GRAPH_NUMBERS` stay the file's budget (10 points at 256²×3), up to `MAX_LANDMARK_NUMBERS`."""


def graph_point_count(n: int, D: int, *, floor: int = GRAPH_FLOOR, max_numbers: int | None = None) -> int:
    """The number of data points a neighbour graph joins: ``min(n, max(floor, min(GRAPH_POINTS, GRAPH_NUMBERS //
    D)))``, cut to ``max_numbers // D`` points where given, and never 1 where ``n ≥ 2`` (a graph of one point has
    no edges: 0 then). One rule with two floors: a k-NN field's graph (`KNNCDC.graph_rows`, `GRAPH_FLOOR`) and a
    trained model's default landmarks (``training.config.TrainConfig.landmark_count``: `LANDMARK_FLOOR`, at most
    `MAX_LANDMARK_NUMBERS` numbers), which agree up to ``D = GRAPH_NUMBERS / GRAPH_FLOOR`` (8,192); beyond, the
    file keeps its 8 MB budget and the in-memory graph its floor.

    Args:
        n: the data points there are, ``n ≥ 1``.
        D: their dimension, ``D ≥ 1``.
        floor: the fewest points (``≥ 2``) while ``n`` allows.
        max_numbers: at most this many numbers ``count · D`` (None: no cap).
    """
    n, D = check_int(n, "n", 1, 2**63), check_int(D, "D", 1, 2**63)
    floor = check_int(floor, "floor", 2, 2**63)
    count = min(n, max(floor, min(GRAPH_POINTS, GRAPH_NUMBERS // D)))
    if max_numbers is not None:
        count = min(count, max_numbers // D)
    return count if count >= 2 or n == 1 else 0


@torch.no_grad()
def spacing_statistics(field: KNNCDC) -> tuple[float, float, float]:
    """``(median, far, q99)`` of the distances from a data point to its nearest data point of another value, over a
    seeded sample of at most `KNNCDC.SPACING_SAMPLE` rows of ``field.data`` ``(N, D)``: their median, the
    off-data distance ``far = max(FAR_SPACINGS · median, FAR_QUANTILE_FACTOR · q99)`` (`KNNCDC.far_distance`),
    and their 99th percentile; all ``inf`` when the data hold fewer than two distinct points. Not read off the
    neighbour graph: that keeps one ``k`` at a time (the geodesic start asks for 10) and searches from every data
    row. Copies of a row are skipped (`distinct_spacings`): data stored twice had no spacing left, and
    ``far = inf`` switched every off-data check off."""
    n = field.data.shape[0]
    rows = torch.randperm(n, generator=torch.Generator().manual_seed(0))[: field.SPACING_SAMPLE]
    dist = distinct_spacings(field, rows.to(field.data.device))
    if not dist.numel():
        return float("inf"), float("inf"), float("inf")
    median, q99 = float(dist.median()), float(dist.double().quantile(0.99))
    return median, max(field.FAR_SPACINGS * median, field.FAR_QUANTILE_FACTOR * q99), q99


@torch.no_grad()
def distinct_spacings(field: KNNCDC, rows: Tensor) -> Tensor:
    """``(m,)``: for the data ``rows`` ``(M,)``, the distance to the nearest data row of another value, where one
    exists (``m ≤ M``). Searches 2 neighbours, then 8 times more for the rows whose neighbours were all copies of
    them (at distance 0), up to all ``N`` rows."""
    n, k, found = field.data.shape[0], 2, []
    while rows.numel() and k <= 8 * n:
        dist2, _ = field._nearest(field.data[rows], min(k, n))
        dist = dist2.sqrt().masked_fill(dist2 <= 0, float("inf")).min(-1).values  # copies, itself among them
        found.append(dist[torch.isfinite(dist)])
        rows = rows[~torch.isfinite(dist)] if k < n else rows[:0]
        k *= 8
    return torch.cat(found) if found else field.data.new_zeros(0)


@torch.no_grad()
def graph_of_rows(field: KNNCDC, rows: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k``-nearest-neighbour graph (self excluded) of the data rows ``rows`` ``(M,)``: ``(idx, dist)``, each
    ``(M, k)``, neighbour positions in ``rows`` and Euclidean distances, ascending (``inf`` where a point has fewer
    than ``k`` distinct neighbours). All rows (``M = N``) are searched through the field's index."""
    m = rows.shape[0]
    if m == field.data.shape[0]:
        dist2, idx = field._nearest(field.data, k + 1)  # (M, k + 1), self usually first
    else:
        points = field.data[rows]
        dist2, idx = nearest_rows(field._ranked(points), points, k + 1, centre=field.origin)
    dist = dist2.sqrt().to(field.data.dtype)
    dist = dist.masked_fill(idx == torch.arange(m, device=idx.device).unsqueeze(1), float("inf"))
    dist, order = dist.sort(dim=-1, stable=True)  # the self-match dropped wherever it sits
    idx = idx.gather(1, order)
    return idx[:, :k].contiguous(), dist[:, :k].contiguous()


def graph_rows(field: KNNCDC) -> Tensor:
    """`KNNCDC.graph_rows`: the data rows ``(M,)`` the neighbour graph joins, ascending: all ``N`` rows where
    `graph_point_count` gives ``N``, else its first ``M`` of a permutation seeded with 0 (as the trainer picks
    landmarks)."""
    n = field.data.shape[0]
    m = graph_point_count(n, field.dim)
    if m == n:
        return torch.arange(n, device=field.data.device)
    pick = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:m]
    return pick.sort().values.to(field.data.device)


def cached_spacing(field: KNNCDC) -> tuple[float, float, float]:
    """`spacing_statistics` of the field, computed once per state of its data (the cache `KNNCDC._index` drops)."""
    field._fresh()
    if "_spacing_cache" not in field.__dict__:
        field.__dict__["_spacing_cache"] = spacing_statistics(field)  # the typical spacing, far distance, q99
    return field.__dict__["_spacing_cache"]


def cached_graph(field: KNNCDC, rows: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """`KNNCDC.neighbour_graph`'s body: the graph of its `graph_rows` ``rows`` ``(M,)`` for a checked ``k``, one ``k``
    cached at a time (dropped by `KNNCDC._index` when the data change).

    The caller gets copies ``(idx, dist)``, never the cache: the same copies while they still equal it (so a reader
    may key on their identity, as the geodesic start's graph does, `geodesic_graph.graph_paths`), fresh ones once
    they were edited (by any route: a torch in-place op, a NumPy view), so what a caller does with a returned
    tensor never changes a later answer (a caller's ``dist.mul_(1000)`` came back from the next call). Costs one
    comparison of ``M·k`` numbers per call."""
    cache = field.__dict__.setdefault("_graph_cache", {})
    key = (k, field.data.dtype, field.data.device)
    if key not in cache:
        graph = graph_of_rows(field, rows, k)
        cache.clear()  # one graph at a time: it is M·k indices
        cache[key] = (graph, None)
    graph, given = cache[key]
    if given is None or not all(torch.equal(a, b) for a, b in zip(given, graph, strict=True)):
        given = (graph[0].clone(), graph[1].clone())
        cache[key] = (graph, given)
    return given


def warn_if_copies(field: KNNCDC, vanish: Tensor, idx: Tensor) -> None:
    """Warn (`warn_user`) where a centred field vanishes (``G = 0``) at queried points because their ``k`` nearest
    neighbours are all copies of one data row: ``vanish`` ``(B,)`` marks those points, ``idx`` ``(B, k)`` their
    neighbours' data rows. Data saved with rows repeated at least ``k`` times read dimension 0 there and an
    optimiser never moves (tester D s34 3); the warning names the repeated rows. Called only where ``vanish``
    has a point set (`KNNCDC.factor` reads that in its finiteness check's sync)."""
    rows = idx[vanish, 0].unique().tolist()
    named = ", ".join(str(r) for r in rows[:5]) + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")
    warn_user(f"KNNCDC: G = 0 at {int(vanish.sum())} of {vanish.shape[0]} point(s): all their k = {field.k} nearest "
              f"neighbours are copies of one data row (rows {named}, each repeated at least k times in the data), "
              "so no direction is left there (dimension 0; optimisers do not move); drop the duplicated rows "
              "(e.g. data.unique(dim=0)) or use a larger k", RuntimeWarning)
