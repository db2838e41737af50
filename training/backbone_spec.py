"""Which network a `TrainConfig` builds for points of a given shape (`TrainConfig.model_spec`): the backbone
(``"auto"``: the UNet for images, `is_image_shape`, else the FiLM residual MLP), its keyword arguments and the
factor's rank (SPEC §4, §9)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from learned_manifold.unet import unet_preset
from learned_manifold.user_warnings import warn_user

from .recipe_checks import mlp_settings_asked, sizes_named

if TYPE_CHECKING:
    from .config import TrainConfig

__all__ = ["is_image_shape", "model_spec"]


def model_spec(cfg: TrainConfig, data_shape: tuple[int, ...]) -> tuple[str, dict, int]:
    """`TrainConfig.model_spec` (its docstring says what): ``(arch, arch_kwargs, rank)`` of ``cfg``'s model for
    points of shape ``data_shape``. Its ``UserWarning`` names the caller of `TrainConfig.model_spec`."""
    shape = tuple(data_shape)
    D = 1
    for n in shape:
        D *= n
    rank = cfg.check_data_dim(D)
    unet = cfg.backbone == "unet" or (cfg.backbone == "auto" and is_image_shape(shape))
    if not unet:
        if cfg.preset is not None:
            raise ValueError(f"preset {cfg.preset!r} is a UNet preset, but points of shape {shape} are not "
                             "images (backbone auto chose the MLP; see is_image_shape)")
        mlp = {"hidden": cfg.hidden, "depth": cfg.depth, "emb_dim": cfg.emb_dim}
        if cfg.norm_feature is True:  # stored only when on: a file without it builds the network without it
            mlp["norm_feature"] = True  # ("auto": the trainer decides from the data, `choose_norm_feature`)
        if cfg.final_norm is not None:  # None: the trainer decides once the input scaling is known
            mlp["final_norm"] = cfg.final_norm
        return "film_mlp", mlp, rank
    if len(shape) not in (2, 3):
        raise ValueError(f"backbone 'unet' needs image points of shape (H, W) or (C, H, W), got {shape}")
    why = ("backbone 'unet' was asked for" if cfg.backbone == "unet" else
           "backbone auto chooses it for images; see is_image_shape")
    for name, sizes in (("factor_hidden", "the MLP factor network"), ("denoiser_hidden", "the MLP denoiser")):
        if isinstance(getattr(cfg, name), int):
            raise ValueError(f"{name} sizes {sizes}, but points of shape {shape} train the UNet ({why}): "
                             "leave it out (preset sizes the UNet), or choose backbone 'mlp'")
    ignored = mlp_settings_asked(cfg)  # backbone "unet" refused them when built: here "auto" chose it
    if ignored and not getattr(cfg, "_told_mlp_only", False):
        cfg._told_mlp_only = True
        warn_user(f"{sizes_named(ignored)} the MLP only and "
                  f"{'is' if len(ignored) == 1 else 'are'} ignored: points of shape {shape} train the UNet "
                  f"({why}), which preset sizes; choose backbone 'mlp' to train the MLP")
    preset = unet_preset(cfg.preset or "small")
    if cfg.rank is None and cfg.loss == "lowrank":
        rank = min(preset["rank"], D)
    return "unet", preset["arch_kwargs"], rank


def is_image_shape(data_shape: tuple[int, ...]) -> bool:
    """The rule of ``backbone="auto"``: points are images when their shape is ``(H, W)`` or ``(C, H, W)`` with
    ``H, W ≥ 4`` (a 2×3 or 3×3 array, or a flat vector, goes to the MLP)."""
    return len(data_shape) in (2, 3) and data_shape[-2] >= 4 and data_shape[-1] >= 4
