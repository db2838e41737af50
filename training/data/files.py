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

from .base import SyntheticManifold
from .builtin import DATASETS, DEFAULT_SYNTHETIC_N, get_dataset, get_image_dataset, is_image_dataset
from .idx import is_idx_path, load_idx
from .images import ImageData, _from_raw, _labels_tensor, images_from_array, load_image_array, load_image_folder

__all__ = ["DataFileNotFoundError", "ResolvedData", "SUPPORTED_EXTENSIONS", "is_image_source", "load_array",
           "load_images", "resolve_data", "resolve_images", "resolve_source", "as_model_points"]


SUPPORTED_EXTENSIONS = (".npy", ".npz", ".pt", ".pth")


class DataFileNotFoundError(FileNotFoundError, ValueError):
    """A data file does not exist (both a FileNotFoundError and a ValueError)."""


def _select_entry(keys: Sequence[str], label: str) -> str:
    if not keys:
        raise ValueError(f"{label}: contains no arrays")
    if len(keys) == 1:
        return keys[0]
    if "data" in keys:
        return "data"
    raise ValueError(f"{label}: holds several arrays {sorted(keys)}; name the one to use 'data'")


_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive (.npz), possibly empty


def _check_magic(path: Path, label: str) -> None:
    """Refuse a file whose first bytes are not those of its format (before np.load guesses "pickle")."""
    with open(path, "rb") as fh:
        head = fh.read(len(_NPY_MAGIC))
    if head.startswith(_NPY_MAGIC) or head.startswith(_ZIP_MAGIC):
        return
    what = ("a Python pickle, not NumPy data" if head[:1] == b"\x80"
            else "no NumPy (.npy) header and no zip (.npz) signature")
    raise ValueError(f"{label}: is not a valid {path.suffix.lower()} file ({what}; first bytes {head!r})")


