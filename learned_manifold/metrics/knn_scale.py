"""The scale limits of `KNNCDC`'s data (`check_data_scale`): the field squares distances in the data's dtype, so data
whose spread is too large or too small for those squares give NaN (float32 S² at scale 1e20 or 1e-22: at every
query, even at the data's own points); they are refused when the field is built, with the remedy. The spread is
measured without forming its square (`rms_norm`)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__: list[str] = []  # helpers of `KNNCDC` (`learned_manifold.metrics.knn`), not public

SCALE_HEADROOM = 2.0**8
"""`check_data_scale`: the data's squared spread must lie this factor inside the dtype's normal range on both sides, so
that squared distances of queries up to 16 spreads from the data do not overflow and those of neighbours 1/16 of a
spread apart do not fall below the normal numbers (float32: spreads from about 1.7e-18 to 1.2e18)."""


def rms_norm(rows: Tensor) -> float:
    """The root mean square of the Euclidean norms of ``rows`` ``(N, D)``, as a Python float, computed on ``rows``
    divided by their largest ``|coordinate|`` so that neither the squares nor their sums over/underflow ``rows``'s
    dtype (no float64 copy); ``inf`` where ``rows`` hold a non-finite value (a mean that overflowed)."""
    top = float(rows.abs().max()) if rows.numel() else 0.0
    if top == 0 or not math.isfinite(top):
        return top
    return top * math.sqrt(float((rows / top).pow(2).sum(-1, dtype=torch.float64).mean()))


def check_data_scale(spread: float, dtype: torch.dtype) -> None:
    """Raise a ``ValueError`` naming ``data`` where the data's RMS ``spread`` about their mean is too large or too
    small for the field's squared distances in ``dtype`` (`SCALE_HEADROOM`): they overflow to inf or underflow to 0,
    and queries give NaN (float32 S² at scale 1e19: from 3 radii out; at 1e20 or 1e-22: all, even the data's own
    points). Identical points (``spread = 0``) pass. Half-precision data (float16, bfloat16) are not checked: the
    headroom would leave float16 only spreads 0.12..16 (raw pixels refused), where such fields had answered right
    in low dimensions. Their search ranks in float32 where their squares could overflow (`knn_index.build_index`);
    an overflow left in the field's own arithmetic is named at query time (`base.check_finite_output`)."""
    if torch.finfo(dtype).bits < 32:
        return
    info = torch.finfo(dtype)
    low, high = math.sqrt(info.tiny * SCALE_HEADROOM), math.sqrt(info.max / SCALE_HEADROOM)
    if spread == 0 or low <= spread <= high:  # (not spread², which Python floats may overflow)
        return
    name = str(dtype).removeprefix("torch.")
    side = "overflow to inf" if spread > high else "underflow to 0"
    wider = "" if dtype == torch.float64 else ", or build the field from float64 data (data.double())"
    raise ValueError(f"data spread {spread:.3g} (RMS distance from their mean) lies outside the {low:.2g} to "
                     f"{high:.2g} within which {name} holds the k-NN field's squared distances: they can {side} "
                     f"and the field then answers NaN; rescale the data (e.g. divide them, and sigma, by "
                     f"{spread:.3g}){wider}")
