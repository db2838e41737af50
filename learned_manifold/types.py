"""Type aliases of the public signatures: what the entry points accept, as their docstrings and runtime checks say.

A hint must admit every input the documentation promises and the runtime takes (PEP 561: the package ships
``py.typed``, so type checkers hold users to these hints):

* `Points`: points given as a tensor, a NumPy array or nested lists of numbers (`geodesic`, `interpolate`,
  `gradient_flow` convert arrays with ``torch.from_numpy`` and lists with ``torch.as_tensor``). `TensorOrArray` is
  its older name (the same alias).
* `Shape`: a point's shape as a tuple or a list of positive integers (``checks.check_data_shape``).
* `Count`: an integer, Python's or NumPy's (anything ``operator.index`` takes; bools are refused at run time).
* `Real`: a real-valued option (bandwidths, tolerances, ``t_end``, ``lr``): Python's ``float`` or ``int``, or a NumPy
  float or integer (``np.float32`` included), which is what ``checks.is_real`` takes besides other ``numbers.Real``
  (bools refused, a non-number a ``ValueError``).
* `FieldLike`: a `CoMetricField`, or an object holding one as ``.field`` (`LearnedDataManifold`), which is what
  ``metrics.base.as_field`` accepts.

The aliases are real objects (not strings), so ``typing.get_type_hints`` resolves the hints that use them. This
module imports `learned_manifold.metrics.base` at run time; the modules of `learned_manifold.metrics` must not
import it (the package's ``__init__`` would then import itself half-built): `Count` and `Real` are defined in
`learned_manifold.checks`, which both import, so every hint uses the same objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeAlias, runtime_checkable

import numpy as np
from torch import Tensor

from .checks import Count, Real
from .metrics.base import CoMetricField

__all__ = ["Count", "FieldLike", "HasField", "Points", "Real", "Shape", "TensorOrArray"]

Points: TypeAlias = Tensor | np.ndarray | Sequence[float] | Sequence[Sequence[float]]
"""Points as a ``torch.Tensor``, a ``numpy.ndarray`` or nested lists of numbers, one point ``(D,)`` or a batch
``(B, D)`` (converted; integer points become the default float dtype where the entry point says so; deeper lists,
``(B, *data_shape)``, are converted too but not admitted by this hint: pass an array)."""

TensorOrArray: TypeAlias = Points
"""The older name of `Points` (the same alias: nested lists included)."""


Shape: TypeAlias = tuple[int, ...] | list[int]
"""The shape of one point: a tuple (``torch.Size`` included) or a list of positive integers, e.g. ``(3,)``,
``[1, 28, 28]``."""

@runtime_checkable
class HasField(Protocol):
    """An object holding a co-metric field as ``.field`` (`LearnedDataManifold`)."""

    @property
    def field(self) -> CoMetricField: ...


FieldLike: TypeAlias = CoMetricField | HasField
"""A `CoMetricField`, or an object holding one as ``.field`` such as `LearnedDataManifold` (``as_field``)."""
