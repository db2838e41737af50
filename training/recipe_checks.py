"""Which `TrainConfig` settings act on which recipe: a setting asked for where the run would ignore it is refused
before any work (SPEC §3: the centred recipe with two networks, a shared trunk, the uncentred recipe).

`check_recipe` judges what a user asks for. A setting left on ``"auto"`` (or at its default) is never refused: the
trainer resolves it (`learned_manifold_training.input_choices`), and the model file records what applied.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from learned_manifold.model_file_notes import LOCAL_SIGMA
from learned_manifold.user_warnings import warn_user

if TYPE_CHECKING:  # config imports this module
    from .config import TrainConfig

__all__ = ["MLP_ONLY", "check_recipe", "mlp_settings_asked", "sizes_named", "warn_sigma_above_scale"]

_TWO_NETWORKS = "(centred=True, shared_trunk=False)"

MLP_ONLY = ("hidden", "depth", "emb_dim", "final_norm", "norm_feature")
"""`TrainConfig` fields that size or shape the FiLM residual MLP only (SPEC §4): the UNet's size is its ``preset``'s
(SPEC §9; its own σ-embedding width included), so on the UNet they do nothing."""


def _asked(value: object) -> bool:
    """Whether a setting that may be ``"auto"`` was set to a value."""
    return not (isinstance(value, str) and value == "auto")


def mlp_settings_asked(cfg: TrainConfig) -> list[str]:
    """The `MLP_ONLY` fields of ``cfg`` (a `TrainConfig`) set away from their defaults, in `MLP_ONLY`'s order."""
    return [name for name in MLP_ONLY if getattr(cfg, name) != getattr(type(cfg), name)]


def sizes_named(names: list[str]) -> str:
    """``"hidden sizes"`` or ``"hidden, depth size"``: the names and the verb that agrees with them."""
    return f"{', '.join(names)} {'sizes' if len(names) == 1 else 'size'}"


def check_recipe(cfg: TrainConfig) -> None:
    """Refuse settings of ``cfg`` (a `TrainConfig` whose fields are already checked one by one) that its recipe
    would ignore; each message names the setting and the recipe it acts on. A setting at its inert value (``0``
    for a fraction of steps, ``1`` for a scale, the default) is accepted everywhere.

    Raises:
        ValueError: one setting that does not apply: the denoiser's (``denoiser_warmup``, ``factor_target``,
            ``factor_fraction``, ``jacobian_probes``) in an uncentred run; ``shared_trunk`` in an uncentred run,
            ``factor_trunk_grad`` without it; the separate networks' (``denoiser_hidden``, ``freeze_denoiser``,
            ``factor_refit``, ``factor_ramp``, ``factor_lr_scale``, ``factor_hidden``) with a shared trunk or,
            where they need a denoiser, in an uncentred run; ``factor_ramp`` where the factor starts at the first
            step (``denoiser_warmup=0``), or longer than the factor trains (``factor_ramp > 1 − denoiser_warmup``,
            with ``denoiser_warmup="auto"`` its larger value `config.DENOISER_WARMUP`); the MLP's sizes
            (`MLP_ONLY`) with ``backbone="unet"`` (``"auto"`` warns instead where it chooses the UNet, since one
            config may serve flat data too: `TrainConfig.model_spec`); ``gaussian_rank`` with ``input_scaling``
            ``"none"`` or ``"unit"`` (`learned_manifold.models.ModelConfig` refuses it there too).
    """
    asked = mlp_settings_asked(cfg)
    if cfg.backbone == "unet" and asked:
        raise ValueError(f"{sizes_named(asked)} the MLP only, but backbone 'unet' trains the UNet (preset sizes it): "
                         f"leave {'it' if len(asked) == 1 else 'them'} out, or choose backbone 'mlp'")
    if cfg.gaussian_rank != type(cfg).gaussian_rank and cfg.input_scaling in ("none", "unit"):
        raise ValueError(f"gaussian_rank acts on input_scaling 'gaussian' (or 'auto', which may choose it) only, but "
                         f"input_scaling is {cfg.input_scaling!r}: leave gaussian_rank out, or choose 'gaussian'")
    if _asked(cfg.denoiser_warmup) and cfg.denoiser_warmup > 0 and not cfg.centred:
        raise ValueError("denoiser_warmup acts on centred runs only (an uncentred run has no denoiser; its "
                         "factor trains from the first step)")
    if not cfg.centred and (cfg.shared_trunk or cfg.factor_target != "jacobian"):
        raise ValueError(f"{'shared_trunk' if cfg.shared_trunk else 'factor_target'} acts on centred runs only "
                         "(an uncentred run trains one factor network on the plain denoising loss)")
    if cfg.factor_trunk_grad != 0.1 and not cfg.shared_trunk:
        raise ValueError("factor_trunk_grad acts on a shared trunk only (shared_trunk=True)")
    if cfg.factor_fraction != 1 and not cfg.centred:
        raise ValueError("factor_fraction acts on centred runs only (an uncentred run trains the factor alone: "
                         "use a smaller batch_size)")
    if cfg.jacobian_probes != 1 and not (cfg.centred and cfg.factor_target == "jacobian"):
        raise ValueError("jacobian_probes acts on the Jacobian target of centred runs only "
                         "(centred=True, factor_target='jacobian')")
    two_networks = cfg.centred and not cfg.shared_trunk
    if cfg.denoiser_hidden is not None and not two_networks:
        raise ValueError(f"denoiser_hidden sizes the separate denoiser of a centred run {_TWO_NETWORKS}")
    if cfg.freeze_denoiser and not (two_networks and (not _asked(cfg.denoiser_warmup) or cfg.denoiser_warmup > 0)):
        raise ValueError("freeze_denoiser needs a centred run with two networks and denoiser_warmup > 0 (the "
                         "denoiser must have trained before it is frozen)")
    if cfg.factor_refit not in (0, type(cfg).factor_refit) and not two_networks:
        raise ValueError(f"factor_refit acts on centred runs with two networks only {_TWO_NETWORKS}: the repair "
                         "refits the factor network to a separate, frozen denoiser (0 turns it off)")
    if _asked(cfg.factor_ramp) and cfg.factor_ramp > 0:
        if not two_networks:
            raise ValueError(f"factor_ramp acts on centred runs with two networks only {_TWO_NETWORKS}: it ramps "
                             "up the rate of a factor network of its own that starts after the denoiser's warm-up")
        if _asked(cfg.denoiser_warmup) and cfg.denoiser_warmup == 0:
            raise ValueError("factor_ramp acts on a factor that starts after the denoiser's warm-up, but "
                             "denoiser_warmup=0 starts it at the first step, under the run's own warm-up")
        _check_ramp_length(cfg)
    if _asked(cfg.factor_lr_scale) and cfg.factor_lr_scale != 1 and cfg.shared_trunk:
        raise ValueError("factor_lr_scale acts on a factor network of its own, not a shared trunk "
                         "(shared_trunk=True trains one network at lr)")
    if isinstance(cfg.factor_hidden, int) and cfg.factor_hidden != cfg.hidden and cfg.shared_trunk:
        raise ValueError(f"factor_hidden sizes a factor network of its own, not a shared trunk (shared_trunk=True "
                         f"trains one network, whose width is hidden: {cfg.hidden})")


