"""The point and tangent-vector checks of `LearnedDataManifold` (SPEC §5): geoopt's ``check_*`` entry points with
one clear error for non-tensors, and what a point on the manifold and a tangent vector are.

A point: the right shape (the last axes the data shape) and finite; with landing also a fixed point of ``projx``.
A tangent vector: the right shape, finite, and unchanged by ``proju`` (every vector for ``δ > 0``).

`check_decomposition` is the manifold's one look at a decomposition of the factor (one host sync): a factor that is
not finite at finite points, gap-rule directions that drop a real direction of the field
(`learned_manifold.dimension.warn_if_dropping`), and a given ``tangent_dim`` that splits a cluster of eigenvalues
(`learned_manifold.dimension.warn_if_splitting`). It runs at the 1st, 2nd, 4th, 8th, … decomposition of each point
set (`learned_manifold.manifold_factors`: an optimiser's parameter is one, a query at other new points starts
another), not at every one: a problem that appears only at other decompositions (a factor NaN at the 3rd step's
points alone) is not named; one that persists is, and a new optimisation is checked at its first step however long
the manifold was used before. A cached call costs nothing more.

`check_tangent_dim` is the construction's check of ``tangent_dim``.
"""

from __future__ import annotations

import geoopt  # type: ignore[import-untyped]  # (geoopt ships no py.typed)
import torch
from torch import Tensor

from .dimension import (
    DROPPED_LIMIT,
    dropped_share,
    intrinsic_dimension,
    split_ratio,
    warn_if_dropping,
    warn_if_splitting,
)
from .geometry import Eigenpairs
from .metrics.base import CoMetricField, check_count
from .metrics.factor_checks import FactorContractError
from .metrics.field_checks import not_low_rank
from .metrics.knn import KNNCDC
from .user_warnings import warn_user

__all__ = ["CheckedManifold", "check_decomposition", "check_tangent_dim"]

_DELTA0_METHODS = "LearnedDataManifold's proju, egrad2rgrad, inner and norm (delta = 0)"


