"""`learned-manifold info MODEL`: the summary it prints, the files it refuses, the checks it runs with `--data`,
and a reader that goes away."""

import json
import sys

import pytest

from learned_manifold import load_model
from learned_manifold_training.cli import main


def test_info_on_a_foreign_file(tmp_path, capsys):
    (tmp_path / "x.lmm").write_bytes(b"\x80\x04junk" * 10)
    assert main(["info", str(tmp_path / "x.lmm")]) == 2
    assert "x.lmm" in capsys.readouterr().err


def test_info_prints_a_readable_summary(sphere_model_path, capsys):
    """``info`` says complete, the number of points, steps, seconds, library version, precision, data shape,
    rank and default σ, all taken from the file."""
    import learned_manifold
    from learned_manifold.model_file import read_metadata

    assert main(["info", str(sphere_model_path)]) == 0
    text = capsys.readouterr().out
    meta = read_metadata(sphere_model_path)
    c, e = meta["config"], meta["extra"]
    assert "complete (step 1000 of 1000)" in text and "INCOMPLETE" not in text
    assert "4,000 training points (3,600 fitted, 400 held out)" in text
    assert f"{e['training_seconds']:.1f} s" in text and f"precision {e['precision']}" in text
    assert f"learned-manifold {learned_manifold.__version__}" in text
    assert "shape (3,) (D = 3)" in text and "rank 3," in text and f"default sigma {c['default_sigma']:.4g}" in text
    assert "input:       none (asked for)" in text  # the fixture asks for its input scaling (tests/conftest.py)
    assert "norm input:  off (asked for)" in text  # ... and for no norm feature
    assert "landmarks:   3,600 training points stored" in text  # all its training points (fewer than 4,096)


def test_info_prints_the_stored_units(sphere_model_path, capsys):
    """``info`` names the standardisation the model applies (SPEC §1): its scale and the range of its mean, the
    tensors stored in the file."""
    from learned_manifold import load_model

    model = load_model(sphere_model_path)
    assert main(["info", str(sphere_model_path)]) == 0
    text = capsys.readouterr().out
    mean = model.mean.double()
    assert (f"x = mean + {float(model.scale):.4g} z (mean point values in [{float(mean.min()):.4g}, "
            f"{float(mean.max()):.4g}], average {float(mean.mean()):.4g})") in text
    assert main(["info", str(sphere_model_path), "--json"]) == 0
    units = json.loads(capsys.readouterr().out)["standardisation"]
    assert units["scale"] == float(model.scale) and units["mean_max"] == float(mean.max())


def test_info_refuses_a_file_load_model_refuses(tmp_path, sphere_model_path, capsys):
    """A truncated model file: ``info`` exits 2 with one line naming the file (as ``load_model`` refuses it)."""
    bad = tmp_path / "cut.lmm"
    bad.write_bytes(sphere_model_path.read_bytes()[:-100])
    with pytest.raises(ValueError):
        load_model(bad)
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "cut.lmm" in err and len(err.splitlines()) == 1
    assert main(["info", str(tmp_path / "missing.lmm")]) == 2


