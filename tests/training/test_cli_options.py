"""The command line's options: the help text, and settings checked and resolved by their flags before any work."""

import argparse
import contextlib
import os
from dataclasses import fields

import pytest

from learned_manifold_training.cli import build_parser, main
from learned_manifold_training.cli_flags import FLAGS
from learned_manifold_training.config import TrainConfig
from learned_manifold_training.recipe_checks import MLP_ONLY
from tests.training.test_cli import SMALL

# ---------------------------------------------------------------------------------------------------------
# issue 13: help, options, devices, info, package name


def test_help_describes_every_option_with_its_default(capsys):
    """``train --help``: every option has help text, and the numeric ones show their defaults."""
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for option, default in [("--steps", 6000), ("--batch-size", 512), ("--lr", 0.002), ("--seed", 0),
                            ("--checkpoint-every", 500), ("--device", "auto")]:
        assert option in text and f"(default: {default})" in text, option
    train_parser = build_parser()._subparsers._group_actions[0].choices["train"]
    for action in train_parser._actions:
        assert action.help and action.help.strip(), action.option_strings


@pytest.mark.parametrize("option, message", [
    (["--val-every", "-1"], "--val-every must be in [0,"),
    (["--rank", "-1"], "--rank must be in [1,"),
    (["--rank", "0"], "--rank must be in [1,"),
    (["--rank", "100"], "--rank must be at most the data dimension D = 2, got 100"),
    (["--hidden", "0"], "--hidden must be in [1,"),
    (["--depth", "0"], "--depth must be in [1,"),
    (["--checkpoint-every", "-1"], "--checkpoint-every must be in [0,"),
    (["--tikhonov", "nan"], "--tikhonov must be a finite number >= 0"),
    (["--lr", "inf"], "--lr must be a finite number > 0"),
    (["--device", "bogus"], "unknown device 'bogus'"),
    (["--grad-clip", "-1"], "--grad-clip must be"),
    (["--denoiser-warmup", "1.5"], "--denoiser-warmup must be in [0, 1)"),
    (["--jacobian-probes", "0"], "--jacobian-probes must be in [1,"),
    (["--denoiser-hidden", "0"], "--denoiser-hidden must be in [1,"),
    (["--denoiser-hidden", "8", "--shared-trunk"], "--denoiser-hidden sizes the separate denoiser"),
])
def test_bad_options_get_one_line_and_exit_2_before_training(tmp_path, capsys, option, message):
    """Every bad setting is one line naming the option, exit status 2, and no file is written."""
    out = tmp_path / "m.lmm"
    assert main(["train", "circle", "--out", str(out), *SMALL, *option]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert os.listdir(tmp_path) == []


def test_norm_feature_is_chosen_from_the_data_by_default_and_the_flags_force_it():
    from learned_manifold_training.cli import _config

    parse = build_parser().parse_args
    assert _config(parse(["train", "circle", "--out", "m.lmm"])).norm_feature == "auto"
    assert _config(parse(["train", "circle", "--out", "m.lmm", "--norm-feature"])).norm_feature is True
    assert _config(parse(["train", "circle", "--out", "m.lmm", "--no-norm-feature"])).norm_feature is False


def test_the_s16_recipe_options_reach_the_config():
    """``--jacobian-probes 16 --denoiser-warmup 0.25`` (the settings that learned S¹⁶, RESULTS.md) reach
    `TrainConfig`; without them the defaults hold."""
    from learned_manifold_training.cli import _config

    parse = build_parser().parse_args
    config = _config(parse(["train", "circle", "--out", "m.lmm", "--jacobian-probes", "16",
                            "--denoiser-warmup", "0.25"]))
    assert (config.jacobian_probes, config.denoiser_warmup) == (16, 0.25)
    default = _config(parse(["train", "circle", "--out", "m.lmm"]))
    assert (default.jacobian_probes, default.denoiser_warmup) == (1, "auto")  # the trainer resolves "auto"
    auto = _config(parse(["train", "circle", "--out", "m.lmm", "--denoiser-warmup", "auto"]))
    assert auto.denoiser_warmup == "auto"
    assert default.denoiser_hidden is None
    assert _config(parse(["train", "circle", "--out", "m.lmm", "--denoiser-hidden", "128"])).denoiser_hidden == 128
    assert (default.factor_hidden, default.factor_ramp, default.factor_clip, default.factor_lr_scale) == \
        ("auto", "auto", "auto", "auto")
    set_ = _config(parse(["train", "circle", "--out", "m.lmm", "--factor-hidden", "512", "--factor-ramp", "0.05",
                          "--factor-clip", "0", "--factor-lr-scale", "0.3"]))
    assert (set_.factor_hidden, set_.factor_ramp, set_.factor_clip, set_.factor_lr_scale) == (512, 0.05, 0.0, 0.3)


@pytest.mark.parametrize("command", [["train", "circle", "--out", "m.lmm"], ["demo", "--out", "demo"],
                                     ["train-vae", "circle", "--out", "v.lvae", "--latent-dim", "1"]])
@pytest.mark.parametrize("count", ["0", "-5", "1"])
def test_num_points_below_two_is_refused_not_read_as_all(tmp_path, capsys, monkeypatch, command, count):
    """``--num-points 0`` (or negative) trained on every row of a file without a word."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main([*command, "--num-points", count])
    assert stop.value.code == 2
    assert "argument --num-points: must be at least 2" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_mlp_sizes_given_for_images_the_unet_trains_are_named(tmp_path, capsys, monkeypatch):
    """``--hidden`` and ``--depth`` were silently ignored where ``--backbone auto`` picks the UNet."""
    import learned_manifold_training.trainer as trainer

    def stop(*args, **kwargs):
        raise ValueError("stopped before training")

    monkeypatch.setattr(trainer, "train", stop)
    main(["train", "digits", "--out", str(tmp_path / "m.lmm"), "--hidden", "7", "--depth", "2", "--no-progress"])
    err = capsys.readouterr().err
    assert "warning: --hidden, --depth size the MLP, but these images train the UNet" in err
    main(["train", "digits", "--out", str(tmp_path / "m.lmm"), "--no-progress"])
    assert "size the MLP" not in capsys.readouterr().err


@pytest.mark.parametrize("name", MLP_ONLY)
def test_each_mlp_only_setting_given_for_images_the_unet_trains_is_named_by_its_flag(tmp_path, capsys, monkeypatch,
                                                                                    name):
    """The command's list of the MLP's options (for its warning) and `recipe_checks.MLP_ONLY` (for the refusal
    under ``--backbone unet``) were two lists: every `MLP_ONLY` setting, set by its flag away from its default,
    is named in the warning, and only it."""
    import learned_manifold_training.trainer as trainer

    def stop(*args, **kwargs):
        raise ValueError("stopped before training")

    monkeypatch.setattr(trainer, "train", stop)
    flag, default = FLAGS[name], getattr(TrainConfig, name)
    given = [flag, str(default + 1)] if isinstance(default, int) and not isinstance(default, bool) else [flag]
    main(["train", "digits", "--out", str(tmp_path / "m.lmm"), *given, "--no-progress"])
    err = capsys.readouterr().err
    assert f"warning: {flag} sizes the MLP, but these images train the UNet" in err


def test_help_says_when_validations_run_and_what_the_demo_folder_keeps(capsys):
    """``--val-every`` validations run only once the factor trains (after the denoiser warm-up), and the demo's
    folder keeps the training state beside the model (about four times its size)."""
    for command, words in [("train", "only once the factor trains, after the denoiser warm-up"),
                           ("demo", "model.lmm.train-state.pt, the final training state")]:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert words in " ".join(capsys.readouterr().out.split())


def test_mlp_sizes_with_backbone_unet_are_refused_by_their_flags(tmp_path, capsys):
    """``--backbone unet --hidden 7 --depth 2`` warned and trained the UNet: the config cannot serve flat data, so
    the flags are refused before any work, each by its name; under ``--backbone auto`` the command's own warning is
    the only one (the library's `UserWarning` is not printed again: an error under pytest)."""
    out = tmp_path / "m.lmm"
    assert main(["train", "digits", "--out", str(out), "--backbone", "unet", "--hidden", "7", "--depth", "2",
                 "--steps", "1", "--num-points", "60", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("learned-manifold train: error: --hidden, --depth size the MLP only, but --backbone unet "
                           "trains the UNet (--preset sizes it): leave them out, or choose --backbone mlp")
    assert list(tmp_path.iterdir()) == []


def test_help_states_the_presets_and_the_paper_scales_truly(capsys):
    """``--preset`` called four presets "the paper's image models" though three differ from its configs;
    ``--tikhonov`` and ``--grad-clip`` did not say that the paper code's values do not carry over as they are."""
    helps = {a.dest: a.help for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions}
    assert "the paper's image models" not in helps["preset"]
    assert "modelled on the paper's image networks" in helps["preset"] and "unet_preset" in helps["preset"]
    assert "2 x the paper code's tikhonov_epsilon" in helps["tikhonov"]
    assert "4D² times the paper code's" in helps["grad_clip"] and "does not transfer" in helps["grad_clip"]


def test_every_train_option_defaults_to_the_train_config_default():
    """``--checkpoint-every`` defaulted to 500 in the command and ``TrainConfig.checkpoint_every`` to 0, so a Python
    run killed before its end left nothing to resume (tester F, s32): each default is written once, in
    `TrainConfig` (500: a checkpoint of the default recipe costs ~0.1-0.3 s on a CPU)."""
    from dataclasses import fields

    from learned_manifold_training.cli import _config
    from learned_manifold_training.config import TrainConfig

    assert TrainConfig().checkpoint_every == 500
    parsed = _config(build_parser().parse_args(["train", "circle", "--out", "m.lmm"]))
    for f in fields(TrainConfig):
        assert getattr(parsed, f.name) == f.default, f.name


def test_the_recipe_options_that_were_python_only_reach_the_config():
    """``--emb-dim``, ``--val-points`` (the torus demo's recipe), ``--gaussian-rank``, ``--weight-decay``,
    ``--warmup`` and ``--ema`` had no flag (tester F, s32)."""
    from learned_manifold_training.cli import _config

    config = _config(build_parser().parse_args([
        "train", "circle", "--out", "m.lmm", "--emb-dim", "64", "--val-points", "400", "--gaussian-rank", "8",
        "--weight-decay", "0.01", "--warmup", "0.1", "--ema", "0"]))
    assert (config.emb_dim, config.val_points, config.gaussian_rank) == (64, 400, 8)
    assert (config.weight_decay, config.warmup, config.ema) == (0.01, 0.1, 0.0)


_NUMBERS = ("2", "3", "0.5", "0.25", "1", "0")
"""Texts tried for a numeric flag: each that its type parses, other than the default, and that `TrainConfig`
accepts is given."""


def _train_flags() -> dict[str, argparse.Action]:
    """Each `TrainConfig` field's option of ``learned-manifold train``, read from the parser (``centred``: the
    action of ``--uncentred``)."""
    parser = build_parser()._subparsers._group_actions[0].choices["train"]
    by_dest = {"centred" if a.dest == "uncentred" else a.dest: a for a in parser._actions}
    return {f.name: by_dest.get(f.name) for f in fields(TrainConfig)}


def _settings(name: str, action: argparse.Action) -> list[tuple[list[str], object]]:
    """``(argv, value)``: each way of giving field ``name`` through its ``action`` a value other than its default
    (both forms of a ``--x/--no-x`` flag, every choice, numbers from `_NUMBERS` its type parses)."""
    flag = action.option_strings[0]
    if isinstance(action, argparse.BooleanOptionalAction):
        given = [([flag], True), ([action.option_strings[1]], False)]
    elif action.nargs == 0:  # store_true: --compile; --uncentred sets centred=False
        given = [([flag], name != "centred")]
    elif action.choices:
        given = [([flag, choice], choice) for choice in action.choices]
    else:
        given = []
        for text in _NUMBERS:
            with contextlib.suppress(ValueError):
                given.append(([flag, text], action.type(text)))
    return [(argv, value) for argv, value in given if value != getattr(TrainConfig, name)]


def _accepted(**settings) -> bool:
    try:
        TrainConfig(**settings)
    except ValueError:
        return False
    return True


def test_every_train_flag_reaches_its_train_config_field():
    """The mirror of `test_every_train_option_defaults_to_the_train_config_default`: ``--sampler``, ``--loss``,
    ``--landmarks``, ``--factor-fraction`` and ``--final-norm`` could be dropped on their way into `TrainConfig`
    and the command trained the defaults, silently (tester A, s36). Every field has a flag; each non-default value
    its flag gives (alone, or beside the one other flag `TrainConfig` needs for it, as ``--factor-trunk-grad``
    needs ``--shared-trunk``) is the value of the field in the config the command builds."""
    from learned_manifold_training.cli import _config

    actions = _train_flags()
    assert [name for name, action in actions.items() if action is None] == []  # a field without a flag
    options = {name: _settings(name, action) for name, action in actions.items()}
    parse = build_parser().parse_args
    for name, settings in options.items():
        assert settings, f"{FLAGS[name]}: no value other than the default to give"
        checked = 0
        for argv, value in settings:
            context = [] if _accepted(**{name: value}) else next(
                (other_argv for other, others in options.items() if other != name
                 for other_argv, other_value in others if _accepted(**{name: value, other: other_value})), None)
            if context is None:
                continue  # refused whatever one other flag says: a value out of range
            config = _config(parse(["train", "circle", "--out", "m.lmm", *argv, *context]))
            assert getattr(config, name) == value, (argv, context, getattr(config, name))
            checked += 1
        assert checked, f"{FLAGS[name]}: no value was accepted"
