"""The ``"graph"`` start of the geodesic solver (SPEC §6; `geodesic_init`): the shortest path from ``x0`` to ``x1``
through the symmetrised k-nearest-neighbour graph of a field's data (Euclidean edge lengths, Dijkstra), its
sampling gaps linked and its separate components bridged where they are close, resampled to equal Euclidean
spacing (`resample`).
"""

from __future__ import annotations

import heapq
import math

import numpy as np
import torch
from torch import Tensor

from .evaluation import lerp
from .metrics.base import CoMetricField
from .metrics.nearest import nearest_rows

__all__ = ["GAP_FACING", "GAP_ONE_SIDED", "GRAPH_BRIDGE", "GRAPH_NEIGHBOURS", "graph_path", "graph_paths",
           "resample"]

GRAPH_NEIGHBOURS = 10
"""Neighbours per data point in the graph of ``init="graph"`` (the graph is then symmetrised)."""

GRAPH_BRIDGE = 4.0
"""Components of that graph are joined by their shortest link where it is at most this many times the median
distance of the graph points' ``k``-th neighbours (`_bridges`). A 10-NN graph of 1,600 uniform samples of
``[0, 1]`` (±5 neighbours) was cut by gaps of 12–22 spacings in 5 of 20 samples, though those are ≤ 3.1 times
the median 10th-neighbour distance: a sparse stretch of a connected line, not separate clusters."""

GAP_ONE_SIDED = 0.3
"""A graph point whose ``k`` neighbours' centroid lies farther from it than this share of its ``k``-th neighbour
distance has its neighbours on one side: it sits at the end of a sampling gap, or at a true boundary
(`_gap_links`)."""

GAP_FACING = 0.7
"""Two such points are linked across the gap only where each lies within about 45° (cosine ≥ this) of the other's
outward direction (away from its neighbours), so edges of neighbouring sheets (a rolled sheet's layers), which lie
beside each other, are not linked."""


def resample(path: Tensor, n_points: int) -> Tensor:
    """Resample polylines to ``n_points`` points equally spaced in Euclidean arc length, ends kept exactly.

    Args:
        path: ``(B, T, D)``, ``T ≥ 2``.
        n_points: ``≥ 2``.

    Returns:
        ``(B, n_points, D)``; a path of zero length becomes ``n_points`` copies of its start.
    """
    b, t, d = path.shape
    seg = (path[:, 1:] - path[:, :-1]).norm(dim=-1)  # (B, T−1)
    cum = torch.cat([seg.new_zeros(b, 1), seg.cumsum(-1)], dim=-1)  # (B, T)
    total = cum[:, -1:]
    s = torch.linspace(0.0, 1.0, n_points, dtype=path.dtype, device=path.device).unsqueeze(0) * total
    j = torch.searchsorted(cum.contiguous(), s.contiguous(), right=True).clamp(1, t - 1)  # segment j−1 → j
    lo, hi = cum.gather(1, j - 1), cum.gather(1, j)
    frac = ((s - lo) / (hi - lo).clamp_min(torch.finfo(path.dtype).tiny)).clamp(0, 1).unsqueeze(-1)
    p0 = path.gather(1, (j - 1).unsqueeze(-1).expand(-1, -1, d))
    p1 = path.gather(1, j.unsqueeze(-1).expand(-1, -1, d))
    out = p0 + frac * (p1 - p0)
    out[:, 0], out[:, -1] = path[:, 0], path[:, -1]
    return out


