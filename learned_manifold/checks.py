"""Argument checks shared by the networks and configs: one ``TypeError``/``ValueError`` naming the argument.

`learned_manifold.models` re-exports them (``from learned_manifold.models import check_int`` keeps working).
`float_resolution_problem` judges whether a floating format resolves data far from the origin: the trainer refuses
such data (``training.runtime``), `learned_manifold.metrics.knn.KNNCDC` warns.
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import SupportsIndex, TypeAlias

import numpy as np

__all__ = ["Count", "FLOAT32_RESOLUTION", "MAX_DEPTH", "MAX_DIM", "MAX_RANK", "MAX_WIDTH", "NotANumberError", "Real",
           "as_index", "check_data_shape", "check_int", "check_real", "float_resolution_problem", "is_real"]

Count: TypeAlias = SupportsIndex
"""An integer: a Python ``int`` or a NumPy integer (`as_index`, ``operator.index``, converts it; ``bool`` is
refused). Defined here, beside the checks that accept it, so that `learned_manifold.types` and the modules of
`learned_manifold.metrics` (which must not import ``types``) hint with the same object."""

Real: TypeAlias = float | int | np.floating | np.integer
"""A real number: Python's ``float`` or ``int``, or a NumPy float or integer scalar (``np.float32``, ``np.int64``;
`is_real`: bools are refused at run time)."""

MAX_DIM = 2**27  # D = prod(data_shape)
# Generous sanity bounds on sizes, so that a config (for instance read from a file) can never ask for a network
# that takes minutes to build even on the meta device: the paper's largest image model (FFHQ 256²×3, rank 256)
# is far inside them.
MAX_RANK = 16384  # r, the factor's columns (r > D is allowed: the extra eigenvalues are zero, SPEC §5)
MAX_WIDTH = 65536  # hidden and embedding widths
MAX_DEPTH = 256  # residual blocks (building 2 × 256 blocks on the meta device takes well under a second)


class NotANumberError(TypeError, ValueError):
    """A real-valued option given something that is no number (a string, ``None``, a bool): a ``TypeError``, as a
    wrong type is in Python, and still a ``ValueError``, which `check_real` raised for it before (tester E, s33),
    so that a caller's ``except ValueError`` keeps catching it.

    Example:
        >>> try:
        ...     check_real("0.5", "sigma")
        ... except TypeError as err:
        ...     print(err, isinstance(err, ValueError))
        sigma must be a real number, got str '0.5' True
    """


def check_int(value: object, name: str, low: int, high: int) -> int:
    """``value`` as an ``int`` in ``[low, high]``; ``TypeError`` for a non-integer (bools and floats included),
    ``ValueError`` out of range. Both name the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r:.60}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return int(value)


def as_index(value: object) -> int | None:
    """``value`` as an ``int`` where `operator.index` takes it (Python's and NumPy's integers, a 0-d integer
    tensor), else ``None``; a bool (Python's or NumPy's) is no count."""
    if isinstance(value, (bool, np.bool_)):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def is_real(value: object) -> bool:
    """Whether ``value`` is a real number as every scalar option takes it: any ``numbers.Real`` (Python's ``int`` and
    ``float``, NumPy's integers and floats, ``np.float32`` included), not a bool (``True`` is no bandwidth)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_real(value: object, name: str, *, positive: bool = False, nonnegative: bool = False) -> float:
    """``value`` as a finite ``float`` (``> 0`` if ``positive``, ``≥ 0`` if ``nonnegative``): the one check of a
    real-valued option, which `metrics.base.check_scalar`, the geodesic and flow options and the configs all call.

    Raises:
        NotANumberError: (a ``TypeError`` and a ``ValueError``) naming the argument, ``"<name> must be a real number,
            got <type> <value>"``, for a non-number (`is_real`: bools and strings included).
        ValueError: ``"<name> must be a finite number > 0, got <value>"`` (``>= 0``, or no bound, as asked).
    """
    if not is_real(value):
        raise NotANumberError(f"{name} must be a real number, got {type(value).__name__} {value!r:.60}")
    number = float(value)
    if not math.isfinite(number) or (positive and not number > 0) or (nonnegative and not number >= 0):
        bound = " > 0" if positive else " >= 0" if nonnegative else ""
        raise ValueError(f"{name} must be a finite number{bound}, got {number}")
    return number


def check_data_shape(value: object, name: str = "data_shape") -> tuple[int, ...]:
    """A point's shape: 1 to 8 positive integers whose product ``D`` is at most `MAX_DIM`."""
    if not isinstance(value, (tuple, list)):
        raise TypeError(f"{name} must be a tuple of positive integers, got {type(value).__name__}")
    if not 1 <= len(value) <= 8:
        raise ValueError(f"{name} must have 1 to 8 dimensions, got {len(value)}")
    shape = tuple(check_int(s, f"{name}[{i}]", 1, MAX_DIM) for i, s in enumerate(value))
    if math.prod(shape) > MAX_DIM:
        raise ValueError(f"{name} {shape} has D = {math.prod(shape)} > {MAX_DIM} values per point")
    return shape


FLOAT32_RESOLUTION = 1e-3
"""The largest spacing of a floating format at the data's magnitude, as a fraction of their spread, that is accepted
(`float_resolution_problem`; for any format, named for float32, where it bites): a unit circle at 10⁷ in float32
(spacing 1.2) collapsed from 300 distinct points to 8 without a word; at 10⁵ (spacing 0.0078, 0.8%) from 3,000 to
862, and k-NN tangents were 10 times worse."""


def float_resolution_problem(top: float, spread: float, eps: float, precision: str) -> str | None:
    """Whether a floating format resolves data far from the origin for their spread, as the trainer judges it.

    Args:
        top: the largest ``|x|`` of a coordinate that varies (a constant coordinate, however large, is removed
            exactly by the mean and merges nothing).
        spread: the data's RMS distance from their mean.
        eps: the format's relative spacing (``torch.finfo(dtype).eps``): values near ``top`` lie ``top · eps``
            apart.
        precision: the format as the message names it (``"float32, the model's precision,"``).

    Returns:
        ``None`` where ``top · eps ≤ FLOAT32_RESOLUTION · spread`` (or ``spread`` is 0), else the problem as a
        clause naming ``top``, ``spread`` and the spacing, ``"data lie far from the origin … so distinct points
        merge"``, for the caller to finish with its remedy and raise or warn.
    """
    gap = top * eps
    if not (spread > 0 and gap > FLOAT32_RESOLUTION * spread):
        return None
    return (f"data lie far from the origin for their spread (largest |x| of a varying coordinate = {top:.3g}, RMS "
            f"spread about the mean {spread:.3g}): in {precision} neighbouring values are {gap:.2g} apart, "
            f"{gap / spread:.1%} of the spread, so distinct points merge")
