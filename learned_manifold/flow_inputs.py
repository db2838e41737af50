"""Checks and conversions of the flows' inputs (`flows.gradient_flow`, `flows.interpolate`; SPEC §6): the field,
the points, the output times and the objective. Each raises one error naming the argument and the problem."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from .checks import check_real
from .geodesic_inputs import _check_count, _real_points, _to_tensor
from .manifold import LearnedDataManifold
from .metrics.base import CoMetricField, as_field
from .regularised import warn_uncentred

__all__: list[str] = []

# name -> whether the method is adaptive (takes rtol/atol) or fixed-step (takes a step size)
FLOW_METHODS: dict[str, bool] = {
    "dopri5": True,
    "bosh3": True,
    "adaptive_heun": True,
    "dopri8": True,
    "euler": False,
    "midpoint": False,
    "rk4": False,
}


def _check_solver(method: str, rtol: float, atol: float, step_size: float | None) -> bool:
    """One error naming the option, before any work: an unknown ``method``; ``rtol``/``atol`` not finite numbers
    > 0 (for every method: a fixed-step one does not use them, yet ``nan`` or ``'tight'`` is no tolerance); a
    ``step_size`` not a finite number > 0, or given to an adaptive method, which chooses its own steps from
    ``rtol``/``atol`` (torchdiffeq ignored it there). Returns whether the method is adaptive."""
    if method not in FLOW_METHODS:
        raise ValueError(f"unknown flow method {method!r}; valid names: {sorted(FLOW_METHODS)}")
    for name, value in {"rtol": rtol, "atol": atol, "step_size": step_size}.items():
        if value is not None or name != "step_size":
            check_real(value, name, positive=True)
    if step_size is not None and FLOW_METHODS[method]:
        fixed = [name for name, adaptive in FLOW_METHODS.items() if not adaptive]
        raise ValueError(f"step_size applies to the fixed-step methods {fixed}; the adaptive method {method!r} "
                         f"chooses its own steps from rtol/atol: leave step_size None, or choose a fixed-step method")
    return FLOW_METHODS[method]


def _field_of(manifold_or_field, caller: str) -> tuple[CoMetricField, tuple[int, ...] | None]:
    """The field and data shape of a manifold or field; warns for an uncentred field (`warn_uncentred`)."""
    field = as_field(manifold_or_field)
    warn_uncentred(field, caller)
    return field, getattr(manifold_or_field, "data_shape", None)


def _landing_of(manifold_or_field, landing: object) -> object:
    """A flow's ``landing`` option resolved: as given, or for ``None`` (the default) the manifold's own ``landing``
    setting when given a `LearnedDataManifold`, else ``False``. A manifold built with ``landing=True`` (to stay
    on the data) had its flows leave the data: the flows' own ``False`` default won silently (a long flow on a
    trained circle ended 0.55 off it). Checked afterwards by `metrics.field_checks.check_landing`.

    Raises:
        TypeError: ``landing`` is not a bool (NumPy's included) or ``None``: ``bool('no')`` is ``True``.
    """
    if not (landing is None or isinstance(landing, (bool, np.bool_))):
        raise TypeError(f"landing must be True, False or None (the default: a LearnedDataManifold's own setting), "
                        f"got {landing!r}")
    if landing is None:
        return isinstance(manifold_or_field, LearnedDataManifold) and bool(manifold_or_field.landing)
    return landing


def _check_objective(f: Callable[[Tensor], Tensor], x: Tensor, data_shape: tuple[int, ...] | None = None) -> None:
    """Evaluate ``f`` once on the start points ``x`` ``(B, D)``: one ``ValueError`` naming ``f`` unless it gives
    ``(B,)`` values (a mean over the batch would slow every point B-fold, a ``(B, D)`` output be summed) that
    autograd can differentiate with respect to ``x`` (a constant, or a value computed from ``x.detach()``, failed
    with torch's bare "element 0 of tensors does not require grad"). An error ``f`` raises there becomes one
    ``ValueError`` saying that ``f`` receives flat ``(B, D)`` points and how to reshape them to the manifold's
    ``data_shape``, the original error appended (an image objective failed with torch's bare ``IndexError``).
    ``f(x0)`` or its gradient NaN or inf (a start outside ``f``'s domain) is one ``ValueError`` naming the points."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        try:
            out = f(xg) if x.shape[0] else torch.zeros(0)
        except Exception as err:
            reshape = (f", not in the manifold's data_shape {tuple(data_shape)}: reshape them in f, "
                       f"x.view(-1, {', '.join(map(str, data_shape))}) (x.view(-1, *data_shape))"
                       if data_shape is not None and len(data_shape) > 1 else "")
            raise ValueError(f"f failed at x0: f receives flat points of shape (B, D) = {tuple(x.shape)}, "
                             f"D = {x.shape[1]}{reshape}; f raised {type(err).__name__}: {err}") from err
    if (got := tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__) != (x.shape[0],):
        raise ValueError(f"f must map points of shape (B, D) = {tuple(x.shape)} to one value per point, shape (B,) = "
                         f"({x.shape[0]},); got {got} (return the per-point values, not their mean or sum)")
    if not x.shape[0]:
        return
    grad = torch.autograd.grad(out.sum(), xg, allow_unused=True)[0] if out.requires_grad else None
    if grad is None:
        raise ValueError("f must be differentiable in x by autograd, but f(x0) does not depend on the points x: a "
                         "constant objective (which has no flow: its gradient is zero everywhere), or one computed "
                         "from x.detach(), .item() or NumPy; compute f from x with torch operations")
    for what, values in (("f(x0)", out.detach()), ("the gradient of f at x0", grad.flatten(1))):
        bad = (~torch.isfinite(values.reshape(x.shape[0], -1)).all(-1)).nonzero().flatten().tolist()
        if bad:
            raise ValueError(f"{what} is NaN or inf at start points {bad[:8]}{' …' if len(bad) > 8 else ''}: the "
                             f"flow needs a finite objective and gradient; start inside f's domain")


def _check_times(t_end: float, n_points: int) -> int:
    """One clear error for bad output times, before any work (torchdiffeq would assert deep inside); returns
    ``n_points`` as an ``int`` (any integer `operator.index` takes, NumPy's included; not a bool). ``t_end``: any
    finite real number > 0 (`checks.check_real`, ``np.float32`` included), a ``ValueError`` otherwise, as every
    scalar option."""
    n_points = _check_count(n_points, "n_points", 0)
    if n_points < 2:
        raise ValueError(f"n_points counts the output times including t = 0 and t_end and must be >= 2, got {n_points}")
    check_real(t_end, "t_end", positive=True)
    return n_points


def _tensor_points(x: object, name: str) -> Tensor:
    """The flows' points as a floating tensor: NumPy arrays and nested lists converted, integers as the default
    float dtype, bool and complex ones refused with the manifold's ``ValueError`` (as `geodesics.geodesic`)."""
    return _real_points(_to_tensor(x, name), name)


def _flatten(x: Tensor, data_shape: tuple[int, ...] | None, dim: int | None, name: str) -> Tensor:
    """The points ``x`` (a tensor: `geodesic_inputs._to_tensor`) as flat ``(B, D)`` floating points, checked."""
    if data_shape is not None and tuple(x.shape[-len(data_shape):]) == tuple(data_shape):
        if x.ndim > len(data_shape) + 1:
            raise ValueError(f"{name} must have shape (B, *data_shape) = (B, {', '.join(map(str, data_shape))}) with "
                             f"one batch axis, got {tuple(x.shape)}: reshape it to (-1, *data_shape)")
        flat = x.reshape(-1, math.prod(data_shape))
    elif x.ndim == 1:
        flat = x.unsqueeze(0)
    else:
        flat = x.reshape(x.shape[0], math.prod(x.shape[1:]))
    if dim is not None and flat.shape[1] != dim:
        raise ValueError(f"{name} has {flat.shape[1]} coordinates per point; the geometry expects D = {dim}")
    if not bool(torch.isfinite(flat).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return flat


def _single(x: Tensor | np.ndarray, data_shape: tuple[int, ...] | None) -> bool:
    """Whether the flows' points ``x`` are one point (a flat ``(D,)`` one, or one of the manifold's ``data_shape``)
    rather than a batch: its results then drop the batch axis, as `geodesics.geodesic`'s do. An image point used to
    keep it (``path (1, T, *data_shape)``) where a flat one dropped it."""
    return x.ndim == 1 or (data_shape is not None and tuple(x.shape) == tuple(data_shape))


def _solver_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the solver integrates points of ``dtype`` in: float32 for half precision (a float16 time grid
    has ``t + dt == t`` after a few steps, and torchdiffeq then gives up with "underflow in dt"), else ``dtype``.
    The field and the objective still see points of ``dtype``; the paths are returned in it."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
