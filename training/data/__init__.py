"""Data for training: synthetic manifolds with exact geometry, built-in data sets and user arrays.

One module per kind: `base` (helpers, `SyntheticManifold`, `EmbeddedManifold`), `shapes` (sphere, circle,
torus, swiss roll, flat patch, union), `blobs` (the Gaussian blob image manifold, SPEC §9), `builtin` (data sets
by name), `readers` (array files read safely; `sparse_npz`: scipy sparse ``.npz`` files made dense), `labels`
(class labels beside the data), `images` and `idx` (users' pictures: arrays, PNG/JPEG folders, IDX files, as
`ImageData`), `files`
(users' arrays and `resolve_data`, the one entry point in front of them all; `resolve_images` for pictures;
`resolve_source`, what the command line reads).
"""

from .base import EmbeddedManifold, KnownManifold, SyntheticManifold, random_isometry
from .blobs import Blobs
from .builtin import DATASETS, DEFAULT_SYNTHETIC_N, IMAGE_DATASETS, get_dataset, get_image_dataset
from .files import (
    SUPPORTED_EXTENSIONS,
    DataFileNotFoundError,
    ResolvedData,
    as_model_points,
    is_image_source,
    load_array,
    load_images,
    resolve_data,
    resolve_images,
    resolve_source,
)
from .idx import load_idx, read_idx
from .images import IMAGE_EXTENSIONS, ImageData, images_from_array, load_image_array, load_image_folder
from .shapes import Circle, FlatPatch, Sphere, SwissRoll, Torus
from .union import UnionManifold

__all__ = [
    "Blobs",
    "DATASETS",
    "DEFAULT_SYNTHETIC_N",
    "IMAGE_DATASETS",
    "IMAGE_EXTENSIONS",
    "Circle",
    "DataFileNotFoundError",
    "ResolvedData",
    "EmbeddedManifold",
    "FlatPatch",
    "KnownManifold",
    "ImageData",
    "Sphere",
    "SwissRoll",
    "SUPPORTED_EXTENSIONS",
    "SyntheticManifold",
    "as_model_points",
    "Torus",
    "UnionManifold",
    "get_dataset",
    "get_image_dataset",
    "images_from_array",
    "is_image_source",
    "load_array",
    "load_idx",
    "load_image_array",
    "load_image_folder",
    "load_images",
    "random_isometry",
    "read_idx",
    "resolve_data",
    "resolve_images",
    "resolve_source",
]
