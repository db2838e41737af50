"""What the trainer decides from the data before the first step: the MLP's input scaling (Gaussian
preconditioning, SPEC §4) and its norm feature. Each choice comes back with the reason the model file records."""

from __future__ import annotations

import math

from torch import Tensor

from learned_manifold.preconditioning import principal_components

from .batches import TrainingRows
from .config import NORM_SPREAD, SPAN_FRACTION, TrainConfig

__all__ = ["NORM_SAMPLE", "choose_input_scaling", "choose_norm_feature"]

NORM_SAMPLE = 4096
"""Points whose distances from the mean decide ``norm_feature="auto"``."""


def choose_input_scaling(cfg: TrainConfig, rows: TrainingRows,
                         arch: str) -> tuple[str, tuple[Tensor, Tensor, Tensor] | None, dict]:
    """The model's input scaling, its Gaussian model (``None`` unless ``"gaussian"``) and why, for the file.

    ``"auto"``: Gaussian preconditioning for the MLP when the standardised data's linear span (principal variances
    above 10⁻³ of the largest, among the first ``gaussian_rank``) has at most ``SPAN_FRACTION · D`` dimensions;
    else ``"none"``. Measured (``benchmarks/RESULTS.md``): it lets the denoiser learn S⁸'s radius in R⁶⁴ (span 9
    of 64), helps the swiss roll in R¹⁰ (3 of 10) and S² in R⁶⁴ (3 of 64), and hurts the torus in R³ (3 of 3).
    The UNet is never preconditioned by ``"auto"`` (untrained with it)."""
    dim = math.prod(rows.shape)
    if cfg.input_scaling not in ("auto", "gaussian"):
        return cfg.input_scaling, None, {"chosen": cfg.input_scaling, "rule": "asked for"}
    if cfg.input_scaling == "auto" and arch != "film_mlp":
        return "none", None, {"chosen": "none", "rule": "auto: the UNet is not preconditioned"}
    components = principal_components(rows.standardised_sample(20_000), min(cfg.gaussian_rank, dim), seed=cfg.seed)
    var = components[1]
    span = int((var > 1e-3 * var[0]).sum())
    why = {"span_dimension": span, "dim": dim}
    if cfg.input_scaling == "gaussian":
        return "gaussian", components, {"chosen": "gaussian", "rule": "asked for", **why}
    chosen = "gaussian" if span <= SPAN_FRACTION * dim else "none"
    rule = f"auto: gaussian when the linear span has at most {SPAN_FRACTION:g} D dimensions"
    return chosen, components if chosen == "gaussian" else None, {"chosen": chosen, "rule": rule, **why}


def choose_norm_feature(cfg: TrainConfig, rows: TrainingRows, arch: str) -> tuple[bool, dict]:
    """Whether the MLP gets the norm feature (`TrainConfig.norm_feature`), and why, for the file.

    ``"auto"``: on when the relative standard deviation of ``‖z‖`` over up to `NORM_SAMPLE` standardised (mean-
    subtracted) training points is below `NORM_SPREAD`, i.e. the data lie near a sphere about their mean, where the
    feature lets the denoiser learn the radius; off elsewhere (it cost the swiss roll about 20%). The UNet has no
    such feature."""
    if arch != "film_mlp":
        return False, {"chosen": False, "rule": "the UNet has no norm feature"}
    if cfg.norm_feature != "auto":
        return bool(cfg.norm_feature), {"chosen": bool(cfg.norm_feature), "rule": "asked for"}
    radius = rows.standardised_sample(NORM_SAMPLE).double().norm(dim=1)  # (n,) from (n, D) flat rows
    mean = float(radius.mean())
    spread = float(radius.std()) / mean if radius.numel() > 1 and mean > 0 else math.inf  # no spread to measure
    chosen = spread < NORM_SPREAD
    return chosen, {"chosen": chosen, "norm_spread": spread,
                    "rule": f"auto: on when the points' distances from their mean vary by less than {NORM_SPREAD:g} "
                            "(relative standard deviation)"}
