"""How far `land` moves points that started near the data *along* the data (SPEC §5 "Landing, normal-only"), and the
warning where that is more than a normal-only landing should (`warn_slide`). Split from `landing`.

Landing iterates normal-only denoiser steps. Where the data bend on the scale of ``σ`` (or the model's denoiser
pulls along them), the normals turn from one step to the next and the iteration slides along the data to the
denoiser's fixed points: a point on the data then lands elsewhere on them, and an optimiser with landing is pulled
back along them."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .geometry import Eigenpairs, spectral_apply
from .user_warnings import warn_user

if TYPE_CHECKING:
    from .manifold import LearnedDataManifold

__all__ = ["SLIDE_MIN_POINTS", "SLIDE_SHARE", "SLIDE_SMALL", "SLIDE_WARN", "tangential_moves", "warn_slide"]

SLIDE_SMALL = 0.25
"""A point that started near the data (the denoiser at ``σ`` moved it by at most ``σ/2``, or it lay within ``σ/2`` of
the data points the field holds) moved more than this many ``σ`` within the learned tangent space at its start
(`tangential_moves`) slid along the data. On well-trained models points on the data and within ``σ/2`` of them
slide at most 0.055 ``σ`` away from edges (0.0003 on the S² fixture, 0.003 on the torus, 0.055 on a circle, 1e-4 on
a swiss roll's interior). At an edge the denoiser pulls inwards and points slide further (a learned swiss roll,
``σ = 0.026``: 8 of 2,933 data points beyond 0.25 ``σ``, the largest 1.14 ``σ``; points 0.3 ``σ`` off: 1.27
``σ``; 1 ``σ`` off: 1.86 ``σ``): `SLIDE_SHARE` and `SLIDE_WARN` keep those within ``σ/2`` silent."""

SLIDE_SHARE = 0.1
"""`warn_slide` warns where more than this share of at least `SLIDE_MIN_POINTS` points that started near the data
slid more than `SLIDE_SMALL` ``σ``: at most 0.3% on the models of `SLIDE_SMALL` (edges), and 14% to 76% on
single-cell trajectories trained at a ``σ`` on the scale of their bends (100 training cells: 41% on log1p-PCA data
at ``σ = 10.2``, up to 2.35 ``σ``; 76% on counts at ``σ = 53``, up to 4.7 ``σ``; 14% on VAE codes at ``σ = 0.80``,
up to 0.93 ``σ``)."""

SLIDE_MIN_POINTS = 10
"""The fewest points near the data for `SLIDE_SHARE` (fewer: an edge's few points would be a large share)."""

SLIDE_WARN = 1.5
"""`warn_slide` warns where any point that started near the data slid more than this many ``σ``, in a batch of any
size (an optimiser's): at most 1.27 ``σ`` at a swiss roll's edge for points within ``σ/2`` of it (`SLIDE_SMALL`;
one of 1,729 points about ``σ`` off it slid 1.86 ``σ`` and warns); RiemannianAdam with landing on 2 training cells
of the log1p-PCA trajectory of `SLIDE_SHARE` (which landing moves towards the t ≈ 0.04 end, every cell with t ≤
0.35 there): 2.01 ``σ`` in one step, and `projx` of 20 of its cells up to 2.26 ``σ``."""

_warned_slide: weakref.WeakSet = weakref.WeakSet()  # manifolds already warned (`warn_slide`)


@torch.no_grad()
def tangential_moves(pairs: Eigenpairs, dims: int | Tensor, moves: Tensor) -> Tensor:
    """``‖P_x (y − x)‖`` ``(B,)``: the part of the moves ``y − x`` ``(B, D)`` within the learned tangent space at the
    start points ``x``, the top-``dims`` eigenvectors of ``pairs`` (values ``(B, r)``, vectors ``(B, D, r)``; ``dims``
    an int or ``(B,)``, in ``0..r``: the gap rule's or a checked ``tangent_dim``), which the first landing iteration
    computed there."""
    moves = moves.to(pairs.vectors.dtype)  # (a float32 network's eigenvectors, float64 points)
    return spectral_apply(pairs, moves, dims, power=0, check_range=False).norm(dim=-1)


@torch.no_grad()
def warn_slide(manifold: LearnedDataManifold, x: Tensor, landed: Tensor, pairs: Eigenpairs, dims: int | Tensor,
               near: Tensor, sigma: float, total: int) -> Tensor | None:
    """Warn once per manifold where `land` moved points ``x`` ``(B, D)`` that started ``near`` ``(B,)`` the data
    (`SLIDE_SMALL`) along the data to ``landed`` ``(B, D)``: any by more than `SLIDE_WARN` ``σ``, or more than a
    `SLIDE_SHARE` of them (at least `SLIDE_MIN_POINTS`) by more than `SLIDE_SMALL` ``σ``. The moves along the data
    are `tangential_moves` in the tangent spaces ``pairs``/``dims`` at ``x`` (from the first landing iteration:
    no network call); ``total``: how many points were given. Returns those moves ``(B,)`` (0 for the points not
    near), or ``None`` where the manifold has warned already (nothing computed). One host sync.

    Limitation: points that started farther than ``σ/2`` are not counted, however far they slide. Counting them up
    to 2-3 ``σ`` off, by their move along the data relative to their distance (``slide / max(σ, d)``, ``d`` the
    denoiser's move at ``σ``), separates nothing at the data's edges, where the nearest data point lies along the
    data: away from edges it is at most 0.21 on well-trained models (S², circle: 600 points 0.5-3 ``σ`` off along
    the normals or at random; the torus 0.48, at random 3 ``σ`` off), but a learned swiss roll (``σ = 0.026``,
    1,500 points within 1.5 ``σ`` of an edge) reaches 2.5 on data points that its denoiser moves ``σ/2``-1.5 ``σ``
    (sliding 2.5 ``σ``) and 3.1 on points 0.5-3 ``σ`` off (sliding up to 4.9 ``σ``), while the VAE-code model of
    `SLIDE_SHARE` moved its t = 0 training cell (the denoiser's move 1.16 ``σ``) 3.0 ``σ`` along the trajectory:
    2.6, silently in a batch of 20 cells (in one of 100 cells, 10 of the 98 near ones slide: `SLIDE_SHARE` warns)."""
    if manifold in _warned_slide:
        return None
    slide = tangential_moves(pairs, dims, landed - x)
    slide = torch.where(near, slide, torch.zeros_like(slide))
    worst, slid, count = torch.stack([slide.amax() if slide.numel() else slide.new_zeros(()),
                                      (slide > SLIDE_SMALL * sigma).sum().to(slide.dtype),
                                      near.sum().to(slide.dtype)]).tolist()
    if worst > SLIDE_WARN * sigma or (count >= SLIDE_MIN_POINTS and slid > SLIDE_SHARE * count):
        _warned_slide.add(manifold)
        warn_user(f"landing: {int(slid)} of {int(count)} point(s) that started near the data (of {total} given) "
                  f"moved more than {SLIDE_SMALL:g} sigma along the data, up to {worst / sigma:.3g} sigma (sigma = "
                  f"{sigma:.3g}; landing should move points near the data only along the normals): the data "
                  "bend on the scale of sigma, or the model's denoiser pulls along them, so the normal-only "
                  "landing slides along the data to the denoiser's fixed points (data points land elsewhere on "
                  "the data, and an optimiser with landing is pulled back along them); use a smaller sigma (e.g. "
                  "retrain with a smaller sigma_min) or landing=False")
    return slide
