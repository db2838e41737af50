"""Image data from users' files: arrays (``.npy``/``.npz``/``.pt``) and folders of PNG/JPEG files, each read into
an `ImageData` in the user's own units (SPEC §1, §9); IDX files are in `idx`, and `files.load_images` takes any.

Values are returned exactly as stored, as float32 (uint8 pictures give 0..255): the model's own standardisation
(mean image and scalar scale, kept in the model file) is the only normalisation, so a trained model takes and
returns images in the units the user loaded them in. Every reader checks its input completely and raises one
ValueError naming the file (or argument) before it allocates the images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from learned_manifold.user_warnings import warn_user

from .labels import file_labels, labels_tensor
from .readers import DataFileNotFoundError, DataPathNotAFolderError, path_text, read_file, validate

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageData",
    "images_from_array",
    "load_image_array",
    "load_image_folder",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
"""File extensions `load_image_folder` reads (case-insensitive)."""

_PILLOW_HINT = 'reading PNG/JPEG images needs Pillow (an optional dependency): pip install "learned-manifold[images]"'
_INT_RANGES = {"uint8": (0.0, 255.0), "uint16": (0.0, 65535.0), "bool": (0.0, 1.0)}


@dataclass(frozen=True, eq=False)
class ImageData:
    """Images as read, in the user's units, and what was read.

    Attributes:
        x: Tensor (N, C, H, W), float32, C <= 4: the values as stored (uint8 → 0..255).
        labels: Tensor (N,), int64, or None: class of each image.
        source: where the images came from (a path or a built-in name such as "digits", "blobs:32").
        stored_dtype: the stored element type ("uint8", "float32", ...).
        value_range: ``(low, high)`` for display: the type's full range for uint8/uint16/bool, otherwise the
            observed minimum and maximum (built-ins state their nominal range).
        class_names: name of each label value (image folders: the sub-folder names), or None.
    """

    x: Tensor
    labels: Tensor | None
    source: str
    stored_dtype: str
    value_range: tuple[float, float]
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.x, Tensor) or self.x.ndim != 4 or self.x.dtype != torch.float32:
            raise ValueError(f"ImageData.x must be a float32 Tensor (N, C, H, W), got "
                             f"{getattr(self.x, 'dtype', type(self.x).__name__)} {tuple(getattr(self.x, 'shape', ()))}")
        if not 1 <= self.x.shape[1] <= 4:
            raise ValueError(f"ImageData.x must have 1 to 4 channels, got shape {tuple(self.x.shape)}")
        if self.labels is not None and (self.labels.dtype != torch.int64 or self.labels.shape != self.x.shape[:1]):
            raise ValueError(f"ImageData.labels must be an int64 Tensor ({self.x.shape[0]},), got "
                             f"{self.labels.dtype} {tuple(self.labels.shape)}")

    @property
    def data_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        c, h, w = self.x.shape[1:]
        return int(c), int(h), int(w)

    def metadata(self) -> dict:
        """JSON-ready description for a model file: source, stored dtype, value range, data shape, counts."""
        meta = {"source": self.source, "stored_dtype": self.stored_dtype,
                "value_range": [float(v) for v in self.value_range], "data_shape": list(self.data_shape),
                "num_images": int(self.x.shape[0])}
        if self.labels is not None:
            meta["num_classes"] = len(self.class_names) if self.class_names else int(self.labels.max()) + 1
        if self.class_names is not None:
            meta["class_names"] = list(self.class_names)
        return meta

    def take(self, index: Tensor | slice) -> ImageData:
        """The images (and labels) at ``index`` (a slice or a LongTensor), as a new `ImageData`."""
        labels = None if self.labels is None else self.labels[index].clone()
        return ImageData(self.x[index].clone(), labels, self.source, self.stored_dtype, self.value_range,
                         self.class_names)


def _dtype_name(dtype: np.dtype | torch.dtype) -> str:
    return str(dtype).removeprefix("torch.") if isinstance(dtype, torch.dtype) else np.dtype(dtype).name


def _value_range(stored_dtype: str, x: Tensor) -> tuple[float, float]:
    if stored_dtype in _INT_RANGES:
        return _INT_RANGES[stored_dtype]
    return float(x.min()), float(x.max())


def _nchw_order(shape: tuple[int, ...], layout: str | None, label: str) -> tuple[int, int, int, int] | None:
    """Axis order that turns an array of ``shape`` into (N, C, H, W); None for (N, H, W) (add a channel)."""
    if layout not in (None, "NCHW", "NHWC"):
        raise ValueError(f"layout must be None (automatic), 'NCHW' or 'NHWC', got {layout!r}")
    if len(shape) == 3 and layout is None:
        return None
    if len(shape) != 4:
        want = "4 axes (N, C, H, W)" if layout else "3 or 4 axes: (N, H, W), (N, C, H, W) or (N, H, W, C)"
        raise ValueError(f"{label}: images need {want}, got shape {shape}")
    first, last = shape[1] <= 4, shape[3] in (1, 3, 4)
    if layout is None:
        if first and last:
            raise ValueError(f"{label}: shape {shape} is ambiguous, either channels-first (N, C, H, W) or "
                             "channels-last (N, H, W, C); state it with layout='NCHW' or layout='NHWC'")
        if not (first or last):
            raise ValueError(f"{label}: shape {shape} is not an image array: (N, C, H, W) needs C <= 4 and "
                             "(N, H, W, C) needs C in {1, 3, 4}")
        layout = "NCHW" if first else "NHWC"
    order = (0, 1, 2, 3) if layout == "NCHW" else (0, 3, 1, 2)
    if not 1 <= shape[order[1]] <= 4:
        raise ValueError(f"{label}: {layout} images must have 1 to 4 channels, got shape {shape}")
    return order


def _reads_as_images(shape: tuple[int, ...], layout: str | None) -> bool:
    """A 4-axis array ``(N, a, b, c)`` is images when ``a ≤ 4`` (channels first) or ``c`` is 1, 3 or 4 (channels
    last, as PIL, Keras and most image pipelines store them); a stated ``layout`` always means images."""
    return layout is not None or (len(shape) == 4 and (shape[1] <= 4 or shape[3] in (1, 3, 4)))


def images_from_array(
    raw: np.ndarray | Tensor, *, name: str = "images", layout: str | None = None, labels: object = None,
    source: str | None = None,
) -> ImageData:
    """Images from an in-memory array, checked and turned into (N, C, H, W) float32 values as stored.

    Args:
        raw: array (N, H, W), (N, C, H, W) with C <= 4, or (N, H, W, C) with C in {1, 3, 4}; any real dtype.
            A 4-axis shape that fits both layouts (e.g. (N, 3, 8, 4)) needs ``layout``.
        name: how the array is called in error messages.
        layout: None (automatic), "NCHW" or "NHWC".
        labels: optional 1-D integer array (N,).
        source: recorded source (default ``name``).

    Returns:
        `ImageData`; ``value_range`` is the dtype's range for uint8/uint16/bool, the observed range otherwise.

    Raises:
        ValueError: wrong number of axes, ambiguous or impossible layout, non-numeric dtype, NaN/inf, fewer
            than 2 images, bad labels.
    """
    if not isinstance(raw, (np.ndarray, Tensor)):
        raise TypeError(f"{name}: expected an np.ndarray or torch.Tensor, got {type(raw).__name__}")
    return _from_raw(raw, f"array {name!r}", layout, labels, source or name)


def _from_raw(raw: np.ndarray | Tensor, label: str, layout: str | None, labels: object, source: str,
              class_names: tuple[str, ...] | None = None) -> ImageData:
    shape = tuple(int(s) for s in raw.shape)
    order = _nchw_order(shape, layout, label)  # layout errors first: they need no copy of the data
    stored = _dtype_name(raw.dtype)
    x = validate(raw, label)
    x = x.unsqueeze(1) if order is None else x.permute(order)
    if x.dtype != torch.float32:
        x = x.to(torch.float32)
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{label}: holds values beyond the float32 range (|x| > {torch.finfo().max:.3g})")
    x = x.contiguous()
    lab = None if labels is None else labels_tensor(labels, x.shape[0], label)
    return ImageData(x, lab, source, stored, _value_range(stored, x), None if lab is None else class_names)


def load_image_array(path: str | os.PathLike[str], *, layout: str | None = None) -> ImageData:
    """Images from a ``.npy``, ``.npz`` or ``.pt``/``.pth`` file (read safely by `files.load_array`'s readers).

    A ``.npz`` (or a ``.pt`` dict) may hold the images as "data" (or as its only other entry) and class labels as
    "labels": integers, or text (made codes 0, 1, ... of the sorted names, kept as ``class_names``); floats that
    are not whole numbers are no class labels and are left out with a warning (`labels.file_labels`).

    Args:
        path: the file.
        layout: None (automatic), "NCHW" or "NHWC" (see `images_from_array`).

    Returns:
        `ImageData` with ``source`` the path.
    """
    path = Path(path)
    label = f"image file '{path}'"
    raw, labels = read_file(path, label, extra="labels")
    labels, names = file_labels(labels, label)
    return _from_raw(raw, label, layout, labels, path_text(path), names)


# ----------------------------------------------------------------------------------------------------------
# Folders of PNG/JPEG files
# ----------------------------------------------------------------------------------------------------------


def _import_pillow():
    try:
        from PIL import Image
    except ImportError as err:
        raise ImportError(_PILLOW_HINT) from err
    return Image


_OTHER_PICTURES = (".bmp", ".gif", ".tif", ".tiff", ".webp")
"""Picture formats a folder may hold that `load_image_folder` does not read: their files are counted and named."""


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))


def _warn_other_pictures(folders: list[Path], label: str) -> None:
    """Say so when pictures in other formats sit beside the PNG/JPEG files: they are not read."""
    other = sorted(p for d in folders for p in d.iterdir()
                   if p.is_file() and p.suffix.lower() in _OTHER_PICTURES and not p.name.startswith("."))
    if other:
        warn_user(f"{label}: {len(other)} picture(s) in other formats are not read (e.g. '{other[0]}'); only "
                  f"{'/'.join(IMAGE_EXTENSIONS)} files are: convert them to PNG to use them")


def _warn_nested_images(folders: list[Path], label: str) -> None:
    """Say so when sub-folders of the folders read (``folders``: the root, or each class folder) hold PNG/JPEG
    files at any depth: only ``root/*.png`` or ``root/<class>/*.png`` is read (a class folder's ``day2/`` is not),
    so their pictures are left out. Names the sub-folders (the first few) and counts their pictures."""
    nested = {}
    for folder in folders:
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            count = sum(1 for p in sub.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                        and not p.name.startswith("."))
            if count:
                nested[sub] = count
    if nested:
        names = ", ".join(f"'{d}' ({k})" for d, k in list(nested.items())[:5]) + (", ..." if len(nested) > 5 else "")
        warn_user(f"{label}: {sum(nested.values())} {'/'.join(IMAGE_EXTENSIONS)} file(s) in {len(nested)} "
                  f"sub-folder(s) are not read: {names}; only root/*.png or root/<class>/*.png, one level down, "
                  "is read: move them up to use them")


def _folder_listing(root: Path) -> tuple[list[Path], list[int] | None, tuple[str, ...] | None]:
    label = f"image folder '{root}'"
    if not root.exists():
        raise DataFileNotFoundError(f"{label}: does not exist")
    if not root.is_dir():
        raise DataPathNotAFolderError(f"{label}: is not a folder")
    top = _image_files(root)
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    classes = [(d, _image_files(d)) for d in subdirs]
    _warn_other_pictures([root, *subdirs], label)
    if top and any(files for _, files in classes):
        first = next(d for d, files in classes if files)
        raise ValueError(f"{label}: holds both images ({top[0].name}, ...) and class sub-folders "
                         f"({first.name}, ...); use one layout: root/*.png or root/<class>/*.png")
    if top:
        _warn_nested_images([root], label)
        return top, None, None
    if not any(files for _, files in classes):
        raise ValueError(f"{label}: holds no {'/'.join(IMAGE_EXTENSIONS)} files (directly or in class sub-folders)")
    empty = [d.name for d, files in classes if not files]
    if empty:  # a class of no images would shift every later label (and its pictures may sit one level down)
        raise ValueError(f"{label}: class folder(s) {empty} hold no {'/'.join(IMAGE_EXTENSIONS)} files directly "
                         f"(sub-folders are not read); images must sit in root/<class>/, one level down: move "
                         "them there or remove the folder")
    _warn_nested_images(subdirs, label)
    files = [f for _, fs in classes for f in fs]
    labels = [k for k, (_, fs) in enumerate(classes) for _ in fs]
    return files, labels, tuple(d.name for d, _ in classes)


def _depth_problem(image) -> str | None:
    """Why an opened PIL image cannot be read exactly, or None: 16 bits per channel in colour (or grey with
    alpha), which Pillow decodes to their high 8 bits (16-bit grey, mode ``I;16``, is read exactly)."""
    args = image.tile[0][3] if image.tile else None
    rawmode = args if isinstance(args, str) else (args[0] if isinstance(args, tuple) and args else "")
    if isinstance(rawmode, str) and ";16" in rawmode and not image.mode.startswith("I"):
        return (f"has 16 bits per channel in mode {rawmode.split(';')[0]}, which Pillow reads as 8 bits (the low "
                "byte dropped); convert the images to a .npy array of uint16 (e.g. with imageio or OpenCV) and "
                "train from that")
    return None


def _png_grey16(image) -> bool:
    """Whether an opened PIL image is a 16-bit grey PNG: older Pillow (such as 9.1, the images extra's floor) opens
    them as mode ``I`` (int32), newer ones as ``I;16``; PNG has no 32-bit grey, so either is uint16 (0..65535)."""
    return image.format == "PNG" and (image.mode == "I" or image.mode.startswith("I;16"))


def _read_mode(image) -> str:
    """The mode an opened PIL image is read in (`_pixels`): its own, or RGB[A] for palette and exotic modes, L for
    1-bit; known from the header alone."""
    mode = image.mode
    if mode == "1":
        return "L"
    if mode in ("P", "PA"):
        return "RGBA" if mode == "PA" or "transparency" in image.info else "RGB"
    if mode not in ("L", "LA", "RGB", "RGBA", "I", "F") and not mode.startswith("I;16"):
        return "RGB"  # CMYK, YCbCr, LAB, HSV
    return mode


def _header_shape(image) -> tuple[tuple[int, int, int], str]:
    """``((H, W, C), dtype name)`` of the array `_pixels` will give for an opened PIL image, from its header alone
    (Pillow decodes the pixels only when they are asked for)."""
    from PIL import ImageMode

    width, height = image.size
    if _png_grey16(image):
        return (height, width, 1), "uint16"
    described = ImageMode.getmode(_read_mode(image))
    return (height, width, len(described.bands)), np.dtype(described.typestr).newbyteorder("=").name


def _pixels(image) -> np.ndarray:
    """An opened PIL image as an (H, W, C) array of its stored values (palette and exotic modes made RGB[A])."""
    mode = _read_mode(image)
    if mode != image.mode:
        image = image.convert(mode)
    arr = np.asarray(image)
    arr = arr.astype(np.uint16 if _png_grey16(image) else arr.dtype.newbyteorder("="), copy=False)
    return arr[:, :, None] if arr.ndim == 2 else arr


def _mismatch(path: Path, shape: tuple[int, ...], dtype: str, first: Path, first_shape: tuple[int, ...],
              first_dtype: str) -> ValueError:
    (h, w, c), (h0, w0, c0) = shape, first_shape
    return ValueError(f"image file '{path}': is {h}×{w} (H×W) with {c} channel(s) of {dtype}, but '{first}' is "
                      f"{h0}×{w0} with {c0} of {first_dtype}; all images must share one size and mode")


def _check_headers(files: list[Path], image_module) -> tuple[tuple[int, int, int], str]:
    """``((H, W, C), dtype name)`` shared by every file, read from their headers (nothing decoded) before the
    images are allocated; else one ValueError naming the first file that is unreadable, of a depth Pillow cannot
    read exactly (`_depth_problem`), or of another size or mode than the first file."""
    first: tuple[tuple[int, int, int], str] | None = None
    for path in files:
        try:
            with image_module.open(path) as image:
                problem = _depth_problem(image)
                shape, stored = _header_shape(image)
        except (OSError, ValueError, SyntaxError, KeyError, image_module.DecompressionBombError) as err:
            raise ValueError(f"image file '{path}': unreadable ({type(err).__name__}: {err})") from None
        if problem:
            raise ValueError(f"image file '{path}': {problem}")
        if first is None:
            if shape[2] > 4:
                raise ValueError(f"image file '{path}': has {shape[2]} channels, at most 4 are supported")
            first = shape, stored
        elif (shape, stored) != first:
            raise _mismatch(path, shape, stored, files[0], *first)
    assert first is not None  # (at least 2 files)
    return first


def _decoded(path: Path, image_module) -> np.ndarray:
    """The pixels of one image file (`_pixels`), or one ValueError naming it."""
    try:
        with image_module.open(path) as image:
            return _pixels(image)
    except (OSError, ValueError, SyntaxError, image_module.DecompressionBombError) as err:
        raise ValueError(f"image file '{path}': unreadable ({type(err).__name__}: {err})") from None


def load_image_folder(root: str | os.PathLike[str], *, n: int | None = None, seed: int = 0) -> ImageData:
    """Images from a folder of PNG/JPEG files, in sorted file order.

    Either ``root/*.png`` (no labels) or ``root/<class>/*.png`` (labels 0, 1, ... from the sorted sub-folder
    names, recorded as ``class_names``; every class folder must hold images, so labels mean the same classes in
    every folder of the same class names). All images must share one size and number of channels. Grayscale
    gives C = 1, RGB 3, RGBA 4 (palette images become RGB or RGBA; 1-bit images 0/255; 16-bit grey stays
    0..65535, 16-bit colour is refused). Pixels are read as stored: an EXIF orientation tag is not applied
    (as Pillow and torchvision do by default). Pictures in other formats (BMP, GIF, TIFF, WebP) are not read,
    with a warning that names them; so are pictures in deeper sub-folders (``root/<class>/day2/*.png``), with a
    warning that names the sub-folders and counts their pictures.

    Args:
        root: the folder.
        n: read ``n`` of the images, a random subset drawn with ``seed`` (in sorted file order; the first ``n``
            of a class folder would be its first classes only); None or <= 0: all.

    Returns:
        `ImageData` (N, C, H, W), values as stored (8-bit: 0..255).

    Raises:
        ImportError: Pillow is missing (the message says ``pip install "learned-manifold[images]"``).
        ValueError: no images, a mixed layout, an unreadable file or the first file whose size or channel count
            differs from the first image's (named with both shapes).
    """
    image_module = _import_pillow()
    root = Path(root)
    files, labels, class_names = _folder_listing(root)
    if len(files) < 2:
        raise ValueError(f"image folder '{root}': needs at least 2 images, found {len(files)}")
    if n is not None and n > 0:
        if not 2 <= n <= len(files):
            raise ValueError(f"image folder '{root}': asked for n={n} images; it holds {len(files)} (n must be "
                             f"between 2 and {len(files)})")
        keep = sorted(torch.randperm(len(files), generator=torch.Generator().manual_seed(seed))[:n].tolist())
        files = [files[i] for i in keep]
        labels = None if labels is None else [labels[i] for i in keep]
    shape, stored = _check_headers(files, image_module)
    out_bytes = len(files) * shape[0] * shape[1] * shape[2] * 4
    try:
        out = np.empty((len(files), shape[2], shape[0], shape[1]), dtype=np.float32)
    except MemoryError:
        raise ValueError(f"image folder '{root}': too large for the memory available: {len(files)} images of "
                         f"{shape[0]}×{shape[1]} with {shape[2]} channel(s) need {out_bytes / 2**30:.3g} GiB as "
                         "float32; read fewer of them (n)") from None
    for i, path in enumerate(files):
        arr = _decoded(path, image_module)
        if arr.shape != shape or arr.dtype.name != stored:  # the header said otherwise: a corrupt file
            raise _mismatch(path, arr.shape, arr.dtype.name, files[0], shape, stored)
        out[i] = arr.transpose(2, 0, 1)
    x = torch.from_numpy(out)
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"image folder '{root}': holds non-finite values (float images with NaN/inf)")
    lab = None if labels is None else torch.tensor(labels, dtype=torch.int64)
    return ImageData(x, lab, path_text(root), stored, _value_range(stored, x), class_names)
