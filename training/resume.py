"""What a resumed run checks in its training state before it continues: the settings and the recipe version.

A training state records its run's settings (``config``, JSON) and, from `STATE_VERSION` 1 on, the version of the
training recipe that wrote it (``config["state_version"]``: the objective, its targets and schedules, the state's
layout). `check_resume` refuses a state whose settings differ from the resumed run's (one ``name (--flag): saved X,
now Y`` per setting, `settings_diff`), one with settings this library does not know (written by a newer version),
and one written by a newer recipe. A state of an older recipe (or of a version before the field existed) resumes,
with one warning: the objective may have changed since, so the run reaches neither that version's result nor a
fresh run's.

A setting added after states were first written reads, in a state without it, as the value those versions ran with
(`TRAIN_LEGACY` for `TrainConfig`, `learned_manifold.models.LEGACY_DEFAULTS` for the model's). A setting the resumed
run leaves to a rule (`RULED`: ``"auto"``, or ``final_norm=None``) takes the saved run's value where that run
predates the rule as it stands (`saved_choices`, before the run resolves its choices): the older run's printed
``--resume`` command resumes it, and only a setting given away from the saved run's value is refused.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from learned_manifold.models import LEGACY_DEFAULTS
from learned_manifold.user_warnings import warn_user

from .config import TrainConfig, is_image_shape
from .outputs import state_path
from .recipe_checks import MLP_ONLY
from .runtime import settings_diff

__all__ = ["RESUME_MAY_CHANGE", "RULED", "STATE_VERSION", "TRAIN_LEGACY", "VAE_STATE_VERSION", "check_resume",
           "check_vae_resume", "recorded", "saved_choices"]

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
RULED = ("backbone", "final_norm", "norm_feature", "input_scaling", "denoiser_warmup", "factor_clip", "factor_ramp",
         "factor_lr_scale", "factor_hidden", "precision")
"""`TrainConfig` fields whose default leaves the value to a rule: from the data (``"auto"``; ``final_norm=None``:
by the input scaling) or, for ``precision``, a timing. Older versions had other rules or other defaults (the
denoiser's warm-up 0.5 before its d-hat rule, the factor's guards and width before theirs, norm_feature off before
it existed), so a state of theirs may hold a value today's rule would not choose (`saved_choices`)."""
# (the factor's repair runs after the last step: a state written before it existed resumes and gets it at the end)
# (landmarks do not change the training: a state written before them resumes, and its model stores the default)


@dataclass
class _Recorded(TrainConfig):
    """A `TrainConfig` as a training state records it: its settings and the recipe's `STATE_VERSION`."""

    state_version: int = STATE_VERSION


_OLDER_RUN = "_state_version_resumed"
"""The attribute (not a field) by which `saved_choices` marks the config of a run resumed from an older recipe's
state: its states keep that version (`recorded`), so an interruption of the resumed run resumes the same way."""