def _dijkstra(indptr: np.ndarray, nbrs: np.ndarray, weights: np.ndarray, start: dict[int, float],
              goal: dict[int, float]) -> list[int] | None:
    """Shortest path in a CSR graph from a virtual source (``start``: node → cost to enter) to a virtual
    target (``goal``: node → cost to leave); relaxations of a node's edges are vectorised. ``None`` if the
    target cannot be reached."""
    n = indptr.shape[0] - 1
    dist = np.full(n, np.inf)
    prev = np.full(n, -1, dtype=np.int64)
    done = np.zeros(n, dtype=bool)
    heap = []
    for node, cost in start.items():
        if cost < dist[node]:
            dist[node] = cost
            heap.append((cost, node))
    heapq.heapify(heap)
    best, best_node = np.inf, -1
    while heap:
        du, u = heapq.heappop(heap)
        if done[u] or du > dist[u]:
            continue
        if du >= best:
            break
        done[u] = True
        if u in goal and du + goal[u] < best:
            best, best_node = du + goal[u], u
        lo, hi = indptr[u], indptr[u + 1]
        cand = du + weights[lo:hi]
        tgt = nbrs[lo:hi]
        better = cand < dist[tgt]
        for v, dv in zip(tgt[better].tolist(), cand[better].tolist(), strict=True):
            if dv < dist[v]:
                dist[v] = dv
                prev[v] = u
                heapq.heappush(heap, (dv, v))
    if best_node < 0:
        return None
    nodes = [best_node]
    while prev[nodes[-1]] >= 0:
        nodes.append(int(prev[nodes[-1]]))
    return nodes[::-1]


def graph_path(field: CoMetricField, x0: Tensor, x1: Tensor, n_points: int, *,
               neighbours: int = GRAPH_NEIGHBOURS) -> Tensor:
    """`graph_paths`' paths ``(B, n_points, D)`` alone (the straight line for pairs the graph does not join)."""
    return graph_paths(field, x0, x1, n_points, neighbours=neighbours)[0]


def graph_paths(field: CoMetricField, x0: Tensor, x1: Tensor, n_points: int, *,
                neighbours: int = GRAPH_NEIGHBOURS) -> tuple[Tensor, Tensor]:
    """Shortest path from ``x0`` to ``x1`` through the field's data (module doc), resampled to ``n_points``.

    The graph joins the field's `graph_rows` (all data points up to `KNNCDC.GRAPH_POINTS`, else a seeded
    subsample of that many, as a trained model's landmarks: the graph's search is quadratic in its points).
    ``x0`` and ``x1`` join the graph through their ``neighbours`` nearest graph points. A pair whose ends lie in
    different connected components of the graph gets the straight line, and ``False`` in ``joined``; components
    closer than `GRAPH_BRIDGE` times the median ``k``-th neighbour distance are first joined by their shortest
    link (`_bridges`: a gap in sparse data, e.g. a uniform sample of a line, does not cut it).

    Args:
        field: a field with ``data`` ``(N, D)``, ``graph_rows() -> (M,)`` and ``neighbour_graph(k) -> (idx, dist)``
            over those rows (`KNNCDC`).
        x0, x1: ``(B, D)``, the data's device.
        n_points: points of the result, both ends included.

    Returns:
        ``(paths, joined)``: ``(B, n_points, D)``, ends exactly ``x0`` and ``x1``, and ``(B,)`` bool, whether the
        graph joins the pair's ends (``False``: the straight line).
    """
    data = field.data
    points = data[field.graph_rows()]  # (M, D)
    n = points.shape[0]
    k = min(neighbours, n - 1)
    joined = torch.ones(x0.shape[0], dtype=torch.bool, device=x0.device)
    if k < 1:
        return lerp(x0, x1, n_points), ~joined
    idx, dist = field.neighbour_graph(k)  # cached by the field: the same tensors while its data stay the same
    cached = field.__dict__.get("_graph_csr")
    if cached is None or cached[0] is not dist:  # components and bridges once per graph (O(M² D) per bridging round)
        cached = field.__dict__["_graph_csr"] = (dist, _graph_csr(points, idx, dist))
    indptr, cols, w = cached[1]
    with torch.no_grad():
        ends = torch.cat([x0, x1])
        _, near = nearest_rows(ends.to(data.dtype), points, k)  # (2B, k); float32 data under float64 ends
        cost = (points[near].double() - ends.double().unsqueeze(1)).norm(dim=-1).cpu().numpy()
    near = near.cpu().numpy()
    b = x0.shape[0]
    paths = []
    for i in range(b):
        start = dict(zip(near[i].tolist(), cost[i].tolist(), strict=True))
        goal = dict(zip(near[b + i].tolist(), cost[b + i].tolist(), strict=True))
        nodes = _dijkstra(indptr, cols, w, start, goal)
        if nodes is None:
            paths.append(lerp(x0[i : i + 1], x1[i : i + 1], n_points)[0])
            joined[i] = False
            continue
        poly = torch.cat([x0[i : i + 1], points[torch.as_tensor(nodes, device=data.device)].to(x0), x1[i : i + 1]])
        paths.append(resample(poly.unsqueeze(0), n_points)[0])
    return torch.stack(paths), joined