def warn_sigma_above_scale(cfg: TrainConfig) -> None:
    """Warn (before any training) where ``cfg.sigma_min`` (a `TrainConfig`'s, in units of the data scale ``s``,
    SPEC §1) exceeds `LOCAL_SIGMA` ``= 0.5``: every training bandwidth then lies at the data's own scale or above
    (the training points' RMS distance from their mean is ``1 s``), where the posterior averages over much of the
    data set and ``Γᶜ_σ`` reads the data's global spread, not its tangent spaces; the default-σ rule and the
    checks' bandwidths look at ``σ ≤ LOCAL_SIGMA · s``. Measured: S² of radius 1 (``s = 1``) trained at
    ``[1.5, 6] s`` had tangent error 1.11 and the neighbour check gave no verdict (tester B, s31). The default
    ``sigma_min`` (0.003) never warns. The warning points at the user's line (`user_warnings.warn_user`)."""
    if cfg.sigma_min > LOCAL_SIGMA:
        warn_user(f"sigma_min {cfg.sigma_min:g} (in units of the data scale s) lies above {LOCAL_SIGMA:g} s: "
                  f"every training bandwidth is at the data's own scale or beyond (its points lie about 1 s "
                  f"from their mean), where the model reads the data's global spread, not its tangent spaces, "
                  f"and the checks may give no verdict; choose sigma_min below {LOCAL_SIGMA:g} (the default is "
                  f"{type(cfg).sigma_min:g})")


def _check_ramp_length(cfg) -> None:
    """Refuse a ``factor_ramp`` longer than the factor trains: it starts after ``denoiser_warmup`` of the steps, so
    a ramp over more than ``1 − denoiser_warmup`` of them never reaches the schedule's full rate (``steps=150,
    denoiser_warmup=0.5, factor_ramp=0.9``: 0.56 of it at the last step). With ``denoiser_warmup="auto"`` (0.5, or
    0.25 above dimension 8, resolved from the data) the judged warm-up is the larger, 0.5."""
    from .config import DENOISER_WARMUP  # here, not at the top: config imports this module

    warmup = cfg.denoiser_warmup if _asked(cfg.denoiser_warmup) else DENOISER_WARMUP
    if cfg.factor_ramp > 1 - warmup + 1e-12:
        told = (f"denoiser_warmup={warmup:g}" if _asked(cfg.denoiser_warmup) else
                f"denoiser_warmup='auto' ({warmup:g} unless the data's dimension exceeds 8)")
        raise ValueError(f"factor_ramp={cfg.factor_ramp:g} is longer than the factor trains: it starts after "
                         f"{told} of the steps, so its rate would never reach the full schedule; choose factor_ramp "
                         f"<= {1 - warmup:g} (1 - denoiser_warmup)" +
                         ("" if _asked(cfg.denoiser_warmup) else ", or set denoiser_warmup"))