def recorded(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with ``state_version`` among its fields, for the `Checkpointer` (its state's ``config``). A copy, not a
    new `TrainConfig`: its checks would judge the values the run's rules resolved from ``"auto"`` as requests.
    A run resumed from an older recipe's state (marked by `saved_choices`) records that state's version: it still
    trains by the saved run's settings, not by today's rules."""
    copy = object.__new__(_Recorded)
    copy.__dict__.update(vars(cfg))
    copy.state_version = vars(cfg).get(_OLDER_RUN, STATE_VERSION)
    return copy


def saved_choices(out: Path, cfg: TrainConfig, shape: tuple[int, ...]) -> TrainConfig:
    """``cfg`` for resuming ``out``: each `RULED` setting that ``cfg`` leaves to its rule (at its default, so not
    given: ``"auto"``, ``final_norm=None``) takes the value the saved run trained with where that run predates the
    rule as it stands: a setting its training state does not record (the value those versions ran with,
    `TRAIN_LEGACY`, `LEGACY_DEFAULTS`), or any recorded value other than the default in a state of an older recipe
    (``state_version`` below `STATE_VERSION`). So does an unset ``rank`` (the MLP's from the data's dimension since
    0d68ff7, ``min(D, 16)`` before) in such a state: the rank its factor's weights hold (`_trained_rank`). A state of
    today's recipe records what today's rules chose on these data (checked by `check_resume`). The MLP's own
    settings (`MLP_ONLY`) are taken only where the saved run trained the MLP for points of shape ``shape``; on the
    UNet they do nothing (`check_resume` passes them).

    Called before the run resolves its choices from the data (a network's width cannot change after it is built).
    Returns ``cfg`` itself for a state of today's recipe, or where the state cannot be read or is a VAE's (the
    run's own checks then say why); else a copy, not a new `TrainConfig` (its checks would judge a taken value, a
    saved run's resolved ramp on a shared trunk, as a request), marked so that the run's states keep the older
    version (`recorded`): resumed again after an interruption, it takes the same values.
    """
    try:  # its tensors mapped, not read
        state = torch.load(state_path(out), map_location="cpu", weights_only=True, mmap=True)
        stored = json.loads(state["config"])
    except Exception:  # missing, damaged or not a state: `load_state` says why, in the run
        return cfg
    if not isinstance(stored, dict) or "latent_dim" in stored:
        return cfg
    version = stored.get("state_version", 0)
    older = isinstance(version, int) and version < STATE_VERSION  # (a newer or invalid one: `check_resume` refuses)
    saved = {**LEGACY_DEFAULTS, **TRAIN_LEGACY, **stored}
    mlp = _network(stored.get("backbone") or TRAIN_LEGACY["backbone"], shape) == "mlp"
    taken = {name: saved[name] for name in RULED
             if getattr(cfg, name) == getattr(TrainConfig, name) and (name not in stored or older)
             and saved.get(name, getattr(TrainConfig, name)) != getattr(TrainConfig, name)
             and (mlp or name not in MLP_ONLY)}
    if older and mlp and cfg.rank is None:  # (a rank recorded by a run resumed like this one, or its weights')
        rank = stored.get("rank") if stored.get("rank") is not None else _trained_rank(state, shape)
        if rank is not None:
            taken["rank"] = rank
    if not older:
        return cfg
    cfg = copy.copy(cfg)
    for name, value in taken.items():
        setattr(cfg, name, value)
    setattr(cfg, _OLDER_RUN, version)
    return cfg


def _trained_rank(state: dict, shape: tuple[int, ...]) -> int | None:
    """The rank of the factor an MLP's training state holds: its head has ``rank · D`` outputs (a shared trunk's
    ``(rank + 1) · D``, `learned_manifold.models.MetricModel`); ``None`` where no such head is found."""
    model = state.get("model")
    dim = math.prod(shape)
    for key, denoiser_columns in (("factor_net.head.weight", 0), ("trunk.head.weight", 1)):
        weight = model.get(key) if isinstance(model, dict) else None
        if isinstance(weight, torch.Tensor) and weight.dim() == 2 and weight.shape[0] % dim == 0:
            rank = weight.shape[0] // dim - denoiser_columns
            return rank if rank >= 1 else None
    return None


def _network(backbone: object, shape: tuple[int, ...]) -> str | None:
    """The network ``backbone`` (a saved or requested setting) trains for points of shape ``shape``: ``"mlp"``,
    ``"unet"``, or ``None`` for a value no version wrote."""
    nets = {"mlp": "mlp", "unet": "unet", "auto": "unet" if is_image_shape(shape) else "mlp"}
    return nets.get(backbone) if isinstance(backbone, str) else None


def check_resume(out: Path, state: dict, cfg: TrainConfig, shape: tuple[int, ...]) -> None:
    """Refuse to resume ``out`` from ``state`` (its training state) with the settings ``cfg`` unless the saved run
    is ``cfg``'s: not a VAE's state, no setting unknown here, none that differs (``RESUME_MAY_CHANGE`` aside), no
    newer recipe. ``shape`` is the data's point shape: a saved backbone that names the network ``cfg.backbone`` chooses
    for it (``"auto"`` and ``"mlp"`` for points that are not images) is the same; so is an unset rank and the rank
    the state's MLP weights hold (`saved_choices` takes it for an older state), a width ``None`` and ``hidden``
    (``factor_hidden``, ``denoiser_hidden``), and on the UNet the MLP's ``final_norm`` and ``norm_feature`` left to
    their rules. Warns once where the state's recipe is older (module docstring).

    Raises:
        ValueError: ``"cannot resume 'OUT': ..."`` naming the settings, or the state's kind or version.
    """
    stored = json.loads(state["config"])
    if "latent_dim" in stored:  # a VAE's state: its settings would all "differ"
        raise ValueError(f"cannot resume {str(out)!r}: its training state is a VAE's (learned-manifold "
                         "train-vae); resume it with train-vae, or give train another output path")
    version = stored.pop("state_version", 0)
    network = _network(stored.get("backbone") or TRAIN_LEGACY["backbone"], shape)
    if network == _network(cfg.backbone, shape):
        stored["backbone"] = cfg.backbone  # "auto" and the backbone it chooses for these data: one network
    if network == "mlp" and stored.get("rank") is None and cfg.rank == _trained_rank(state, shape):
        stored["rank"] = cfg.rank  # an unset rank, resumed as the rank its weights hold (`saved_choices`)
    for name in ("factor_hidden", "denoiser_hidden"):  # None is hidden: the same width
        if {**TRAIN_LEGACY, **stored}.get(name) is None and getattr(cfg, name) == cfg.hidden:
            stored[name] = cfg.hidden
    if network == "unet":  # the MLP's own settings left to their rules do nothing there (`saved_choices`)
        stored.update({name: getattr(cfg, name) for name in ("final_norm", "norm_feature")
                       if getattr(cfg, name) == getattr(TrainConfig, name)})
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
