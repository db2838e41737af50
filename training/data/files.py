"""Users' arrays: ``.npy``/``.npz``/``.pt`` files (and in-memory arrays) read safely and validated, and
`resolve_data`, the one entry point in front of files, image sources and built-in names (`resolve_images` is
the same for pictures, with their labels and metadata)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..runtime import check_stored_resolution
from .base import SyntheticManifold
from .builtin import DATASETS, DEFAULT_SYNTHETIC_N, get_dataset, get_image_dataset, is_image_dataset
from .idx import is_idx_path, load_idx
from .images import ImageData, _from_raw, _reads_as_images, images_from_array, load_image_array, load_image_folder
from .labels import file_labels, labels_tensor
from .readers import SUPPORTED_EXTENSIONS, DataFileNotFoundError, path_text, read_file, validate

__all__ = ["DataFileNotFoundError", "ResolvedData", "SUPPORTED_EXTENSIONS", "is_image_source", "load_array",
           "load_images", "resolve_data", "resolve_images", "resolve_source", "as_model_points"]


def load_array(source: str | os.PathLike[str] | np.ndarray | Tensor, *, name: str = "data") -> Tensor:
    """Load and validate a user data array.

    Args:
        source: a path to ``.npy``, ``.npz`` (a single array, or the one named "data"; a csr, csc or coo matrix
            written by ``scipy.sparse.save_npz`` is made dense), ``.pt``/``.pth``
            (``torch.load(..., weights_only=True)``: a tensor, or a dict with a single tensor or key "data"; an
            entry "labels" beside the data is left out, as `resolve_source` keeps it apart),
            or an in-memory ``np.ndarray`` / ``torch.Tensor``. Pickled object arrays are refused without
            running any code.
        name: how an in-memory array is called in error messages (files are named by their path).

    Returns:
        Tensor (N, ...), N >= 2, a new copy: float64 when the input is float64, float32 otherwise.

    Raises:
        DataFileNotFoundError: the file does not exist (also a ValueError).
        ValueError: unsupported extension, unreadable/corrupt file (a ``.npy``/``.npz`` without its format's
            signature is "not a valid .npy file"), pickled objects, non-numeric dtype, a sparse tensor too large
            to densify (smaller ones are made dense), fewer than 2 axes, no samples, NaN/inf values, fewer
            than 2 samples.
        TypeError: ``source`` is of an unsupported type.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = f"data file '{path}'"
        raw, _ = read_file(path, label, extra="labels")  # class labels beside the data are not the data
    elif isinstance(source, (np.ndarray, Tensor)):
        label = f"array {name!r}"
        raw = source
    else:
        raise TypeError(
            f"{name}: expected a file path, np.ndarray or torch.Tensor, got {type(source).__name__}"
        )
    return _validate_points(raw, label)


def _validate_points(raw: np.ndarray | Tensor, label: str) -> Tensor:
    """`validate` of points ``raw`` ``(N, ...)``, refusing those whose stored float16/bfloat16 already merged
    distinct points (`check_stored_resolution`: `validate` makes them float32, where the trainer's float32 check
    could no longer see it)."""
    data = validate(raw, label)
    stored = raw.dtype if isinstance(raw, Tensor) else torch.from_numpy(np.empty(0, dtype=raw.dtype)).dtype
    check_stored_resolution(data, stored, label)
    return data


def load_images(source: str | os.PathLike[str] | np.ndarray | Tensor, *, layout: str | None = None) -> ImageData:
    """Images from any supported source: a folder, an IDX file, a ``.npy``/``.npz``/``.pt`` file or an array.

    Args:
        source: a folder (`load_image_folder`), an IDX file name (`is_idx_path`, `load_idx` with its labels),
            an array file (`load_image_array`) or an in-memory array (`images_from_array`).
        layout: for arrays: None (automatic), "NCHW" or "NHWC".

    Returns:
        `ImageData`.
    """
    if isinstance(source, (np.ndarray, Tensor)):
        return images_from_array(source, layout=layout)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"images: expected a path, np.ndarray or torch.Tensor, got {type(source).__name__}")
    path = Path(source)
    if path.is_dir():
        return load_image_folder(path)
    if is_idx_path(path):
        return load_idx(path)
    return load_image_array(path, layout=layout)


