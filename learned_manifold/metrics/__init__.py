"""Co-metric fields: the learned CDC and every competing geometry behind one interface (SPEC §7)."""

from .base import CoMetricField, as_denoiser
from .learned import LearnedCDC

__all__ = ["CoMetricField", "LearnedCDC", "as_denoiser"]
