"""`learned_manifold.model_file_notes`: the format versions read, and the cautions `load_model` warns about
(a mid-run checkpoint; a default σ chosen by the eigengap rule of versions before the σ ≤ s/2 rule; a model its
training checks did not trust)."""

import json
import re
import warnings

import pytest
import torch
from safetensors.torch import load_file
from safetensors.torch import save as st_save

from learned_manifold import LearnedDataManifold, MetricModel, ModelConfig, ModelFileError, load_model
from learned_manifold.metrics import LearnedCDC
from learned_manifold.model_file import VERSION, ModelFileWarning, checksum, read_metadata, save_model
from learned_manifold.model_file_notes import EXPLODED_EIGENVALUE, exploded, stale_sigma_note, untrusted_note

OLD_RULE = "clearest mean eigengap on held-out points"  # the words of versions before the σ ≤ s/2 rule
NEW_RULE = OLD_RULE + ", among σ ≤ 0.5·s"


def _model(scale: float = 2.0, **config) -> MetricModel:
    cfg = ModelConfig(data_shape=(3,), rank=2, arch_kwargs={"hidden": 8, "depth": 1, "emb_dim": 8},
                      sigma_min=0.003 * scale, sigma_max=4.0 * scale, **config)
    return MetricModel(cfg, scale=scale)


