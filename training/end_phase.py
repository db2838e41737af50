"""The end phase of a training run, after its last step: the choice of the default bandwidth, the factor's repair
where the two networks disagree, and the checks without ground truth (SPEC §8). It can take minutes (the repair
trains for a quarter of the run's steps), so the trainer saves the resumable state of the last step before it
begins and makes it interruptible (`training/trainer.py`): a first SIGINT/SIGTERM is acknowledged at once on stderr
(`END_PHASE_NOTICE`) and the phase goes on; a second stops it with `TrainingInterrupted` of the saved state, which
``--resume`` continues from here."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from learned_manifold.diagnostics import self_consistency
from learned_manifold.models import MetricModel
from learned_manifold.neighbour_check import neighbour_check

from .batches import TrainingRows
from .clipping import RelativeClip
from .config import TrainConfig
from .data.base import KnownManifold
from .refit import refit_factor
from .validation import select_sigma, sigma_grid, validate

__all__ = ["END_PHASE_NOTICE", "end_phase"]

END_PHASE_NOTICE = ("finishing the end phase (bandwidth choice, checks); interrupt again to stop now: the run can be "
                    "resumed")
"""What a first signal after the last step prints on stderr (the end phase goes on)."""


def end_phase(ema: MetricModel, rows: TrainingRows, cfg: TrainConfig, manifold: KnownManifold | None,
              guard: RelativeClip,
              reference: Tensor, autocast: torch.autocast,
              batch: Callable[[int], tuple[Tensor, Tensor, Tensor, Tensor | None]],
              refit: Callable = refit_factor) -> dict:
    """Choose ``ema``'s default bandwidth on the held-out points ``rows.val_x`` (`select_sigma`), repair its factor
    where the self-consistency check fails (`refit_factor`, in place; a kept factor gets its own bandwidth and
    check), and check it against the neighbours of ``reference`` ``(n, D)`` (training points in data units).

    Sets ``ema.config.default_sigma`` and ``sigma_rule``; ``batch(step)`` gives the repair's batches as in training;
    ``refit`` is the repair (`refit_factor`; the trainer passes its own name for it, so that a test can slow it).

    Returns:
        the run's validation record (the model file's ``validation``): `validate`'s figures at the chosen σ (its
        ``tangent_error`` measured on the points the σ was chosen on, so slightly optimistic), ``factor_refit``
        (with ``sigma``: the bandwidth chosen before the repair, at which its disagreements are measured),
        ``factor_clip``, ``self_consistency`` (at the final σ), ``neighbour_check`` (with ``reference_points``,
        the number of points its estimate had) and ``sigma_table``.
    """
    val_x = rows.val_x
    sigma, rule, table = select_sigma(ema, val_x, manifold)
    # the ground-truth-free check of the two networks against each other (issue 12); where it fails, the factor's
    # repair (`training/refit.py`)
    repair, check = refit(ema, rows, cfg, sigma, autocast=autocast, batch=batch)
    if repair.get("ran"):
        repair = {**repair, "sigma": sigma}  # its disagreements are at the σ chosen before it
    if repair.get("kept"):  # a new factor: its own bandwidth, checked there
        sigma, rule, table = select_sigma(ema, val_x, manifold)
        check = self_consistency(ema, val_x, sigma)
    ema.config.default_sigma, ema.config.sigma_rule = sigma, rule
    validation = validate(ema, val_x, sigma, manifold)
    validation["factor_refit"] = repair
    validation["factor_clip"] = guard.report()
    if check is None and ema.has_denoiser:  # a shared trunk: checked, not repaired
        check = self_consistency(ema, val_x, sigma)
    if check is not None:
        validation["self_consistency"] = check.summary()
    # ... and of the model against the training points' neighbours (`learned_manifold.neighbour_check`)
    reference = reference.to(device=val_x.device, dtype=val_x.dtype)
    near = neighbour_check(ema, val_x, reference, sigma_grid(ema), seed=cfg.seed,
                           rows=data_rows(rows, reference.shape[0])).summary()
    validation["neighbour_check"] = {**near, "reference_points": int(reference.shape[0])}
    validation["sigma_table"] = table
    return validation


def data_rows(rows: TrainingRows, n_reference: int) -> tuple[Tensor, Tensor]:
    """The data rows ``((n_val,), (n_reference,))`` of the held-out points ``rows.val_x`` and of the neighbour check's
    reference (the trainer's `TrainingRows.sample_rows` of ``n_reference`` rows), for its Theiler window on
    sequential data (`learned_manifold.neighbour_check`): read from the split `TrainingRows` made (``val_rows``), not
    drawn again, so they are the rows ``val_x`` holds whatever the configuration says now."""
    return rows.val_rows, rows.sample_indices(n_reference)  # the rows `sample_rows` reads, in its order
