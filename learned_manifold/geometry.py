"""Pure geometry of a low-rank co-metric ``G = A Aᵀ`` (SPEC §5), all in ``O(D r²)``, never ``D × D``.

Every function takes the factor ``A`` of shape ``(B, D, r)`` (one factor per point) and works batched on any
device and floating dtype. Eigenpairs come from the ``r × r`` Gram ``AᵀA``, never from a decomposition of
``A`` itself or of ``G``.

The public functions run outside any autocast the caller has on (`precision.full_precision`: float32 in gives
float32 out, the same numbers as outside autocast); each call costs one check of the autocast state (about a
microsecond, under 0.1% of a manifold's ``proju``). A factor with no columns (``r = 0``: ``G = 0``, no tangent
space) is refused with a ``ValueError`` by `eigenpairs`, `spectral_apply` and `range_project`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.autograd import forward_ad

from .carre_du_champ import cdc_of_functions
from .checks import NotANumberError, as_index
from .dimension import global_dimension, intrinsic_dimension
from .precision import full_precision
from .small_eigh import CUDA_BATCHED_EIGH_MAX, _regularised_cholesky, _small_eigh  # noqa: F401  (names geometry had)
from .spectral_dims import check_dims, top_vectors, truncate_basis, warn_if_cut
from .spectral_grad import FLOAT64_CUT, inverse_sqrt_matrix, scale_coords, tie_eps, tie_safe_eigh, within_terms

__all__ = [
    "FLOAT64_CUT", "Eigenpairs", "default_rel_eps", "gram", "eigenpairs", "tangent_basis", "truncate_basis",
    "intrinsic_dimension", "global_dimension", "projector_error", "intrinsic_gradient", "cdc_of_functions",
    "lowrank_apply", "lowrank_solve", "lowrank_inner", "range_project", "spectral_apply", "zero_bad_rows",
    "nan_rows",
]


@dataclass
class Eigenpairs:
    """Eigen-decomposition of ``G = A Aᵀ`` restricted to the range of ``A``.

    Attributes:
        values: ``(B, r)`` eigenvalues, descending, clamped at 0.
        vectors: ``(B, D, r)`` orthonormal eigenvectors (columns); columns whose eigenvalue is below
            ``rel_eps · λ₁`` (or below the smallest normal number of ``A``'s dtype) are zero (``A`` rank-deficient
            or ``r > D``), never divided by zero.
        within: ``(B, r, r)`` float64 (``G``'s dtype from `evaluation.field_eigenpairs`' dense route), exactly 0
            in value, or ``None``: set only when a gradient flows to ``A`` (`spectral_grad.within_terms`); its
            derivative carries the eigenvalues' derivative within tied blocks, which `spectral_apply` and
            `lowrank_solve` add so that their gradients are exact there.
        kept: ``(B,)`` how many columns have an eigenvalue above the cut (the others are zero), or ``None``
            (pairs built elsewhere); `spectral_apply` reads it to warn once where an explicit ``d`` exceeds it.
        least_kept: the fewest kept columns among the rows with a positive top eigenvalue (``r`` without such a
            row), or ``None`` (not known): an explicit ``d`` at most this is not cut anywhere (`warn_if_cut`: no
            host sync of its own; `eigenpairs` reads it in the sync it makes anyway).
        checked_dims: the explicit ``d`` already checked against the cut (`warn_if_cut`; once per decomposition).
        gap: the gap rule's ``(B,)`` dimensions and ``(B, D, r)`` truncated basis, filled by the first
            `spectral_apply` with ``d = None`` and reused by the next (`_gap_rule`).
    """

    values: Tensor
    vectors: Tensor
    within: Tensor | None = None
    kept: Tensor | None = None
    least_kept: int | None = field(default=None, repr=False, compare=False)
    checked_dims: set[int] = field(default_factory=set, init=False, repr=False, compare=False)
    gap: tuple[Tensor, Tensor] | None = field(default=None, init=False, repr=False, compare=False)


@full_precision
def gram(A: Tensor) -> Tensor:
    """The ``r × r`` Gram matrix ``AᵀA``: ``(B, D, r)`` → ``(B, r, r)``."""
    return A.transpose(-1, -2) @ A


def zero_bad_rows(A: Tensor) -> tuple[Tensor, Tensor | None]:
    """``A`` ``(B, ...)`` with its non-finite rows replaced by zeros, and the ``(B,)`` mask of finite rows
    (``None`` when every row is finite: the common case costs one check and no copy)."""
    finite = torch.isfinite(A.flatten(1)).all(-1)
    return (A, None) if bool(finite.all()) else (_zero_rows(A, finite), finite)


def _zero_rows(t: Tensor, finite: Tensor) -> Tensor:
    """``t`` ``(B, ...)`` with the rows outside the ``(B,)`` mask ``finite`` set to zero (no host sync)."""
    return torch.where(finite.view(-1, *([1] * (t.ndim - 1))), t, torch.zeros((), dtype=t.dtype, device=t.device))


def nan_rows(t: Tensor, finite: Tensor | None) -> Tensor:
    """``t`` ``(B, ...)`` with the rows outside ``finite`` set to NaN (per-row behaviour, as in geoopt.Sphere)."""
    if finite is None:
        return t
    return torch.where(finite.view(-1, *([1] * (t.ndim - 1))), t, torch.full((), float("nan"), dtype=t.dtype,
                                                                             device=t.device))


def default_rel_eps(dtype: torch.dtype) -> float:
    """`eigenpairs`' default cut for a factor of ``dtype``: eigenvalues ``≤ cut · λ₁`` get a zero eigenvector.

    The cut only guards against rounding. The Gram is formed from ``A`` cast to float64 (products of float32
    entries are exact there) and decomposed in float64, so its eigenvalues are resolved to about `FLOAT64_CUT`
    ``· λ₁`` whatever ``dtype``: that is the cut of a float64 factor. For lower precisions the ``D``-sized product
    ``U = A W Λ^{-1/2}`` runs in ``A``'s dtype and loses about ``ε √(λ₁ / λ)`` to cancellation; their cut stays
    ``1e-6`` (about ``8 ε`` of float32: ``U`` orthonormal to about ``1e-4``).
    """
    return FLOAT64_CUT if dtype == torch.float64 else 1e-6


@full_precision
def eigenpairs(A: Tensor, *, rel_eps: float | None = None) -> Eigenpairs:
    """Eigenpairs of ``G = AAᵀ`` from the Gram ``AᵀA = V Λ Vᵀ``: ``U = A V Λ^{-1/2}`` (SPEC §5).

    The ``r × r`` eigen-problem is solved in float64 (it is tiny); the ``D``-sized product ``A V Λ^{-1/2}``
    runs in ``A``'s dtype. A factor wider than tall (``r > D``) is decomposed on the ``D × D`` side instead
    (`_wide_eigenpairs`; the Gram would be the larger matrix), unless ``A`` is differentiated (below): where
    ``G`` has repeated zero eigenvalues (a factor of rank below ``D``) they are exactly equal and ``eigh``'s
    backward pass gives ``0 / 0``, while the Gram's, computed from ``A``, differ by rounding (finite gradients).

    Rows are independent (as in ``geoopt.Sphere``): a factor with a NaN or inf entry gives NaN eigenvalues
    and eigenvectors for that row only; the other rows are computed as if it were absent (the bad rows are
    replaced by zeros before ``eigh``, which would otherwise fail for the whole batch).

    Gradients: with a gradient flowing to ``A``, or a forward-mode tangent on it (``torch.func.jvp``/``jacfwd``,
    a ``forward_ad`` dual tensor; under ``no_grad`` too, as landing runs: `_has_tangent`), the eigen-problem goes
    through `spectral_grad.tie_safe_eigh` and ``Λ^{-1/2}`` through `spectral_grad.inverse_sqrt_matrix` (same
    values; one ``r × r`` product more): exactly tied eigenvalues (a projector field such as the sphere's
    ``I − n̂n̂ᵀ``) had made ``eigh``'s backward ``0 / 0 = NaN`` and its forward derivative NaN too (or O(1) wrong
    where rounding splits the tie). Projectors and restricted powers of ``G`` built from the result
    (`range_project`, `spectral_apply`, `lowrank_solve`) then have exact derivatives also there, in both modes
    (`spectral_grad` explains why).

    Args:
        A: ``(B, D, r)`` factors.
        rel_eps: eigenvalues ``≤ rel_eps · λ₁`` get a zero eigenvector; ``None``: `default_rel_eps` of ``A``'s
            dtype (the rounding of the Gram for float64, ``1e-6`` below it).

    Returns:
        `Eigenpairs` with values ``(B, r)`` descending and vectors ``(B, D, r)``.
    """
    if A.ndim != 3:
        raise ValueError(f"A must have shape (B, D, r), got {tuple(A.shape)}")
    _check_columns(A.shape[-1], "A")
    rel_eps = default_rel_eps(A.dtype) if rel_eps is None else rel_eps
    grad = (torch.is_grad_enabled() and A.requires_grad) or _has_tangent(A)
    if grad:  # (zeroed rows: zero gradients there)
        A_ok, finite = zero_bad_rows(A)
    else:  # a NaN row's Gram is zeroed instead, and its outputs set to NaN: no sync before `_settle`'s one
        A_ok, finite = A, torch.isfinite(A.flatten(1)).all(-1)
    if A.shape[-1] > A.shape[-2] and not grad:
        return _wide_eigenpairs(A_ok, finite, rel_eps)
    S = gram(A_ok.double()) if grad else _zero_rows(gram(A_ok.double()), finite)
    evals, evecs = tie_safe_eigh(S, tie_eps(A.dtype)) if grad else _small_eigh(S)
    evals = evals.flip(-1).clamp_min(0.0)
    evecs = evecs.flip(-1)
    floor = torch.finfo(A.dtype).tiny
    keep = _kept(evals, A.dtype, rel_eps)
    if grad:
        within = within_terms(S, evals, evecs, keep)
        W = evecs @ inverse_sqrt_matrix(evals, keep, within)  # = evecs · λ^{-1/2} in value
        U = A_ok @ W.to(A.dtype)
        return Eigenpairs(values=nan_rows(evals.to(A.dtype), finite), vectors=nan_rows(U, finite), within=within,
                          kept=keep.sum(-1))
    inv_sqrt = torch.where(keep, evals.clamp_min(floor).rsqrt(), torch.zeros_like(evals))
    U = A_ok @ (evecs * inv_sqrt.unsqueeze(-2)).to(A.dtype)  # the D-sized product in A's own dtype
    finite, least = _settle(finite, evals, keep)
    return Eigenpairs(values=nan_rows(evals.to(A.dtype), finite), vectors=nan_rows(U, finite), kept=keep.sum(-1),
                      least_kept=least)


def _has_tangent(A: Tensor) -> bool:
    """Whether ``A`` carries a forward-mode tangent (``torch.func.jvp``/``jacfwd``, a ``forward_ad`` dual tensor),
    under ``no_grad`` too (landing's): ``eigh``'s forward derivative divides by ``λ_j − λ_i`` as its backward does
    (a sphere projector's tied pair: NaN tangents, or O(1) wrong ones where rounding splits the tie). About 1 µs."""
    return forward_ad.unpack_dual(A).tangent is not None


def _settle(finite: Tensor | None, evals: Tensor, keep: Tensor) -> tuple[Tensor | None, int]:
    """A decomposition's one host sync: the ``(B,)`` finite-row mask (``None`` where every row is finite, as
    `zero_bad_rows` gives it) and `Eigenpairs.least_kept` from the ``(B, r)`` eigenvalues and kept flags, read
    together: `warn_if_cut`'s own sync on every decomposition had cost a sync per optimiser step (tester C, s32)."""
    r = keep.shape[-1]
    if not keep.shape[0]:
        return None, r
    least = torch.where(evals[..., 0] > 0, keep.sum(-1), r).min()
    every = torch.ones((), dtype=torch.bool, device=least.device) if finite is None else finite.all()
    every_, least_ = torch.stack([every.to(least.dtype), least]).tolist()
    return (None if every_ else finite), int(least_)


def _check_columns(r: int, name: str) -> None:
    """A ``ValueError`` for a factor with no columns (``r = 0``), which had failed in ``reshape`` or ``argmax``."""
    if r == 0:
        raise ValueError(f"{name} has r = 0 columns (shape (B, D, 0)): G = AAᵀ = 0 has no eigen-directions, so there "
                         "is no tangent space or dimension; a factor needs at least one column")


def _kept(evals: Tensor, dtype: torch.dtype, rel_eps: float) -> Tensor:
    """Which of the descending eigenvalues ``(B, r)`` count as non-zero: above ``rel_eps · λ₁`` and above what
    ``dtype`` can hold (``λ^{-1/2}`` would overflow it)."""
    floor = torch.finfo(dtype).tiny
    return (evals > rel_eps * evals[..., :1].clamp_min(floor)) & (evals > floor)


def _wide_eigenpairs(A: Tensor, finite: Tensor | None, rel_eps: float) -> Eigenpairs:
    """`eigenpairs` of a factor wider than tall (``r > D``, e.g. ``k`` neighbours in ``R^D``) from ``G = AAᵀ``
    itself, the smaller matrix (S² with k = 64: 42× faster than the ``64 × 64`` Gram, `benchmarks/RESULTS.md`);
    values and vectors are padded with zeros to ``r`` columns, as the Gram route gives them."""
    b, dim, r = A.shape
    Ad = A.double()
    evals, evecs = _small_eigh(_zero_rows(Ad @ Ad.transpose(-1, -2), finite) if finite is not None else
                               Ad @ Ad.transpose(-1, -2))
    evals, evecs = evals.flip(-1).clamp_min(0.0), evecs.flip(-1)
    keep = _kept(evals, A.dtype, rel_eps)
    U = torch.where(keep.unsqueeze(-2), evecs, 0.0).to(A.dtype)
    values = torch.cat([evals.to(A.dtype), A.new_zeros(b, r - dim)], dim=-1)
    vectors = torch.cat([U, A.new_zeros(b, dim, r - dim)], dim=-1)
    finite, least = _settle(finite, evals, keep)
    return Eigenpairs(values=nan_rows(values, finite), vectors=nan_rows(vectors, finite), kept=keep.sum(-1),
                      least_kept=least)


@full_precision
def tangent_basis(A: Tensor, d: int) -> Tensor:
    """Orthonormal basis of the estimated tangent space: the top-``d`` eigenvectors of ``AAᵀ``, ``(B, D, r)`` →
    ``(B, D, d)``; ``d`` an integer in ``1..r`` (NumPy's too, not a bool), checked before any work. Warns, as
    `range_project` does, where fewer than ``d`` eigenvalues lie above the rounding cut: those columns are zero,
    not orthonormal (`warn_if_cut`)."""
    number = as_index(d)
    if number is None:
        raise TypeError(f"d must be an int (the tangent dimension), got {type(d).__name__} {d!r}")
    if not 1 <= number <= A.shape[-1]:
        raise ValueError(f"tangent dimension d={number} must lie in 1..r={A.shape[-1]}")
    pairs = eigenpairs(A)
    warn_if_cut(pairs, number)
    return pairs.vectors[..., :number]


@full_precision
def projector_error(U: Tensor, V: Tensor) -> Tensor:
    """``‖U Uᵀ − V Vᵀ‖_F`` for orthonormal bases ``U (B, D, p)``, ``V (B, D, q)`` without forming ``D × D``.

    Uses ``‖P − Q‖²_F = tr P + tr Q − 2 ‖UᵀV‖²_F``; zero columns (padded bases) count as absent.
    """
    tr_p = (U * U).sum(dim=(-2, -1))
    tr_q = (V * V).sum(dim=(-2, -1))
    cross = (U.transpose(-1, -2) @ V).pow(2).sum(dim=(-2, -1))
    return zero_safe_sqrt((tr_p + tr_q - 2 * cross).clamp_min(0.0))


def zero_safe_sqrt(squared: Tensor) -> Tensor:
    """``√squared`` of a non-negative tensor (any shape), with derivative 0 where ``squared`` is exactly 0: the
    subgradient of a distance at its minimum, as ``torch.linalg.norm`` gives, where ``sqrt``'s is ``x / 0`` (NaN:
    one point lying on the data or exactly fitted made a whole batch's summed score's gradient NaN; tester D, s37).
    Same values as ``squared.sqrt()``, in reverse and forward mode."""
    zero = squared == 0
    return torch.where(zero, 0.0, torch.where(zero, 1.0, squared).sqrt())


@full_precision
def intrinsic_gradient(A: Tensor, grad: Tensor) -> Tensor:
    """Intrinsic gradient ``∇_M f = G ∇f = A (Aᵀ ∇f)``: ``(B, D, r)``, ``(B, D)`` → ``(B, D)``."""
    return (A @ (A.transpose(-1, -2) @ grad.unsqueeze(-1))).squeeze(-1)


def _check_delta(delta: object) -> None:
    if isinstance(delta, bool) or not isinstance(delta, numbers.Real):
        raise NotANumberError(f"delta must be a finite number >= 0, got {delta!r}")
    if not 0 <= delta < math.inf:
        raise ValueError(f"delta must be a finite number >= 0, got {delta!r}")


@full_precision
def lowrank_apply(A: Tensor, w: Tensor, delta: float = 0.0) -> Tensor:
    """``(A Aᵀ + δ I) w``: ``(B, D, r)``, ``(B, D)`` → ``(B, D)``, cost ``O(D r)``; ``δ`` as in `lowrank_solve`."""
    _check_delta(delta)
    out = intrinsic_gradient(A, w)
    return out + delta * w if delta else out


@full_precision
def lowrank_solve(A: Tensor, v: Tensor, delta: float = 0.0, *, rel_eps: float = 1e-6,
                  pairs: Eigenpairs | None = None) -> Tensor:
    """``(A Aᵀ + δ I)^{-1} v`` by Woodbury, ``(I − A (δ I_r + AᵀA)^{-1} Aᵀ) v / δ`` (SPEC §5), or for ``r > D``
    (a factor wider than tall, e.g. many neighbours) by Cholesky of ``AAᵀ + δI``, the smaller matrix then.

    For ``δ = 0`` it returns the pseudo-inverse on the range of ``A``, ``A (AᵀA)^{+2} Aᵀ v = U Λ^{-1} Uᵀ v``
    (`eigenpairs`), over the eigenvalues above ``rel_eps · λ₁``, with or without ``pairs`` (a float64 solve had
    cut at ``1e-6`` while ``pairs=eigenpairs(A)`` kept ``λ₃/λ₁ = 1e-8``: norms 2.68 and 9.1e7). The default
    ``1e-6`` is the same for every dtype, not `eigenpairs`' float64 cut `FLOAT64_CUT`: a solve has no dimension
    ``d`` to stop at and inverts every kept eigenvalue, so a cut at the Gram's rounding made it jump where a
    rank-deficient factor moves by ``1e-7`` (its zero eigenvalues, ``1e-14 λ₁``, then kept, ``1/λ`` ~ ``1e14``).

    Accuracy: the Woodbury form cancels along the range, losing about ``ε λ / δ`` relatively (``ε`` of the dtype):
    in float32 1e-3 at ``δ = 10⁻⁴ λ``, 2e-2 at ``10⁻⁵ λ`` (measured by an outside tester on tangent vectors); the
    default geodesic regularisation ``δ = 10⁻³ λ₁`` loses about 1e-4. Give float64 points for smaller ``δ``. Rows
    where ``δ`` is below even float64's rounding of the Gram (``≲ 1e-16 λ₁``, Cholesky fails) are solved from the
    eigenpairs instead (`_eigen_solve`).

    Args:
        A: ``(B, D, r)``; v: ``(B, D)``; delta: the isotropic part ``δ ≥ 0``.
        pairs: ``eigenpairs(A)`` (any ``rel_eps`` up to this one) when already at hand (``δ = 0`` only; saves
            recomputing it): eigenvalues at or below ``rel_eps · λ₁`` are left out whatever cut it was built with.

    Returns:
        ``(B, D)``.

    Raises:
        ValueError: ``delta`` is not a finite number ``≥ 0`` (NaN had been read as 0, inf had given NaN).
    """
    _check_delta(delta)
    if delta > 0:
        # The r × r algebra runs in at least float32 (Cholesky has no half-precision kernels); rows whose
        # factor is not finite are solved with a zero factor and then set to NaN (one bad row, one NaN row).
        work = torch.promote_types(A.dtype, torch.float32)
        Aw = A.to(work)
        finite = torch.isfinite(Aw.flatten(1)).all(-1)
        # on CUDA masked always (no host sync; the field's scan made one); elsewhere a sync costs nothing and the
        # mask a copy of A (10-15% of a CPU solve): only where a row is bad
        Aw = _zero_rows(Aw, finite) if Aw.is_cuda or not bool(finite.all()) else Aw
        vw = v.to(work)
        wide = Aw.shape[-1] > Aw.shape[-2]  # wider than tall: the D × D matrix is the smaller one
        chol, failed = _regularised_cholesky(Aw.transpose(-1, -2) if wide else Aw, delta)
        if wide:
            out = torch.cholesky_solve(vw.to(chol.dtype).unsqueeze(-1), chol).squeeze(-1).to(work)
        else:
            at_v = Aw.transpose(-1, -2) @ vw.unsqueeze(-1)  # (B, r, 1)
            y = torch.cholesky_solve(at_v.to(chol.dtype), chol).to(work)
            out = (vw - (Aw @ y).squeeze(-1)) / delta
        if failed is not None:  # not positive definite even in float64: δ below the Gram's rounding
            out = torch.where(failed.unsqueeze(-1), _eigen_solve(Aw, vw, delta).to(work), out)
        return nan_rows(out, finite).to(v.dtype)
    pairs = eigenpairs(A, rel_eps=rel_eps) if pairs is None else pairs
    coords = (pairs.vectors.transpose(-1, -2) @ v.unsqueeze(-1)).squeeze(-1)
    coords = scale_coords(pairs.values, pairs.within, coords, -1, _kept(pairs.values, A.dtype, rel_eps))
    return (pairs.vectors @ coords.unsqueeze(-1)).squeeze(-1)


def _eigen_solve(A: Tensor, v: Tensor, delta: float) -> Tensor:
    """``(AAᵀ + δI)^{-1} v`` from the eigenpairs of ``G = AAᵀ`` in float64: ``U (Λ + δ)^{-1} Uᵀ v + (v − UUᵀv)/δ``
    (``(B, D, r)``, ``(B, D)`` → ``(B, D)`` float64), for ``δ`` too small for Cholesky. Eigenvalues within the
    float64 rounding of the Gram (``≤ 16 r ε λ₁``) count as zero: ``G`` is not known more finely than that."""
    Ad = A.double()
    pairs = eigenpairs(Ad, rel_eps=16 * A.shape[-1] * torch.finfo(torch.float64).eps)
    vd = v.double().unsqueeze(-1)
    coords = pairs.vectors.transpose(-1, -2) @ vd  # (B, r, 1); zero for the discarded columns
    along = pairs.vectors @ coords
    return (pairs.vectors @ (coords / (pairs.values.unsqueeze(-1) + delta)) + (vd - along) / delta).squeeze(-1)


@full_precision
def lowrank_inner(A: Tensor, u: Tensor, v: Tensor, delta: float = 0.0, *,
                  pairs: Eigenpairs | None = None) -> Tensor:
    """Riemannian inner product ``uᵀ (AAᵀ + δI)^{-1} v`` per point: → ``(B,)`` (``pairs`` as in `lowrank_solve`)."""
    return (u * lowrank_solve(A, v, delta, pairs=pairs)).sum(-1)


@full_precision
def spectral_apply(pairs: Eigenpairs, u: Tensor, d: int | Tensor | None = None, *, power: int = 0,
                   check_range: bool = True) -> Tensor:
    """``Û_d Λ_d^p Û_dᵀ u``: a power of ``G`` restricted to its top-``d`` eigen-directions (SPEC §5, δ = 0).

    ``power = 0`` is the tangent projector ``Û Ûᵀ u`` (`range_project`), ``1`` the restricted co-metric
    ``G_d u`` (the Riemannian gradient on the learned tangent bundle), ``-1`` the restricted metric ``G_d^+ u``
    (eigen-directions with a zero eigenvalue contribute nothing). ``d`` as in `range_project`.

    Args:
        pairs: `eigenpairs` of the factor, values ``(B, r)`` and vectors ``(B, D, r)``.
        u: ``(B, D)`` vectors.
        check_range: ``False`` skips reading a per-point ``d``'s range (its one host sync; dtype and length are
            still checked), for a ``d`` in ``0..r`` by construction: ``intrinsic_dimension(pairs.values)``, as
            landing and `regularised.TangentBundle` pass on every iteration.

    Returns:
        ``(B, D)``.

    Raises:
        ValueError: ``power`` not -1, 0 or 1; ``r = 0``; ``d`` as in `range_project`.
    """
    if power not in (-1, 0, 1):
        raise ValueError(f"power must be -1, 0 or 1, got {power}")
    _check_columns(pairs.vectors.shape[-1], "the factor of pairs")
    d = check_dims(d, pairs.vectors.shape[0], pairs.vectors.shape[-1], check_range=check_range)
    if d is None:
        dims, U = _gap_rule(pairs)
        if power == -1:
            d = dims  # the kept eigenvalues too
    else:
        if isinstance(d, int):
            warn_if_cut(pairs, d)
        U = top_vectors(pairs, d)
    coords = (U.transpose(-1, -2) @ u.unsqueeze(-1)).squeeze(-1)  # (B, d')
    if power:
        lam = pairs.values[..., : U.shape[-1]]
        kept = lam > 0  # power -1: only these: a truncated column's 1/λ (λ ~ 1e-20) has an infinite derivative
        if isinstance(d, Tensor):
            kept = kept & (torch.arange(lam.shape[-1], device=lam.device) < d.to(lam.device).unsqueeze(-1))
        coords = scale_coords(pairs.values, pairs.within, coords, power, kept)
    return (U @ coords.unsqueeze(-1)).squeeze(-1)


def _gap_rule(pairs: Eigenpairs) -> tuple[Tensor, Tensor]:
    """The gap rule's dimensions ``(B,)`` and basis ``(B, D, r)`` of ``pairs`` (`intrinsic_dimension`,
    `truncate_basis`), computed once per decomposition: the manifold applies one decomposition in ``proju``,
    ``egrad2rgrad`` and ``inner`` at a point, and recomputing them was a third of a cached ``proju`` (64 points,
    a small MLP model; tester E of the tenth round)."""
    if pairs.gap is None:
        dims = intrinsic_dimension(pairs.values)
        pairs.gap = (dims, truncate_basis(pairs.vectors, dims))
    return pairs.gap


@full_precision
def range_project(A: Tensor, u: Tensor, d: int | Tensor | None = None, *,
                  pairs: Eigenpairs | None = None) -> Tensor:
    """Orthogonal projection ``Û Ûᵀ u`` onto the learned tangent space (SPEC §5, δ = 0).

    ``Û`` holds the top-``d`` eigenvectors of ``AAᵀ``: ``d`` an int in ``1..r``, a ``(B,)`` integer tensor of
    per-point dimensions in ``0..r`` (its range read with one host sync), or ``None`` for each point's gap-rule
    dimension (`intrinsic_dimension`, scale-free); checked before any work (`spectral_dims.check_dims`).
    ``(B, D, r)``, ``(B, D)`` → ``(B, D)``. ``pairs``: ``eigenpairs(A)`` when already at hand.

    Raises:
        ValueError: ``A`` is not ``(B, D, r)`` with ``r ≥ 1``; ``d`` of the wrong type, dtype, length or range.
    """
    shape = A.shape if pairs is None else pairs.vectors.shape
    if len(shape) != 3:
        raise ValueError(f"A must have shape (B, D, r), got {tuple(shape)}")
    _check_columns(shape[-1], "A")
    d = check_dims(d, shape[0], shape[-1])
    pairs = eigenpairs(A) if pairs is None else pairs
    if isinstance(d, int):
        warn_if_cut(pairs, d)
    U = top_vectors(pairs, d)
    return (U @ (U.transpose(-1, -2) @ u.unsqueeze(-1))).squeeze(-1)
