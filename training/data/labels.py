"""Class labels beside the data (they serve `show`'s pictures, never the training): checked as ``(N,)`` int64
(`labels_tensor`), and a file's ``labels`` entry made into such labels (`file_labels`): text (cell types) becomes
integer codes with its names kept, integer-valued floats become integers, and other floats (pseudotime), which
are no class labels, are left out with a warning."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from learned_manifold.user_warnings import warn_user

__all__ = ["file_labels", "labels_tensor"]


def labels_tensor(raw: object, n: int, label: str) -> Tensor:
    """Labels (N,) int64 from an integer tensor, array or sequence, checked against the number of images."""
    if not isinstance(raw, Tensor):
        arr = np.asarray(raw) if isinstance(raw, (np.ndarray, list, tuple)) else None
        if arr is None or arr.dtype.kind not in "iu":
            what = f"{arr.dtype} {arr.shape}" if arr is not None else type(raw).__name__
            raise ValueError(f"{label}: labels must be a 1-D integer array, got {what}")
        raw = torch.from_numpy(arr.astype(np.int64))
    lab = raw.detach()
    if lab.is_floating_point() or lab.is_complex() or lab.dtype == torch.bool or lab.ndim != 1:
        raise ValueError(f"{label}: labels must be a 1-D integer array, got {lab.dtype} {tuple(lab.shape)}")
    if lab.shape[0] != n:
        raise ValueError(f"{label}: has {lab.shape[0]} labels for {n} images")
    if n and int(lab.min()) < 0:
        raise ValueError(f"{label}: labels must be >= 0, found {int(lab.min())}")
    return lab.to(torch.int64).clone()


def _as_array(raw: object) -> np.ndarray | None:
    """A labels entry as a NumPy array (a tensor, an array, or a list of str or numbers), or None."""
    if isinstance(raw, Tensor):
        return None if raw.is_complex() else raw.detach().cpu().numpy()
    if isinstance(raw, np.ndarray):
        return raw
    if isinstance(raw, (list, tuple)):
        try:
            return np.asarray(raw)
        except ValueError:  # ragged
            return None
    return None


def file_labels(raw: object, label: str) -> tuple[object, tuple[str, ...] | None]:
    """A file's ``labels`` entry as class labels: ``(labels, class_names)``, for `labels_tensor` to check.

    Integer labels come back unchanged (``class_names`` None). Text ``(N,)`` (str or bytes) becomes the codes
    0, 1, ... of its sorted distinct values, ``class_names`` those values. Floats whose values are all whole
    numbers become int64. Other floats (e.g. pseudotime) are no class labels: ``(None, None)``, with one warning
    saying the entry was not used. Anything else comes back unchanged (`labels_tensor` refuses it by name).

    Args:
        raw: the entry as read (np.ndarray, Tensor, list) or None.
        label: how the file is named in the warning.
    """
    arr = None if raw is None else _as_array(raw)
    if arr is None or arr.ndim != 1:
        return raw, None
    if arr.dtype.kind in "SU":
        names, codes = np.unique(arr, return_inverse=True)
        text = tuple(v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else str(v) for v in names.tolist())
        return torch.from_numpy(codes.reshape(-1).astype(np.int64)), text
    if arr.dtype.kind == "f":
        if bool((np.abs(arr) < 2**53).all()) and bool((arr == np.round(arr)).all()):  # NaN and inf fail too
            return torch.from_numpy(arr.astype(np.int64)), None
        warn_user(f"{label}: its 'labels' entry holds numbers that are not whole ({arr.dtype}), so it was not "
                  "used: labels must be class labels (integers or text); keep other values (such as "
                  "pseudotime) under another name")
        return None, None
    return raw, None
