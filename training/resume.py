"""What a resumed run checks in its training state before it continues: the settings and the recipe version.

A training state records its run's settings (``config``, JSON) and, from `STATE_VERSION` 1 on, the version of the
training recipe that wrote it (``config["state_version"]``: the objective, its targets and schedules, the state's
layout). `check_resume` refuses a state whose settings differ from the resumed run's (one ``name (--flag): saved X,
now Y`` per setting, `settings_diff`), one with settings this library does not know (written by a newer version),
and one written by a newer recipe. A state of an older recipe (or of a version before the field existed) resumes,
with one warning: the objective may have changed since, so the run reaches neither that version's result nor a
fresh run's.

A setting added after states were first written reads, in a state without it, as the value those versions ran with
(`TRAIN_LEGACY` for `TrainConfig`, `learned_manifold.models.LEGACY_DEFAULTS` for the model's).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from learned_manifold.models import LEGACY_DEFAULTS
from learned_manifold.user_warnings import warn_user

from .config import TrainConfig, is_image_shape
from .runtime import settings_diff

__all__ = ["RESUME_MAY_CHANGE", "STATE_VERSION", "TRAIN_LEGACY", "VAE_STATE_VERSION", "check_resume",
           "check_vae_resume", "recorded"]

STATE_VERSION = 1
"""The training recipe a state records (``config["state_version"]``); a state without it is version 0. Bump it
whenever a change makes a resumed old state train differently (the objective, its targets, the schedules)."""

VAE_STATE_VERSION = 1
"""`STATE_VERSION` of the VAE's recipe (`training/vae_trainer.py`)."""

RESUME_MAY_CHANGE = ("checkpoint_every", "val_every")
"""Settings a resumed run may change: they decide when the run saves and validates, not what it computes."""

# `TrainConfig` fields (not in `ModelConfig`, so not in `LEGACY_DEFAULTS`) added after training states were first
# written: the value a state written before them ran with. factor_trunk_grad acts on shared trunks only, which
# did not exist either, so any value describes those runs; the default keeps them resumable as they were. The same
# holds for gaussian_rank, which acts under input_scaling="gaussian" only. Before ``backbone`` every run was the
# MLP's (`check_resume` also accepts "auto" where it chooses the MLP); ``preset`` is the UNet's only.
TRAIN_LEGACY = {"factor_trunk_grad": TrainConfig.factor_trunk_grad, "gaussian_rank": TrainConfig.gaussian_rank,
                "factor_target": "residual", "final_norm": True, "landmarks": None, "factor_fraction": 1.0,
                "norm_feature": False, "freeze_denoiser": False, "jacobian_probes": 1,
                "denoiser_hidden": None, "factor_refit": TrainConfig.factor_refit, "factor_clip": 0.0,
                "factor_hidden": None, "factor_ramp": 0.0, "factor_lr_scale": 1.0, "backbone": "mlp", "preset": None}
# (the factor's repair runs after the last step: a state written before it existed resumes and gets it at the end)
# (landmarks do not change the training: a state written before them resumes, and its model stores the default)


@dataclass
class _Recorded(TrainConfig):
    """A `TrainConfig` as a training state records it: its settings and the recipe's `STATE_VERSION`."""

    state_version: int = STATE_VERSION


def recorded(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with ``state_version`` among its fields, for the `Checkpointer` (its state's ``config``). A copy, not a
    new `TrainConfig`: its checks would judge the values the run's rules resolved from ``"auto"`` as requests."""
    copy = object.__new__(_Recorded)
    copy.__dict__.update(vars(cfg))
    copy.state_version = STATE_VERSION
    return copy


def check_resume(out: Path, state: dict, cfg: TrainConfig, shape: tuple[int, ...]) -> None:
    """Refuse to resume ``out`` from ``state`` (its training state) with the settings ``cfg`` unless the saved run
    is ``cfg``'s: not a VAE's state, no setting unknown here, none that differs (``RESUME_MAY_CHANGE`` aside), no
    newer recipe. ``shape`` is the data's point shape: a saved backbone that names the network ``cfg.backbone`` chooses
    for it (``"auto"`` and ``"mlp"`` for points that are not images) is the same. Warns once where the state's recipe
    is older (module docstring).

    Raises:
        ValueError: ``"cannot resume 'OUT': ..."`` naming the settings, or the state's kind or version.
    """
    stored = json.loads(state["config"])
    if "latent_dim" in stored:  # a VAE's state: its settings would all "differ"
        raise ValueError(f"cannot resume {str(out)!r}: its training state is a VAE's (learned-manifold "
                         "train-vae); resume it with train-vae, or give train another output path")
    version = stored.pop("state_version", 0)
    nets = {"mlp": "mlp", "unet": "unet", "auto": "unet" if is_image_shape(shape) else "mlp"}
    saved = stored.get("backbone") or TRAIN_LEGACY["backbone"]
    if isinstance(saved, str) and nets.get(saved) == nets[cfg.backbone]:
        stored["backbone"] = cfg.backbone  # "auto" and the backbone it chooses for these data: one network
    _check_settings(out, {**LEGACY_DEFAULTS, **TRAIN_LEGACY, **stored}, asdict(cfg), RESUME_MAY_CHANGE)
    _check_version(out, version, STATE_VERSION)


def check_vae_resume(out: Path, state: dict, cfg: object) -> None:
    """`check_resume` for a VAE's state ``state`` and its `VAETrainConfig` ``cfg``: a metric-matching run's state
    is refused in one line, as `check_resume` refuses a VAE's."""
    stored = json.loads(state["config"])
    if "latent_dim" not in stored:
        raise ValueError(f"cannot resume {str(out)!r}: its training state is a metric-matching run's "
                         "(learned-manifold train); resume it with train, or give train-vae another output path")
    version = stored.pop("state_version", 0)
    _check_settings(out, stored, asdict(cfg), ("checkpoint_every",))
    _check_version(out, version, VAE_STATE_VERSION)


def _check_settings(out: Path, saved: dict, now: dict, may_change: tuple[str, ...]) -> None:
    """Refuse saved settings unknown to ``now`` (a newer version's), then any that differ (`settings_diff`)."""
    unknown = sorted(set(saved) - set(now))
    if unknown:
        raise ValueError(f"cannot resume {str(out)!r}: its training state has settings this version of "
                         f"learned-manifold does not know ({', '.join(unknown)}); it was written by a newer version: "
                         "resume it with that version, or train again with --overwrite (overwrite=True)")
    said = settings_diff(saved, now, may_change)
    if said:
        raise ValueError(f"cannot resume {str(out)!r}: settings differ from the saved run: {said}")


def _check_version(out: Path, version: object, current: int) -> None:
    """Refuse the state of a recipe newer than ``current``; warn (once) about an older one's."""
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise ValueError(f"cannot resume {str(out)!r}: its training state records an invalid state_version "
                         f"{version!r:.40}; train again with --overwrite (overwrite=True)")
    if version > current:
        raise ValueError(f"cannot resume {str(out)!r}: its training state was written by a newer version of "
                         f"learned-manifold (state version {version}; this version writes {current}): resume "
                         "it with that version, or train again with --overwrite (overwrite=True)")
    if version < current:
        warn_user(f"resuming {str(out)!r} from a training state written by an older version of learned-manifold "
                  f"(state version {version}; this version writes {current}): the training objective may "
                  "have changed since, so the result may match neither that version's run nor a fresh one; "
                  "for a fresh run, train again with --overwrite (overwrite=True)")
