"""The schedules a training run follows, shared by the main loop (`training/trainer.py`) and the factor's repair
(`training/refit.py`): the learning-rate factor and the EMA decay at each step."""

from __future__ import annotations

import math

__all__ = ["ema_decay", "lr_factor"]


def lr_factor(step: int, steps: int, warmup: float) -> float:
    """The factor on the base learning rate at ``step`` of ``steps``: a linear warm-up over the first
    ``max(1, int(warmup · steps))`` steps, then cosine decay to a tenth."""
    warm = max(1, int(warmup * steps))
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, steps - warm)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def ema_decay(step: int, ema: float) -> float:
    """The EMA's decay after step ``step`` (0-based): ``min(ema, (1 + step) / (10 + step))``, so that the average
    follows the weights closely at first; 0 (no averaging) where ``ema`` is 0."""
    return min(ema, (1 + step) / (10 + step)) if ema else 0.0