class CheckedManifold(geoopt.Manifold):
    """geoopt's checks for a manifold of points ``(..., *data_shape)`` whose subclass provides ``data_shape``,
    ``ndim`` (the number of data axes), ``landing``, ``projx`` and ``proju`` (`LearnedDataManifold`)."""

    data_shape: tuple[int, ...]
    landing: bool

    def _check_shape(self, shape: tuple[int, ...], name: str) -> tuple[bool, str | None]:
        """Whether ``shape`` ends with the data shape, and the reason if not (naming ``name``)."""
        if tuple(shape[len(shape) - self.ndim:]) != self.data_shape or len(shape) < self.ndim:
            return False, f"'{name}' has shape {tuple(shape)}; its last axes must be the data shape {self.data_shape}"
        return True, None

    # geoopt's public checks read ``x.shape`` first (or, for a NumPy array, pass it): refuse non-tensors with one
    # clear error instead
    def check_point(self, x: Tensor, *, explain: bool = False):
        _require_tensors(x=x)
        return super().check_point(x, explain=explain)

    def assert_check_point(self, x: Tensor) -> None:
        _require_tensors(x=x)
        super().assert_check_point(x)

    def check_vector(self, u: Tensor, *, explain: bool = False):
        _require_tensors(u=u)
        return super().check_vector(u, explain=explain)

    def assert_check_vector(self, u: Tensor) -> None:
        _require_tensors(u=u)
        super().assert_check_vector(u)

    def check_point_on_manifold(self, x: Tensor, *, explain: bool = False, atol: float = 1e-5, rtol: float = 1e-5):
        _require_tensors(x=x)
        return super().check_point_on_manifold(x, explain=explain, atol=atol, rtol=rtol)

    def assert_check_point_on_manifold(self, x: Tensor, *, atol: float = 1e-5, rtol: float = 1e-5) -> None:
        _require_tensors(x=x)
        super().assert_check_point_on_manifold(x, atol=atol, rtol=rtol)

    def check_vector_on_tangent(self, x: Tensor, u: Tensor, *, ok_point: bool = False, explain: bool = False,
                                atol: float = 1e-5, rtol: float = 1e-5):
        _require_tensors(x=x, u=u)
        return super().check_vector_on_tangent(x, u, ok_point=ok_point, explain=explain, atol=atol, rtol=rtol)

    def assert_check_vector_on_tangent(self, x: Tensor, u: Tensor, *, ok_point: bool = False, atol: float = 1e-5,
                                       rtol: float = 1e-5) -> None:
        _require_tensors(x=x, u=u)
        super().assert_check_vector_on_tangent(x, u, ok_point=ok_point, atol=atol, rtol=rtol)

    def _check_point_on_manifold(self, x: Tensor, *, atol: float = 1e-5, rtol: float = 1e-5):
        """Right shape and finite; with landing also a fixed point of ``projx``: ``|projx(x) − x|_∞ ≤ atol · L +
        rtol · |x − μ|_∞`` over the batch, ``μ`` the centre a learned model standardises about (else the origin),
        ``L`` the field's `length_scale` (a trained model's ``s``, SPEC §1), else ``|x − μ|_∞`` (else 1, for points
        all at the centre): the same verdict in any units, and data far from the origin are judged at the scale of
        their spread, not of their offset (at ``|x| = 1000`` a relative ``1e-5`` of ``|x|`` had passed points ``σ/3``
        off a circle; with ``atol`` in data units, a point ``σ/3`` off a learned sphere of radius 1e-3 passed)."""
        ok, reason = self._check_shape(x.shape, "x")
        if not ok:
            return False, reason
        if not bool(torch.isfinite(x).all()):
            return False, "x contains NaN or inf"
        if self.landing and x.numel():  # (an empty batch holds no point to check)
            try:
                err = (self.projx(x) - x).abs().max().item()
            except FactorContractError:  # a mistake in the field itself, named by its own message
                raise
            except ValueError as problem:
                return False, f"x cannot land on the data: {problem}"
            from .landing import data_centre  # (landing imports the manifold)

            flat = x.reshape(-1, self.dim)
            centre = data_centre(self.field, flat)
            spread = (flat if centre is None else flat - centre).abs().max().item()
            tol = atol * (self.field.length_scale() or spread or 1.0) + rtol * spread
            if err > tol:
                return False, (f"x is not a fixed point of the landing projection: |projx(x) - x| = {err:.3g} "
                               f"(tolerance {tol:.3g})")
        return True, None

    def _check_vector_on_tangent(self, x: Tensor, u: Tensor, *, atol: float = 1e-5, rtol: float = 1e-5):
        """Right shape and finite, and unchanged by ``proju``: ``|proju(x, u) − u|_∞ ≤ (atol + rtol) · |u|_∞`` over
        the batch. Both terms are relative to the vectors themselves (``proju`` is linear, so whether ``u`` is
        tangent depends neither on its length nor on the data's units); with ``atol`` in data units a vector with a
        normal part of 0.5% of its length failed on a learned unit sphere and passed on the same sphere in units
        ×1e-3."""
        ok, reason = self._check_shape(u.shape, "u")
        if not ok:
            return False, reason
        if not bool(torch.isfinite(u).all()):
            return False, "u contains NaN or inf"
        if not u.numel():
            return True, None
        pu = self.proju(x, u)
        err = (pu - u).abs().max().item()
        tol = (atol + rtol) * u.abs().max().item()
        if err > tol:
            return False, f"u is not in the learned tangent space: |proju(u) - u| = {err:.3g} (tolerance {tol:.3g})"
        return True, None