def _is_name(source: object) -> bool:
    """A string that is not an existing path (so it may name a built-in data set)."""
    return isinstance(source, str) and not Path(source).exists()


def _unknown(source: str) -> ValueError:
    return ValueError(f"{source!r} is neither a built-in data set ({', '.join(DATASETS)}, blobs:SIDE) nor an "
                      "existing file or folder")


def _subset(count: int, n: int | None, seed: int) -> Tensor | None:
    """Sorted indices ``(n,)`` of a random subset of ``n`` of ``count`` rows drawn with ``seed``, as an image folder
    draws its files (`load_image_folder`); None for all rows (``n`` None, ``<= 0`` or ``count``). A file sorted by
    class or cluster would give its first classes only from its first ``n`` rows."""
    if n is None or n <= 0:
        return None
    if n > count:
        raise ValueError(f"asked for n={n} rows but the data has only {count}")
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    if n == count:
        return None
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:n].sort().values


def _row_subset(raw: np.ndarray | Tensor, n: int | None, seed: int) -> Tensor | None:
    """`_subset` of a file's rows (None for a 0- or 1-axis array, which `validate` refuses by name)."""
    return _subset(raw.shape[0], n, seed) if raw.ndim >= 2 else None


def _take_rows(raw: np.ndarray | Tensor, keep: Tensor | None) -> np.ndarray | Tensor:
    """Rows ``keep`` of a file's array before anything else is copied (a mapped ``.npy`` reads only those)."""
    if keep is None:
        return raw
    return raw[keep] if isinstance(raw, Tensor) else raw[keep.numpy()]


def _sample_images(raw: np.ndarray | Tensor, labels: object, label: str, layout: str | None, source: str,
                   n: int | None, seed: int) -> ImageData:
    """`ImageData` of `_subset` images of a file's array (labels, as `file_labels` reads them, checked against the
    whole file first)."""
    keep = _row_subset(raw, n, seed)
    labels, names = file_labels(labels, label)
    if raw.ndim >= 2 and labels is not None:
        labels = labels_tensor(labels, raw.shape[0], label)
        labels = labels if keep is None else labels[keep]
    return _from_raw(_take_rows(raw, keep), label, layout, labels, source, names)


def is_image_source(source: object) -> bool:
    """Whether `resolve_data` reads ``source`` as images by itself: a built-in image data set name ("digits",
    "blobs", "blobs:SIDE") that is not an existing path, a folder, or an IDX file name (`is_idx_path`)."""
    if _is_name(source) and is_image_dataset(source):
        return True
    if isinstance(source, (str, os.PathLike)):
        return Path(source).is_dir() or is_idx_path(source)
    return False


def resolve_images(
    source: str | os.PathLike[str] | np.ndarray | Tensor,
    *,
    n: int | None = None,
    seed: int = 0,
    layout: str | None = None,
) -> tuple[ImageData, SyntheticManifold | None]:
    """Images, with their labels and what was read, from a built-in image data set or a user's file or folder.

    Built-in names go to `get_image_dataset` ("digits" with labels; "blobs"/"blobs:SIDE" with their `Blobs`
    manifold); anything else to `load_images` (a PNG/JPEG folder, an IDX file with the labels beside it, a
    ``.npy``/``.npz``/``.pt`` array (N, H, W), (N, C, H, W) or (N, H, W, C), or an in-memory array). Values stay
    in the stored units (SPEC §1: the model standardises them).

    Args:
        source: image data set name, folder, file path or in-memory array.
        n: number of images: built-ins as in `get_image_dataset` (digits: a seeded random subset; blobs:
            default ``DEFAULT_SYNTHETIC_N``); folders: a random subset drawn with ``seed`` (`load_image_folder`);
            array and IDX files: a random subset drawn with ``seed``, in file order (None or <= 0: all).
        seed: sampling seed of built-in data sets and of a file's or folder's subset.
        layout: array files only: None (automatic), "NCHW" or "NHWC" (refused for folders and IDX files).

    Returns:
        ``(images, manifold)``: `ImageData` with ``x`` (N, C, H, W) float32; the manifold (acting on the
        flattened images) or None.

    Raises:
        ValueError: a built-in point data set (e.g. "sphere") or an unknown name, bad n, or any reader's error.
    """
    if _is_name(source) and is_image_dataset(source):
        return get_image_dataset(source, n, seed=seed)
    if _is_name(source) and source in DATASETS:
        raise ValueError(f"{source!r} is a built-in data set of points, not images; the image data sets are "
                         "digits, blobs and blobs:SIDE")
    if _is_name(source) and not Path(source).suffix and not is_idx_path(source):
        raise _unknown(source)
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        if layout is not None:
            raise ValueError(f"layout applies to array files (.npy, .npz, .pt), not to the folder '{source}'")
        return load_image_folder(source, n=n, seed=seed), None
    if isinstance(source, (str, os.PathLike)) and is_idx_path(source) and layout is not None:
        raise ValueError(f"layout applies to array files (.npy, .npz, .pt), not to the IDX file '{source}'")
    if isinstance(source, (str, os.PathLike)) and not is_idx_path(source):
        path = Path(source)
        raw, labels = read_file(path, f"image file '{path}'", extra="labels")
        return _sample_images(raw, labels, f"image file '{path}'", layout, path_text(path), n, seed), None
    images = load_images(source, layout=layout)
    keep = _subset(images.x.shape[0], n, seed)
    return (images if keep is None else images.take(keep)), None