def _graph_csr(points: Tensor, idx: Tensor, dist: Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The symmetrised k-NN graph ``(idx, dist)`` ``(M, k)`` on ``points`` ``(M, D)``, its sampling gaps linked
    (`_gap_links`) and its components bridged (`_bridges`), as CSR arrays ``(indptr (M + 1,), cols, weights)``
    for `_dijkstra`."""
    n = points.shape[0]
    src = torch.arange(n, device=idx.device).unsqueeze(1).expand_as(idx)
    ok = torch.isfinite(dist)
    rows = torch.cat([src[ok], idx[ok]]).cpu().numpy()  # both directions: the symmetrised graph
    cols = torch.cat([idx[ok], src[ok]]).cpu().numpy()
    w = torch.cat([dist[ok], dist[ok]]).double().cpu().numpy()
    finite = dist[:, -1][torch.isfinite(dist[:, -1])]
    scale = GRAPH_BRIDGE * float(finite.median()) if finite.numel() else 0.0
    gaps = _gap_links(points, idx, dist, scale)
    if gaps:  # both directions, as the k-NN edges
        a, c, length = (np.asarray(v) for v in zip(*gaps, strict=True))
        rows, cols, w = np.concatenate([rows, a, c]), np.concatenate([cols, c, a]), np.concatenate([w, length, length])
    links = _bridges(points, _components(n, rows, cols), scale)
    if links:  # both directions, as the k-NN edges
        a, c, length = (np.asarray(v) for v in zip(*links, strict=True))
        rows, cols, w = np.concatenate([rows, a, c]), np.concatenate([cols, c, a]), np.concatenate([w, length, length])
    order = np.argsort(rows, kind="stable")
    rows, cols, w = rows[order], cols[order], w[order]
    return np.searchsorted(rows, np.arange(n + 1)), cols, w


def _gap_links(points: Tensor, idx: Tensor, dist: Tensor, scale: float,
               chunk: int = 512) -> list[tuple[int, int, float]]:
    """Links ``(i, j, length)`` across sampling gaps inside one component of the k-NN graph ``(idx, dist)``
    ``(M, k)`` on ``points`` ``(M, D)``: between one-sided points (`GAP_ONE_SIDED`) that face each other
    (`GAP_FACING`) at most ``scale`` apart. `_bridges` joins components across such gaps; inside one component the
    graph went round instead: 1,600 uniform points on a circle had a gap of 0.039 (10th-neighbour distances about
    0.02), and the shortest graph path between points 1.11 apart on the short side ran 5.17 the long way round, from
    which the geodesic solver converged to the long arc (tester E, twenty-ninth session). ``O(b² D + M k D)`` time
    and ``O(chunk · b)`` memory for ``b`` one-sided points; float64 about the points' mean."""
    centred = points.double() - points.double().mean(0)
    ok = torch.isfinite(dist)
    if scale <= 0 or not bool(ok.any()):
        return []
    weights = ok.double()
    centroid = torch.zeros_like(centred)
    for j in range(idx.shape[1]):  # (M, D) at a time, not (M, k, D)
        centroid += centred[idx[:, j]] * weights[:, j : j + 1]
    centroid /= weights.sum(1, keepdim=True).clamp_min(1.0)
    out = centred - centroid  # (M, D): away from the neighbours
    reach = torch.where(ok, dist, torch.zeros_like(dist)).amax(1).double()
    one_sided = (out.norm(dim=-1) > GAP_ONE_SIDED * reach) & (reach > 0)
    cand = one_sided.nonzero().squeeze(-1)
    if cand.numel() < 2 or cand.numel() > points.shape[0] // 2:
        # in high dimensions every point's neighbours lie to one side (digits, S⁸ in R⁹, noise in R⁶⁴: 93-100% of
        # the points, and no facing pair), so no gap can be told there; a curve or sheet has 14-24%
        return []
    p, o = centred[cand], out[cand] / out[cand].norm(dim=-1, keepdim=True)
    po = (o * p).sum(-1)
    cand_np, links = cand.cpu().numpy(), []
    for lo in range(0, p.shape[0], chunk):  # (chunk, b) at a time: high-D data make every point one-sided
        d = torch.cdist(p[lo : lo + chunk], p).clamp_min(torch.finfo(p.dtype).tiny)
        ahead = (o[lo : lo + chunk] @ p.T - po[lo : lo + chunk, None]) / d  # cos of p_j − p_i against o_i
        behind = (p[lo : lo + chunk] @ o.T - po[None, :]) / d  # cos of p_i − p_j against o_j
        cols = torch.arange(p.shape[0], device=p.device)
        upper = cols[None, :] > (lo + torch.arange(d.shape[0], device=p.device))[:, None]
        keep = (upper & (ahead >= GAP_FACING) & (behind >= GAP_FACING) & (d <= scale)).nonzero()
        links += [(int(cand_np[lo + i]), int(cand_np[j]), float(d[i, j])) for i, j in keep.cpu().numpy().tolist()]
    return links


def _components(n: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``(n,)`` connected-component labels (the smallest node of each) of the graph with edges ``rows → cols``."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]  # path halving
            i = parent[i]
        return i

    for a, b in zip(rows.tolist(), cols.tolist(), strict=True):
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.asarray([root(i) for i in range(n)])


def _bridges(points: Tensor, labels: np.ndarray, scale: float, chunk: int = 256) -> list[tuple[int, int, float]]:
    """Links ``(i, j, length)`` that join the components ``labels`` ``(M,)`` of a graph on ``points`` ``(M, D)``
    wherever the shortest link between two of them is at most ``scale`` (Borůvka rounds: each component's shortest
    link to any other, kept if short enough, until none is). Distances in float64 about the points' mean (float32
    data far from the origin), ``chunk`` rows at a time; ``O(M² D)`` per round, only for a disconnected graph."""
    links: list[tuple[int, int, float]] = []
    labels = labels.copy()
    if len(np.unique(labels)) < 2 or scale <= 0:
        return links
    centred = points.double() - points.double().mean(0)
    while True:
        lab = torch.as_tensor(labels, device=points.device)
        best = centred.new_full((len(labels),), math.inf)
        to = torch.zeros(len(labels), dtype=torch.long, device=points.device)
        for lo in range(0, len(labels), chunk):
            d = torch.cdist(centred[lo : lo + chunk], centred)
            d[lab[lo : lo + chunk, None] == lab[None, :]] = math.inf
            best[lo : lo + chunk], to[lo : lo + chunk] = d.min(1)
        best_np, to_np = best.cpu().numpy(), to.cpu().numpy()
        joined = False
        for comp in np.unique(labels):
            members = np.flatnonzero(labels == comp)
            if members.size == 0:  # merged into another component this round
                continue
            i = int(members[np.argmin(best_np[members])])
            j = int(to_np[i])
            if best_np[i] <= scale and labels[i] != labels[j]:
                links.append((i, j, float(best_np[i])))
                labels[labels == labels[j]] = labels[i]
                joined = True
        if not joined or len(np.unique(labels)) < 2:
            return links
