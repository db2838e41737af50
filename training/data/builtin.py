"""Built-in data sets by name: the synthetic manifolds with fixed embeddings, and scikit-learn's 8×8 digits."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from torch import Tensor

from .base import SyntheticManifold
from .shapes import Circle, Sphere, SwissRoll, Torus
from .union import UnionManifold

__all__ = ["DATASETS", "DEFAULT_SYNTHETIC_N", "get_dataset"]

DEFAULT_SYNTHETIC_N = 10_000
"""Number of points ``resolve_data`` draws from a synthetic data set when ``n`` is not given."""


DATASETS: dict[str, Callable[[], SyntheticManifold] | None] = {
    "circle": partial(Circle, 2),
    "sphere": partial(Sphere, 2, 3),
    "sphere8": partial(Sphere, 8, 64),
    "torus": partial(Torus, 3),
    "swiss_roll": partial(SwissRoll, 3),
    "union": partial(UnionManifold, ambient_dim=3),
    "digits": None,
}
"""Built-in data sets: name -> factory of its (fixed, seed-0-embedded) manifold, or None for real data."""


def _load_digits(n: int, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise ImportError(
            "the 'digits' data set needs scikit-learn (an optional dependency): pip install scikit-learn"
        ) from err
    images = load_digits().images  # (1797, 8, 8), values 0..16
    total = images.shape[0]
    if n > total:
        raise ValueError(f"the 'digits' data set has {total} images, asked for n={n} (use n <= 0 for all)")
    data = torch.from_numpy(np.array(images, dtype=np.float64) / 16.0)
    if 0 < n < total:
        keep = torch.randperm(total, generator=generator)[:n].sort().values
        data = data[keep]
    return data.to(dtype)


def get_dataset(
    name: str, n: int, *, seed: int = 0, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, SyntheticManifold | None]:
    """A built-in data set and its manifold.

    The manifold (including any random embedding) is fixed; ``seed`` only seeds the sampling, so the same call
    gives the same data and different seeds give different samples of the same manifold.

    Args:
        name: one of ``DATASETS``: "circle" (S^1 in R^2), "sphere" (S^2 in R^3), "sphere8" (S^8 in R^64,
            random isometric embedding), "torus" (R^3), "swiss_roll" (R^3), "union" (circle + square, R^3),
            "digits" (scikit-learn's 8×8 digits, scaled to [0, 1]).
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