def resolve_data(
    source: str | os.PathLike[str] | np.ndarray | Tensor,
    *,
    n: int | None = None,
    seed: int = 0,
    images: bool = False,
    layout: str | None = None,
) -> tuple[Tensor, SyntheticManifold | None]:
    """Data from a built-in data set name, an image source or a user array / file: the tensor the trainer uses.

    Image sources (`is_image_source`: "digits", "blobs", "blobs:SIDE", a PNG/JPEG folder, an IDX file), and any
    source when ``images=True``, go through `resolve_images` and give images (N, C, H, W) in their stored units
    (digits: 0..16, as scikit-learn stores them; `get_dataset("digits")` keeps the old (n, 8, 8) view in
    [0, 1]); call `resolve_images` for their labels and metadata. Another string that names a built-in data set
    (and is not an existing file) goes to ``get_dataset`` (n defaults to ``DEFAULT_SYNTHETIC_N``); anything else
    goes to ``load_array`` (shape as stored) and, when ``n > 0`` is given, keeps a random subset of n rows drawn
    with ``seed``, in their file order (as a folder's images).

    Args:
        source: data set name, file or folder path, or in-memory array.
        n: number of points (None or <= 0 for the default / all).
        seed: sampling seed for built-in data sets and for the subset of a file's rows.
        images: read an array file (or array) as images too: (N, H, W) -> (N, 1, H, W), channels-last ->
            channels-first, values as float32.
        layout: with images: None (automatic), "NCHW" or "NHWC" for 4-axis arrays.

    Returns:
        ``(data, manifold)``; manifold is None for real data.
    """
    if images or is_image_source(source):
        data, manifold = resolve_images(source, n=n, seed=seed, layout=layout)
        return data.x, manifold
    if isinstance(source, str) and source in DATASETS and not Path(source).exists():
        if n is None:
            n = 0 if DATASETS[source] is None else DEFAULT_SYNTHETIC_N
        return get_dataset(source, n, seed=seed)
    if _is_name(source) and not Path(source).suffix:
        raise _unknown(source)
    if not isinstance(source, (str, os.PathLike)):
        data = load_array(source)
        keep = _subset(data.shape[0], n, seed)
        return (data if keep is None else data[keep]), None
    label = f"data file '{Path(source)}'"
    raw, _ = read_file(Path(source), label, extra="labels")
    return _validate_points(_take_rows(raw, _row_subset(raw, n, seed)), label), None


@dataclass
class ResolvedData:
    """What the command line reads for DATA (`resolve_source`).

    Attributes:
        x: ``(N, *point_shape)`` points; images ``(N, C, H, W)`` in their stored units.
        manifold: the built-in data set's manifold (exact geometry), or None.
        info: images only: `ImageData.metadata` (source, stored dtype, value range), kept in the model file.
        labels: ``(N,)`` int64 class labels where the source has them (a folder's classes, IDX labels, a
            ``.npz``/``.pt`` entry "labels", text made codes by `labels.file_labels`), or None.
        class_names: the name of each label value (a folder's class folders, a text "labels" entry's sorted
            names; for images also in ``info``), or None.
        rows: ``(n,)`` int64 indices (0-based, file order) of an array file's rows that ``n`` kept, or None (all
            rows; built-in data sets, folders and IDX files).
    """

    x: Tensor
    manifold: SyntheticManifold | None = None
    info: dict | None = None
    labels: Tensor | None = None
    class_names: tuple[str, ...] | None = None
    rows: Tensor | None = None


