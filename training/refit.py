"""The factor's repair (issue 12): when the finished model's two networks disagree, the factor is fitted again to
the frozen denoiser (its Jacobian, under the default target) at a low learning rate, and the result is kept only
if they then agree better.

Why: the trainer's ground-truth-free check (`learned_manifold.diagnostics.self_consistency`) compares the factor
``AAᵀ`` with the denoiser's Jacobian ``Γᶜ = ∂x̂/∂y`` (SPEC §2). On the failing S¹⁶-in-R⁶⁴ seed of the fourteenth
session the denoiser's Jacobian was right (its top-16 eigenspace 0.026 from the true tangent space at σ = 1/64,
tuned k-NN 0.147) and the factor wrong (0.25): the factor had not converged to a target that was already good.
Fitting it again with the main run's learning rate (``lr``) made it worse (0.83); at the schedule's floor
(``lr/10``) it converged (0.078, dimension right at every point; ``benchmarks/RESULTS.md``, sixteenth session).

The repair changes nothing in a run whose check passes, so every figure measured on a trusted model stands.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import Tensor

from learned_manifold.diagnostics import ConsistencyReport, consistency_reasons, self_consistency
from learned_manifold.models import MetricModel

from .batches import TrainingRows
from .clipping import RelativeClip
from .config import TrainConfig
from .losses import MetricMatchingLoss
from .objective import TrainingObjective
from .schedule import ema_decay, factor_lr, fused_adamw, lr_factor

__all__ = ["REFIT_LR_FACTOR", "refit_factor"]

REFIT_LR_FACTOR = 0.1
"""The repair's peak learning rate as a fraction of ``TrainConfig.lr`` (the main schedule's floor)."""


def refit_factor(ema: MetricModel, rows: TrainingRows, cfg: TrainConfig, sigma: float,
                 batch: Callable[[int], tuple[Tensor, Tensor, Tensor, Tensor | None]],
                 autocast: torch.autocast) -> tuple[dict, ConsistencyReport | None]:
    """Refit ``ema``'s factor network to its frozen denoiser if the two disagree; in place.

    Runs when ``cfg.factor_refit > 0``, the model is centred with two networks (no shared trunk) and
    `self_consistency` on the held-out points ``rows.val_x`` at ``sigma`` says not trusted. A working copy of
    ``ema`` trains its factor for ``round(factor_refit · steps)`` steps (AdamW at ``REFIT_LR_FACTOR ·
    factor_lr_scale · lr`` under the run's warm-up and cosine schedule, `training/schedule.py`, over the repair's
    steps; the run's own ``factor_target`` and ``jacobian_probes``) on the batches of steps
    ``steps, steps + 1, …`` (``batch(step)``: this rank's slice of indices, σ_z, ε and probes, as in training;
    under DDP the gradients are averaged over ranks and rank 0 takes every decision, so the ranks stay equal);
    ``ema``'s factor follows it by the run's EMA. The new factor is kept if the mean tangent disagreement fell,
    else the old one is put back.

    Returns:
        what happened, for the model file's validation record: ``{"ran": False, "why": ...}``, or ``"ran"``
        true with ``"steps"``, ``"seconds"`` (not in the run's training time), ``"failed"`` (the check's failed
        limits, `consistency_reasons`), ``"disagreement_before"``,
        ``"disagreement_after"`` and ``"kept"``; and the check of the model as it now stands at ``sigma``
        (``None`` where the repair does not apply and nothing was checked).
    """
    if not ema.has_denoiser or ema.trunk is not None:
        return {"ran": False, "why": "needs a centred model with two networks"}, None
    before = self_consistency(ema, rows.val_x, sigma)
    if cfg.factor_refit == 0:
        return {"ran": False, "why": "off (factor_refit = 0)"}, before
    # only a failed check is repaired (no verdict, None: nothing to repair); rank 0 decides for every DDP rank
    if not _agreed(before.trusted is False, rows.val_x.device):
        return {"ran": False, "why": "the check passed" if before.trusted else "the check gave no verdict"}, before
    steps = max(1, round(cfg.factor_refit * cfg.steps))
    start = time.perf_counter()
    saved = copy.deepcopy(ema.factor_net.state_dict())
    work = copy.deepcopy(ema).train()
    work.requires_grad_(False)
    work.factor_net.requires_grad_(True)
    params = list(work.factor_net.parameters())
    objective = TrainingObjective(work, MetricMatchingLoss(cfg.loss, cfg.tikhonov, cfg.centred),
                                  factor_target=cfg.factor_target, freeze_denoiser=True,
                                  jacobian_probes=cfg.jacobian_probes)
    device = rows.val_x.device
    opt = torch.optim.AdamW(params, lr=REFIT_LR_FACTOR * factor_lr(cfg), weight_decay=cfg.weight_decay,
                            fused=fused_adamw(params, device))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps, cfg.warmup))
    # the run's guard (`input_choices.choose_factor_guards`); a config the trainer has not resolved: off
    guard = RelativeClip(params, 0.0 if cfg.factor_clip == "auto" else cfg.factor_clip, device)
    ema_params = list(ema.factor_net.parameters())
    world = dist.get_world_size() if dist.is_initialized() else 1
    end = cfg.steps + steps
    for i in range(steps):
        step = cfg.steps + i
        idx, sigma_z, eps, probe = batch(step)
        z = rows.rows(step, idx, end)
        with autocast:
            loss = objective(z, sigma_z, eps, True, probe).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if world > 1:  # each rank holds its slice of the batch: average the gradients, as DDP would
            for p in (p for p in params if p.grad is not None):
                dist.all_reduce(p.grad)
                p.grad /= world
        guard()
        opt.step()
        sched.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1.0 - ema_decay(i, cfg.ema))
    record = {"ran": True, "steps": steps, "seconds": round(time.perf_counter() - start, 2),
              "failed": consistency_reasons(before.summary()), "disagreement_before": _mean(before)}
    if not all(bool(torch.isfinite(p).all()) for p in ema_params):
        ema.factor_net.load_state_dict(saved)
        return {**record, "disagreement_after": None, "kept": False}, before
    after = self_consistency(ema, rows.val_x, sigma)
    kept = _agreed(_mean(after) < _mean(before), device)
    if not kept:
        ema.factor_net.load_state_dict(saved)
    return {**record, "disagreement_after": _mean(after), "kept": kept}, after if kept else before


def _agreed(flag: bool, device: torch.device) -> bool:
    """``flag`` as rank 0 of a DDP run sees it (itself outside DDP), so that every rank takes the same branch."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return flag
    value = torch.tensor([float(flag)], device=device)
    dist.broadcast(value, 0)
    return bool(value.item())


def _mean(report) -> float:
    return round(float(report.tangent_disagreement.mean()), 4)
