"""The spectrum of a co-metric field's ``G`` at points (SPEC §5): `field_eigenpairs`, behind
`LearnedDataManifold.tangent_space` / ``intrinsic_dimension`` for fields without a low-rank factor and behind the
tangent scores of `learned_manifold.evaluation` (which re-exports it).

Both routes differentiate exactly tied eigenvalues as `spectral_grad` describes, in reverse mode and in forward mode
(``torch.func.jvp``/``jacfwd``, ``forward_ad`` dual tensors): the low-rank one in `geometry.eigenpairs`, the dense
one here (`_tie_safe_dense`), chosen by the same test.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .geometry import Eigenpairs, _has_tangent, eigenpairs, nan_rows, zero_bad_rows
from .metrics.base import as_field, rounding_eps
from .precision import full_precision
from .spectral_grad import TIES_IN_EPS, tie_safe_eigh, within_terms
from .types import FieldLike

__all__ = ["field_eigenpairs"]


@full_precision
def field_eigenpairs(field: FieldLike, x: Tensor) -> Eigenpairs:
    """Eigenpairs of ``G(x)`` (without δ), descending (SPEC §5).

    Low-rank fields go through the ``r × r`` Gram of their factor (`geometry.eigenpairs`, ``O(D r²)``). Other
    fields build the dense ``(B, D, D)`` matrix with ``field.dense`` and call ``torch.linalg.eigh``: small ``D``
    only (``D`` field applications per point and ``O(D³)`` per point). Where ``x`` (or the field's parameters) is
    differentiated, by a gradient flowing back or by a forward-mode tangent (``torch.func.jvp``/``jacfwd``, a
    ``forward_ad`` dual tensor; `geometry._has_tangent`), both routes differentiate exactly tied eigenvalues as
    `spectral_grad` describes: finite, exact derivatives of projectors onto the top eigenvectors that do not split
    a tie (`_tie_safe_dense`; ``eigh``'s own forward derivative had been NaN at an exact tie, O(1) wrong where
    rounding split one). Otherwise the plain ``eigh`` runs; the values are the same either way.

    Args:
        field: any co-metric field, or a `LearnedDataManifold` (its field's spectrum: the manifold's ``delta`` and
            ``tangent_dim`` do not enter).
        x: ``(B, D)`` points.

    Returns:
        `Eigenpairs`: values ``(B, r)`` (``r = D`` for dense fields) and vectors ``(B, D, r)``.

    Raises:
        ValueError: a field without a low-rank factor and ``D`` above `metrics.euclidean.MAX_DENSE_DIM`, before
            any work (`CoMetricField.dense`).
    """
    field = as_field(field)
    if field.low_rank:
        return eigenpairs(field.factor(x))
    g = field.dense(x)
    g = 0.5 * (g + g.transpose(-1, -2))
    # no half-precision eigh; a NaN point gives a NaN row, not a failed eigh for the batch
    g, finite = zero_bad_rows(g.to(torch.promote_types(g.dtype, torch.float32)))
    within = None
    if (torch.is_grad_enabled() and g.requires_grad) or _has_tangent(g):  # ties: exact derivatives
        values, vectors, within = _tie_safe_dense(g, TIES_IN_EPS * rounding_eps(field, x.dtype))
    else:
        values, vectors = torch.linalg.eigh(g)
        values, vectors = values.flip(-1), vectors.flip(-1)
    return Eigenpairs(values=nan_rows(values.clamp_min(0.0), finite).to(x.dtype),
                      vectors=nan_rows(vectors, finite).to(x.dtype), within=within)


def _tie_safe_dense(g: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """Descending eigenvalues ``(B, D)``, eigenvectors ``(B, D, D)`` and `Eigenpairs.within` ``(B, D, D)`` of the
    dense symmetric ``G`` ``(B, D, D)`` where it is differentiated, by the convention of the low-rank path
    (`geometry.eigenpairs`, `spectral_grad`): ``eigh``'s derivatives divide by ``λ_i − λ_j``, ``0 / 0 = NaN`` where
    eigenvalues tie exactly (a Stein score metric ``I − c s sᵀ``, tied at 1; tester B, s35), although the tangent
    projector ``U_d U_dᵀ`` is smooth there. `spectral_grad.tie_safe_eigh` drops the rotation terms of pairs tied
    within ``eps`` (relative; the field's rounding, `metrics.base.rounding_eps`, times `spectral_grad.TIES_IN_EPS`),
    which a projector onto top eigenvectors that does not split a tie does not see, in its backward and its
    forward (``jvp``) formula alike; ``within`` carries the eigenvalues' derivative within tied blocks for
    `geometry.spectral_apply`'s powers ``±1``. Same values as ``torch.linalg.eigh``."""
    values, vectors = tie_safe_eigh(g, eps)
    values, vectors = values.flip(-1), vectors.flip(-1)
    return values, vectors, within_terms(g, values, vectors, torch.ones_like(values, dtype=torch.bool))
