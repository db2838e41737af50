"""Settings asked for where the recipe would ignore them are refused before any work
(`learned_manifold_training.recipe_checks`, through `TrainConfig`); left on "auto" they are not."""

import pytest

from learned_manifold_training.cli import main
from learned_manifold_training.config import TrainConfig
from learned_manifold_training.input_choices import choose_factor_guards, choose_factor_width

ONLY = r"acts on centred runs with two networks only \(centred=True, shared_trunk=False\)"


@pytest.mark.parametrize(("settings", "message"), [
    ({"centred": False, "factor_refit": 0.5}, f"factor_refit {ONLY}"),
    ({"shared_trunk": True, "factor_refit": 1.0}, f"factor_refit {ONLY}"),
    ({"centred": False, "factor_ramp": 0.1}, f"factor_ramp {ONLY}"),
    ({"shared_trunk": True, "factor_ramp": 0.1}, f"factor_ramp {ONLY}"),
    ({"denoiser_warmup": 0.0, "factor_ramp": 0.1}, "factor_ramp acts on a factor that starts after the denoiser's "
                                                   "warm-up, but denoiser_warmup=0 starts it at the first step"),
    ({"shared_trunk": True, "factor_lr_scale": 0.5}, "factor_lr_scale acts on a factor network of its own, not a "
                                                     "shared trunk"),
    ({"shared_trunk": True, "factor_hidden": 64, "hidden": 300},
     r"factor_hidden sizes a factor network of its own, not a shared trunk \(shared_trunk=True trains one network, "
     r"whose width is hidden: 300\)"),
])
def test_a_setting_the_recipe_would_ignore_is_refused(settings, message):
    """``factor_refit``, ``factor_ramp`` and ``factor_lr_scale`` were accepted with an uncentred run or a shared
    trunk and did nothing (the file recorded ``ramp_steps`` 0, the repair "needs a centred model with two
    networks", ``lr_scale_applies`` false); ``factor_hidden`` with a shared trunk built the whole network at its
    width, dropping ``hidden``. They are refused as ``factor_fraction`` and ``denoiser_hidden`` are."""
    with pytest.raises(ValueError, match=message):
        TrainConfig(**settings)


@pytest.mark.parametrize("recipe", [{"centred": False}, {"shared_trunk": True}])
def test_inert_and_auto_values_are_accepted_everywhere(recipe):
    """Left on "auto" or the default, or set to the value that does nothing (0, 1, ``hidden``), nothing is refused;
    an uncentred run's one network does take ``factor_lr_scale`` and ``factor_hidden`` (it is the factor)."""
    TrainConfig(**recipe)
    TrainConfig(**recipe, factor_refit=0.0, factor_ramp=0.0, factor_lr_scale=1.0, factor_hidden=TrainConfig.hidden)
    if not recipe.get("shared_trunk"):
        TrainConfig(**recipe, factor_lr_scale=0.5, factor_hidden=64)


def test_auto_still_resolves_on_a_shared_trunk_above_dimension_8():
    """The rules' own choices are not requests: a shared trunk on high-dimensional data resolves "auto" as before
    (the width rule widens the trunk; the ramp and rate, which do not apply to it, are recorded as resolved)."""
    cfg, _ = choose_factor_width(TrainConfig(shared_trunk=True, hidden=64), 16, "film_mlp")
    cfg, why = choose_factor_guards(cfg, 16)
    assert (cfg.factor_hidden, cfg.factor_ramp, cfg.factor_lr_scale) == (128, cfg.warmup, 0.5)
    assert why["rule"].startswith("auto")


def test_the_cli_refuses_them_by_their_flags_before_any_work(tmp_path, capsys):
    """``train --uncentred --factor-refit 0.5`` ran to the end with exit 0 and no word: one line naming the flag,
    exit 2, nothing written."""
    out = tmp_path / "m.lmm"
    assert main(["train", "circle", "--out", str(out), "--steps", "5", "--uncentred", "--factor-refit", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "error: --factor-refit acts on centred runs with two networks only" in err and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("warmup", "ramp", "message"), [
    (0.5, 0.9, "factor_ramp=0.9 is longer than the factor trains: it starts after denoiser_warmup=0.5 of the steps, "
               r"so its rate would never reach the full schedule; choose factor_ramp <= 0.5 \(1 - denoiser_warmup\)$"),
    (0.8, 0.25, "factor_ramp=0.25 is longer than the factor trains: it starts after denoiser_warmup=0.8 of the steps"),
    ("auto", 0.6, r"factor_ramp=0.6 is longer than the factor trains: it starts after denoiser_warmup='auto' \(0.5 "
                  r"unless the data's dimension exceeds 8\) of the steps, so its rate would never reach the full "
                  r"schedule; choose factor_ramp <= 0.5 \(1 - denoiser_warmup\), or set denoiser_warmup"),
])
def test_a_factor_ramp_longer_than_the_factors_training_is_refused(warmup, ramp, message):
    """``steps=150, denoiser_warmup=0.5, factor_ramp=0.9`` was accepted: the ramp lasts 135 steps but the factor
    trains for 75, so its rate ended at 0.56 of the schedule. A ramp over at most ``1 − denoiser_warmup`` of the steps
    is accepted (it reaches the full rate by the last step)."""
    with pytest.raises(ValueError, match="^" + message):
        TrainConfig(denoiser_warmup=warmup, factor_ramp=ramp)
    TrainConfig(denoiser_warmup=warmup, factor_ramp=1 - (0.5 if warmup == "auto" else warmup))
    TrainConfig(denoiser_warmup=0.3, factor_ramp=0.7)  # 1 - 0.3 is 0.7 in floating point


def test_a_sigma_min_above_half_the_data_scale_is_warned_about():
    """S² of radius 1 (s = 1) trained at --sigma-min 1.5 --sigma-max 6 learned nothing (tangent error 1.11) and the
    trainer warned only after training, with a message about a range below the spacing (tester B, s31)."""
    import warnings

    from learned_manifold_training.recipe_checks import warn_sigma_above_scale

    with pytest.warns(UserWarning, match=r"^sigma_min 1\.5 \(in units of the data scale s\) lies above 0\.5 s: every "
                                         r"training bandwidth is at the data's own scale or beyond .* choose sigma_min "
                                         r"below 0\.5 \(the default is 0\.003\)$"):
        warn_sigma_above_scale(TrainConfig(sigma_min=1.5, sigma_max=6.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_sigma_above_scale(TrainConfig())  # the default never warns
        warn_sigma_above_scale(TrainConfig(sigma_min=0.5))  # s/2: the default-sigma rule's own limit
