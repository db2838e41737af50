"""Data for training: synthetic manifolds with exact geometry, built-in data sets and user arrays.

One module per kind: `base` (helpers, `SyntheticManifold`, `EmbeddedManifold`), `shapes` (sphere, circle,
torus, swiss roll, flat patch, union), `builtin` (data sets by name), `files` (users' arrays and
`resolve_data`, the one entry point in front of them all).
"""

from .base import EmbeddedManifold, SyntheticManifold, random_isometry
from .builtin import DATASETS, DEFAULT_SYNTHETIC_N, get_dataset
from .files import SUPPORTED_EXTENSIONS, DataFileNotFoundError, load_array, resolve_data
from .shapes import Circle, FlatPatch, Sphere, SwissRoll, Torus
from .union import UnionManifold

__all__ = [
    "DATASETS",
    "DEFAULT_SYNTHETIC_N",
    "Circle",
    "DataFileNotFoundError",
    "EmbeddedManifold",
    "FlatPatch",
    "Sphere",
    "SwissRoll",
    "SUPPORTED_EXTENSIONS",
    "SyntheticManifold",
    "Torus",
    "UnionManifold",
    "get_dataset",
    "load_array",
    "random_isometry",
    "resolve_data",
]
