"""The point and tangent-vector checks of `LearnedDataManifold` (SPEC §5): geoopt's ``check_*`` entry points with
one clear error for non-tensors, and what a point on the manifold and a tangent vector are.

A point: the right shape (the last axes the data shape) and finite; with landing also a fixed point of ``projx``.
A tangent vector: the right shape, finite, and unchanged by ``proju`` (every vector for ``δ > 0``).

`check_decomposition` is the manifold's one look at a decomposition of the factor (once per cache entry, so a
cached call costs nothing more): a factor that is not finite at finite points, and gap-rule directions that drop a
real direction of the field (`learned_manifold.dimension.warn_if_dropping`).
"""

from __future__ import annotations

import warnings

import geoopt  # type: ignore[import-untyped]  # (geoopt ships no py.typed)
import torch
from torch import Tensor

from .dimension import DROPPED_LIMIT, dropped_share, intrinsic_dimension, warn_if_dropping
from .geometry import Eigenpairs
from .metrics.factor_checks import FactorContractError

__all__ = ["CheckedManifold", "check_decomposition"]

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

    # geoopt's public checks read ``x.shape`` first: refuse non-tensors with one clear error instead
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
        """Right shape and finite; with landing also a fixed point of ``projx``: ``|projx(x) − x| ≤ atol + rtol ·
        |x − μ|_∞``, ``μ`` the centre a learned model standardises about (else the origin), so that data far from
        the origin are judged at the scale of their spread, not of their offset (at ``|x| = 1000`` a relative
        ``1e-5`` of ``|x|`` had passed points ``σ/3`` off a circle)."""
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
            if err > atol + rtol * spread:
                return False, f"x is not a fixed point of the landing projection: |projx(x) - x| = {err:.3g}"
        return True, None

    def _check_vector_on_tangent(self, x: Tensor, u: Tensor, *, atol: float = 1e-5, rtol: float = 1e-5):
        ok, reason = self._check_shape(u.shape, "u")
        if not ok:
            return False, reason
        if not bool(torch.isfinite(u).all()):
            return False, "u contains NaN or inf"
        if not u.numel():
            return True, None
        pu = self.proju(x, u)
        err = (pu - u).abs().max().item()
        if err > atol + rtol * u.abs().max().item():
            return False, f"u is not in the learned tangent space: |proju(u) - u| = {err:.3g}"
        return True, None


def check_decomposition(field_name: str, xf: Tensor, pairs: Eigenpairs, tangent_dim: int | None, *,
                        stacklevel: int) -> None:
    """Warn about the eigenpairs ``pairs`` (values ``(B, r)``) of a field's factor at the flat points ``xf``
    ``(B, D)``, at most once per decomposition (the caller keeps a flag on its cache entry and checks its 1st, 2nd,
    4th, … decomposition):

    * a ``RuntimeWarning`` where the factor is NaN/inf at finite points (D5: ``inner``, ``proju``, ``retr`` are
      NaN in those rows; rows of ``xf`` that are already NaN give NaN silently, SPEC §5 per-row behaviour);
    * with ``tangent_dim`` not given, `warn_if_dropping` where the gap rule's directions drop an eigenvalue above
      `dimension.DROPPED_LIMIT` ``· λ₁`` (a full-rank or anisotropic field whose weaker directions are real).

    ``stacklevel`` is that of the caller's caller (the user's frame) as seen from here. One host sync (more only
    where it warns).
    """
    values = pairs.values.detach()
    finite = torch.isfinite(xf.detach()).all(-1)
    bad = ~torch.isfinite(values).all(-1) & finite
    counts = [bad.sum(), finite.sum()]
    if tangent_dim is None and values.numel():  # (the pre-check of warn_if_dropping, in the same sync)
        counts.append((dropped_share(values, intrinsic_dimension(values)) > DROPPED_LIMIT).sum())
    n_bad, n_finite, *dropping = torch.stack(counts).tolist()
    if n_bad:
        rows = bad.nonzero().squeeze(-1).tolist()
        shown = ", ".join(str(i) for i in rows[:5]) + (", ..." if len(rows) > 5 else "")
        warnings.warn(f"{field_name}.factor is NaN or inf at {n_bad} of {n_finite} finite points (rows "
                      f"{shown}): LearnedDataManifold's inner, proju, egrad2rgrad and retr are NaN there (the other "
                      "rows are unaffected); no tangent_dim helps: the field is undefined at those points",
                      RuntimeWarning, stacklevel=stacklevel)
    if dropping and dropping[0]:
        warn_if_dropping(values, intrinsic_dimension(values), _DELTA0_METHODS, stacklevel=stacklevel + 1)


def _require_tensors(**tensors: object) -> None:
    """A ``TypeError`` naming the first argument that is not a tensor."""
    for name, value in tensors.items():
        if not isinstance(value, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
