"""Type aliases of the public signatures: what the entry points accept, as their docstrings and runtime checks say.

A hint must admit every input the documentation promises and the runtime takes (PEP 561: the package ships
``py.typed``, so type checkers hold users to these hints):

* `TensorOrArray`: points given as a tensor or a NumPy array (`geodesic`, `interpolate`, `gradient_flow` convert
  arrays with ``torch.from_numpy``, and nested lists of numbers with ``torch.as_tensor`` too; `KNNCDC` with
  ``torch.as_tensor``).
* `Shape`: a point's shape as a tuple or a list of positive integers (``checks.check_data_shape``).
* `Count`: an integer, Python's or NumPy's (anything ``operator.index`` takes; bools are refused at run time).
* Real-valued options (bandwidths, tolerances, ``t_end``, ``lr``) are hinted ``float`` but take any ``numbers.Real``
  (NumPy's ``np.float32`` included; bools refused, a non-number a ``ValueError``: ``checks.is_real``).
* `FieldLike`: a `CoMetricField`, or an object holding one as ``.field`` (`LearnedDataManifold`), which is what
  ``metrics.base.as_field`` accepts.

The aliases are real objects (not strings), so ``typing.get_type_hints`` resolves the hints that use them. This
module imports `learned_manifold.metrics.base` at run time; the modules of `learned_manifold.metrics` must not
import it (the package's ``__init__`` would then import itself half-built).
"""

from __future__ import annotations

from typing import Protocol, SupportsIndex, TypeAlias, runtime_checkable

import numpy as np
from torch import Tensor

from .metrics.base import CoMetricField

__all__ = ["Count", "FieldLike", "HasField", "Shape", "TensorOrArray"]

TensorOrArray: TypeAlias = Tensor | np.ndarray
"""Points as a ``torch.Tensor`` or a ``numpy.ndarray`` (converted; integer points become the default float dtype
where the entry point says so)."""

Shape: TypeAlias = tuple[int, ...] | list[int]
"""The shape of one point: a tuple (``torch.Size`` included) or a list of positive integers, e.g. ``(3,)``,
``[1, 28, 28]``."""

Count: TypeAlias = SupportsIndex
"""An integer: a Python ``int`` or a NumPy integer (``operator.index`` converts it; ``bool`` is refused)."""


@runtime_checkable
class HasField(Protocol):
    """An object holding a co-metric field as ``.field`` (`LearnedDataManifold`)."""

    @property
    def field(self) -> CoMetricField: ...


FieldLike: TypeAlias = CoMetricField | HasField
"""A `CoMetricField`, or an object holding one as ``.field`` such as `LearnedDataManifold` (``as_field``)."""
