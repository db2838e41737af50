"""Resuming a training state written by an older version (`training/resume.py` `saved_choices`, `check_resume`): a
setting the resumed run leaves to its rule ("auto", ``final_norm=None``) takes the saved run's value where that run
predates the rule; only a setting given away from the saved run's value is refused.

The old states are built by hand: a run of today's code with the old recipe's values, stopped half-way, its state's
``config`` then rewritten to the fields the old version wrote (5ae7687: no ``state_version``, no factor guards or
width; 15fb895: the warm-up 0.5 recorded before its rule; 85494b4: no ``norm_feature``).
"""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from learned_manifold import load_model
from learned_manifold_training.cli import main
from learned_manifold_training.input_choices import local_pca_dimension
from learned_manifold_training.outputs import state_path
from learned_manifold_training.resume import STATE_VERSION, check_resume, recorded, saved_choices
from learned_manifold_training.trainer import TrainConfig, train

TINY = dict(steps=20, batch_size=32, hidden=8, depth=1, emb_dim=8, val_points=30, precision="fp32")
FLAGS = ["--steps", "20", "--batch-size", "32", "--hidden", "8", "--depth", "1", "--emb-dim", "8",
         "--val-points", "30", "--precision", "fp32", "--device", "cpu", "--no-progress"]
OLD_FACTOR = dict(factor_hidden=None, factor_clip=0.0, factor_ramp=0.0, factor_lr_scale=1.0)
"""What a run before the d-hat > 8 factor rules (79304cc) trained with."""
OLDER = "written by an older version of learned-manifold"
pytestmark = pytest.mark.filterwarnings("ignore:.* by the checks at the end:learned_manifold.ModelFileWarning")


def _old_state(data, out, cfg: TrainConfig, written: dict) -> None:
    """Train ``out`` with ``cfg`` to step 10 of 20, then give its state the config an older version wrote: this
    version's, without ``state_version``, with ``written``'s keys set (those set to None removed)."""
    train(data, cfg, out=out, progress=False, device="cpu", stop_after=10)
    state = torch.load(state_path(out), weights_only=True)
    config = json.loads(state["config"])
    config.pop("state_version")
    for key, value in written.items():
        config.pop(key, None) if value is None else config.__setitem__(key, value)
    state["config"] = json.dumps(config)
    torch.save(state, state_path(out))


def _same_weights(out, reference) -> bool:
    ref = reference.model.state_dict()
    return all(torch.equal(ref[k], v) for k, v in load_model(out).state_dict().items())


@pytest.fixture(scope="module")
def cube(tmp_path_factory):
    """A 10-cube in R^24 (600 points): estimated dimension 10, above the factor rules' threshold of 8."""
    x = np.zeros((600, 24), np.float32)
    x[:, :10] = np.random.default_rng(0).uniform(-1, 1, (600, 10))
    path = tmp_path_factory.mktemp("cube") / "cube.npy"
    np.save(path, x)
    return path, torch.from_numpy(x)


def test_a_state_from_before_the_high_dimension_rules_resumes_from_its_printed_command(cube, tmp_path, capsys):
    """Tester A s37 p01: a 5ae7687 state of such data was refused ("factor_clip: saved 0.0, now 4.0; ...;
    factor_hidden: saved None, now 64") for settings the user never gave, and no flag spells factor_hidden None; a
    15fb895 state also for its recorded warm-up 0.5 (today's rule: 0.25). It resumes the saved run's recipe, to the
    weights of that recipe run without a stop, with the older-state warning. Before 0d68ff7 the unset rank was
    min(D, 16), not 2 d-hat: the rank its weights hold (it failed in load_state_dict, a traceback)."""
    path, x = cube
    assert float(local_pca_dimension(x).float().median()) > 8  # where today's rules differ from the old recipe
    old = TrainConfig(**TINY, **OLD_FACTOR, denoiser_warmup=0.5, rank=16)
    out = tmp_path / "m.lmm"
    _old_state(x, out, old, {"rank": None, "factor_hidden": None, "factor_clip": None, "factor_ramp": None,
                             "factor_lr_scale": None, "factor_refit": None, "denoiser_hidden": None})
    with pytest.warns(UserWarning, match=OLDER):  # the command's settings, taken as the CLI does; stopped again
        train(x, saved_choices(out, TrainConfig(**TINY), (24,)), out=out, resume=True, progress=False,
              device="cpu", stop_after=15)
    again = json.loads(torch.load(state_path(out), weights_only=True)["config"])
    assert (again["state_version"], again["rank"], again["factor_clip"], again["factor_hidden"]) == (0, 16, 0.0, None)
    with pytest.warns(UserWarning, match=OLDER):  # and resumed again by the same command
        assert main(["train", str(path), "--out", str(out), *FLAGS, "--resume"]) == 0
    assert _same_weights(out, train(x, old, progress=False, device="cpu"))
    model = load_model(out)
    assert model.config.arch_kwargs["hidden"] == 8 and model.config.rank == 16  # as the saved run's


