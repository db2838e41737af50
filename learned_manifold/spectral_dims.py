"""Which eigen-directions a restricted power of ``G`` keeps (SPEC §5, δ = 0): the check of ``d`` shared by
`geometry.range_project` and `geometry.spectral_apply` (`check_dims`), the top-``d`` basis (`top_vectors`, per point
`truncate_basis`), and the warning where an explicit ``d`` exceeds the directions above `geometry.eigenpairs`'
rounding cut (`warn_if_cut`). Moved out of `geometry` to keep that module short; `geometry` re-exports
`truncate_basis`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .checks import as_index
from .dimension import intrinsic_dimension
from .user_warnings import warn_user

if TYPE_CHECKING:
    from .geometry import Eigenpairs

__all__ = ["check_dims", "top_vectors", "truncate_basis", "warn_if_cut"]


def check_dims(d: object, b: int, r: int, *, check_range: bool = True) -> int | Tensor | None:
    """The ``d`` of `geometry.range_project` / `geometry.spectral_apply` for ``b`` points and ``r`` columns, checked
    before any work.

    Accepted: ``None`` (each point's gap rule); one integer in ``1..r`` (Python's or NumPy's, or a 0-d integer
    tensor; not a bool), returned as an ``int``; or a ``(B,)`` integer tensor of per-point dimensions in ``0..r``
    (0 where a point has no direction, as the gap rule reads where ``G = 0``), returned as it is. A tensor's range is
    read with one host sync (``aminmax``); its dtype and length cost none. A per-point tensor had been used
    unchecked: entries above ``r`` read as ``r``, negative ones as 0, fractional ones rounded up, and a wrong length
    failed inside torch (tester D, s35). ``check_range=False`` skips that sync (dtype and length are still
    checked): for a ``d`` in range by construction, as `intrinsic_dimension` of the same eigenvalues, which the
    library's own loops (landing, `regularised.TangentBundle`) pass on every iteration (s35 review).

    Raises:
        ValueError: naming ``d`` and the problem (a wrong type or dtype, length or range).
    """
    if d is None:
        return None
    if isinstance(d, Tensor):
        if d.dtype == torch.bool or d.is_floating_point() or d.is_complex():
            raise ValueError(f"d must hold integer dimensions, got a tensor of dtype {d.dtype}")
        if d.ndim == 1:
            if d.shape[0] != b:
                raise ValueError(f"d must have one dimension per point, shape ({b},), got shape {tuple(d.shape)}")
            if b and check_range:
                low, high = torch.stack(torch.aminmax(d)).tolist()  # the one host sync
                if low < 0 or high > r:
                    raise ValueError(f"d must lie in 0..r = 0..{r} at every point, got values from {low} to {high}")
            return d
        if d.ndim > 1:
            raise ValueError(f"d must be an int or a (B,) tensor, shape ({b},), got shape {tuple(d.shape)}")
    number = as_index(d)
    if number is None:
        raise ValueError(f"d must be an int, a (B,) tensor of dimensions or None, got {type(d).__name__} {d!r:.40}")
    if not 1 <= number <= r:
        raise ValueError(f"d must lie in 1..r = 1..{r}, got {number}")
    return number


def truncate_basis(vectors: Tensor, dims: Tensor) -> Tensor:
    """Keep the first ``dims[b]`` columns of each basis and zero the rest: ``(B, D, r)``, ``(B,)`` → ``(B, D, r)``.

    Lets bases of different dimension per point (a union of pieces) share one tensor; `geometry.projector_error`
    treats zero columns as absent.
    """
    cols = torch.arange(vectors.shape[-1], device=vectors.device)
    return vectors * (cols < dims.to(vectors.device).unsqueeze(-1)).unsqueeze(-2).to(vectors.dtype)


def warn_if_cut(pairs: Eigenpairs, d: int) -> None:
    """Warn where an explicit ``d`` asks for more directions than have an eigenvalue above the cut of `eigenpairs`
    (their columns are zero, so the projector would silently have fewer than ``d``). Once per `Eigenpairs` and
    ``d`` (`Eigenpairs.checked_dims`), on the ``(B,)`` kept counts: the manifold reuses one decomposition per point
    set for ``proju``, ``egrad2rgrad`` and ``inner``, whose calls no longer scan the vectors or sync each time. No
    sync where ``d`` is at most `Eigenpairs.least_kept` (every decomposition, as each optimiser step's, is still
    checked)."""
    if isinstance(d, bool) or not 1 <= d <= pairs.vectors.shape[-1] or d in pairs.checked_dims:
        return  # `check_dims` refuses a d outside 1..r
    pairs.checked_dims.add(d)
    if pairs.least_kept is not None and d <= pairs.least_kept:
        return  # no point has fewer kept columns (`eigenpairs` read it in its own sync)
    top = pairs.values[..., 0]
    short = pairs.kept < d if pairs.kept is not None else (pairs.vectors[..., d - 1] == 0).all(-1)
    cut = short & (top > 0)
    if bool(cut.any()):
        # (read before the message: under torch.compile a host sync inside an f-string after a number that
        # varies between calls, here d, breaks the message's join; `landing._warn_far_landed`)
        ratio, count = (pairs.values[..., d - 1] / top)[cut].max().item(), int(cut.sum())
        warn_user(f"d = {d} asks for more directions than have eigenvalues above the rounding cut at "
                  f"{count} point(s) (λ_d/λ₁ up to {ratio:.3g}): those points get fewer than {d} "
                  "directions (zero columns)")


def top_vectors(pairs: Eigenpairs, d: int | Tensor | None) -> Tensor:
    """The top-``d`` eigenvectors ``(B, D, ·)`` for a ``d`` that `check_dims` accepted: an int (the first ``d``
    columns), per-point dimensions ``(B,)`` (each keeps its first ``d[b]`` columns, `truncate_basis`), or ``None``
    (the gap rule)."""
    if d is None:
        return truncate_basis(pairs.vectors, intrinsic_dimension(pairs.values))
    if isinstance(d, int):
        return pairs.vectors[..., :d]
    return truncate_basis(pairs.vectors, d)
