"""Built-in data sets by name: the synthetic manifolds with fixed embeddings, the blob images and scikit-learn's
8×8 digits.

Two views: `get_dataset` gives points and manifold (digits as (n, 8, 8) scaled to [0, 1], blobs flat (n, D)),
`get_image_dataset` gives the image data sets ("digits", "blobs", "blobs:SIDE") as `ImageData` (n, 1, H, W) in
their stored units, with labels where they exist. `resolve_data` uses the image view for image names.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from torch import Tensor

from .base import SyntheticManifold
from .blobs import Blobs
from .images import ImageData
from .shapes import Circle, Sphere, SwissRoll, Torus
from .union import UnionManifold

__all__ = ["DATASETS", "DEFAULT_SYNTHETIC_N", "IMAGE_DATASETS", "get_dataset", "get_image_dataset",
           "is_image_dataset", "split_image_name"]

DEFAULT_SYNTHETIC_N = 10_000
"""Number of points ``resolve_data`` draws from a synthetic data set when ``n`` is not given."""


DATASETS: dict[str, Callable[[], SyntheticManifold] | None] = {
    "circle": partial(Circle, 2),
    "sphere": partial(Sphere, 2, 3),
    "sphere8": partial(Sphere, 8, 64),
    "torus": partial(Torus, 3),
    "swiss_roll": partial(SwissRoll, 3),
    "union": partial(UnionManifold, ambient_dim=3),
    "blobs": partial(Blobs, 16),
    "digits": None,
}
"""Built-in data sets: name -> factory of its (fixed, seed-0-embedded) manifold, or None for real data."""

IMAGE_DATASETS = ("digits", "blobs")
"""Built-in image data sets (`get_image_dataset`); "blobs" also takes a side, e.g. "blobs:32" (D = 1024)."""

DEFAULT_BLOB_SIDE = 16


def split_image_name(name: str) -> tuple[str, int | None]:
    """``"blobs:32"`` -> ``("blobs", 32)``; ``"digits"`` -> ``("digits", None)``.

    Raises:
        ValueError: not an image data set, or a bad size (only "blobs" takes one: ASCII digits, an integer >= 4).
    """
    base, sep, size = name.partition(":")
    if base not in IMAGE_DATASETS:
        raise ValueError(f"unknown image data set {name!r}; valid: digits, blobs, blobs:SIDE (e.g. blobs:32)")
    if not sep:
        return base, None
    if base != "blobs" or not (size.isascii() and size.isdigit()) or int(size) < 4:  # "²", "٣٢": isdigit()
        raise ValueError(f"bad image data set {name!r}: only blobs takes a size, as blobs:SIDE with an integer "
                         "SIDE >= 4 (e.g. blobs:32 for 32×32 images)")
    return base, int(size)


def is_image_dataset(name: object) -> bool:
    """Whether ``name`` is a string naming a built-in image data set ("digits", "blobs" or "blobs:<anything>")."""
    return isinstance(name, str) and name.partition(":")[0] in IMAGE_DATASETS


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits: images (1797, 8, 8) float64 with values 0..16, labels (1797,) 0..9."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise ImportError(
            "the 'digits' data set needs scikit-learn (an optional dependency): pip install scikit-learn"
        ) from err
    bunch = load_digits()
    return bunch.images, bunch.target


def _digits_keep(n: int, total: int, generator: torch.Generator) -> Tensor | None:
    """Sorted random rows to keep for n of ``total`` digits (None: all)."""
    if n > total:
        raise ValueError(f"the 'digits' data set has {total} images, asked for n={n} (use n <= 0 for all)")
    if 0 < n < total:
        return torch.randperm(total, generator=generator)[:n].sort().values
    return None


def _load_digits(n: int, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
    images, _ = _digits_arrays()
    data = torch.from_numpy(np.array(images, dtype=np.float64) / 16.0)
    keep = _digits_keep(n, data.shape[0], generator)
    return (data if keep is None else data[keep]).to(dtype)


def get_image_dataset(
    name: str, n: int | None = None, *, seed: int = 0
) -> tuple[ImageData, SyntheticManifold | None]:
    """A built-in image data set in its stored units, with its labels or its manifold.

    Args:
        name: "digits" (scikit-learn's 8×8 digits: 1797 images, values 0..16, labels 0..9), "blobs" (the
            SPEC §9 blob manifold `Blobs`, 16×16, values in (0, 1]) or "blobs:SIDE" (SIDE×SIDE, D = SIDE²).
        n: number of images. digits: None or <= 0 for all 1797, else a random subset (seeded, in the original
            order); blobs: default ``DEFAULT_SYNTHETIC_N``, must be positive.
        seed: seed of the sampling.

    Returns:
        ``(images, manifold)``: `ImageData` (n, 1, H, W) float32; the manifold (a `Blobs`, acting on the
        flattened images (n, D)) or None for digits.

    Raises:
        ValueError: unknown name, bad size or bad n.
        ImportError: "digits" without scikit-learn.
    """
    base, side = split_image_name(name)
    generator = torch.Generator().manual_seed(seed)
    if base == "digits":
        images, target = _digits_arrays()
        x = torch.from_numpy(np.array(images, dtype=np.float32))[:, None]
        labels = torch.from_numpy(np.array(target, dtype=np.int64))
        keep = _digits_keep(0 if n is None else n, x.shape[0], generator)
        if keep is not None:
            x, labels = x[keep], labels[keep]
        data = ImageData(x, labels, "digits", str(images.dtype), (0.0, 16.0), tuple(str(k) for k in range(10)))
        return data, None
    n = DEFAULT_SYNTHETIC_N if n is None else n
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer for the image data set {name!r}, got {n!r}")
    side = DEFAULT_BLOB_SIDE if side is None else side
    manifold = Blobs(side)
    x = manifold.as_images(manifold.sample(n, generator=generator))
    return ImageData(x, None, f"blobs:{side}", "float32", (0.0, 1.0)), manifold


def get_dataset(
    name: str, n: int, *, seed: int = 0, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, SyntheticManifold | None]:
    """A built-in data set and its manifold.

    The manifold (including any random embedding) is fixed; ``seed`` only seeds the sampling, so the same call
    gives the same data and different seeds give different samples of the same manifold.

    Args:
        name: one of ``DATASETS``: "circle" (S^1 in R^2), "sphere" (S^2 in R^3), "sphere8" (S^8 in R^64,
            random isometric embedding), "torus" (R^3), "swiss_roll" (R^3), "union" (circle + square, R^3),
            "blobs" (16×16 Gaussian blob images flattened, D = 256, `Blobs`), "digits" (scikit-learn's 8×8
            digits, scaled to [0, 1]; `get_image_dataset` gives them unscaled, with labels).
        n: number of points (> 0). For "digits": at most 1797, and n <= 0 means all.
        seed: seed of the sampling generator.
        dtype: floating dtype of the data.

    Returns:
        ``(data, manifold)``: data Tensor (n, D) (digits: (n, 8, 8) and manifold None).

    Raises:
        ValueError: unknown name (the message lists the valid ones) or bad n.
        ImportError: "digits" without scikit-learn.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; valid names: {', '.join(DATASETS)}")
    generator = torch.Generator().manual_seed(seed)
    factory = DATASETS[name]
    if factory is None:
        return _load_digits(n, generator, dtype), None
    if not isinstance(n, int) or n <= 0:
        raise ValueError(f"n must be a positive integer for the synthetic data set {name!r}, got {n!r}")
    manifold = factory()
    manifold.name = name
    return manifold.sample(n, generator=generator, dtype=dtype), manifold
