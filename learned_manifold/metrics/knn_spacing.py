"""The spacing of a k-NN field's data and its neighbour graph (`KNNCDC._spacing`, `KNNCDC.neighbour_graph`): how
far apart the data points lie, which decides where a point is off the data (`KNNCDC.far_distance`, SPEC §6
landing), and the graph of nearest neighbours that geodesics start on. Split from ``knn.py``; plain functions of
the field.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .nearest import nearest_rows

if TYPE_CHECKING:
    from .knn import KNNCDC

__all__: list[str] = []


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
        dist2, idx = nearest_rows(points, points, k + 1, centre=field.origin)
    dist = dist2.sqrt().to(field.data.dtype)
    dist = dist.masked_fill(idx == torch.arange(m, device=idx.device).unsqueeze(1), float("inf"))
    dist, order = dist.sort(dim=-1, stable=True)  # the self-match dropped wherever it sits
    idx = idx.gather(1, order)
    return idx[:, :k].contiguous(), dist[:, :k].contiguous()
