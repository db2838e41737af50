"""Exact nearest neighbours by chunked brute force (`nearest_rows`), for `KNNCDC`, its graph and
`learned_manifold.evaluation.nearest_distance`: memory bounded for millions of points, exact also where a
float32 ranking's rounding exceeds the gaps between neighbours (a dense sample along a curve)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["BLOCK_ELEMENTS", "CANDIDATE_MARGIN", "DEFAULT_CHUNK", "RERANK_ELEMENTS", "nearest_rows"]

DEFAULT_CHUNK = 65536
"""Data rows per distance block when ``chunk_size`` is ``None``."""

BLOCK_ELEMENTS = 2**24
"""Entries of one query-by-data distance block: ``max(1, BLOCK_ELEMENTS // chunk)`` query rows per block."""

CANDIDATE_MARGIN = 8
"""`nearest_rows`: candidates kept beyond the ``k`` asked for, then measured exactly."""

RERANK_ELEMENTS = 2**20
"""`nearest_rows`: numbers in one block of gathered candidates, or of data cast to float64 for the fallback."""


def _rank_eps(dtype: torch.dtype) -> float:
    """Relative rounding of the ranking's products in ``dtype`` (TF32/bf16 where float32 matmuls may use them)."""
    eps = torch.finfo(dtype).eps
    mode = torch.get_float32_matmul_precision()
    if dtype == torch.float32 and mode != "highest":
        eps = max(eps, 2.0**-10 if mode == "high" else 2.0**-7)
    return eps


def _candidates(q: Tensor, data: Tensor, c: Tensor, centred: Tensor | None, centred_sq: Tensor | None, rows: int,
                m: int) -> tuple[Tensor, Tensor, Tensor]:
    """The ``m`` least scores ``‖x − c‖² − 2 q·(x − c)`` over the data ``(b, m)`` ascending, their row indices
    ``(b, m)`` and the largest ``‖x − c‖²`` (0-dim), by blocks of ``rows`` rows: of ``centred`` (``data − c`` in
    ``q``'s dtype) where given, else of ``data`` centred on the fly."""
    best = q.new_full((q.shape[0], m), float("inf"))
    arg = torch.zeros(q.shape[0], m, dtype=torch.long, device=q.device)
    top = q.new_zeros(())
    for start in range(0, data.shape[0], rows):
        if centred is not None and centred_sq is not None:
            x, sq = centred[start : start + rows], centred_sq[start : start + rows]
        else:
            x = data[start : start + rows].to(device=q.device, dtype=q.dtype) - c
            sq = x.pow(2).sum(-1)
        d, i = torch.addmm(sq, q, x.T, alpha=-2.0).topk(min(m, x.shape[0]), dim=1, largest=False)
        best, pos = torch.cat([best, d], 1).topk(m, dim=1, largest=False)
        arg = torch.cat([arg, i + start], 1).gather(1, pos)
        top = torch.maximum(top, sq.max())
    return best, arg, top


def _rerank(y: Tensor, data: Tensor, cand: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` nearest of the candidates ``cand`` ``(b, m)`` by direct differences in float64: squared distances
    ``(b, k)`` ascending and data row indices ``(b, k)``, on ``y``'s device; equal distances in ascending row order
    (candidates sorted by row, then a stable sort by distance), whatever order the blocks gave the candidates."""
    step = max(1, RERANK_ELEMENTS // (cand.shape[1] * data.shape[1]))
    dist2, idx = [], []
    for s in range(0, cand.shape[0], step):
        c = cand[s : s + step].sort(dim=1).values
        points = data[c.to(data.device)].to(device=y.device, dtype=torch.float64)
        d, order = (points - y[s : s + step].double().unsqueeze(1)).pow(2).sum(-1).sort(dim=1, stable=True)
        dist2.append(d[:, :k])
        idx.append(c.gather(1, order[:, :k]))
    return torch.cat(dist2), torch.cat(idx)


def _keep_k(d: Tensor, i: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` smallest of ``d`` ``(b, m)`` per row with their ``i``, ties to the earlier column, ascending (a
    stable sort of the ``k`` kept): selection by the ``k``-th value, ``O(m)`` per row, not a sort of all ``m``."""
    if d.shape[1] <= k:
        return d, i
    t = d.kthvalue(k, dim=1, keepdim=True).values
    below, tied = d < t, d == t
    room = k - below.sum(1, keepdim=True)
    keep = below | (tied & (tied.cumsum(1) <= room))  # exactly k per row, the earlier columns among the ties
    cols = keep.nonzero()[:, 1].view(d.shape[0], k)  # in column order
    d, i = d.gather(1, cols), i.gather(1, cols)
    d, order = d.sort(dim=1, stable=True)
    return d, i.gather(1, order)


def _exact(y: Tensor, data: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` nearest rows for each query of ``y`` ``(b, D)`` by direct differences in float64 over all the data,
    in blocks of queries by rows taken in row order: squared distances ``(b, k)`` ascending (equal ones in
    ascending row order: the best so far, all of lower rows, come before each block and `_keep_k` keeps the earlier
    of equal ones) and row indices ``(b, k)``, on ``y``'s device. Costs ``O(N D)`` per query: only for the queries
    whose ties run past the candidates (`nearest_rows`)."""
    n = data.shape[0]
    queries = max(1, min(y.shape[0], 256))
    rows = max(k, RERANK_ELEMENTS // queries)
    dist2, idx = [], []
    for q in y.double().split(queries):
        best_d = q.new_empty(q.shape[0], 0)
        best_i = torch.empty(q.shape[0], 0, dtype=torch.long, device=y.device)
        for start in range(0, n, rows):
            x = data[start : start + rows].to(device=y.device, dtype=torch.float64)
            block = torch.cdist(q, x, compute_mode="donot_use_mm_for_euclid_dist")  # direct differences
            here = torch.arange(start, start + x.shape[0], device=y.device).expand(q.shape[0], -1)
            best_d, best_i = _keep_k(torch.cat([best_d, block], 1), torch.cat([best_i, here], 1), k)
        points = data[best_i.to(data.device)].to(device=y.device, dtype=torch.float64)
        dist2.append((points - q.unsqueeze(1)).pow(2).sum(-1))  # squared, measured afresh: ascending as best_d
        idx.append(best_i)
    return torch.cat(dist2), torch.cat(idx)


def nearest_rows(y: Tensor, data: Tensor, k: int, *, centre: Tensor | None = None, centred: Tensor | None = None,
                 centred_sq: Tensor | None = None, data_rows: int = DEFAULT_CHUNK,
                 query_rows: int | None = None) -> tuple[Tensor, Tensor]:
    """Exact ``k`` nearest rows of ``data`` for each query (chunked brute force): squared distances ``(B, k)``
    (float64, ascending) and row indices ``(B, k)``, on ``y``'s device.

    Blocks of ``query_rows`` queries by ``data_rows`` rows are ranked by ``‖x − c‖² − 2 (q − c)·(x − c)`` (one
    ``addmm`` in ``y``'s dtype, ``c`` = ``centre``). Its rounding is at most ``b = (D + 4) ε (max‖x − c‖² +
    ‖q − c‖²)``, which in float32 exceeds the gaps between neighbours of a dense sample (a float32 circle of 10⁶
    points: 10% of the neighbours were right). So ``k + CANDIDATE_MARGIN`` candidates are kept and measured by
    direct differences in float64; a query whose last candidate's score is within ``2b`` of its ``k``-th (a point
    outside the candidates might be nearer) is searched again with the ranking in float64, and only those; one
    still unsure there (exact ties past the margin: integer data, a grid) is measured against every row (`_exact`).

    Ties: among equal distances the lower row index comes first and is kept at the ``k``-th place. Once a query is
    sure, every row as near as its ``k``-th candidate is a candidate, so the answer does not depend on how the data
    and the queries are cut into blocks (``data_rows``, ``query_rows``, the other queries of the batch).

    Args:
        y: ``(B, D)`` queries, in the dtype the ranking runs in.
        data: ``(N, D)`` rows, on any device and in any floating dtype (moved and cast block by block).
        k: neighbours, at most ``N`` used.
        centre: ``(D,)`` ``c`` (default: the data's mean).
        centred, centred_sq: ``data − c`` in ``y``'s dtype and device and its squared row norms, where the
            caller holds them (`KNNCDC`); otherwise blocks are centred on the fly.
        data_rows, query_rows: block sizes (default ``query_rows``: ``BLOCK_ELEMENTS // data_rows``).
    """
    n, dim = data.shape
    k = min(k, n)
    m = min(n, k + CANDIDATE_MARGIN)
    centre = data.mean(0) if centre is None else centre
    dist2 = torch.empty(y.shape[0], k, dtype=torch.float64, device=y.device)
    idx = torch.empty(y.shape[0], k, dtype=torch.long, device=y.device)
    todo = torch.arange(y.shape[0], device=y.device)
    for dtype in dict.fromkeys((y.dtype, torch.float64)):  # float64 only for the queries float32 left unsure
        if todo.numel() == 0:
            break
        c = centre.to(device=y.device, dtype=dtype)
        given = centred is not None and centred.dtype == dtype
        rows = query_rows if query_rows is not None else max(1, BLOCK_ELEMENTS // data_rows)
        if dtype != y.dtype:  # data cast block by block (RERANK_ELEMENTS numbers), float64 blocks of the same bytes
            data_rows = max(1, min(data_rows, RERANK_ELEMENTS // dim))
            rows = max(1, BLOCK_ELEMENTS * torch.finfo(y.dtype).bits // 64 // data_rows)
        unsure = []
        for sel in todo.split(rows):
            q = y[sel].to(dtype) - c
            scores, cand, top = _candidates(q, data, c, centred if given else None, centred_sq, data_rows, m)
            bound = (dim + 4) * _rank_eps(dtype) * (top + q.pow(2).sum(-1))
            sure = (scores[:, -1] > scores[:, k - 1] + 2 * bound) | ~torch.isfinite(q).all(-1) | (m == n)
            dist2[sel], idx[sel] = _rerank(y[sel], data, cand, k)
            unsure.append(sel[~sure])
        todo = torch.cat(unsure)
    if todo.numel():  # ties past the candidates, also in float64: every row measured
        dist2[todo], idx[todo] = _exact(y[todo], data, k)
    return dist2, idx
