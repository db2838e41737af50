"""learned-manifold: learn the Riemannian geometry of a data set and optimise on it with geoopt.

A network trained by metric matching predicts the carré du champ ``G(x)`` of the data (SPEC.md);
`LearnedDataManifold` wraps it (or any other co-metric field) as a ``geoopt.Manifold``.
"""

from . import torch_quirks  # noqa: F401  (first: it imports geoopt with its import-time warning kept quiet)
from .curvature import Curvature, curvature
from .flows import FlowResult, gradient_flow, interpolate
from .geodesic_init import DisconnectedDataWarning
from .geodesics import GeodesicResult, geodesic
from .manifold import LearnedDataManifold
from .model_file import ModelFileError, ModelFileWarning, load_model, save_model
from .models import MetricModel, ModelConfig
from .optim import RiemannianAdam, RiemannianSGD
from .regularised import UncentredFieldWarning
from .vae_file import load_vae, save_vae

__version__ = "0.1.0"

__all__ = [
    "Curvature",
    "DisconnectedDataWarning",
    "FlowResult",
    "GeodesicResult",
    "LearnedDataManifold",
    "MetricModel",
    "ModelConfig",
    "ModelFileError",
    "ModelFileWarning",
    "RiemannianAdam",
    "RiemannianSGD",
    "UncentredFieldWarning",
    "curvature",
    "geodesic",
    "gradient_flow",
    "interpolate",
    "load_model",
    "load_vae",
    "save_model",
    "save_vae",
]
