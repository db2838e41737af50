"""Resume checks of a training state (`training/resume.py`): the recipe version, legacy settings, unknown settings,
and a state of the other trainer."""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict

import pytest
import torch

from learned_manifold_training.data import Circle
from learned_manifold_training.outputs import state_path
from learned_manifold_training.resume import STATE_VERSION, VAE_STATE_VERSION, recorded
from learned_manifold_training.trainer import TrainConfig, train
from learned_manifold_training.vae_trainer import VAETrainConfig, train_vae

TINY = dict(steps=20, batch_size=32, rank=2, hidden=8, depth=1, emb_dim=8, val_points=30, precision="fp32")
OLDER = r"written by an older version of learned-manifold \(state version 0; .*objective may have changed.*--overwrite"


@pytest.fixture(scope="module")
def data():
    return Circle(2).sample(300, generator=torch.Generator().manual_seed(0))


def _interrupted(data, out, **edit) -> dict:
    """Train ``out`` to step 10 of 20, then rewrite its state's config: ``edit``'s keys set, those set to None
    removed. Returns the config as written by this version."""
    train(data, TrainConfig(**TINY), out=out, progress=False, device="cpu", stop_after=10)
    state = torch.load(state_path(out), weights_only=True)
    config = json.loads(state["config"])
    written = dict(config)
    for key, value in edit.items():
        config.pop(key, None) if value is None else config.__setitem__(key, value)
    state["config"] = json.dumps(config)
    torch.save(state, state_path(out))
    return written


def _resume(data, out, **settings):
    return train(data, TrainConfig(**{**TINY, **settings}), out=out, resume=True, progress=False, device="cpu")


def test_a_state_records_its_recipe_and_an_older_one_resumes_with_one_warning(data, tmp_path):
    """A state from before a change of the objective resumed without a word (issue H3): states now record the
    recipe's version; one without it resumes with one warning, to the same weights as before."""
    written = _interrupted(data, tmp_path / "m.lmm", state_version=None)
    assert written["state_version"] == STATE_VERSION
    with pytest.warns(UserWarning, match=OLDER) as caught:
        result = _resume(data, tmp_path / "m.lmm")
    assert result.stopped_at == 20 and len([w for w in caught if "older version" in str(w.message)]) == 1
    ref = train(data, TrainConfig(**TINY), progress=False, device="cpu").model.state_dict()
    assert all(torch.equal(ref[k], v) for k, v in result.model.state_dict().items())


def test_the_recorded_config_keeps_what_the_rules_resolved():
    """The state's config is the run's, resolved values included, which a new `TrainConfig` would refuse as
    requests (an "auto" factor_ramp resolved to 0.1 on a shared trunk)."""
    cfg = TrainConfig(**TINY, shared_trunk=True)
    cfg.factor_ramp = 0.1  # (as `input_choices._resolved` sets it)
    assert asdict(recorded(cfg)) == {**asdict(cfg), "state_version": STATE_VERSION}


def test_a_state_of_a_newer_recipe_is_refused(data, tmp_path):
    _interrupted(data, tmp_path / "m.lmm", state_version=STATE_VERSION + 1)
    with pytest.raises(ValueError, match=rf"written by a newer version of learned-manifold \(state version "
                                         rf"{STATE_VERSION + 1}; this version writes {STATE_VERSION}\)"):
        _resume(data, tmp_path / "m.lmm")


@pytest.mark.parametrize("backbone", ["auto", "mlp"])
def test_a_state_from_before_backbones_resumes_as_the_mlp_it_was(data, tmp_path, backbone):
    """It asked for ``backbone: saved None, now 'auto'``, a value no flag accepts (issue H4)."""
    _interrupted(data, tmp_path / "m.lmm", backbone=None, preset=None, state_version=None)
    with pytest.warns(UserWarning, match=OLDER):
        assert _resume(data, tmp_path / "m.lmm", backbone=backbone).stopped_at == 20


def test_auto_and_the_backbone_it_chooses_are_one_network(data, tmp_path):
    """A run resumed under "auto" records it; resuming that state with --backbone mlp (what "auto" chose for points
    that are not images) was refused as "saved 'auto', now 'mlp'"."""
    _interrupted(data, tmp_path / "m.lmm")
    assert _resume(data, tmp_path / "m.lmm", backbone="mlp").stopped_at == 20


def test_saved_settings_this_version_does_not_know_refuse_the_resume(data, tmp_path):
    """A state with settings of a newer version resumed silently (issue H5): now refused, naming them."""
    _interrupted(data, tmp_path / "m.lmm", new_knob=3, other_knob=True)
    with pytest.raises(ValueError, match=r"cannot resume .*m\.lmm': its training state has settings this version "
                                         r"of learned-manifold does not know \(new_knob, other_knob\)"):
        _resume(data, tmp_path / "m.lmm")


def test_train_vae_names_a_metric_matching_state_as_such(data, tmp_path):
    """It listed some 15 "settings differ" lines, latent_dim among them (issue H10)."""
    _interrupted(data, tmp_path / "m.lmm")
    with pytest.raises(ValueError, match=r"^cannot resume .*m\.lmm': its training state is a metric-matching "
                                         r"run's \(learned-manifold train\); resume it with train, or give "
                                         r"train-vae another output path$"):
        train_vae(data, VAETrainConfig(steps=20, std_steps=0), out=tmp_path / "m.lmm", resume=True, device="cpu",
                  progress=False)


def test_a_vae_state_records_its_recipe_and_an_older_one_warns(data, tmp_path):
    cfg = VAETrainConfig(steps=20, std_steps=10, batch_size=32, hidden=8, depth=1, n_centres=4)
    out = tmp_path / "v.lvae"
    train_vae(data, cfg, out=out, device="cpu", progress=False, stop_after=10)
    state = torch.load(state_path(out), weights_only=True)
    config = json.loads(state["config"])
    assert config.pop("state_version") == VAE_STATE_VERSION
    state["config"] = json.dumps(config)
    torch.save(state, state_path(out))
    with pytest.warns(UserWarning, match=OLDER):
        assert train_vae(data, cfg, out=out, resume=True, device="cpu", progress=False).stopped_at == 30
    with warnings.catch_warnings():  # the state it wrote is of this version: no warning
        warnings.simplefilter("error")
        assert train_vae(data, cfg, out=out, resume=True, device="cpu", progress=False).already_complete
