"""The one check of what a co-metric field's ``factor(x)`` returns (SPEC §5): every consumer (`LearnedDataManifold`,
`curvature`, the flows, `geodesic`, the evaluation helpers, the base class's derived ``apply``/``metric``) reads the
factor through it, because `CoMetricField.__init_subclass__` wraps each subclass's own ``factor`` in
`checked_factor`.

A factor of points ``x`` ``(B, D)`` must be a tensor ``A`` of shape ``(B, D, r)`` with ``r ≥ 1`` (``G = AAᵀ``), in
``x``'s dtype and on its device. Before this check a float64 factor for float32 points crashed later in a matmul
naming neither the field nor the factor, a factor of batch 1 for ``B`` points was broadcast silently to every point
(answers at the wrong point), and a factor with no column (``G = 0``) failed inside ``argmax`` or a reshape.

The check reads only shapes, dtypes and devices: no host sync, no scan of the values (non-finite values are the
field's own business; `LearnedDataManifold` warns about them at its 1st, 2nd, 4th, 8th, … decomposition of the
factor, `manifold_checks.check_decomposition`: a factor that is NaN only at the points of another one, the 3rd say,
goes unnamed there; `curvature` checks every factor it reads).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TypeVar

from torch import Tensor

__all__ = ["FactorContractError", "check_factor", "checked_factor"]

_F = TypeVar("_F", bound=Callable)


class FactorContractError(ValueError):
    """A field's ``factor`` broke its contract (`check_factor`): a mistake in the field, not in the points, so the
    flows and solvers let it through unchanged instead of reading it as a point the field refuses.

    Example:
        >>> import torch
        >>> from learned_manifold.metrics import CoMetricField, FactorContractError
        >>> class Flat(CoMetricField):
        ...     low_rank = True
        ...     dim = 2
        ...     def factor(self, x):
        ...         return torch.eye(2, dtype=torch.float64).expand(x.shape[0], 2, 2)
        >>> try:
        ...     Flat().factor(torch.zeros(3, 2))
        ... except FactorContractError as err:
        ...     print(str(err).split(":")[0])
        Flat.factor returned A of dtype torch.float64 for points x of dtype torch.float32
    """


def _expected(x: Tensor) -> str:
    """The shape a factor of ``x`` must have, for messages: ``(B, D, r) = (4, 3, r)`` for flat points."""
    if x.ndim == 2:
        return f"(B, D, r) = ({x.shape[0]}, {x.shape[1]}, r)"
    return "(" + ", ".join(str(n) for n in x.shape) + ", r)"


def check_factor(owner: str, x: object, A: object) -> None:
    """Raise one ``ValueError`` naming ``owner`` (e.g. ``"Sphere.factor"``) unless ``A`` is a valid factor of the
    points ``x``: a tensor of shape ``(*x.shape, r)`` (``(B, D, r)`` for flat points) with ``r ≥ 1``, of ``x``'s
    dtype and device. A non-tensor ``x`` (refused by the field itself, if at all) leaves only the type of ``A``
    and ``r ≥ 1`` to check. Reads metadata only (no host sync).

    Raises:
        FactorContractError: (a ``ValueError``) ``A`` is not a tensor, has the wrong shape, no column, or another
            dtype or device than ``x``.
    """
    if not isinstance(A, Tensor):
        raise FactorContractError(f"{owner} must return a torch.Tensor A with G = AAᵀ, of shape (B, D, r); "
                                  f"got {type(A).__name__}")
    if isinstance(x, Tensor) and (A.ndim != x.ndim + 1 or A.shape[:-1] != x.shape):
        raise FactorContractError(f"{owner} must return A of shape {_expected(x)} for points x of shape "
                                  f"{tuple(x.shape)} (one D × r factor per point, G = AAᵀ); got {tuple(A.shape)}")
    if A.ndim == 0 or A.shape[-1] == 0:
        raise FactorContractError(f"{owner} returned A of shape {tuple(A.shape)}, with no column: rank 0 (G = 0) "
                                  "has no geometry; a factor needs r >= 1 columns")
    if isinstance(x, Tensor) and A.dtype != x.dtype:
        raise FactorContractError(f"{owner} returned A of dtype {A.dtype} for points x of dtype {x.dtype}: return "
                                  "the factor in the points' dtype (e.g. A.to(x.dtype))")
    if isinstance(x, Tensor) and A.device != x.device:
        raise FactorContractError(f"{owner} returned A on device {A.device} for points x on {x.device}: return "
                                  "the factor on the points' device (e.g. A.to(x.device))")


def _points_name(factor: Callable) -> str | None:
    """The name of ``factor``'s points parameter (the one after ``self``), by which a caller may pass them as a
    keyword; ``None`` where there is none to name (``def factor(self, *args)``, or no signature to read)."""
    try:
        params = list(inspect.signature(factor).parameters.values())[1:]
    except (TypeError, ValueError):
        return None
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return params[0].name if params and params[0].kind in named else None


def checked_factor(factor: _F) -> _F:
    """``factor(self, x, ...)`` with its result checked by `check_factor` (named ``<FieldClass>.factor``).

    The wrapper takes the arguments exactly as ``factor`` does and passes them on unchanged: the points first,
    positional or by the keyword of ``factor``'s own signature (``f.factor(points=x)`` for ``def factor(self,
    points)``), and a wrong call gets ``factor``'s own ``TypeError``, naming its parameters.

    Applied by `CoMetricField.__init_subclass__` to each subclass's own ``factor``, once (marked
    ``_checked_factor``). Like `learned_manifold.precision.full_precision`, each wrapper gets its own code object,
    named after the wrapped function, so ``torch.compile`` does not recompile one shared frame for every field.
    """
    name = _points_name(factor)

    @functools.wraps(factor)
    def checked(self, *args, **kwargs):
        A = factor(self, *args, **kwargs)
        x = args[0] if args else (kwargs.get(name) if name else None)
        check_factor(f"{type(self).__name__}.factor", x, A)
        return A

    names = {"co_name": factor.__name__}
    if hasattr(checked.__code__, "co_qualname"):  # (Python 3.11+)
        names["co_qualname"] = f"checked_factor({factor.__qualname__})"
    checked.__code__ = checked.__code__.replace(**names)
    checked._checked_factor = True  # type: ignore[attr-defined]  # (a marker on the wrapper function)
    return checked  # type: ignore[return-value]