def resolve_source(
    source: str | os.PathLike[str],
    *,
    n: int | None = None,
    seed: int = 0,
    layout: str | None = None,
) -> ResolvedData:
    """DATA as `learned-manifold train`, ``show`` and ``info --data`` read it: one reader for all three.

    Image sources (`is_image_source`) go to `resolve_images`. An array file is read once: a 4-axis array that
    reads as images (`_reads_as_images`; channels-last ``(N, H, W, C)`` is turned channels-first, an ambiguous
    shape such as ``(N, 3, 8, 3)`` needs ``layout``) gives images with their stored dtype and value range; any
    other array (``(N, D)``, ``(N, H, W)``, a volume ``(N, 16, 16, 16)``) gives points as stored. A ``.npz``
    entry or ``.pt`` key "labels" is kept as class labels (text made integer codes, its names kept; floats that are
    not whole numbers left out with a warning: `labels.file_labels`), and not taken for the data. Built-in names go to
    `resolve_data`.

    Args:
        source: data set name, file or folder path.
        n: how many points: built-ins as in `resolve_data`; files and folders a random subset drawn with
            ``seed``, in file order (None or <= 0: all).
        seed: sampling seed of built-in data sets and of a file's or folder's subset.
        layout: array files: None (automatic), "NCHW" or "NHWC".

    Raises:
        ValueError: any reader's error, naming the file; an ambiguous or impossible image layout.
    """
    if is_image_source(source):
        images, manifold = resolve_images(source, n=n, seed=seed, layout=layout)
        return ResolvedData(images.x, manifold, images.metadata(), images.labels, images.class_names)
    if not (isinstance(source, (str, os.PathLike)) and Path(source).suffix.lower() in SUPPORTED_EXTENSIONS
            and Path(source).exists()):
        if layout is not None:
            raise ValueError(f"layout applies to array files (.npy, .npz, .pt), not to {os.fspath(source)!r}")
        data, manifold = resolve_data(source, n=n, seed=seed)
        return ResolvedData(data, manifold)
    path = Path(source)
    label = f"data file '{path}'"
    raw, labels = read_file(path, label, extra="labels")
    keep = _row_subset(raw, n, seed)  # (the rows `_sample_images` keeps too)
    if _reads_as_images(tuple(raw.shape), layout):
        images = _sample_images(raw, labels, label, layout, path_text(path), n, seed)
        return ResolvedData(images.x, None, images.metadata(), images.labels, images.class_names, keep)
    labels, names = file_labels(labels, label)
    lab = None if labels is None or raw.ndim < 2 else labels_tensor(labels, raw.shape[0], label)
    data = _validate_points(_take_rows(raw, keep), label)
    return ResolvedData(data, None, None, None if lab is None else (lab if keep is None else lab[keep]),
                        None if lab is None else names, keep)


def as_model_points(x: Tensor, data_shape: Sequence[int], name: str) -> Tensor:
    """``x`` ``(N, *point_shape)`` as ``(N, *data_shape)`` of a model, when the shapes mean the same points.

    Equal shapes, or shapes that differ only by a channel axis of one (``(1, H, W)`` against ``(H, W)``): the same
    values in the same order. Anything else is refused, flat ``(N, D)`` data for an image model and channels-last
    data for a channels-first model included: reshaping them would scramble the pixels without a word.

    Raises:
        ValueError: naming ``name`` and both shapes.
    """
    shape, want = tuple(x.shape[1:]), tuple(int(s) for s in data_shape)

    def one_channel_dropped(s: tuple[int, ...]) -> tuple[int, ...]:
        return s[1:] if len(s) == 3 and s[0] == 1 else s

    if x.ndim >= 2 and one_channel_dropped(shape) == one_channel_dropped(want):
        return x.reshape(x.shape[0], *want)
    raise ValueError(f"{name} has points of shape {shape}; the model was trained on points of shape {want}")