def _read_numpy(path: Path, label: str, extra: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The data array of a .npy/.npz file and, from a .npz that has it, the entry named ``extra``."""
    pickled = (
        f"{label}: holds a pickled Python object array; refusing to load it (np.load allow_pickle=False)"
    )
    _check_magic(path, label)
    try:
        # Open the file ourselves: np.load leaks its own handle when a zip archive is corrupt.
        with open(path, "rb") as fh:
            loaded = np.load(fh, allow_pickle=False)
            if isinstance(loaded, np.lib.npyio.NpzFile):
                with loaded:
                    names = list(loaded.files)
                    side = loaded[extra] if extra is not None and extra in names else None
                    if side is not None:
                        names.remove(extra)
                    return loaded[_select_entry(names, label)], side
            return loaded, None
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise ValueError(pickled) from err
        if str(err).startswith(label):
            raise
        raise ValueError(f"{label}: corrupt or unreadable ({err})") from err
    except Exception as err:
        raise ValueError(f"{label}: corrupt or unreadable ({type(err).__name__}: {err})") from err


def _read_torch(path: Path, label: str, extra: str | None = None) -> tuple[Tensor, object | None]:
    """The data tensor of a .pt file and, from a dict that has it, the entry named ``extra``."""
    try:
        obj = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:
        raise ValueError(
            f"{label}: corrupt, unreadable or not a weights-only torch file ({type(err).__name__}: {err})"
        ) from err
    side = None
    if isinstance(obj, dict):
        keys = {str(k): k for k in obj}  # keys may be ints or other non-strings
        if extra is not None and extra in keys:
            side = obj[keys.pop(extra)]
        obj = obj[keys[_select_entry(list(keys), label)]]
    if not isinstance(obj, Tensor):
        raise ValueError(
            f"{label}: holds a {type(obj).__name__}, expected a tensor or a dict with key 'data'"
        )
    return obj, side


def _read_file(path: Path, label: str, extra: str | None = None) -> tuple[np.ndarray | Tensor, object | None]:
    """A .npy/.npz/.pt file's data array and (from a .npz or a .pt dict that has it) its entry ``extra``."""
    if not path.exists():
        raise DataFileNotFoundError(f"{label}: file does not exist")
    if path.is_dir():
        raise ValueError(f"{label}: is a directory, expected a file")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        raise ValueError(
            f"{label}: unsupported extension {suffix or '(none)'!r}; "
            f"supported: {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    if suffix in (".npy", ".npz"):
        return _read_numpy(path, label, extra)
    return _read_torch(path, label, extra)


MAX_DENSE_FROM_SPARSE = 2**27  # values (512 MiB in float32): larger sparse tensors are refused, not densified


def _densify(raw: Tensor, label: str) -> Tensor:
    """A sparse tensor as a dense one when it has at most `MAX_DENSE_FROM_SPARSE` values; refuse it otherwise."""
    if raw.layout == torch.strided:
        return raw
    if raw.numel() > MAX_DENSE_FROM_SPARSE:
        raise ValueError(
            f"{label}: is a sparse tensor ({raw.layout}) of shape {tuple(raw.shape)} whose dense form has "
            f"{raw.numel():,} values (more than {MAX_DENSE_FROM_SPARSE:,}); store the data dense"
        )
    try:
        return raw.to_dense()
    except (RuntimeError, NotImplementedError) as err:
        raise ValueError(f"{label}: a sparse tensor ({raw.layout}) that cannot be made dense: {err}") from None


def _validate(raw: np.ndarray | Tensor, label: str) -> Tensor:
    shape = tuple(raw.shape)
    if isinstance(raw, np.ndarray):
        if raw.dtype.kind not in "biuf":
            raise ValueError(
                f"{label}: non-numeric dtype {raw.dtype}; expected real numbers (bool, integer or floating)"
            )
        is_f64 = raw.dtype == np.float64
    else:
        if raw.is_complex() or raw.is_quantized:
            raise ValueError(f"{label}: non-numeric dtype {raw.dtype}; expected real numbers")
        raw = _densify(raw, label)
        is_f64 = raw.dtype == torch.float64
    if len(shape) < 2:
        hint = " (reshape N scalars to (N, 1))" if len(shape) == 1 else ""
        raise ValueError(
            f"{label}: expected an array of shape (N, ...) with at least 2 axes, got shape {shape}{hint}"
        )
    if shape[0] == 0:
        raise ValueError(f"{label}: is empty (0 samples, shape {shape})")
    if 0 in shape[1:]:
        raise ValueError(f"{label}: has an empty feature axis (shape {shape})")
    target = torch.float64 if is_f64 else torch.float32
    if isinstance(raw, np.ndarray):
        x = torch.from_numpy(np.array(raw, dtype=np.float64 if is_f64 else np.float32))
    else:
        x = raw.detach().to(dtype=target, copy=True)
    bad = ~torch.isfinite(x)
    count = int(bad.sum())
    if count:
        bad_rows = bad.reshape(shape[0], -1).any(dim=1).nonzero()[:, 0]
        raise ValueError(
            f"{label}: contains {count} non-finite value(s) (NaN or inf) in {bad_rows.numel()} row(s); "
            f"the first bad row is index {int(bad_rows[0])}"
        )
    if shape[0] < 2:
        raise ValueError(f"{label}: needs at least 2 samples, got {shape[0]}")
    return x


def load_array(source: str | os.PathLike[str] | np.ndarray | Tensor, *, name: str = "data") -> Tensor:
    """Load and validate a user data array.

    Args:
        source: a path to ``.npy``, ``.npz`` (a single array, or the one named "data"), ``.pt``/``.pth``
            (``torch.load(..., weights_only=True)``: a tensor, or a dict with a single tensor or key "data"),
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
        raw, _ = _read_file(path, label)
    elif isinstance(source, (np.ndarray, Tensor)):
        label = f"array {name!r}"
        raw = source
    else:
        raise TypeError(
            f"{name}: expected a file path, np.ndarray or torch.Tensor, got {type(source).__name__}"
        )
    return _validate(raw, label)


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


def _first_rows(count: int, n: int | None) -> int | None:
    """How many leading rows to keep of ``count`` for a requested ``n`` (None: all)."""
    if n is None or n <= 0:
        return None
    if n > count:
        raise ValueError(f"asked for n={n} rows but the data has only {count}")
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    return n


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
            default ``DEFAULT_SYNTHETIC_N``); files and folders: the first n (None or <= 0: all).
        seed: sampling seed of built-in data sets.
        layout: array files only: None (automatic), "NCHW" or "NHWC".

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
    images = load_images(source, layout=layout)
    keep = _first_rows(images.x.shape[0], n)
    return (images if keep is None else images.take(slice(0, keep))), None


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
    goes to ``load_array`` (shape as stored) and, when ``n > 0`` is given, keeps the first n rows (``seed`` is
    then unused).

    Args:
        source: data set name, file or folder path, or in-memory array.
        n: number of points (None or <= 0 for the default / all).
        seed: sampling seed for built-in data sets.
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
    data = load_array(source)
    keep = _first_rows(data.shape[0], n)
    return (data if keep is None else data[:keep].clone()), None


@dataclass
class ResolvedData:
    """What the command line reads for DATA (`resolve_source`).

    Attributes:
        x: ``(N, *point_shape)`` points; images ``(N, C, H, W)`` in their stored units.
        manifold: the built-in data set's manifold (exact geometry), or None.
        info: images only: `ImageData.metadata` (source, stored dtype, value range), kept in the model file.
        labels: ``(N,)`` int64 class labels where the source has them (a folder's classes, IDX labels, a
            ``.npz``/``.pt`` entry "labels"), or None.
    """

    x: Tensor
    manifold: SyntheticManifold | None = None
    info: dict | None = None
    labels: Tensor | None = None


def _reads_as_images(shape: tuple[int, ...], layout: str | None) -> bool:
    """A 4-axis array ``(N, a, b, c)`` is images when ``a ≤ 4`` (channels first) or ``c`` is 1, 3 or 4 (channels
    last, as PIL, Keras and most image pipelines store them); a stated ``layout`` always means images."""
    return layout is not None or (len(shape) == 4 and (shape[1] <= 4 or shape[3] in (1, 3, 4)))


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
    entry or ``.pt`` key "labels" is kept as class labels, and not taken for the data. Built-in names go to
    `resolve_data`.

    Args:
        source: data set name, file or folder path.
        n: how many points: built-ins as in `resolve_data`; files and folders the first n (None or <= 0: all).
        seed: sampling seed of built-in data sets.
        layout: array files: None (automatic), "NCHW" or "NHWC".

    Raises:
        ValueError: any reader's error, naming the file; an ambiguous or impossible image layout.
    """
    if is_image_source(source):
        images, manifold = resolve_images(source, n=n, seed=seed)
        return ResolvedData(images.x, manifold, images.metadata(), images.labels)
    if not (isinstance(source, (str, os.PathLike)) and Path(source).suffix.lower() in SUPPORTED_EXTENSIONS
            and Path(source).exists()):
        if layout is not None:
            raise ValueError(f"layout applies to array files (.npy, .npz, .pt), not to {os.fspath(source)!r}")
        data, manifold = resolve_data(source, n=n, seed=seed)
        return ResolvedData(data, manifold)
    path = Path(source)
    label = f"data file '{path}'"
    raw, labels = _read_file(path, label, extra="labels")
    if _reads_as_images(tuple(raw.shape), layout):
        images = _from_raw(raw, label, layout, labels, str(path))
        keep = _first_rows(images.x.shape[0], n)
        images = images if keep is None else images.take(slice(0, keep))
        return ResolvedData(images.x, None, images.metadata(), images.labels)
    data = _validate(raw, label)
    lab = None if labels is None else _labels_tensor(labels, data.shape[0], label)
    keep = _first_rows(data.shape[0], n)
    if keep is not None:
        data, lab = data[:keep].clone(), None if lab is None else lab[:keep].clone()
    return ResolvedData(data, None, None, lab)


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
