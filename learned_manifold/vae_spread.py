"""The VAE's record of its training data's spread and the far-input check that judges other data by it (SPEC §11).

A VAE sees standardised data ``(x − m)/s`` with ``s = sqrt(E‖x − m‖²)`` over its training data, so an input's
distance from ``m`` in units of ``s`` (`VAE.input_spread`) is 1 in RMS over those data. `training_spread_limit` is
what ``train_vae`` records of the training data's spreads (`VAE.input_spread_max`); `far_inputs` judges a data set's
spreads against it (or against Markov's bound where it is unknown).

The record travels with the VAE: in its file's ``extra`` (`learned_manifold.vae_file`) and in its ``state_dict`` as
the module's extra state, key `STATE_KEY` (`spread_state`, `spread_from_state`): a float64 tensor ``(1,)`` holding
it, ``(0,)`` where none is recorded. A tensor, so that the state dict stays tensors only (``safetensors``,
``torch.equal`` over its values); float64, so it holds the Python float bit for bit; extra state rather than a
buffer, so ``.to(dtype)``, ``.half()`` and ``.double()`` leave it as it is.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .checks import check_real

__all__ = ["BEYOND_FACTOR", "FAR_MEDIAN", "FAR_POINT", "FAR_SHARE", "MEDIAN_ROWS", "SPREAD_DROP", "STATE_KEY",
           "check_spread_max", "far_inputs", "spread_from_state", "spread_state", "training_spread_limit"]

STATE_KEY = "_extra_state"
"""The key of `VAE.input_spread_max` in ``VAE.state_dict()`` (torch's name for a module's extra state; behind a
prefix such as ``"vae."`` where the VAE is a submodule). VAE files do not hold it (`vae_file`: their ``extra``)."""

FAR_MEDIAN = 3.0
"""`far_inputs`: inputs whose median `VAE.input_spread` exceeds this (or the training data's largest spread, its
top `SPREAD_DROP` dropped, `VAE.input_spread_max`, where that is larger and known) are in other units or far from
the training data: over the training data the median is at most sqrt(2) (at most 1/9 of them lie beyond 3,
Markov); 1.0 on log-normalised cells (max 1.34), where the raw counts of the same cells gave a median of 3.7 (max
20.5). Markov bounds the whole training set only: a part of it (a small cluster far from the mean) may have a
larger median, but one beyond the recorded limit only where more than half of its rows are among the top
`SPREAD_DROP` of the training rows."""

MEDIAN_ROWS = 20
"""`far_inputs` applies the median rule from this many inputs on (the median of a few rows is those rows' own
spread, which Markov does not bound); fewer are judged by `FAR_POINT` or `BEYOND_FACTOR` alone."""

FAR_POINT = 10.0
"""`far_inputs` of a VAE that does not know its training data's largest spread (`VAE.input_spread_max`: files
written before it was recorded): inputs whose `VAE.input_spread` exceeds this lie far beyond the training data (at
most 1% of the training data can, Markov; none of the log-normalised cells above lay beyond 1.34)."""

BEYOND_FACTOR = 1.5
"""`far_inputs` of a VAE that knows `VAE.input_spread_max`: inputs beyond this many times it lie beyond the
training data (the raw counts above, in samples of 600 and 2,000 cells: their median 2.0 and 3.7 times the cells'
RMS spread, 1.6 and 2.7 times the cells' largest, 1.29 and 1.34; 55% and 88% of them beyond 1.5 times it, so the
600 cells' counts, whose median stays below `FAR_MEDIAN`, are caught only by this rule)."""

SPREAD_DROP = 0.001
"""`training_spread_limit` drops this share of the training data's largest spreads (the top 0.1%, ``floor(0.001 N)``
rows; none of fewer than 1,000) before taking the largest: one outlier row among 2,000 had raised the true largest
from 1.56 to 43.5, which silenced the check for the same data in other units (tester s36/N, problem 4)."""

FAR_SHARE = 0.01
"""`far_inputs` warns where more than this share of the inputs lie beyond `FAR_POINT` or `BEYOND_FACTOR` times
`VAE.input_spread_max` (a single such input among fewer than 100)."""


def training_spread_limit(spread: Tensor) -> float:
    """What `VAE.input_spread_max` records of the training data's spreads ``(N,)``, ``N ≥ 1``, all finite: the
    largest after dropping the top `SPREAD_DROP` (``floor(SPREAD_DROP · N)`` rows), so that a few outlier rows do
    not raise the limit `far_inputs` judges other data by."""
    spread = spread.detach().flatten().double()
    keep = spread.numel() - math.floor(SPREAD_DROP * spread.numel())
    return float(spread.kthvalue(keep).values)


def far_inputs(spread: Tensor, train_max: float | None = None) -> str | None:
    """How far from a VAE's training data lie inputs whose `VAE.input_spread` is ``spread`` ``(B,)``: the measured
    gap and advice, or ``None`` where they lie near. It warns where more than `FAR_SHARE` of them lie beyond
    ``BEYOND_FACTOR · train_max`` (`VAE.input_spread_max`: the training data's largest spread, the top `SPREAD_DROP`
    dropped), or beyond `FAR_POINT` where that is ``None``; or where, from `MEDIAN_ROWS` inputs on, their median
    exceeds ``max(FAR_MEDIAN, train_max)`` (`FAR_MEDIAN` where ``train_max`` is ``None``): other units or other
    data. A set of the training rows can trigger it (where ``train_max`` is known) only where more than half of
    them, and at least `MEDIAN_ROWS` / 2, are among the dropped top `SPREAD_DROP`, or more than `FAR_SHARE` of
    them lie beyond ``BEYOND_FACTOR · train_max``, hence among those. An infinite spread (a float overflow of
    finite inputs far away, or an infinite input) counts as far; a NaN spread (a NaN input) is not judged. Their
    codes are extrapolation of the encoder (SPEC §11)."""
    spread = spread.detach().double().flatten()
    spread = spread[~torch.isnan(spread)]
    if spread.numel() == 0:
        return None
    limit = FAR_POINT if train_max is None else BEYOND_FACTOR * train_max
    median_limit = FAR_MEDIAN if train_max is None else max(FAR_MEDIAN, train_max)
    median, far = float(spread.median()), int((spread > limit).sum())
    by_median = spread.numel() >= MEDIAN_ROWS and median > median_limit
    if not by_median and far <= FAR_SHARE * spread.numel():
        return None
    known = ("the training data: 1 in RMS, at most 1.41 at the median" if train_max is None else
             f"the training data: 1 in RMS, at most {train_max:.3g} but for the top {SPREAD_DROP:.1%}")
    beyond = (f"{BEYOND_FACTOR:g} times the training data's largest ({limit:.3g})" if train_max is not None else
              f"{limit:g}")
    largest = float(spread.max())
    return (f"their distance from the VAE's stored data mean is {median:.3g} times the training data's RMS spread "
            f"at the median ({known}), up to {largest:.3g}; {far} of {spread.numel()} lie beyond "
            f"{beyond}. Other units (raw counts given to a VAE trained on log-normalised data?) or other data: "
            f"their codes lie where the encoder saw no data (extrapolation), so prepare them as the training data "
            f"were" + ("" if train_max is not None else " (for a VAE built by hand: its mean and scale, the training "
                       "data's RMS distance from it, must describe the data it was trained on)"))


def check_spread_max(value: object, name: str) -> float | None:
    """``value`` (what `VAE.input_spread_max` may hold) as ``None`` or a finite positive float: a real number, or a
    0-d floating tensor.

    Raises:
        NotANumberError: (a ``TypeError`` and a ``ValueError``) ``"<name> must be a real number ..."``.
        ValueError: ``"<name> must be a finite number > 0 ..."``.
    """
    if value is None:
        return None
    if isinstance(value, Tensor) and value.ndim == 0 and value.dtype.is_floating_point:
        value = float(value)
    return check_real(value, name, positive=True)


def spread_state(value: float | None) -> Tensor:
    """`VAE.input_spread_max` (checked, `check_spread_max`) as the VAE's extra state: float64 ``(1,)`` holding it,
    or ``(0,)`` for ``None``; on the CPU whatever the default device (also under the ``meta`` device)."""
    return torch.tensor([] if value is None else [value], dtype=torch.float64, device="cpu")


def spread_from_state(state: object, key: str) -> float | None:
    """The `VAE.input_spread_max` a state dict's entry ``key`` (`STATE_KEY`, `spread_state`) holds: ``None`` for an
    empty tensor, else its one value, which must be finite and > 0.

    Raises:
        TypeError: ``state`` is not a floating tensor of shape ``(0,)`` or ``(1,)`` (naming ``key``).
        ValueError: its value is not finite and > 0 (naming ``key``).
    """
    if not (isinstance(state, Tensor) and state.dtype.is_floating_point and state.ndim == 1 and state.numel() <= 1):
        got = f"{state.dtype} of shape {tuple(state.shape)}" if isinstance(state, Tensor) else type(state).__name__
        raise TypeError(f"state_dict[{key!r}] (the VAE's input_spread_max) must be a floating tensor of shape (1,), "
                        f"or (0,) where none is recorded, got {got}")
    if state.numel() == 0:
        return None
    return check_spread_max(float(state[0]), f"state_dict[{key!r}] (the VAE's input_spread_max)")
