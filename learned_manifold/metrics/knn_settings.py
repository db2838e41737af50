"""`KNNCDC`'s settings (SPEC §7): ``k``, ``sigma``, ``centred``, ``delta`` and ``chunk_size``, checked and converted
to Python's ``int``/``float``/``bool`` whenever they are set, by the constructor or by assignment afterwards
(`checked_setting`, called from ``KNNCDC.__setattr__``).

The constructor had converted them (a NumPy ``k`` to ``int``, a NumPy ``sigma`` to ``float``) but an assignment
stored the value as given: ``field.k = np.int64(8)`` made the next query fail deep in the search (``"bitwise_or_cpu"
not implemented for 'Float'``), a ``sigma`` of 0, NaN or a string was stored without a word, and a NumPy float32
``sigma`` was a setting the manifold's factor cache does not read (tester C s37). An assignment now takes what the
constructor takes, converted the same way, and refuses the rest with the constructor's message.

A bandwidth ``sigma`` may also be a 0-d floating tensor, in the constructor or assigned later, kept as it is (not
converted), so that gradients flow to it: ``field.sigma = torch.tensor(0.3, requires_grad=True)`` and then
``field.apply(x, v).sum().backward()`` fills ``sigma.grad`` (as before s37, when an assignment stored anything). Its
value is checked once, where it is set (one host read), not at each query; an in-place change of it afterwards is the
caller's to keep finite and ``> 0`` (the manifold's factor cache sees it: an own tensor, read by identity and
version). ``delta`` stays a number: the low-rank algebra it enters (`geometry.lowrank_apply`, `lowrank_solve`)
takes a float.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from torch import Tensor

from ..checks import NotANumberError
from .base import check_count, check_scalar
from .nearest import DEFAULT_CHUNK

if TYPE_CHECKING:
    from .knn import KNNCDC

__all__ = ["SETTINGS", "bandwidth_tensor", "checked_setting"]

SETTINGS = ("k", "sigma", "centred", "delta", "chunk_size")
"""The attributes `checked_setting` checks: the constructor's arguments other than the data and ``persistent``."""


def checked_setting(field: KNNCDC, name: str, value: object) -> object:
    """``value`` checked and converted for the setting ``name`` of ``field`` (one of `SETTINGS`).

    * ``k``: an integer (Python's, NumPy's, a 0-d integer tensor) in ``1..N``, ``N`` the data rows, and at least 2
      where the field is centred (one neighbour has no covariance: ``G ≡ 0``), as ``int``;
    * ``sigma``: a finite real ``> 0`` (NumPy's included) as ``float``, or a 0-d floating tensor of such a value
      kept as it is (`bandwidth_tensor`); ``delta``: a finite real ``≥ 0`` as ``float`` (no tensor);
    * ``centred``: ``True`` or ``False``, and ``True`` only with ``k ≥ 2``;
    * ``chunk_size``: an integer ``≥ 1`` as ``int``, or ``None`` for the default ``min(N, 65536)``.

    Raises:
        TypeError: (`checks.NotANumberError` for the real-valued ones) naming the setting, for a value of the
            wrong kind.
        ValueError: naming the setting, for a value out of its range.
    """
    n = field.data.shape[0]
    if name == "k":
        k = check_count(value, "k", high=n)
        if k < 2 and field.__dict__.get("centred", False):  # (the constructor sets ``centred`` first)
            raise ValueError(f"k must be at least 2 for the centred field (of at least 2 data points; N = {n}), got "
                             f"{k}: one neighbour has no covariance, so the field would be G = 0 everywhere")
        return k
    if name == "sigma":
        return bandwidth_tensor(value) if isinstance(value, Tensor) else check_scalar(value, "sigma")
    if name == "delta":
        return check_scalar(value, "delta", allow_zero=True)
    if name == "centred":
        if isinstance(value, np.bool_):
            value = bool(value)
        if not isinstance(value, bool):
            kind = type(value)
            name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
            raise NotANumberError(f"centred must be a bool (True or False), got {name}")
        if value and field.__dict__.get("k", 2) < 2:
            raise ValueError(f"centred=True needs k >= 2 (the field has k = {field.__dict__['k']}): one neighbour "
                             "has no covariance, so the centred field would be G = 0 everywhere; set k first")
        return value
    if name == "chunk_size":
        return min(n, DEFAULT_CHUNK) if value is None else check_count(value, "chunk_size")
    raise AssertionError(f"checked_setting: {name!r} is not one of {SETTINGS}")


def bandwidth_tensor(value: Tensor) -> Tensor:
    """``value``, a tensor bandwidth ``sigma``, returned as it is (the same tensor: its graph, ``requires_grad`` and
    device kept) after checking it is 0-d, floating and of a finite value ``> 0`` (one host read, here only).

    Raises:
        NotANumberError: naming ``sigma``, for a tensor that is not 0-d or not floating.
        ValueError: naming ``sigma``, for a value that is not finite or not ``> 0``.
    """
    if value.ndim != 0 or not value.is_floating_point():
        raise NotANumberError(f"sigma must be a real number or a 0-d floating tensor, got a tensor of shape "
                              f"{tuple(value.shape)} and dtype {value.dtype}")
    number = float(value.detach())
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"sigma must be a finite number > 0, got {number}")
    return value