def check_decomposition(field_name: str, xf: Tensor, pairs: Eigenpairs, tangent_dim: int | None) -> None:
    """Warn about the eigenpairs ``pairs`` (values ``(B, r)``) of a field's factor at the flat points ``xf``
    ``(B, D)``. The caller decides when: `LearnedDataManifold` checks the 1st, 2nd, 4th, 8th, … decomposition of
    each point set (and each at most once: a flag on its cache entry), so a problem seen only at other
    decompositions is missed.

    * a ``RuntimeWarning`` where the factor is NaN/inf at finite points (D5: ``inner``, ``proju``, ``retr`` are
      NaN in those rows; rows of ``xf`` that are already NaN give NaN silently, SPEC §5 per-row behaviour);
    * with ``tangent_dim`` not given, `warn_if_dropping` where the gap rule's directions drop an eigenvalue above
      `dimension.DROPPED_LIMIT` ``· λ₁`` (a full-rank or anisotropic field whose weaker directions are real; one at
      or below it is dropped silently);
    * with ``tangent_dim`` given, `warn_if_splitting` (a ``RuntimeWarning``) where it splits a cluster of
      eigenvalues: ``λ_{d+1} / λ_d`` above `dimension.CLUSTER_RATIO` at the median finite point, as `curvature`
      warns (the kept directions are an arbitrary part of the cluster).

    The warnings point at the user's line (`user_warnings.warn_user`). One host sync (more only where it warns).
    """
    values = pairs.values.detach()
    finite = torch.isfinite(xf.detach()).all(-1)
    bad = ~torch.isfinite(values).all(-1) & finite
    counts = [bad.sum(), finite.sum()]
    if values.numel() and tangent_dim is None:  # (the pre-check of warn_if_dropping, in the same sync)
        counts.append((dropped_share(values, intrinsic_dimension(values)) > DROPPED_LIMIT).sum())
    elif values.numel() and tangent_dim <= values.shape[-1]:  # (the median of warn_if_splitting, in the same sync)
        ratio = split_ratio(values, tangent_dim)
        counts.append(torch.where(finite & ~bad, ratio, float("nan")).nanmedian())
    n_bad, n_finite, *more = torch.stack([c.to(torch.float64) for c in counts]).tolist()
    if n_bad:
        rows = bad.nonzero().squeeze(-1).tolist()
        shown = ", ".join(str(i) for i in rows[:5]) + (", ..." if len(rows) > 5 else "")
        warn_user(f"{field_name}.factor is NaN or inf at {int(n_bad)} of {int(n_finite)} finite points (rows "
                  f"{shown}): LearnedDataManifold's inner, proju, egrad2rgrad and retr are NaN there (the other "
                  "rows are unaffected); no tangent_dim helps: the field is undefined at those points",
                  RuntimeWarning)
    if more and tangent_dim is None and more[0]:
        warn_if_dropping(values, intrinsic_dimension(values), _DELTA0_METHODS)
    elif more and tangent_dim is not None:
        warn_if_splitting(more[0], tangent_dim, values[finite & ~bad], "the tangent space that proju, egrad2rgrad, "
                          "inner and retr keep is an arbitrary part of that cluster, set by the noise in the field's "
                          "eigenvalues: if tangent_dim is the data's dimension, the field has not learned the data "
                          "at these points (a model its training checks distrusted, or points off the data)",
                          given=True)


def check_tangent_dim(field: CoMetricField, tangent_dim: object) -> int | None:
    """``tangent_dim`` as an ``int`` (``None`` stays ``None``): an integer (Python's, NumPy's or a 0-d integer
    tensor, e.g. ``M.intrinsic_dimension(x).max()``) in ``1..D`` and at most the rank of the field's factor where
    the field tells it (a `LearnedCDC`'s ``rank``, a `KNNCDC`'s ``k``; else `LearnedDataManifold` checks it at the
    first query), for a low-rank field. Stored as the ``int``, so every method sees what ``tangent_dim=2`` gives.

    Raises:
        TypeError: naming ``tangent_dim``: not an integer (a float, a bool, a tensor that is not a 0-d integer one).
        ValueError: naming ``tangent_dim``: out of range, above the rank, or given for a field that is not low-rank.
    """
    if tangent_dim is None:
        return None
    if isinstance(tangent_dim, Tensor) and (tangent_dim.ndim or tangent_dim.dtype == torch.bool
                                            or tangent_dim.is_floating_point() or tangent_dim.is_complex()):
        raise TypeError(f"tangent_dim must be an integer (an int, a NumPy integer or a 0-d integer tensor), got a "
                         f"tensor of shape {tuple(tangent_dim.shape)} and dtype {tangent_dim.dtype}")
    if not field.low_rank:
        raise ValueError(f"tangent_dim applies to low-rank fields only; {not_low_rank(field)}")
    dim = check_count(tangent_dim, "tangent_dim", high=field.dim)  # type: ignore[arg-type]  # (checked there)
    rank = field.k if isinstance(field, KNNCDC) else getattr(field, "rank", None)  # (LearnedCDC's)
    if isinstance(rank, int) and dim > rank:
        raise ValueError(f"tangent_dim = {dim} exceeds the rank r = {rank} of the field's factor "
                         f"({type(field).__name__}): its tangent spaces have at most {rank} dimensions")
    return dim


def _require_tensors(**tensors: object) -> None:
    """A ``TypeError`` naming the first argument that is not a tensor."""
    for name, value in tensors.items():
        if not isinstance(value, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
