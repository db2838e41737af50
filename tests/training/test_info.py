"""`learned-manifold info MODEL --data DATA` (`training.info`): which rows of the data its checks read."""

import io
import json
import os
import sys

import numpy as np
import pytest
import torch

from learned_manifold.model_file import save_model
from learned_manifold.models import MetricModel, ModelConfig
from learned_manifold_training import cli_data
from learned_manifold_training.cli import main
from tests.training.test_readers import _unblock_after


@pytest.fixture
def model_path(tmp_path):
    """An untrained mean-centred model of points in R³ (the checks run on any model)."""
    torch.manual_seed(0)
    model = MetricModel(ModelConfig(data_shape=(3,), rank=2, arch_kwargs={"hidden": 8, "depth": 1}))
    return save_model(model, tmp_path / "m.lmm")


def _info_json(model_path, data, capsys) -> dict:
    assert main(["info", str(model_path), "--data", str(data), "--num-points", "40", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_npy_file_is_read_only_where_the_checks_look(model_path, tmp_path, capsys, monkeypatch):
    """`info --data x.npy` read, validated and copied the whole file (~3x its size in memory) to check 40 points
    against the others; a mapped .npy now gives only the rows the checks use, with the same answer as reading the
    same data whole (a .pt file is read whole)."""
    data = np.random.default_rng(0).normal(size=(300, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", data)
    torch.save(torch.from_numpy(data), tmp_path / "x.pt")
    whole = _info_json(model_path, tmp_path / "x.pt", capsys)

    def read_everything(*args, **kwargs):
        raise AssertionError("the whole file was read")

    monkeypatch.setattr(cli_data, "read_data", read_everything)
    mapped = _info_json(model_path, tmp_path / "x.npy", capsys)
    assert mapped["self_consistency"] == whole["self_consistency"]
    assert mapped["neighbour_check"] == whole["neighbour_check"]


def test_a_bad_row_among_those_read_is_named(model_path, tmp_path, capsys):
    data = np.random.default_rng(1).normal(size=(10, 3)).astype(np.float32)
    data[7, 1] = np.nan
    np.save(tmp_path / "x.npy", data)
    assert main(["info", str(model_path), "--data", str(tmp_path / "x.npy")]) == 2
    err = capsys.readouterr().err
    assert "contains non-finite values (NaN or inf) in 1 of the 10 rows read" in err and "row is index 7" in err


def _summary(path, capsys) -> str:
    assert main(["info", str(path)]) == 0
    return capsys.readouterr().out


def test_the_bandwidth_line_gives_the_range_in_data_units_and_in_s(tmp_path, capsys):
    """With s = 50 the flags --sigma-min 0.01 --sigma-max 2 showed as "trained on [0.5, 100]" with no units."""
    model = MetricModel(ModelConfig(data_shape=(3,), rank=2, arch_kwargs={"hidden": 8, "depth": 1},
                                    sigma_min=0.5, sigma_max=100.0, default_sigma=3.125), scale=50.0)
    out = _summary(save_model(model, tmp_path / "m.lmm"), capsys)
    assert "default sigma 3.125 = 0.0625 s (unset); trained on [0.5, 100] (data units; 0.01-2 s, s = 50 the data " \
           "scale)" in out
    assert "CAUTION" not in out


def test_an_old_rules_default_sigma_is_flagged(tmp_path, capsys):
    model = MetricModel(ModelConfig(data_shape=(3,), rank=2, arch_kwargs={"hidden": 8, "depth": 1}, default_sigma=2.0,
                                    sigma_rule="clearest mean eigengap on held-out points"))
    out = _summary(save_model(model, tmp_path / "m.lmm"), capsys)
    assert "  CAUTION:     the model has default sigma 2 (2 s, data scale s = 1), chosen by the eigengap rule of " \
           "versions before the sigma <= s/2 rule" in out


def test_a_verdict_from_before_the_outside_eigenvalue_is_not_called_trusted(tmp_path, capsys):
    """A file whose stored check had no outside eigenvalue printed "consistency: trusted" while today's check of
    the same model said NOT trusted (outside eigenvalue 0.933)."""
    model = MetricModel(ModelConfig(data_shape=(3,), rank=2, arch_kwargs={"hidden": 8, "depth": 1}))
    check = {"trusted": True, "sigma": 0.1, "tangent_disagreement": 0.01, "normal_growth": 0.0}
    out = _summary(save_model(model, tmp_path / "m.lmm", extra={"validation": {"self_consistency": check}}), capsys)
    assert "consistency: trusted" not in out
    assert "consistency: NOT FULLY CHECKED: passed the older checks on held-out points at sigma 0.1" in out
    assert "its check predates today's (no outside eigenvalue): rerun it with `info MODEL --data DATA`" in out
    check["outside_eigenvalue"] = 0.01
    out = _summary(save_model(model, tmp_path / "m.lmm", extra={"validation": {"self_consistency": check}}), capsys)
    assert "consistency: trusted on held-out points" in out


def test_a_file_a_run_is_writing_is_not_sent_to_resume(tmp_path, capsys):
    """While `train` held MODEL.lock, info said INCOMPLETE "continue ... --resume", which that lock refuses."""
    from learned_manifold_training.outputs import OutputLock

    model = MetricModel(ModelConfig(data_shape=(3,), rank=2, arch_kwargs={"hidden": 8, "depth": 1}))
    path = save_model(model, tmp_path / "m.lmm", extra={"complete": False, "step": 300, "total_steps": 1500})
    with OutputLock(path):
        out = _summary(path, capsys)
    assert f"INCOMPLETE (step 300 of 1500): a training run (pid {os.getpid()}) is writing it now" in out
    assert "continue its training" not in out
    assert "continue its training with `learned-manifold train ... --resume`" in _summary(path, capsys)  # released


def test_data_far_from_the_training_data_is_named_before_the_checks(model_path, tmp_path, capsys):
    """Points ~100 data scales away (other units, the wrong file) got only the checks' advice to train longer."""
    near = np.random.default_rng(0).normal(size=(200, 3)).astype(np.float32) / 3 ** 0.5  # RMS radius 1 = s
    np.save(tmp_path / "near.npy", near)
    np.save(tmp_path / "far.npy", near * 100 + 50)
    assert main(["info", str(model_path), "--data", str(tmp_path / "far.npy"), "--num-points", "40"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("WARNING: --data"))
    assert "its points lie far from the data the model was trained on: median distance" in line
    assert out.index(line) < out.index("neighbour check")
    placement = _info_json(model_path, tmp_path / "far.npy", capsys)["data_placement"]
    assert placement["far"] and placement["median_distance_in_s"] > 50 and 90 < placement["spread_in_s"] < 110
    placement = _info_json(model_path, tmp_path / "near.npy", capsys)["data_placement"]
    assert not placement["far"] and placement["median_distance_in_s"] < 1.5


def _placed_rows(centre: torch.Tensor, scale: float, offset: float, spread: float) -> torch.Tensor:
    """Ten rows ``(10, 3)`` whose median distance from ``centre`` is ``0.5 s`` (or about ``offset`` s, all moved by
    ``offset s`` along the first axis) and whose RMS spread about their own mean is ``spread s`` (at least 0.5):
    eight rows ``0.5 s`` from their mean, and two at ``± L s`` with ``(8 · 0.25 + 2 L²) / 10 = spread²``."""
    eye = torch.eye(3, dtype=torch.float64)
    core = 0.5 * torch.cat([eye, -eye, eye[:1], -eye[:1]])
    wide = ((10 * spread ** 2 - 2) / 2) ** 0.5 * torch.stack([eye[1], -eye[1]])
    return centre + scale * (torch.cat([core, wide]) + offset * eye[0])


@pytest.mark.parametrize("offset, spread, far", [(0.0, 0.5, False), (0.0, 2.9, False), (0.0, 3.1, True),
                                                 (0.0, 18.6, True), (10.0, 0.5, True)])
def test_data_near_the_training_mean_but_spread_beyond_the_limit_are_far(offset, spread, far):
    """``info --data`` calls data far where their median distance from the training mean OR their spread exceeds
    `FAR_FROM_DATA` (3 s): dropping the spread went unseen (tester A, s36), as the one far case of the CLI test is
    far on both counts. Rows centred on the training mean but spread 3.1 s (a fifth of them far out, or other units
    about the same centre) are far; spread 2.9 s, not. Distances in units of the model's scale ``s`` (here 2)."""
    from types import SimpleNamespace

    from learned_manifold_training.info import FAR_FROM_DATA, _placement

    assert FAR_FROM_DATA == 3.0
    centre = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    placement = _placement(SimpleNamespace(mean=centre, scale=2.0), _placed_rows(centre, 2.0, offset, spread))
    assert placement["spread_in_s"] == pytest.approx(spread)
    assert placement["median_distance_in_s"] == pytest.approx(0.5 if offset == 0 else offset, abs=0.05)
    assert placement["far"] is far


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1", "ascii"])
def test_the_summary_prints_on_a_console_without_the_rules_symbols(tmp_path, monkeypatch, encoding):
    """A model's recorded sigma rule ("among σ ≤ 0.5·s") on a strict cp1252 / Latin-1 / ASCII stdout ended `info`
    with "error: 'charmap' codec can't encode character '\\u03c3'" and nothing printed; it is spelled in ASCII."""
    model = MetricModel(ModelConfig(data_shape=(3,), rank=2, arch_kwargs={"hidden": 8, "depth": 1}, default_sigma=0.25,
                                    sigma_rule="clearest eigengap among σ ≤ 0.5·s"))
    path = save_model(model, tmp_path / "m.lmm")
    raw = io.BytesIO()
    stdout = io.TextIOWrapper(raw, encoding=encoding, errors="strict", newline="\n")
    monkeypatch.setattr(sys, "stdout", stdout)
    assert main(["info", str(path)]) == 0
    stdout.flush()
    out = raw.getvalue().decode(encoding)
    dot = "*" if encoding == "ascii" else "·"  # cp1252 and Latin-1 have the middle dot
    assert f"  bandwidth:   default sigma 0.25 = 0.25 s (clearest eigengap among sigma <= 0.5{dot}s)" in out


@pytest.mark.parametrize("extra, shown, hidden", [
    ({"factor_width": {"rule": 5, "factor_hidden": 3}, "rank_choice": {"estimated_dimension": 1}},
     "  rank:        None (estimated data dimension 1; )", "  width:"),
    ({"input_scaling": {"chosen": "unit", "span_dimension": 1}}, "  input:       unit ()", "linear span"),
    ({"num_points": "many", "num_train_points": "most", "num_val_points": 3},
     "(D = 3), 'many' training points ('most' fitted, 3 held out)", None),
    ({"validation": {"self_consistency": {"tangent_disagreement": "n/a"}}},
     "(tangent disagreement 'n/a', normal growth unknown", None),
], ids=["rule-an-int", "scaling-without-dim", "counts-as-strings", "figure-a-string"])
def test_extra_fields_of_unexpected_types_are_shown_as_stored_not_a_traceback(tmp_path, capsys, extra, shown, hidden):
    """`save_model` takes any JSON as extra metadata; fields of other types crashed the summary (AttributeError
    'int' has no 'startswith', KeyError 'dim', "Cannot specify ',' with 's'", "Unknown format code 'g'")."""
    model = MetricModel(ModelConfig(data_shape=(3,), rank=2, arch_kwargs={"hidden": 8, "depth": 1}))
    out = _summary(save_model(model, tmp_path / "m.lmm", extra=extra), capsys)
    assert shown in out
    assert hidden is None or hidden not in out


def test_numbers_are_still_formatted_as_numbers(tmp_path, capsys):
    model = MetricModel(ModelConfig(data_shape=(3,), rank=2, arch_kwargs={"hidden": 8, "depth": 1}))
    extra = {"num_points": 12345, "num_train_points": 12000, "num_val_points": 345, "step": True}
    out = _summary(save_model(model, tmp_path / "m.lmm", extra=extra), capsys)
    assert "12,345 training points (12,000 fitted, 345 held out)" in out
    assert "  training:    True of unknown steps" in out  # a bool is not a count


def test_a_summary_that_cannot_be_made_is_one_error_naming_the_file():
    from learned_manifold_training.info import _checked_summary

    with pytest.raises(ValueError, match=r"^'m.lmm': its metadata holds a field of an unexpected type or shape that "
                                         r"the summary cannot show \(KeyError: 'config'\); `learned-manifold info "
                                         r"--json` prints the metadata whole$"):
        _checked_summary("m.lmm", {"extra": {}}, None)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this OS")
def test_data_that_is_a_fifo_is_refused_unopened(model_path, tmp_path, capsys):
    """``info MODEL --data FIFO.npy`` blocked forever waiting for a writer."""
    fifo = tmp_path / "d.npy"
    os.mkfifo(fifo)
    _unblock_after(fifo)  # should the reader block (the bug), the test fails rather than hangs
    assert main(["info", str(model_path), "--data", str(fifo)]) == 2
    assert "is a FIFO (named pipe), not a data file; it was not opened" in capsys.readouterr().err


@pytest.mark.parametrize(("count", "told"), [(1, "1 training points stored (too few for a graph: geodesics start "
                                                   "by landing)"),
                                             (3, "3 training points stored (geodesics start through them)")])
def test_the_landmark_line_says_whether_geodesics_start_through_them(tmp_path, capsys, count, told):
    """A file with one landmark (older trainers wrote them) said geodesics start through it; one point builds no
    graph, so they start by landing."""
    model = MetricModel(ModelConfig(data_shape=(3,), rank=2, arch_kwargs={"hidden": 8, "depth": 1},
                                    landmarks=count))
    assert told in _summary(save_model(model, tmp_path / "m.lmm"), capsys)


def test_a_diverged_run_is_called_so_and_a_negative_zero_reads_zero(tmp_path, capsys):
    """A run at --lr 0.5 stored factor eigenvalues of 2.6e12 (a CDC's are about 1) and `info` advised nothing about
    the learning rate; a stored normal growth of -0.0 printed as "-0" (tester E)."""
    model = MetricModel(ModelConfig(data_shape=(3,), rank=2, arch_kwargs={"hidden": 8, "depth": 1}))
    check = {"trusted": False, "sigma": 0.1, "tangent_disagreement": 1.2, "normal_growth": -0.0,
             "outside_eigenvalue": 0.0, "factor_top_eigenvalues": [2.6e12, 1.5e12]}
    out = _summary(save_model(model, tmp_path / "m.lmm", extra={"validation": {"self_consistency": check}}), capsys)
    assert "normal growth 0," in out and "-0" not in out
    assert "  diverged:    training diverged: the factor's eigenvalues reach 2.6e+12" in out
    assert "train again with a smaller --lr" in out
    check["factor_top_eigenvalues"] = [1.2, 0.9]  # a CDC's size: nothing said
    out = _summary(save_model(model, tmp_path / "m.lmm", extra={"validation": {"self_consistency": check}}), capsys)
    assert "training diverged" not in out


def test_a_neighbour_check_without_a_verdict_says_it_could_not_judge(tmp_path, capsys):
    model = MetricModel(ModelConfig(data_shape=(3,), rank=2, arch_kwargs={"hidden": 8, "depth": 1}))
    near = {"sigma": None, "informative": False, "trusted": None, "reference_points": 1600}
    out = _summary(save_model(model, tmp_path / "m.lmm", extra={"validation": {"neighbour_check": near}}), capsys)
    assert "neighbours:  no verdict: this independent check could not judge the model (the neighbours of 1,600" in out


def test_a_full_dimension_reading_and_a_sigma_range_above_the_spacing_are_no_verdicts_named_so(tmp_path, capsys):
    """A model reading dimension 3 on S² (nothing to compare at d = D) printed "consistency: trusted", and a σ range
    far above the spacing (1.5-6 s) had its no-verdict blamed on a range below it (tester B, s31)."""
    model = MetricModel(ModelConfig(data_shape=(3,), rank=3, arch_kwargs={"hidden": 8, "depth": 1}))
    check = {"trusted": True, "sigma": 0.1, "tangent_disagreement": 0.0002, "normal_growth": 0.0,
             "outside_eigenvalue": 0.0, "factor_dimension": 3, "factor_rank": 3}  # an older file: no "informative"
    near = {"sigma": None, "informative": False, "trusted": None, "reference_points": 2500}
    extra = {"validation": {"self_consistency": check, "neighbour_check": near}}
    out = _summary(save_model(model, tmp_path / "m.lmm", extra=extra), capsys)
    assert ("  consistency: no verdict on held-out points at sigma 0.1 (tangent disagreement 0.0002, normal growth 0, "
            "outside eigenvalue 0; the factor reads the data's full dimension 3 at most points") in out
    assert "a sigma range below their spacing or far above it, at the data's scale" in out


def test_info_data_shows_the_training_verdict_its_own_rerun_cannot_give(tmp_path, capsys):
    """A swiss-roll model the neighbour check distrusted on 2,500 training points printed, with 300 held-out points,
    "the model agrees with itself" and "neighbour check: no verdict" only (tester D, s31): the stored verdict is
    shown (the self-consistency line's clause on what it cannot see: `test_diagnostics`)."""
    torch.manual_seed(0)
    model = MetricModel(ModelConfig(data_shape=(3,), rank=2, arch_kwargs={"hidden": 8, "depth": 1}))
    near = {"sigma": 0.05, "informative": True, "trusted": False, "threshold": 0.5, "tangent_disagreement": 1.32,
            "dimension_agreement": 0.0, "model_dimension": 3, "neighbour_dimension": 2, "reference_points": 2500,
            "failed": {"dimension_agreement": 0.0, "tangent_disagreement": 1.32}}
    path = save_model(model, tmp_path / "m.lmm", extra={"validation": {"neighbour_check": near}})
    np.save(tmp_path / "held.npy", np.random.default_rng(0).normal(size=(80, 3)).astype(np.float32))
    assert main(["info", str(path), "--data", str(tmp_path / "held.npy"), "--num-points", "40"]) == 0
    out = capsys.readouterr().out
    assert "neighbour check: no verdict" in out
    assert ("  at training: neighbour check NOT TRUSTED against 2,500 training points at sigma 0.05 (same dimension "
            "at only 0% of points (limit 80%)") in out


def test_a_builtin_data_name_is_not_checked_on_the_models_own_training_draw(tmp_path, capsys, monkeypatch):
    """``info --data circle`` drew with seed 1, the draw ``train circle --seed 1`` trained on: its "held-out" points
    were the training points (tester F, s32). A built-in name is now drawn with the model's seed + 1."""
    import argparse

    from learned_manifold_training.info import _held_out_seed

    model = MetricModel(ModelConfig(data_shape=(2,), rank=1, arch_kwargs={"hidden": 8, "depth": 1}))
    path = save_model(model, tmp_path / "m.lmm", extra={"seed": 1})
    seeds = []
    read = cli_data.read_data

    def spy(args, source, **kwargs):
        seeds.append(kwargs.get("seed"))
        return read(args, source, **kwargs)

    monkeypatch.setattr(cli_data, "read_data", spy)
    report = _info_json(path, "circle", capsys)
    assert seeds[-1] == 2 and "training_points" not in report["data_placement"]  # the rows checked: seed 2
    layout = argparse.Namespace(layout="auto")
    assert _held_out_seed(argparse.Namespace(data="circle", **vars(layout)), None) == (1, False)  # seed 0's
    assert _held_out_seed(argparse.Namespace(data=str(path), **vars(layout)), 1) == (1, False)  # a file: all rows


def test_a_builtin_set_that_is_the_same_for_every_seed_is_said_to_be_the_training_points(tmp_path, capsys):
    """``digits`` is all 1,797 images whatever the seed: ``info --data digits`` checks the training images and says
    so, instead of calling them held-out data."""
    model = MetricModel(ModelConfig(data_shape=(1, 8, 8), rank=2, arch_kwargs={"hidden": 8, "depth": 1}))
    path = save_model(model, tmp_path / "m.lmm", extra={"seed": 0})
    assert main(["info", str(path), "--data", "digits", "--num-points", "20"]) == 0
    assert ("NOTE: --data digits is the built-in set the model was trained on, and it is the same points for every "
            "seed: the checks below run on training points, not held-out ones") in capsys.readouterr().out


@pytest.mark.parametrize("extra, line", [
    ({"precision": "bf16", "precision_probe": {"setting": "auto", "choice": "bf16", "source": "measured",
                                               "speedup": [1.8782, 1.7131]}},
     "precision bf16 (auto: the probe measured bf16 1.88x / 1.71x as fast as fp32),"),
    ({"precision": "fp32", "precision_probe": {"setting": "auto", "choice": "fp32", "source": "cache",
                                               "speedup": [1.02, 0.9]}},
     "precision fp32 (auto: the probe earlier in the training process measured bf16 1.02x / 0.90x as fast as fp32),"),
    ({"precision": "fp32", "precision_probe": {"setting": "auto", "reason": "no bf16 on this device"}},
     "precision fp32 (auto: no bf16 on this device),"),
    ({"precision": "bf16", "precision_probe": {"setting": "bf16", "choice": "bf16"}}, "precision bf16,"),
], ids=["auto-measured", "auto-cached", "auto-no-figures", "asked-for"])
def test_the_training_line_says_when_auto_chose_the_precision_and_the_probes_figures(tmp_path, capsys, extra, line):
    """``info`` printed "precision bf16" alike for ``--precision bf16`` and for the default ``auto``'s choice; the
    probe's speed-ups were in ``--json`` only (tester A, s32)."""
    model = MetricModel(ModelConfig(data_shape=(3,), rank=2, arch_kwargs={"hidden": 8, "depth": 1}))
    assert line in _summary(save_model(model, tmp_path / "m.lmm", extra=extra), capsys)


@pytest.mark.parametrize("flags, named", [(["--num-points", "7"], "--num-points acts"),
                                          (["--num-points", "500"], "--num-points acts"),
                                          (["--layout", "NHWC"], "--layout acts"),
                                          (["--num-points", "9", "--layout", "NCHW"], "--num-points and --layout act"),
                                          (["--num-points", "-5"], "--num-points must be >= 1, got -5"),
                                          (["--num-points", "0", "--data", "circle"], "--num-points must be >= 1")])
def test_options_of_the_data_checks_without_data_or_out_of_range_are_refused(model_path, capsys, flags, named):
    """``info MODEL --num-points 7`` (or ``-5``, or ``--layout NHWC``) without ``--data`` exited 0 and printed the
    plain summary: options that act on ``--data`` only are refused without it, and a count below 1 always, in one
    line naming the flag; without them (``--layout auto``, the default, included) the summary prints."""
    assert main(["info", str(model_path), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"learned-manifold info: error: {named}") and len(err.splitlines()) == 1
    assert main(["info", str(model_path), "--layout", "auto"]) == 0
    assert "m.lmm" in capsys.readouterr().out
