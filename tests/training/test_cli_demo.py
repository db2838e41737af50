"""`learned-manifold demo` through the command line: the report and pictures it writes, and the options it refuses."""

import json
import math

import pytest
import torch

from learned_manifold import load_model
from learned_manifold.model_file import read_metadata
from learned_manifold_training.cli import main
from learned_manifold_training.validation import distrust


@pytest.mark.filterwarnings("ignore:.* by the checks at the end:learned_manifold.ModelFileWarning")  # quick run
def test_demo_quick_writes_report_and_plots(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--device", "cpu"]) == 0
    report = json.loads((out / "report.json").read_text())
    for name in report["files"]:
        assert (out / name).stat().st_size > 0
    assert set(report["interpolation"]) == {"gradient flow (delta=0.01)", "geodesic (delta=0.01)", "LERP"}
    assert report["validation"]["tangent_error"] >= 0
    lm = load_model(out / "model.lmm")
    assert lm.has_denoiser
    from learned_manifold_training.demo import check_demo_folder

    assert read_metadata(out / "model.lmm")["extra"]["data"]["written_by"] == "learned-manifold demo"
    check_demo_folder(out)  # a second demo run may replace its own model


def test_image_demo_quick_reports_the_checks_verdicts(tmp_path, capsys):
    """``demo --dataset digits``: the pictures, ``report.json`` with the paths' scores, and the trainer's two
    checks carried into the report (and printed as warnings) rather than left in the model file alone."""
    out = tmp_path / "digits"
    assert main(["demo", "--dataset", "digits", "--quick", "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    for name in ("eigenvectors.png", "eigenvalues.png", "dimension.png", "interpolations_0.png", "show.json"):
        assert (out / name).stat().st_size > 0, name
    stored = read_metadata(out / "model.lmm")["extra"]["validation"]
    assert report["warnings"] == distrust(stored) and report["trusted"] is (not report["warnings"])
    assert printed.count("warning: ") == len(report["warnings"])
    for pair in report["show"]["interpolations"]:
        assert {"LERP", "gradient flow", "geodesic"} <= set(pair) and pair["LERP"]["mean_nearest"] > 0
    # --quick: 1,500 of the 1,797 digits, 200 of them held out; the training images only
    assert report["images"] == 1500 and report["show"]["points"] == 256 and report["show"]["data_points"] == 1300


@pytest.mark.parametrize("extra, message", [
    (["--dataset", "nope"], "unknown data set 'nope'"), (["--steps", "0"], "--steps must be"),
    (["--seed", "-1"], "--seed must be"), (["--dataset", "digits", "--num-points", "100"], "--num-points=100"),
    (["--dataset", "digits", "--num-points", "5000"], "leave --num-points out for all"),
])
def test_demo_refuses_bad_options_by_their_flags_before_writing(tmp_path, capsys, extra, message):
    """The demo made its folder before checking, named Python parameters, and ignored --num-points for images."""
    assert main(["demo", "--out", str(tmp_path / "demo"), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()


def test_the_demo_replaces_its_own_model_only(tmp_path, capsys):
    """``demo --out DIR`` replaced any ``model.lmm`` in DIR (a user's 10,000-step model by a 60-step demo's)."""
    from learned_manifold_training.demo import DEMO_TAG, check_demo_folder

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "model.lmm").write_bytes(b"a user's model")
    assert main(["demo", "--out", str(folder), "--quick"]) == 2
    assert "holds a model.lmm the demo did not write" in capsys.readouterr().err
    assert (folder / "model.lmm").read_bytes() == b"a user's model"
    check_demo_folder(tmp_path / "new")  # an absent or empty folder is fine
    assert DEMO_TAG["written_by"] == "learned-manifold demo"


def test_the_demo_compares_tangent_errors_with_the_mean_error_of_random_planes():
    """The demo's "random subspaces" figure is the mean `projector_error` of independent random planes (the
    root mean square, √(2d(1 − d/D)), had been quoted): lines in R² √2·2/π ≈ 0.900, planes in R³ √2·π/4 ≈ 1.111."""
    from learned_manifold_training.demo import _random_plane_error

    assert _random_plane_error(1, 2) == pytest.approx(2 * math.sqrt(2) / math.pi, abs=0.01)
    assert _random_plane_error(2, 3) == pytest.approx(math.sqrt(2) * math.pi / 4, abs=0.01)


class _Stop(Exception):
    pass


def test_the_demos_steps_default_is_one_value_for_the_command_and_both_functions():
    """``demo --dataset digits`` trained 2,500 steps and ``run_image_demo(dataset="digits")`` 3,000 (tester F, s32):
    one default, `demo.DEMO_STEPS` (the digits demo's recorded numbers used 2,500)."""
    import inspect

    from learned_manifold_training.cli import build_parser
    from learned_manifold_training.demo import DEMO_STEPS, run_demo
    from learned_manifold_training.image_demo import run_image_demo

    assert DEMO_STEPS == 2500
    assert build_parser().parse_args(["demo"]).steps == DEMO_STEPS
    assert inspect.signature(run_demo).parameters["steps"].default == DEMO_STEPS
    assert inspect.signature(run_image_demo).parameters["steps"].default == DEMO_STEPS


@pytest.mark.parametrize("dataset, module", [("circle", "demo"), ("digits", "image_demo")])
def test_demo_precision_reaches_the_training_config(tmp_path, monkeypatch, capsys, dataset, module):
    """``demo --precision fp32`` (a rerun of one seed bit for bit, without the timing probe) reaches the
    `TrainConfig` of both demos; without it the demo keeps ``auto``. Training is stopped at its start."""
    import importlib

    target = importlib.import_module(f"learned_manifold_training.{module}")
    seen = []

    def spy(data, config, **kwargs):
        seen.append(config.precision)
        raise _Stop

    monkeypatch.setattr(target, "train", spy)
    for flags, want in ((["--precision", "fp32"], "fp32"), ([], "auto")):
        with pytest.raises(_Stop):
            main(["demo", "--dataset", dataset, "--quick", "--num-points", "400", "--device", "cpu",
                  "--out", str(tmp_path / f"d{len(seen)}"), *flags])
        assert seen[-1] == want
    assert "--precision fp32 or bf16" in " ".join(_demo_help(capsys).split())


def _seeded_runs(monkeypatch, module, name: str, command: list[str], out) -> list[tuple]:
    """What ``module.name`` (stubbed, stopping the run) is given by ``command`` with ``--seed 5``, then without."""
    seen = []

    def spy(*args, **kwargs):
        seen.append(args)
        raise _Stop

    monkeypatch.setattr(module, name, spy)
    for flags in (["--seed", "5"], []):
        with pytest.raises(_Stop):
            main([*command, "--device", "cpu", "--out", str(out / f"d{len(seen)}"), *flags])
    return seen


def test_demo_seed_reaches_the_training_config_and_the_data(tmp_path, monkeypatch):
    """``demo --seed`` is the manifold demo's `TrainConfig` seed, and another seed samples other points."""
    from learned_manifold_training import demo

    (data, config), (default_data, default_config) = _seeded_runs(
        monkeypatch, demo, "train", ["demo", "--dataset", "circle", "--num-points", "400"], tmp_path)
    assert (config.seed, default_config.seed) == (5, 0)
    assert data.shape == default_data.shape and not torch.equal(data, default_data)


@pytest.mark.parametrize("dataset, count", [("digits", ["--num-points", "400"]), ("digits", []),
                                            ("blobs", ["--quick"])])
def test_image_demo_seed_reaches_the_subset_the_split_and_the_training_config(tmp_path, monkeypatch, dataset,
                                                                               count):
    """``demo --dataset digits --seed 5`` could run with seed 0 (the same subset, split and weights for every
    ``--seed``) and no test saw it (tester A, s36): the seed draws the subset (``--num-points``, or ``--quick``'s
    cap), the held-out split and the `TrainConfig` seed. All 1,797 digits: the same images, another split."""
    from learned_manifold_training import image_demo

    runs = _seeded_runs(monkeypatch, image_demo, "_train_and_draw", ["demo", "--dataset", dataset, *count], tmp_path)
    (images, fit, config), (default_images, default_fit, default_config) = [(r[2].x, r[4], r[6]) for r in runs]
    assert (config.seed, default_config.seed) == (5, 0)
    assert images.shape == default_images.shape and fit.shape == default_fit.shape
    assert torch.equal(images, default_images) == (count == [])  # a seeded subset unless all digits are read
    assert not torch.equal(fit, default_fit)


def _demo_help(capsys) -> str:
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    return capsys.readouterr().out


@pytest.mark.parametrize("dataset, images", [("digits", 1797), ("blobs", 4000)])
def test_quick_image_demos_train_on_at_most_the_points_the_help_names(tmp_path, monkeypatch, capsys, dataset,
                                                                      images):
    """``demo --help`` said ``--quick`` means at most 1500 points; the image demos capped only the steps (blobs
    trained on 4,000 images, digits on all 1,797: tester D s35 2). Both caps are said; training is stubbed out."""
    from learned_manifold_training import image_demo
    from learned_manifold_training.demo import QUICK_LIMITS

    seen = {}

    def record(stage, out_dir, images, manifold, fit, held, config, dev, **kwargs):
        seen.update(images=images.x.shape[0], fit=fit.numel(), steps=config.steps)
        raise _Stop

    monkeypatch.setattr(image_demo, "_train_and_draw", record)
    with pytest.raises(_Stop):
        main(["demo", "--dataset", dataset, "--quick", "--device", "cpu", "--out", str(tmp_path / "d")])
    assert seen == {"images": QUICK_LIMITS[0], "fit": QUICK_LIMITS[0] - 200, "steps": image_demo.QUICK_STEPS}
    printed = capsys.readouterr().out
    assert (f"--quick caps the run at 1500 images and 300 steps: 1500 images (not {images}) and 300 steps "
            f"(not 2500)") in printed
    assert f"at most {QUICK_LIMITS[0]} points" in " ".join(_demo_help(capsys).split())
    with pytest.raises(_Stop):  # nothing to cut: nothing said, the images asked for
        main(["demo", "--dataset", dataset, "--quick", "--num-points", "600", "--steps", "40", "--device", "cpu",
              "--out", str(tmp_path / "e")])
    assert seen == {"images": 600, "fit": 400, "steps": 40} and "--quick" not in capsys.readouterr().out