def test_an_old_rules_default_sigma_above_half_the_scale_is_warned_about_where_it_is_used(tmp_path):
    """Files written before the σ ≤ s/2 rule (db6152c) kept a default like 2 s that today's rule never picks
    (a noisy half-sphere: tangent error 1.08 there, 0.13 at s/8) and loaded silently."""
    path = save_model(_model(default_sigma=4.0, sigma_rule=OLD_RULE), tmp_path / "old.lmm")
    message = r"old\.lmm' has default sigma 4 \(2 s, data scale s = 2\), chosen by the eigengap rule of versions " \
              r"before the sigma <= s/2 rule: today's rule would choose at most 1 here"
    with pytest.warns(ModelFileWarning, match=message):
        load_model(path)
    with pytest.warns(ModelFileWarning, match=r"LearnedDataManifold\(path, sigma=\.\.\.\)"):
        LearnedDataManifold(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LearnedCDC(path, sigma=0.25)  # a bandwidth of the caller's: the default is not used


@pytest.mark.parametrize("sigma, rule, sigma_min", [
    (4.0, NEW_RULE, 0.006),  # today's rule (its words say σ ≤ 0.5·s)
    (1.0, OLD_RULE, 0.006),  # the old rule's choice within s/2
    (4.0, OLD_RULE, 1.5),  # a range above s/2: today's rule chooses above s/2 too
    (4.0, "lowest validation tangent error", 0.006),  # measured against the true geometry
])
def test_defaults_todays_rule_would_also_choose_are_not_warned_about(tmp_path, sigma, rule, sigma_min):
    model = _model(default_sigma=sigma, sigma_rule=rule)
    model.config.sigma_min = sigma_min
    path = save_model(model, tmp_path / "m.lmm")
    assert stale_sigma_note(read_metadata(path)["config"], 2.0) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_model(path)


def test_a_mid_run_checkpoint_is_warned_about_on_every_road_in(tmp_path):
    """A file written at step 250 of 600 ("complete": false) loaded silently through load_model, LearnedCDC and
    LearnedDataManifold, with a possibly untrained factor; only `info` said INCOMPLETE."""
    extra = {"complete": False, "step": 250, "total_steps": 600}
    path = save_model(_model(default_sigma=0.1), tmp_path / "part.lmm", extra=extra)
    message = r"part\.lmm' is a checkpoint of an unfinished training run \(step 250 of 600\).*--resume"
    with pytest.warns(ModelFileWarning, match=message):
        load_model(path)
    with pytest.warns(ModelFileWarning, match=message):
        LearnedCDC(path, sigma=0.1)
    with pytest.warns(ModelFileWarning, match=message):
        LearnedDataManifold(path)
    done = save_model(_model(default_sigma=0.1), tmp_path / "full.lmm", extra={**extra, "complete": True})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_model(done)


def _with_version(path, version: str):
    """The file at ``path`` rewritten with format version ``version`` (checksum updated)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        metadata = json.loads(f.read(n))["__metadata__"]
    tensors = load_file(path)
    metadata = {**metadata, "version": version}
    metadata["sha256"] = checksum(metadata, tensors)
    path.write_bytes(st_save(tensors, metadata=metadata))
    return path


def test_files_are_written_as_version_2_and_versions_1_and_2_are_read(tmp_path):
    model = _model(default_sigma=0.1)
    path = save_model(model, tmp_path / "m.lmm")
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        assert json.loads(f.read(n))["__metadata__"]["version"] == VERSION == "2"
    old = load_model(_with_version(path, "1"))  # files written before the bump
    torch.testing.assert_close(old.factor(torch.ones(2, 3), 0.1), model.factor(torch.ones(2, 3), 0.1))


def test_a_newer_format_is_named_as_such(tmp_path):
    """A file of a newer format was refused with corruption-like words ("metadata keys ...", "unknown config
    keys"); the version check now says a newer library wrote it."""
    path = _with_version(save_model(_model(default_sigma=0.1), tmp_path / "m.lmm"), "3")
    with pytest.raises(ModelFileError, match=r"m\.lmm' was written by a newer version of learned-manifold "
                                             r"\(model-file format 3; this one reads up to 2\)"):
        load_model(path)
    with pytest.raises(ModelFileError, match=r"has model-file format version '0'; this library reads versions 1 "
                                             r"to 2"):
        load_model(_with_version(path, "0"))
    for odd in ("²", "9" * 5000, " 2", "02"):  # digits int() refuses or beyond its limit: one ModelFileError
        with pytest.raises(ModelFileError, match=r"has model-file format version .*; this library reads versions"):
            load_model(_with_version(path, odd))


TRUSTED = {"self_consistency": {"trusted": True, "outside_eigenvalue": 0.0, "factor_top_eigenvalues": [1.0, 0.9]},
           "neighbour_check": {"informative": True, "trusted": True}}
"""A stored verdict the training checks passed (the keys `learned_manifold_training.validation.distrust` reads)."""


@pytest.mark.parametrize("change, reason", [
    ({"neighbour_check": {"informative": True, "trusted": False}},
     r"it disagrees with an estimate from the training points' neighbours \(neighbour check\)"),
    ({"self_consistency": {**TRUSTED["self_consistency"], "factor_top_eigenvalues": [float("nan"), 2.6e12]}},
     r"training diverged \(factor eigenvalues not finite: nan\)"),  # NaN first hid it (tester R, tenth round)
    ({"self_consistency": {**TRUSTED["self_consistency"], "trusted": False}},
     r"its factor and denoiser disagree \(self-consistency check\)"),
    ({"self_consistency": {**TRUSTED["self_consistency"], "outside_eigenvalue": 0.3}},  # info's re-read verdict
     r"its factor and denoiser disagree"),
    ({"self_consistency": {**TRUSTED["self_consistency"], "factor_top_eigenvalues": [2.6e12, 1.0]}},
     r"training diverged \(factor eigenvalues up to 2.6e\+12\)"),
])
def test_a_model_its_training_checks_did_not_trust_is_warned_about_on_every_road_in(tmp_path, change, reason):
    """A spiral model whose stored verdict was NOT TRUSTED (neighbour check) loaded silently and gave a geodesic
    straight across the gap between two turns, converged=True (tester C, s30, item 3): one warning at load, naming
    the file, the first reason in a few words, and the `info` command (quoted for the shell)."""
    path = save_model(_model(default_sigma=0.1), tmp_path / "my model.lmm",
                      extra={"validation": {**TRUSTED, **change}})
    message = (r"my model\.lmm' was not trusted by the checks at the end of its training: " + reason
               + r".*`learned-manifold info '.*my model\.lmm'` says why")
    for load in (load_model, LearnedCDC, LearnedDataManifold):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            load(path)
        assert len(caught) == 1 and caught[0].category is ModelFileWarning, [str(w.message) for w in caught]
        assert re.search(message, str(caught[0].message)), str(caught[0].message)


def test_several_reasons_are_counted_and_the_first_given(tmp_path):
    validation = {"self_consistency": {"trusted": False}, "neighbour_check": {"informative": True, "trusted": False}}
    assert untrusted_note("m.lmm", {"validation": validation}).startswith(
        "was not trusted by the checks at the end of its training: its factor and denoiser disagree "
        "(self-consistency check) (and 1 more); ")


@pytest.mark.parametrize("extra", [{}, {"validation": {}}, {"validation": TRUSTED},
                                   {"validation": {"neighbour_check": {"informative": True}}},
                                   {"validation": {**TRUSTED, "neighbour_check": {"informative": False,
                                                                                  "trusted": False}}}])
def test_a_trusted_model_or_one_without_a_verdict_loads_silently(tmp_path, extra):
    path = save_model(_model(default_sigma=0.1), tmp_path / "m.lmm", extra=extra)
    assert untrusted_note(path, extra) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_model(path)


def test_the_trained_fixtures_load_silently(sphere_model_path, torus_model_path):
    """Models the trainer trusted (the shared sphere and torus) carry a verdict and load without a warning."""
    for path in (sphere_model_path, torus_model_path):
        assert read_metadata(path)["extra"]["validation"]["neighbour_check"]["trusted"] is True
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            LearnedDataManifold(path)


def test_the_trainer_and_the_loader_judge_divergence_by_one_rule():
    """The loader had its own copy of the trainer's divergence test, and missed ``[nan, 2.6e12]`` the trainer had
    been fixed for (the reviewer, tenth round): one function now serves both."""
    from learned_manifold_training import validation

    assert validation.exploded is exploded and validation.EXPLODED_EIGENVALUE is EXPLODED_EIGENVALUE


# a stored self-consistency check of a model that reads the data's full dimension D = 3 (rank 3) at most points: an
# older file's summary (no "informative" key: read from factor_dimension and D) and today's
FULL_OLD = {"trusted": True, "outside_eigenvalue": 0.0, "factor_top_eigenvalues": [1.0, 1.0, 0.99],
            "factor_dimension": 3, "factor_rank": 3}
FULL_NEW = {**FULL_OLD, "trusted": None, "informative": False, "data_dimension": 3}


@pytest.mark.parametrize("check", [FULL_OLD, FULL_NEW])
def test_a_model_no_check_gave_a_verdict_on_is_warned_about_at_load(tmp_path, check):
    """A S² model trained at a σ range below the points' spacing read dimension 3 (tangent error 1.1), stored
    self-consistency "trusted" (nothing to compare at d = D) and a neighbour check without a verdict, and loaded
    silently (tester B, s31): one warning now says nothing verified it, why, and the `info` hint. Where the
    neighbour check gave a verdict, it alone judges the model."""
    model = MetricModel(ModelConfig(data_shape=(3,), rank=3, arch_kwargs={"hidden": 8, "depth": 1, "emb_dim": 8},
                                    default_sigma=0.1))
    validation = {"self_consistency": check, "neighbour_check": {"informative": False, "trusted": None}}
    path = save_model(model, tmp_path / "m.lmm", extra={"validation": validation})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_model(path)
    assert len(caught) == 1 and caught[0].category is ModelFileWarning, [str(w.message) for w in caught]
    assert re.search(r"m\.lmm' could not be verified by the checks at the end of its training: neither gave a "
                     r"verdict, so nothing verified it \(its factor reads the data's full dimension 3.*"
                     r"`learned-manifold info .*m\.lmm` says more",
                     str(caught[0].message)), str(caught[0].message)
    checked = {**validation, "neighbour_check": {"informative": True, "trusted": True}}
    assert untrusted_note(path, {"validation": checked}, 3) is None
    assert untrusted_note(path, {"validation": {**validation, "self_consistency": TRUSTED["self_consistency"]}},
                          3) is None  # a self-consistency verdict: the neighbours' silence stays silent
