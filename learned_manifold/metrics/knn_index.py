"""The data a `KNNCDC` searches and its search index (SPEC §7): which inputs the field follows and which it copies
(`field_data`), what tells it that the data changed (`data_key`), and what the search derives from them
(`build_index`: the search origin, the rows ranked, their squared norms, and the dtype the ranking runs in). Split
from ``knn.py``; plain functions of the field.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from .knn_resolution import warn_unresolved
from .knn_scale import SCALE_HEADROOM, check_data_scale, rms_norm

if TYPE_CHECKING:
    from .knn import KNNCDC

__all__: list[str] = []  # helpers of `KNNCDC`, not public


def as_tensor(data: Tensor | np.ndarray) -> Tensor:
    """``data`` as a tensor for `KNNCDC`'s checks: a tensor as given; anything else (a NumPy array, a list)
    copied (`field_data`: an edit through NumPy bumps no version counter, so the field could not follow it)."""
    if isinstance(data, Tensor):
        return data
    return torch.as_tensor(np.array(data) if isinstance(data, np.ndarray) else data)  # np.array: always a copy


def field_data(data: Tensor) -> Tensor:
    """The field's ``(N, D)`` data buffer from a checked tensor ``data`` ``(N, *data_shape)`` (`as_tensor`).

    The caller's tensor itself (a view, no copy) where the field can see its in-place edits, by the version
    counter every torch in-place edit bumps (`data_key`); a copy where it cannot, so that the field never answers
    from an index of data that have changed under it:

    * a tensor whose rows can be viewed as ``(N, D)`` (a contiguous one, say): followed;
    * an inference tensor (made under ``torch.inference_mode()``): copied, as a normal tensor (an inference tensor
      has no version counter: an edit of it could not be seen);
    * a tensor whose layout cannot be viewed as ``(N, D)`` (a permuted view, ``channels_last`` images): copied,
      in row order (``reshape`` copies).
    """
    n = data.shape[0]
    with torch.inference_mode(False):  # a copy made here is a normal tensor, even under the caller's inference_mode
        flat = data.detach().reshape(n, -1)
        if data.is_inference() and flat.data_ptr() == data.data_ptr():  # a view of the inference tensor
            flat = flat.clone()
    return flat


def data_key(data: Tensor) -> tuple:
    """What identifies the contents of ``data`` ``(N, D)`` cheaply: the tensor, its memory, shape, dtype, device and
    version counter (bumped by every torch in-place edit, also through views; an inference tensor, which
    `field_data` copies but ``field.data = x`` may still assign, has none)."""
    version = None if data.is_inference() else data._version
    return id(data), data.data_ptr(), tuple(data.shape), data.dtype, data.device, version


def build_index(field: KNNCDC) -> None:
    """(Re)build what ``field``'s search derives from its ``data`` ``(N, D)``: ``origin`` ``(D,)``, ``_search_data``
    ``(N, D)`` or ``None``, ``data_sq`` ``(N,)``, the spread; the search ranks in ``data_sq``'s dtype
    (`KNNCDC._ranked`).

    * Origin: the search ranks by ``‖x‖² − 2 q·x``, which loses the digits that tell neighbours apart when the data
      sit far from the origin (a float32 unit sphere moved by 1,000: the nearest neighbour was wrong for 88% of
      queries). Where the mean's offset exceeds the spread it ranks in coordinates about the mean instead, on a
      centred copy (twice the memory, only then; centring each block on the fly cost 2.5x at one query).
    * Ranking dtype: the data's, except for half-precision data whose squared norms about the origin could
      overflow (`SCALE_HEADROOM` times the largest beyond the dtype's maximum; float16: rows beyond about 16 from
      the origin), which are ranked in float32 on a float32 copy (float16 spheres of radius 300, as raw pixels,
      had ``data_sq = inf`` and wrong neighbours, silently).
    * Normal tensors even when the first query after a change runs under the caller's ``inference_mode``: derived
      buffers made there would stay inference tensors (no version counter, so the manifold's cache would miss).
    """
    data = field.data
    with torch.inference_mode(False), torch.no_grad():
        mean = data.mean(0)
        field._spread = rms_norm(data - mean)  # in Python floats: its square can leave the data's dtype
        check_data_scale(field._spread, data.dtype)
        far = rms_norm(mean.unsqueeze(0)) > field._spread
        field.origin = mean if far else torch.zeros_like(mean)
        field._search_data = data - mean if far else None
        if torch.finfo(data.dtype).bits >= 32:
            field.data_sq = field._searched().pow(2).sum(-1)
        else:  # measured in float32 (a transient copy): the half-precision squares may be inf
            wide = data.float() - field.origin.float()
            sq = wide.pow(2).sum(-1)
            overflows = SCALE_HEADROOM * float(sq.max()) > torch.finfo(data.dtype).max
            field.data_sq = sq if overflows else sq.to(data.dtype)
            if overflows:
                field._search_data = wide  # float32 rows, ranked in float32
        if far:
            warn_unresolved(data, mean, field._spread)
    field.__dict__.pop("_spacing_cache", None)
    field.__dict__.pop("_graph_cache", None)
    field.__dict__["_index_key"] = data_key(data)
