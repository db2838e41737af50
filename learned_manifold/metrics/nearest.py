"""Exact nearest neighbours by chunked brute force (`nearest_rows`, `nearest_set`), for `KNNCDC`, its graph and
`learned_manifold.evaluation.nearest_distance`: memory bounded for millions of points, exact also where a
float32 ranking's rounding exceeds the gaps between neighbours (a dense sample along a curve)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["BLOCK_ELEMENTS", "CANDIDATE_MARGIN", "DEFAULT_CHUNK", "FIRST_MARGIN", "RERANK_ELEMENTS", "by_distance",
           "nearest_rows", "nearest_set"]

DEFAULT_CHUNK = 65536
"""Data rows per distance block when ``chunk_size`` is ``None``."""

BLOCK_ELEMENTS = 2**24
"""Entries of one query-by-data distance block: ``max(1, BLOCK_ELEMENTS // chunk)`` query rows per block."""

FIRST_MARGIN = 2
"""`nearest_set`'s first pass: candidates kept beyond the ``k`` asked for (measured in float64 only for the queries
whose ``k``-th and ``(k + 1)``-th scores lie within the ranking's rounding of each other)."""

CANDIDATE_MARGIN = 8
"""`nearest_set`: candidates kept beyond the ``k`` asked for, then measured exactly, for the queries that the first
pass's ``FIRST_MARGIN`` candidates left unsure (a point outside them might be nearer)."""

RERANK_ELEMENTS = 2**20
"""`nearest_rows`: numbers in one block of gathered candidates, or of data cast to float64 for the fallback."""


def _rank_eps(dtype: torch.dtype) -> float:
    """Relative rounding of the ranking's products in ``dtype`` (TF32/bf16 where float32 matmuls may use them)."""
    eps = torch.finfo(dtype).eps
    mode = torch.get_float32_matmul_precision()
    if dtype == torch.float32 and mode != "highest":
        eps = max(eps, 2.0**-10 if mode == "high" else 2.0**-7)
    return eps


def _rank_gap(q: Tensor, top: Tensor) -> Tensor:
    """``(b,)``: ``2b``, ``b = (D + 4) ε (max‖x − c‖² + ‖q − c‖²)`` bounding the rounding of `_candidates`' scores
    for the centred queries ``q`` ``(b, D)`` (``top``: the largest ``‖x − c‖²``, 0-dim; ``ε``: `_rank_eps` of
    ``q``'s dtype). Two scores more than ``2b`` apart are in the order of the true distances."""
    return torch.linalg.vecdot(q, q).add_(top).mul_(2 * (q.shape[1] + 4) * _rank_eps(q.dtype))


def _candidates(q: Tensor, data: Tensor, c: Tensor, centred: Tensor | None, centred_sq: Tensor | None, rows: int,
                m: int) -> tuple[Tensor, Tensor, Tensor]:
    """The ``m`` least scores ``‖x − c‖² − 2 q·(x − c)`` over the data ``(b, m)`` ascending, their row indices
    ``(b, m)`` and the largest ``‖x − c‖²`` (0-dim), by blocks of ``rows`` rows: of ``centred`` (``data − c`` in
    ``q``'s dtype) where given, else of ``data`` centred on the fly. The first block's are kept as they come (no
    merge: data in one block cost one ``addmm`` and one ``topk``). ``c`` is in ``q``'s dtype; data in a wider dtype
    are centred in it on that same ``c`` and cast after, so the rounding is relative to ``‖x − c‖``."""
    wide = torch.promote_types(data.dtype, q.dtype)

    def block(start: int) -> tuple[Tensor, Tensor, Tensor]:
        if centred is not None and centred_sq is not None:
            x, sq = centred[start : start + rows], centred_sq[start : start + rows]
        else:  # centred in the wider dtype, then cast: float64 data far from the origin cast first lost more
            # than the rounding bound covers (tester R of the tenth round: 115 of 2,000 float32 queries wrong at 1e4)
            x = (data[start : start + rows].to(device=q.device, dtype=wide) - c.to(wide)).to(q.dtype)
            sq = x.pow(2).sum(-1)
        d, i = torch.addmm(sq, q, x.T, alpha=-2.0).topk(min(m, x.shape[0]), dim=1, largest=False)
        return d, i + start if start else i, sq.max()

    best, arg, top = block(0)
    for start in range(rows, data.shape[0], rows):
        d, i, t = block(start)
        best, pos = torch.cat([best, d], 1).topk(min(m, best.shape[1] + d.shape[1]), dim=1, largest=False)
        arg = torch.cat([arg, i], 1).gather(1, pos)
        top = torch.maximum(top, t)
    return best, arg, top


def by_distance(dist2: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
    """``dist2`` ``(b, j)`` sorted along each row and the order ``(b, j)`` that sorts it, equal distances in
    ascending order of their row indices ``idx`` ``(b, j)``: one sort, and two more (of the rows, then a stable one
    of the distances) only where a row holds equal distances (integer data, copies of a point). Differentiable in
    ``dist2`` (``torch.sort``'s values)."""
    d, order = dist2.sort(dim=1)
    if d.shape[1] > 1 and bool((d[:, 1:] == d[:, :-1]).any()):
        by_row = idx.sort(dim=1).indices
        d, order = dist2.gather(1, by_row).sort(dim=1, stable=True)
        order = by_row.gather(1, order)
    return d, order


def _distances(y: Tensor, data: Tensor, idx: Tensor) -> Tensor:
    """Squared distances ``(b, j)`` in float64 from the queries ``y`` ``(b, D)`` to their data rows ``idx``
    ``(b, j)``, by direct differences, in the order of ``idx``, on ``y``'s device. Blocks of `RERANK_ELEMENTS`
    gathered numbers."""
    step = max(1, RERANK_ELEMENTS // max(1, idx.shape[1] * data.shape[1]))
    dist2 = []
    for s in range(0, idx.shape[0], step):
        points = data[idx[s : s + step].to(data.device)].to(device=y.device, dtype=torch.float64)
        dist2.append((points - y[s : s + step].double().unsqueeze(1)).pow(2).sum(-1))
    return torch.cat(dist2) if dist2 else torch.empty(idx.shape, dtype=torch.float64, device=y.device)


def _measured(y: Tensor, data: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
    """Squared distances ``(b, j)`` from the queries ``y`` ``(b, D)`` to their data rows ``idx`` ``(b, j)`` by
    direct differences in float64 (`_distances`), ascending, and the row indices in that order (equal distances:
    the lower row first, `by_distance`: one test for ties, over all the queries at once)."""
    d, order = by_distance(_distances(y, data, idx), idx)
    return d, idx.gather(1, order)


def _rerank(y: Tensor, data: Tensor, cand: Tensor, k: int) -> Tensor:
    """Row indices ``(b, k)`` of the ``k`` nearest of the candidates ``cand`` ``(b, m)``, measured by direct
    differences in float64 (`_distances`); among equal distances the lower rows, whatever order the blocks gave the
    candidates: the candidates sorted by row, then a stable sort of their distances. Two small sorts and no host
    sync (`by_distance` tests for ties with one; its callers order the ``k`` kept with it once, after)."""
    by_row = cand.sort(dim=1).values
    order = _distances(y, data, by_row).sort(dim=1, stable=True).indices[:, :k]
    return by_row.gather(1, order)


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


def _exact(y: Tensor, data: Tensor, k: int) -> Tensor:
    """Row indices ``(b, k)`` of the ``k`` nearest rows for each query of ``y`` ``(b, D)`` by direct differences in
    float64 over all the data, in blocks of queries by rows taken in row order, on ``y``'s device; among equal
    distances the lower rows (the best so far, all of lower rows, come before each block and `_keep_k` keeps the
    earlier of equal ones). Costs ``O(N D)`` per query: only for the queries whose ties run past the candidates
    (`_resolved`)."""
    n = data.shape[0]
    queries = max(1, min(y.shape[0], 256))
    rows = max(k, RERANK_ELEMENTS // queries)
    idx = []
    for q in y.double().split(queries):
        best_d = q.new_empty(q.shape[0], 0)
        best_i = torch.empty(q.shape[0], 0, dtype=torch.long, device=y.device)
        for start in range(0, n, rows):
            x = data[start : start + rows].to(device=y.device, dtype=torch.float64)
            block = torch.cdist(q, x, compute_mode="donot_use_mm_for_euclid_dist")  # direct differences
            here = torch.arange(start, start + x.shape[0], device=y.device).expand(q.shape[0], -1)
            best_d, best_i = _keep_k(torch.cat([best_d, block], 1), torch.cat([best_i, here], 1), k)
        idx.append(best_i)
    return torch.cat(idx)


def _resolved(y: Tensor, data: Tensor, k: int, centre: Tensor, centred: Tensor | None, centred_sq: Tensor | None,
              data_rows: int, query_rows: int | None, dtypes: tuple[torch.dtype, ...]) -> Tensor:
    """Row indices ``(b, k)`` of the exact ``k`` nearest rows for the queries ``y`` ``(b, D)`` that `nearest_set`'s
    first pass left unsure: ``k + CANDIDATE_MARGIN`` candidates ranked in each of ``dtypes`` in turn (float64: data
    cast block by block), measured in float64 (`_rerank`) where the last one's score exceeds the ``k``-th's by
    ``2b``, the others passed on; those still unsure after the last (exact ties past the margin: integer data, a
    grid) against every row (`_exact`). Arguments as `nearest_set`'s, ``k ≤ N``."""
    n, dim = data.shape
    m = min(n, k + CANDIDATE_MARGIN)
    idx = torch.empty(y.shape[0], k, dtype=torch.long, device=y.device)
    todo = torch.arange(y.shape[0], device=y.device)
    for dtype in dtypes:
        if todo.numel() == 0:
            break
        c = centre.to(device=y.device, dtype=dtype)
        given = centred if centred is not None and centred.dtype == dtype else None
        rows = query_rows if query_rows is not None else max(1, BLOCK_ELEMENTS // data_rows)
        if dtype != y.dtype:  # data cast block by block (RERANK_ELEMENTS numbers), float64 blocks of the same bytes
            data_rows = max(1, min(data_rows, RERANK_ELEMENTS // dim))
            rows = max(1, BLOCK_ELEMENTS * torch.finfo(y.dtype).bits // 64 // data_rows)
        unsure = []
        for sel in todo.split(rows):
            q = y[sel].to(dtype) - c
            scores, cand, top = _candidates(q, data, c, given, centred_sq, data_rows, m)
            sure = (scores[:, -1] - scores[:, k - 1] > _rank_gap(q, top)) | ~torch.isfinite(q).all(-1) | (m == n)
            idx[sel] = _rerank(y[sel], data, cand, k)
            unsure.append(sel[~sure])
        todo = torch.cat(unsure)
    if todo.numel():  # ties past the candidates, also in float64: every row measured
        idx[todo] = _exact(y[todo], data, k)
    return idx


def nearest_set(y: Tensor, data: Tensor, k: int, *, centre: Tensor | None = None, centred: Tensor | None = None,
                centred_sq: Tensor | None = None, data_rows: int = DEFAULT_CHUNK,
                query_rows: int | None = None) -> Tensor:
    """The exact ``k`` nearest rows of ``data`` for each query (chunked brute force): row indices ``(B, k)``, each
    query's in no set order (`nearest_rows` and `by_distance` order them), on ``y``'s device.

    Blocks of ``query_rows`` queries by ``data_rows`` rows are ranked by ``‖x − c‖² − 2 (q − c)·(x − c)`` (one
    ``addmm`` in ``y``'s dtype, ``c`` = ``centre``). Its rounding is at most ``b = (D + 4) ε (max‖x − c‖² +
    ‖q − c‖²)``, which in float32 exceeds the gaps between neighbours of a dense sample (a float32 circle of 10⁶
    points: 10% of the neighbours were right). The first pass keeps ``k + FIRST_MARGIN`` candidates. Where the
    ``(k + 1)``-th score exceeds the ``k``-th by more than ``2b``, the first ``k`` are nearer than every other row,
    exactly, and nothing is measured in float64 (ordinary data: nearly every query). Where the last candidate's does,
    the candidates hold every row as near as the ``k``-th, and the ``k`` are chosen among them by direct differences
    in float64 (`_rerank`). The other queries are searched again (`_resolved`): ``k + CANDIDATE_MARGIN``
    candidates, measured in float64; a query whose last candidate's score is still within ``2b`` of its ``k``-th is
    ranked again in float64, and only those; one still unsure there (exact ties past the margin: integer data, a
    grid) is measured against every row (`_exact`).

    Ties: among equal distances the lower row index is kept at the ``k``-th place. A sure query's candidates hold
    every row as near as its ``k``-th, so the answer does not depend on how the data and the queries are cut into
    blocks (``data_rows``, ``query_rows``, the other queries of the batch).

    Args:
        y: ``(B, D)`` queries, in the dtype the ranking runs in.
        data: ``(N, D)`` rows, on any device and in any floating dtype (moved and cast block by block).
        k: neighbours, at most ``N`` used.
        centre: ``(D,)`` ``c`` (default: the data's mean).
        centred, centred_sq: ``data − c`` in ``y``'s dtype and device and its squared row norms, where the
            caller holds them (`KNNCDC`); otherwise blocks are centred on the fly.
        data_rows, query_rows: block sizes (default ``query_rows``: ``BLOCK_ELEMENTS // data_rows``).
    """
    n = data.shape[0]
    k = min(k, n)
    centre = data.mean(0) if centre is None else centre
    y = y.detach()  # no graph of the ranking (cheaper than entering torch.no_grad() at every call)
    if y.shape[0] == 0:
        return torch.empty(0, k, dtype=torch.long, device=y.device)
    c = centre.to(device=y.device, dtype=y.dtype)
    given = centred if centred is not None and centred.dtype == y.dtype else None
    rows = query_rows if query_rows is not None else max(1, BLOCK_ELEMENTS // data_rows)
    m = min(n, k + FIRST_MARGIN)
    blocks = []
    for start in range(0, y.shape[0], rows):
        q = y[start : start + rows] - c
        scores, cand, top = _candidates(q, data, c, given, centred_sq, data_rows, m)
        blocks.append((scores, cand, _rank_gap(q, top)))
    scores, cand, gap = [torch.cat(parts) for parts in zip(*blocks, strict=True)] if len(blocks) > 1 else blocks[0]
    idx = cand[:, :k]
    if k == n:
        return idx
    unsure = scores[:, k] - scores[:, k - 1] <= gap  # NaN (a NaN query) compares False: any k kept, its factor NaN
    todo = (unsure & torch.isfinite(y - c).all(-1)).nonzero()[:, 0]  # as `_resolved`: one that overflowed keeps these
    if todo.numel() == 0:
        return idx
    spread = scores[todo, -1] - scores[todo, k - 1]
    held = (spread > gap[todo]) | (m == n)  # all as near as the k-th are among the candidates
    # where the spread of CANDIDATE_MARGIN candidates (the FIRST_MARGIN seen, scaled) would still be within the
    # rounding, a second ranking in y's dtype is hopeless (a dense float32 sample): straight to float64
    hopeless = ~held & (spread * (CANDIDATE_MARGIN / FIRST_MARGIN) <= gap[todo])
    kind = torch.where(held, 0, torch.where(hopeless, 2, 1))  # 0: held, 1: search again, 2: hopeless
    counts = torch.bincount(kind, minlength=3).tolist()  # the one host sync that splits them
    sel, again, far = todo[kind.argsort(stable=True)].split(counts)
    if sel.numel():
        idx[sel] = _rerank(y[sel], data, cand[sel], k)
    for part, dtypes in ((again, (y.dtype, torch.float64)), (far, (torch.float64,))):
        if part.numel():
            idx[part] = _resolved(y[part], data, k, centre, centred, centred_sq, data_rows, query_rows,
                                  tuple(dict.fromkeys(dtypes)))
    return idx


def nearest_rows(y: Tensor, data: Tensor, k: int, *, centre: Tensor | None = None, centred: Tensor | None = None,
                 centred_sq: Tensor | None = None, data_rows: int = DEFAULT_CHUNK,
                 query_rows: int | None = None) -> tuple[Tensor, Tensor]:
    """Exact ``k`` nearest rows of ``data`` for each query (`nearest_set`, same arguments): squared distances
    ``(B, k)`` by direct differences in float64, ascending, and row indices ``(B, k)``, on ``y``'s device; among
    equal distances the lower row index first."""
    idx = nearest_set(y, data, k, centre=centre, centred=centred, centred_sq=centred_sq, data_rows=data_rows,
                      query_rows=query_rows)
    return _measured(y, data, idx)
