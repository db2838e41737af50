"""Co-metric fields: the learned CDC and every competing geometry behind one interface (SPEC §7)."""

from .base import CoMetricField, as_denoiser
from .euclidean import EuclideanMetric
from .factor_checks import FactorContractError
from .knn import KNNCDC
from .learned import LearnedCDC
from .score import ScoreJacobianMetric, SteinScoreMetric, TangentialMetric
from .vae_pullback import VAEPullbackMetric

__all__ = [
    "KNNCDC",
    "CoMetricField",
    "EuclideanMetric",
    "FactorContractError",
    "LearnedCDC",
    "ScoreJacobianMetric",
    "SteinScoreMetric",
    "TangentialMetric",
    "VAEPullbackMetric",
    "as_denoiser",
]
