"""Unions of synthetic manifolds (pieces of different dimension, e.g. a circle and a square)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .base import (
    SyntheticManifold,
    _check_n,
    _check_points,
    _sample_device,
    random_isometry,
)
from .shapes import Circle, FlatPatch

__all__ = ["UnionManifold"]


def _weight_shares(weights: object, n: int) -> list[float]:
    """``weights`` as ``n`` finite non-negative floats with a positive finite sum, else one ``ValueError`` (a NaN
    weight passed the old sign checks, ``nan < 0`` being false, and failed in ``sample`` as a bare int() error)."""
    try:
        shares = [float(w) for w in weights if not isinstance(w, (str, bytes))]  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        shares = []
    if (len(shares) != n or isinstance(weights, (str, bytes))
            or not all(math.isfinite(w) and w >= 0 for w in shares) or not 0 < sum(shares) < math.inf):
        raise ValueError(f"weights must be {n} finite non-negative numbers with a positive sum, got {weights!r:.200}")
    return shares


class UnionManifold(SyntheticManifold):
    """A disjoint union of manifolds, possibly of different dimensions, in the same R^D.

    ``dim`` is the largest piece dimension; ``tangent_basis`` pads lower-dimensional pieces with zero columns
    and ``point_dimension`` reports the dimension of the piece each point belongs to (the nearest piece). The
    pieces are assumed well separated (each point's nearest piece is the one it was sampled from).

    Default (``pieces=None``): the unit circle in the plane z = 0 (d = 1) and the square
    ``{x = 3, |y| <= 1, |z| <= 1}`` (d = 2), distance 2 apart, in R^3, isometrically embedded in R^D.

    Args:
        pieces: the pieces, all with the same ``ambient_dim``.
        weights: relative share of the samples per piece (default equal): finite numbers >= 0, positive sum.
        ambient_dim: D for the default pieces (default 3); must match the pieces when they are given.
        seed: seed of the random isometric embedding of the default pieces.
        name: identifier.
    """

    def __init__(
        self,
        pieces: Sequence[SyntheticManifold] | None = None,
        *,
        weights: Sequence[float] | None = None,
        ambient_dim: int | None = None,
        seed: int = 0,
        name: str = "union",
    ) -> None:
        if pieces is None:
            pieces = self._circle_and_square(3 if ambient_dim is None else ambient_dim, seed)
        pieces = list(pieces)
        if not pieces:
            raise ValueError("a union needs at least one piece")
        dims = {p.ambient_dim for p in pieces}
        if len(dims) != 1 or (ambient_dim is not None and ambient_dim not in dims):
            raise ValueError(f"all pieces must share one ambient dimension, got {sorted(dims)}")
        shares = [1.0] * len(pieces) if weights is None else _weight_shares(weights, len(pieces))
        super().__init__(name, max(p.dim for p in pieces), pieces[0].ambient_dim)
        self.pieces = pieces
        total = sum(shares)
        self.weights = [w / total for w in shares]

    @staticmethod
    def _circle_and_square(ambient_dim: int, seed: int) -> list[SyntheticManifold]:
        q = random_isometry(ambient_dim, 3, seed)  # columns play the roles of the x, y, z axes
        circle = Circle(ambient_dim, embedding=q[:, [0, 1]])
        square = FlatPatch(2, ambient_dim, half_width=1.0, embedding=q[:, [1, 2]], offset=3.0 * q[:, 0])
        return [circle, square]

    def _counts(self, n: int) -> list[int]:
        """Split n by the weights (largest remainder)."""
        raw = [w * n for w in self.weights]
        counts = [int(math.floor(r)) for r in raw]
        order = sorted(range(len(raw)), key=lambda i: counts[i] - raw[i])
        for i in order[: n - sum(counts)]:
            counts[i] += 1
        return counts

    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> Tensor:
        n = _check_n(n)
        parts = [
            p.sample(c, generator=generator, dtype=torch.float64, device=_sample_device(generator, device))
            for p, c in zip(self.pieces, self._counts(n), strict=True)
        ]
        x = torch.cat(parts)
        perm = torch.randperm(n, generator=generator, device=x.device)  # mix the pieces
        out_device = torch.device(device) if device is not None else x.device
        return x[perm].to(device=out_device, dtype=dtype)

    def _candidates(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Projections onto every piece, (P, n, D), and the index of the nearest piece, (n,)."""
        proj = torch.stack([p.project(x) for p in self.pieces])
        dist = torch.linalg.vector_norm(proj - x[None], dim=-1)
        return proj, dist.argmin(dim=0)

    def piece_index(self, x: Tensor) -> Tensor:
        """Index of the nearest piece, LongTensor (n,), for x (n, D)."""
        x = _check_points(x, self.ambient_dim)
        return self._candidates(x)[1]

    def project(self, x: Tensor) -> Tensor:
        x = _check_points(x, self.ambient_dim)
        proj, idx = self._candidates(x)
        return proj.gather(0, idx[None, :, None].expand(1, -1, x.shape[1]))[0]

    def point_dimension(self, x: Tensor) -> Tensor:
        idx = self.piece_index(x)
        dims = torch.tensor([p.dim for p in self.pieces], dtype=torch.long, device=idx.device)
        return dims[idx]

    def tangent_basis(self, x: Tensor) -> Tensor:
        x = _check_points(x, self.ambient_dim)
        idx = self.piece_index(x)
        out = x.new_zeros(x.shape[0], self.ambient_dim, self.dim)
        for i, piece in enumerate(self.pieces):
            mask = idx == i
            if bool(mask.any()):
                out[mask, :, : piece.dim] = piece.tangent_basis(x[mask])
        return out

    def geodesic_distance(self, x0: Tensor, x1: Tensor) -> Tensor:
        """Geodesic distance within a piece (that piece's closed form); ``inf`` between different pieces."""
        if x0.shape != x1.shape:
            raise ValueError(
                f"x0 and x1 must have the same shape, got {tuple(x0.shape)} and {tuple(x1.shape)}"
            )
        i0, i1 = self.piece_index(x0), self.piece_index(x1)
        out = torch.full((x0.shape[0],), math.inf, dtype=x0.dtype, device=x0.device)
        for i, piece in enumerate(self.pieces):
            mask = (i0 == i) & (i1 == i)
            if bool(mask.any()):
                out[mask] = piece.geodesic_distance(x0[mask], x1[mask]).to(out.dtype)
        return out
