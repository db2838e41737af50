"""Checks of a co-metric field before a solver lands on it or differentiates through it: the one ``landing`` check
(`LearnedDataManifold`, the flows, `geodesic`), what ``δ = 0`` can mean for a field that is not low-rank
(`check_full_space`, `LearnedDataManifold`) and the copy of a field built under ``torch.inference_mode()``
(`geodesic`, `curvature`)."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from .base import CoMetricField

__all__ = ["autograd_ready", "check_full_space", "check_landing", "inference_tensors", "not_low_rank"]


def inference_tensors(field: CoMetricField) -> list[str]:
    """Names of the tensors ``field`` (its modules' parameters, buffers and tensor attributes) holds that were made
    under ``torch.inference_mode()``."""
    modules = field.named_modules() if isinstance(field, torch.nn.Module) else [("", field)]
    found = []
    for prefix, module in modules:
        for key, value in vars(module).items():
            tensors = value.items() if key in ("_parameters", "_buffers") else [(key, value)]
            found += [f"{prefix}.{name}".lstrip(".") for name, t in tensors
                      if isinstance(t, Tensor) and t.is_inference()]
    return found


def autograd_ready(field: CoMetricField, caller: str) -> CoMetricField:
    """``field``, or where it holds tensors made under ``torch.inference_mode()`` (it was built or loaded inside
    it), a copy of it with normal tensors: autograd cannot save inference tensors for backward, and ``caller``
    (`geodesic`, `curvature`) differentiates through the field. The copy costs the field's memory once more (a
    `KNNCDC`'s data) for the call; build the field outside ``inference_mode`` to avoid it.

    Raises:
        RuntimeError: the field could not be copied (naming the cause and the fix)."""
    held = inference_tensors(field)
    if not held:
        return field
    fix = ("build or load the field (the manifold) outside torch.inference_mode(); torch.no_grad() is fine, and "
           f"{caller} itself may be called inside inference_mode")
    try:
        with torch.inference_mode(False):
            copied = copy.deepcopy(field)
    except Exception as err:  # noqa: BLE001 -- any failure to copy gets the one clear message
        raise RuntimeError(f"{caller}: the field {type(field).__name__} holds tensors made under "
                           f"torch.inference_mode() ({', '.join(held[:3])}), which autograd cannot differentiate "
                           f"through, and copying it failed ({type(err).__name__}: {err}): {fix}") from err
    left = inference_tensors(copied)
    if left:
        raise RuntimeError(f"{caller}: the field {type(field).__name__} holds tensors made under "
                           f"torch.inference_mode() ({', '.join(left[:3])}), which autograd cannot differentiate "
                           f"through, and a copy still holds them: {fix}")
    return copied


def not_low_rank(field: CoMetricField) -> str:
    """Why ``field`` gives no low-rank factor: it implements none, or does not declare the one it implements."""
    if field._has_own("factor"):
        return f"{type(field).__name__} implements factor() but does not set low_rank = True (set it on the class)"
    return f"{type(field).__name__} has no factor"


def check_landing(field: CoMetricField, landing: object, *, allow_none: bool = False, low_rank: bool = True) -> None:
    """The one check of a ``landing`` option (`LearnedDataManifold`, the flows, `geodesic`), before any work.

    Raises:
        TypeError: ``landing`` is not a bool (NumPy's included; ``None`` where ``allow_none``): ``bool('no')`` is
            ``True``, so ``'no'``, NaN and −1 had switched landing on.
        ValueError: ``landing`` is true and ``field`` has no landing projection (a denoiser), or, where
            ``low_rank``, no declared low-rank factor (its tangent space gives the normals to land along).
    """
    if not (isinstance(landing, (bool, np.bool_)) or (allow_none and landing is None)):
        choices = "True, False or None (the default, chosen by the start)" if allow_none else "True or False"
        raise TypeError(f"landing must be {choices}, got {landing!r}")
    if landing and not field.can_project:
        raise ValueError(f"landing needs a field with a landing projection (a denoiser); {type(field).__name__} "
                         "has none: leave landing out")
    if landing and low_rank and not field.low_rank:
        raise ValueError("landing needs a low-rank field (its tangent space gives the normals to land along); "
                         f"{not_low_rank(field)}")


def check_full_space(field: CoMetricField) -> None:
    """Refuse a field that `LearnedDataManifold` at ``δ = 0`` would misread (SPEC §5; tester reports C6, A3).

    At ``δ = 0`` a low-rank field is its learned tangent bundle (``proju = ÛÛᵀ``), and a field that is not
    (``low_rank = False``) is read as ``R^D`` with the metric ``G^{-1}``: every vector tangent, ``proju`` the
    identity. That reading is right for a full-rank ``G`` (`EuclideanMetric`, `SteinScoreMetric`,
    `TangentialMetric`, `VAEPullbackMetric`) and wrong for:

    * a field that implements ``factor`` without ``low_rank = True`` and takes its ``metric`` from it (the base
      class's pseudo-inverse on the range of ``A``): ``proju`` would be the identity while ``inner`` gives the
      directions outside that range zero length;
    * `ScoreJacobianMetric` with ``δ = 0``: its ``G`` is singular on the data and its ``metric`` needs ``δ > 0``.

    Raises:
        ValueError: for those two, saying what ``δ = 0`` means and what to pass instead.
    """
    from .base import CoMetricField
    from .score import ScoreJacobianMetric

    if field.low_rank or field.delta > 0:
        return
    name = type(field).__name__
    reading = ("LearnedDataManifold with delta = 0 reads a field that is not low-rank as R^D with the metric "
               "G^-1 (every vector tangent, proju = identity), and a low-rank one as its learned tangent bundle "
               "(proju onto the top eigenvectors of G = AAᵀ)")
    if field._has_own("factor") and type(field).metric is CoMetricField.metric:
        raise ValueError(f"{reading}; {name} implements factor() but does not set low_rank = True, so its metric "
                         "(derived from the factor) is the pseudo-inverse on the range of A while proju would keep "
                         f"every vector: set low_rank = True on {name} if factor returns A with G = AAᵀ, or give the "
                         "field delta > 0 (R^D with the metric (G + delta I)^-1)")
    if isinstance(field, ScoreJacobianMetric):
        raise ValueError(f"{reading}; ScoreJacobianMetric's G is singular on the data and its metric needs "
                         "delta > 0 (inner, norm and RiemannianAdam would fail): construct it with delta > 0, e.g. "
                         "ScoreJacobianMetric(denoiser, sigma, delta=0.01)")