def test_info_with_data_runs_the_self_consistency_check(torus_model_path, capsys):
    """`info MODEL --data DATA` compares the factor network with the denoiser on DATA and says it is trusted
    for a good model (the learned torus); the trainer already stored the same check on its held-out split."""
    assert main(["info", str(torus_model_path), "--data", "torus", "--num-points", "200"]) == 0
    out = capsys.readouterr().out
    assert "consistency: trusted" in out
    assert "agrees with itself" in out
    assert "neighbour check: the model agrees with the data's neighbours" in out
    assert main(["info", str(torus_model_path), "--data", "torus", "--num-points", "100", "--json"]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["self_consistency"]["trusted"] is True
    assert meta["neighbour_check"]["trusted"] is True and meta["neighbour_check"]["informative"] is True
    assert meta["extra"]["validation"]["self_consistency"]["tangent_disagreement"] < 0.1
    assert meta["extra"]["validation"]["neighbour_check"]["trusted"] is True


def test_info_with_data_flags_an_untrained_uncentred_model_by_its_neighbours(tmp_path, capsys):
    """An uncentred model (no denoiser, so no self-consistency check) trained for 20 steps: the trainer's stored
    neighbour check and `info --data` both say it is not to be trusted."""
    out = tmp_path / "m.lmm"
    assert main(["train", "torus", "--out", str(out), "--num-points", "3000", "--steps", "20", "--batch-size", "64",
                 "--hidden", "16", "--depth", "1", "--no-progress", "--device", "cpu", "--uncentred"]) == 0
    capsys.readouterr()
    assert main(["info", str(out), "--data", "torus", "--num-points", "150"]) == 0
    text = capsys.readouterr().out
    assert "neighbour check WARNING" in text and "NOT TRUSTED" in text


def test_info_with_mismatched_data_is_one_clear_error(torus_model_path, capsys):
    assert main(["info", str(torus_model_path), "--data", "sphere8"]) == 2
    err = capsys.readouterr().err
    assert "--data has points of shape (64,)" in err and "Traceback" not in err


def test_info_rereads_a_stored_verdict_with_todays_outside_limit(torus_model_path, tmp_path, capsys):
    """A file whose trainer called it trusted with an outside eigenvalue of 0.27 (the limit was 0.5 before the
    tenth session; an S¹⁶ model at tangent error 0.67 measured that) is reported NOT TRUSTED today."""
    from learned_manifold.model_file import read_metadata, save_model

    extra = read_metadata(torus_model_path)["extra"]
    check = extra["validation"]["self_consistency"]
    assert check["trusted"] is True
    old = tmp_path / "old.lmm"
    save_model(load_model(torus_model_path), old, extra={
        **extra, "validation": {**extra["validation"], "self_consistency": {**check, "outside_eigenvalue": 0.27}}})
    assert main(["info", str(old)]) == 0
    assert "consistency: NOT TRUSTED" in capsys.readouterr().out
    assert main(["info", str(torus_model_path)]) == 0
    assert "consistency: trusted" in capsys.readouterr().out


def test_info_says_whether_the_factor_was_repaired(torus_model_path, tmp_path, capsys):
    """A model that passed its check says nothing of a repair; one whose factor was refitted says so, with the
    disagreement before and after and whether the new factor was kept (`TrainConfig.factor_refit`)."""
    from learned_manifold.model_file import read_metadata, save_model

    extra = read_metadata(torus_model_path)["extra"]
    assert extra["validation"]["factor_refit"] == {"ran": False, "why": "the check passed"}
    assert main(["info", str(torus_model_path)]) == 0
    assert "repair:" not in capsys.readouterr().out
    for kept, words in ((True, "kept)"), (False, "not kept: the old factor stands")):
        refit = {"ran": True, "steps": 750, "disagreement_before": 0.41, "disagreement_after": 0.07, "kept": kept}
        path = tmp_path / f"repaired-{kept}.lmm"
        save_model(load_model(torus_model_path), path,
                   extra={**extra, "validation": {**extra["validation"], "factor_refit": refit}})
        assert main(["info", str(path)]) == 0
        out = capsys.readouterr().out
        assert "repair:      the factor was refitted to the denoiser for 750 steps" in out
        assert "0.41 -> 0.07" in out and words in out
    # the limit that failed: a disagreement of 0.14 is within its 0.2, so the line named no reason for the repair
    refit = {"ran": True, "steps": 750, "disagreement_before": 0.14, "disagreement_after": 0.12, "kept": True,
             "failed": ["a normal eigenvalue grows as sigma shrinks (growth 0.255, limit 0.1)"]}
    save_model(load_model(torus_model_path), tmp_path / "why.lmm",
               extra={**extra, "validation": {**extra["validation"], "factor_refit": refit}})
    assert main(["info", str(tmp_path / "why.lmm")]) == 0
    assert ("after failing the check (a normal eigenvalue grows as sigma shrinks (growth 0.255, limit 0.1); tangent "
            "disagreement 0.14 -> 0.12") in capsys.readouterr().out


def test_a_reader_that_goes_away_ends_the_output_quietly(sphere_model_path, monkeypatch, capsys):
    """``learned-manifold info MODEL --json | head -c 1``: writing to a closed pipe ends the command quietly with
    status 0, not with "error: [Errno 32] Broken pipe" (the pipe is simulated: a stdout whose writes fail so)."""
    import io

    class ClosedPipe(io.TextIOBase):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    assert main(["info", str(sphere_model_path), "--json"]) == 0
    capsys.readouterr()
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["info", str(sphere_model_path), "--json"]) == 0
    assert capsys.readouterr().err == ""