def test_a_setting_given_away_from_an_old_states_value_is_still_refused(cube, tmp_path, capsys):
    path, x = cube
    out = tmp_path / "m.lmm"
    _old_state(x, out, TrainConfig(**TINY, **OLD_FACTOR), {"factor_clip": None, "factor_hidden": None})
    for width in ([], ["--factor-hidden", "8"]):  # not given: the saved run's; given as hidden: the same width
        assert main(["train", str(path), "--out", str(out), *FLAGS, *width, "--factor-clip", "4", "--resume"]) == 2
        err = capsys.readouterr().err
        assert "settings differ from the saved run: factor_clip (--factor-clip): saved 0.0, now 4.0" in err
        assert "factor_hidden" not in err


def test_a_state_from_before_the_norm_feature_resumes_without_it(tmp_path, capsys):
    """Tester A s37 p01b: an 85494b4 circle state was refused "norm_feature saved False, now 'auto'" (the rule turns
    it on for a circle); resumed, the network has no norm feature, as the saved run's."""
    theta = torch.rand(300, generator=torch.Generator().manual_seed(0)) * 2 * torch.pi
    x = torch.stack([theta.cos(), theta.sin()], 1)
    np.save(tmp_path / "circle.npy", x.numpy())
    old = TrainConfig(**TINY, rank=2, norm_feature=False)
    out = tmp_path / "m.lmm"
    _old_state(x, out, old, {"norm_feature": None})
    args = ["train", str(tmp_path / "circle.npy"), "--out", str(out), "--rank", "2", *FLAGS, "--resume"]
    assert main([*args, "--norm-feature"]) == 2  # given: refused, by its flag
    assert "norm_feature (--norm-feature): saved False, now True" in capsys.readouterr().err
    with pytest.warns(UserWarning, match=OLDER):
        assert main(args) == 0
    assert "norm_feature" not in load_model(out).config.arch_kwargs
    assert _same_weights(out, train(x, old, progress=False, device="cpu"))


def test_the_python_api_resumes_an_old_state_as_the_command_line_does(tmp_path):
    """`train(..., resume=True)` takes the saved run's values for settings left to a rule, as the CLI does (it was
    refused: "norm_feature saved False, now 'auto'")."""
    theta = torch.rand(300, generator=torch.Generator().manual_seed(1)) * 2 * torch.pi
    x = torch.stack([theta.cos(), theta.sin()], 1)
    old = TrainConfig(**TINY, rank=2, norm_feature=False)
    out = tmp_path / "m.lmm"
    _old_state(x, out, old, {"norm_feature": None})
    with pytest.warns(UserWarning, match=OLDER):
        train(x, TrainConfig(**TINY, rank=2), out=out, resume=True, progress=False, device="cpu")
    assert _same_weights(out, train(x, old, progress=False, device="cpu"))


def _state(tmp_path, config: dict):
    out = tmp_path / "m.lmm"
    torch.save({"config": json.dumps(config), "step": 10, "fingerprint": [0.0]}, state_path(out))
    return out


def test_saved_choices_takes_only_settings_left_to_a_rule_that_the_saved_run_chose_otherwise(tmp_path):
    old = {k: v for k, v in asdict(TrainConfig(**TINY)).items() if k not in ("factor_hidden", "norm_feature")}
    old.update(denoiser_warmup=0.5, input_scaling="none", factor_clip=0.0)  # recorded, no state_version
    out = _state(tmp_path, old)
    cfg = TrainConfig(**TINY, factor_ramp=0.0)
    taken = saved_choices(out, cfg, (24,))
    assert (taken.denoiser_warmup, taken.input_scaling, taken.factor_clip) == (0.5, "none", 0.0)
    assert (taken.factor_hidden, taken.norm_feature) == (None, False)  # missing: the values those versions ran with
    assert taken.factor_lr_scale == "auto" and taken.final_norm is None  # recorded at their defaults: the rule's
    assert cfg.factor_clip == "auto"  # a copy
    given = saved_choices(out, TrainConfig(**TINY, denoiser_warmup=0.25, norm_feature=True), (24,))
    assert (given.denoiser_warmup, given.norm_feature) == (0.25, True)  # given: kept, for check_resume to judge


def test_a_state_of_todays_recipe_keeps_todays_rules(tmp_path):
    """Its recorded values are what today's rules chose on its data (a resumed run resolves them again and records
    why); an "auto" setting whose recorded value was given is refused by `check_resume` as before."""
    cfg = TrainConfig(**TINY)
    out = _state(tmp_path, {**asdict(cfg), "factor_clip": 4.0, "norm_feature": False, "state_version": STATE_VERSION})
    assert saved_choices(out, cfg, (24,)) is cfg
    assert json.loads(json.dumps(asdict(recorded(cfg))))["state_version"] == STATE_VERSION


def test_the_mlps_settings_of_an_old_unet_state_are_not_taken_nor_compared(tmp_path):
    """A UNet state from before final_norm / norm_feature reads them as the MLP's old values, which do nothing on
    the UNet: it resumed with "final_norm: saved True, now None"."""
    cfg = TrainConfig(**{**TINY, "hidden": 256, "depth": 3, "emb_dim": 128}, backbone="unet")
    old = {k: v for k, v in asdict(cfg).items() if k not in ("final_norm", "norm_feature")}
    out = _state(tmp_path, {**old, "state_version": STATE_VERSION})
    check_resume(out, {"config": json.dumps({**old, "state_version": STATE_VERSION})}, cfg, (1, 8, 8))
    assert saved_choices(out, cfg, (1, 8, 8)) is cfg
