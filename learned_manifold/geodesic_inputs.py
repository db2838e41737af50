"""Checks of `geodesics.geodesic`'s inputs (SPEC §6): end points, counts, solver options and a given start path.

Each raises one error naming the argument and the problem."""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import Tensor

from .checks import as_index, check_real
from .geodesic_init import INIT_NAMES

__all__: list[str] = []

HALF_DTYPES = (torch.float16, torch.bfloat16)


def _float32_field(field: torch.nn.Module) -> torch.nn.Module:
    """``field``, or where it holds half-precision parameters or buffers (a ``.half()`` model), a copy of it with
    those in float32 (float64 ones kept), so that `geodesic` solves and verifies in at least float32: in half
    precision the energy is rounded at ``~10⁻³`` relatively, the solver stopped on the chord through a learned
    sphere after 3–4 steps and the check could not refute it (+13.5% long, "converged"). The copy costs the
    field's memory in float32 for the call."""
    if not any(t.dtype in HALF_DTYPES for t in (*field.parameters(), *field.buffers())):
        return field
    copied = copy.deepcopy(field)
    return copied._apply(lambda t: t.float() if t.dtype in HALF_DTYPES else t)


def _to_tensor(x: object, name: str) -> Tensor:
    """Points as a tensor: a tensor as it is; a NumPy array or nested lists of numbers converted (as
    `metrics.base.as_points` converts them for the manifold's query methods); a ``TypeError`` naming ``name``
    for anything else."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x)
    if isinstance(x, (list, tuple)):
        try:
            return torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"{name} must be a tensor, a NumPy array or nested lists of numbers, got "
                            f"{type(x).__name__}: {err}") from None
    raise TypeError(f"{name} must be a torch.Tensor, a NumPy array or nested lists of numbers, got {type(x).__name__}")


def _real_points(x: Tensor, name: str) -> Tensor:
    """Integer points as the default float dtype; bool and complex points refused with the manifold's
    ``ValueError`` (`metrics.base.as_points`); a tensor made under ``torch.inference_mode()`` cloned into a normal
    one (the path solvers, which run under ``inference_mode(False)``, differentiate through it)."""
    if not (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
        x = x.to(torch.get_default_dtype())
    if not x.is_floating_point():
        raise ValueError(f"{name} must have a floating-point (or integer) dtype, got {x.dtype}")
    return x.clone() if x.is_inference() else x


def _common_dtype(x0: Tensor, x1: Tensor) -> tuple[Tensor, Tensor]:
    """Both ends in their common dtype (``torch.promote_types``, as `LearnedDataManifold`'s methods promote): a
    float32 ``x0`` and a float64 ``x1`` give a float64 path that ends exactly at ``x1`` (``x1`` was cast to
    ``x0``'s dtype, so the argument order set the precision)."""
    dtype = torch.promote_types(x0.dtype, x1.dtype)
    return x0.to(dtype), x1.to(dtype)


def _as_points(x: object, name: str, data_shape: tuple[int, ...] | None = None) -> Tensor:
    """``x`` as a tensor (NumPy arrays and nested lists converted, `_to_tensor`), checked for a floating dtype and
    finite values; points in a manifold's multi-axis ``data_shape`` (images: ``(B, *data_shape)`` or one
    ``data_shape``) are flattened.

    Integer points, NumPy arrays or tensors alike (e.g. ``uint8`` images), become the default float dtype and
    bool and complex points are refused (``ValueError``), as in `metrics.base.as_points`; a tensor made under
    ``torch.inference_mode()`` is cloned into a normal one (the solver differentiates through it)."""
    x = _real_points(_to_tensor(x, name), name)
    if _shaped(x, data_shape):
        x = x.reshape(-1, math.prod(data_shape)) if x.ndim > len(data_shape) else x.reshape(-1)
    if x.ndim not in (1, 2):
        shapes = "(B, D) or (D,)" + (f", or (B, *data_shape) = (B, {', '.join(map(str, data_shape))})"
                                     if data_shape and len(data_shape) > 1 else "")
        raise ValueError(f"{name} must have shape {shapes}, got {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return x.detach()


def _shaped(x: Tensor, data_shape: tuple[int, ...] | None) -> bool:
    """Whether ``x`` holds points in a multi-axis ``data_shape`` (one or a batch of them), not flat ones."""
    if not data_shape or len(data_shape) < 2:
        return False
    k = len(data_shape)
    return x.ndim in (k, k + 1) and tuple(x.shape[x.ndim - k:]) == tuple(data_shape)


def _check_count(value: object, name: str, low: int) -> int:
    """``value`` as an ``int`` ``>= low``: any integer `operator.index` takes (Python's, NumPy's), not a bool."""
    number = as_index(value)
    if number is None:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if number < low:
        raise ValueError(f"{name} must be >= {low}, got {number}")
    return number


def _given_path(init: Tensor, x0: Tensor, x1: Tensor, n_points: int | None, single: bool) -> Tensor:
    if not isinstance(init, Tensor):
        raise TypeError(f"init must be one of {INIT_NAMES} or a Tensor, got {type(init).__name__}")
    path = init.detach().to(dtype=x0.dtype, device=x0.device)
    if single and path.ndim == 2:
        path = path.unsqueeze(0)
    b, d = x0.shape
    if path.ndim != 3 or path.shape[0] != b or path.shape[2] != d or path.shape[1] < 2:
        want = f"(T, {d})" if single else f"({b}, T, {d})"
        raise ValueError(f"init path must have shape {want} with T >= 2, got {tuple(init.shape)}")
    if n_points is not None and path.shape[1] != n_points:
        raise ValueError(f"init path has {path.shape[1]} points but n_points={n_points}")
    if not bool(torch.isfinite(path).all()):
        raise ValueError("init path contains NaN or inf")
    atol = 1e-6 * (1.0 + torch.maximum(x0.abs().amax(), x1.abs().amax())) if b else 0.0
    for k, end, name in ((0, x0, "x0"), (-1, x1, "x1")):
        gap = (path[:, k] - end).abs().amax() if b else torch.zeros(())
        if gap > atol:
            where = "start at x0" if k == 0 else "end at x1 (a gradient-flow path need not reach x1, SPEC §6)"
            largest = gap.item()  # read before the message (torch.compile: `landing._warn_far_landed`)
            raise ValueError(f"init path must {where}; max gap {largest:.3g}: set its end point to {name}")
    path = path.clone()
    path[:, 0] = x0
    path[:, -1] = x1
    return path


def _check_positive(value: object, name: str, *, zero: bool = False) -> float:
    """``value`` as a float, refused unless a finite real number ``> 0`` (``≥ 0`` with ``zero``; `checks.check_real`):
    a step ``lr ≤ 0`` never moves the path (the chord came back, unconverged), a negative ``verify_tol`` refutes
    every pair."""
    return check_real(value, name, positive=not zero, nonnegative=zero)
