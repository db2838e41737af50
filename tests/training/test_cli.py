"""The ``learned-manifold`` command: train, info, resume, errors, and the demo."""

import json

import numpy as np
import pytest
import torch

from learned_manifold import LearnedDataManifold, load_model
from learned_manifold_training.cli import main

SMALL = ["--num-points", "600", "--steps", "30", "--batch-size", "64", "--hidden", "16",
        "--depth", "1", "--no-progress",
         "--device", "cpu"]


def test_train_writes_a_model_the_manifold_loads(tmp_path, capsys):
    out = tmp_path / "circle.lmm"
    assert main(["train", "circle", "--out", str(out), "--rank", "2", *SMALL]) == 0
    assert "wrote" in capsys.readouterr().out
    model = load_model(out)
    assert model.config.rank == 2 and model.config.data_shape == (2,)
    M = LearnedDataManifold(str(out))
    assert M.factor(torch.randn(3, 2)).shape == (3, 2, 2)
    assert main(["info", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["config"]["rank"] == 2 and "validation" in info["extra"]


def test_train_from_a_user_file_and_resume(tmp_path):
    data = np.random.default_rng(0).normal(size=(600, 4)).astype(np.float32)
    np.save(tmp_path / "data.npy", data)
    out = tmp_path / "m.lmm"
    args = ["train", str(tmp_path / "data.npy"), "--out", str(out), *SMALL, "--checkpoint-every", "10"]
    assert main(args) == 0
    assert (tmp_path / "m.lmm.train-state.pt").exists()
    assert main(args + ["--resume"]) == 0  # already finished: resuming is a no-op that rewrites the same model


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: np.save(p / "bad.npy", np.full((20, 3), np.nan, dtype=np.float32)), "NaN"),
        (lambda p: np.save(p / "bad.npy", np.zeros(20, dtype=np.float32)), "at least 2 axes"),
        (lambda p: (p / "bad.npy").write_bytes(b"not numpy"), "bad.npy"),
    ],
)
def test_bad_data_gets_one_clear_line_and_exit_code_2(tmp_path, capsys, make, message):
    make(tmp_path)
    code = main(["train", str(tmp_path / "bad.npy"), "--out", str(tmp_path / "m.lmm"), *SMALL])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "m.lmm").exists()


def test_unknown_dataset_lists_the_valid_names(tmp_path, capsys):
    assert main(["train", "klein_bottle", "--out", str(tmp_path / "m.lmm"), *SMALL]) == 2
    assert "sphere" in capsys.readouterr().err


def test_info_on_a_foreign_file(tmp_path, capsys):
    (tmp_path / "x.lmm").write_bytes(b"\x80\x04junk" * 10)
    assert main(["info", str(tmp_path / "x.lmm")]) == 2
    assert "x.lmm" in capsys.readouterr().err


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
