"""The schedules a training run follows, shared by the main loop (`training/trainer.py`) and the factor's repair
(`training/refit.py`): the learning-rate factor and the EMA decay at each step, and the factor's own ramp when it
starts after the denoiser's warm-up."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from .config import TrainConfig

__all__ = ["ema_decay", "factor_lr", "factor_ramp_steps", "fused_adamw", "lr_factor", "optimiser", "ramp_factor"]


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


def ramp_factor(step: int, start: int, ramp: int) -> float:
    """A linear ramp from ``1/ramp`` at ``step = start`` to 1 at ``start + ramp − 1`` (0 before ``start``; 1 for
    ``ramp ≤ 0``): the factor's learning rate when it starts after the denoiser's warm-up (SPEC §3)."""
    if ramp <= 0:
        return 1.0
    return min(1.0, max(0.0, (step - start + 1) / ramp))


def factor_lr(cfg: TrainConfig) -> float:
    """The factor network's peak learning rate: ``lr · factor_lr_scale`` (an unresolved ``"auto"`` scale is 1),
    in the main run and, times `refit.REFIT_LR_FACTOR`, in the repair."""
    return cfg.lr * (1.0 if cfg.factor_lr_scale == "auto" else cfg.factor_lr_scale)


def factor_ramp_steps(cfg: TrainConfig, factor_from: int, own_weights: bool) -> int:
    """The steps over which the factor network's learning rate ramps up (`optimiser`): ``round(factor_ramp ·
    steps)`` where the factor starts after the denoiser's warm-up (``factor_from > 0``) and has weights of its own
    (not a shared trunk); else 0, no ramp, whatever ``cfg.factor_ramp`` says (an uncentred run's factor trains
    from its first step under the main warm-up alone)."""
    return round(cfg.factor_ramp * cfg.steps) if factor_from > 0 and own_weights else 0


def fused_adamw(params: Sequence[nn.Parameter], device: torch.device) -> bool | None:
    """AdamW's ``fused`` argument for ``params`` on ``device``: ``True`` on CPU and CUDA (torch ≥ 2.4 has the fused
    kernel there for every floating dtype: float16, bfloat16, float32, float64), else ``None`` (torch's default
    loop). On CPU the fused step took 1.2 ms against 4.4 ms for the per-tensor loop, which also syncs once per
    tensor (``step.item()``), for the default model's 66 tensors (tester C of the 32nd round). A resumed run
    keeps the ``fused`` its checkpoint's optimiser state was saved with (``load_state_dict`` restores it)."""
    if device.type in ("cpu", "cuda") and all(p.is_floating_point() and p.device.type == device.type for p in params):
        return True
    return None


def optimiser(params: Sequence[nn.Parameter], factor_params: Sequence[nn.Parameter], cfg: TrainConfig,
              factor_from: int, device: torch.device) -> tuple[torch.optim.AdamW, list[Callable[[int], float]]]:
    """The run's AdamW and its learning-rate factors per parameter group (for ``LambdaLR``).

    ``lr_factor`` for every weight. The factor network (``factor_params``; empty for a shared trunk, which has
    no weights of its own for the factor) is a second group where its rate differs: at ``lr ·
    cfg.factor_lr_scale`` (a wider factor network at a lower rate), and, where it starts late (``factor_from >
    0``) and ``cfg.factor_ramp > 0``, ramped up over ``round(factor_ramp · steps)`` steps from its first step:
    its Adam state starts there, and without the ramp its first steps at the full rate threw S¹⁶'s factor off
    (``benchmarks/RESULTS.md``, seventeenth and eighteenth sessions). Fused where torch has the kernel
    (`fused_adamw`).
    """
    def main(s: int) -> float:
        return lr_factor(s, cfg.steps, cfg.warmup)

    ramp = factor_ramp_steps(cfg, factor_from, len(factor_params) > 0)
    rate = factor_lr(cfg) if len(factor_params) else cfg.lr
    kwargs = {"lr": cfg.lr, "weight_decay": cfg.weight_decay, "fused": fused_adamw(params, device)}
    if not ramp and rate == cfg.lr:
        return torch.optim.AdamW(list(params), **kwargs), [main]
    ids = {id(p) for p in factor_params}
    groups = [({"params": [p for p in params if id(p) not in ids]}, main),
              ({"params": [p for p in params if id(p) in ids], "lr": rate},
               lambda s: main(s) * ramp_factor(s, factor_from, ramp))]
    groups = [(group, fn) for group, fn in groups if group["params"]]  # (uncentred: the factor alone)
    return torch.optim.AdamW([g for g, _ in groups], **kwargs), [fn for _, fn in groups]
