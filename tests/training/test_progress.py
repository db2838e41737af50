"""Progress on stderr (`training/progress.py`): no carriage-return redraws where stderr is not a terminal."""

from __future__ import annotations

import re

import torch

from learned_manifold_training.data import Circle
from learned_manifold_training.progress import Progress
from learned_manifold_training.trainer import TrainConfig, train
from learned_manifold_training.vae_trainer import VAETrainConfig, train_vae


def test_progress_into_a_log_is_plain_lines_at_every_tenth(capsys):
    """With stderr in a file a 300-step run left 52 ``\\r``-separated bar states there (issue K5)."""
    data = Circle(2).sample(300, generator=torch.Generator().manual_seed(0))
    train(data, TrainConfig(steps=20, batch_size=32, rank=2, hidden=8, depth=1, emb_dim=8, val_points=30,
                            precision="fp32"), device="cpu")
    train_vae(data, VAETrainConfig(steps=20, std_steps=10, batch_size=32, hidden=8, depth=1, n_centres=4),
              device="cpu")
    err = capsys.readouterr().err  # (capsys's stderr is no terminal)
    assert "\r" not in err and "\x1b" not in err
    lines = [line for line in err.splitlines() if re.match(r"train(-vae)?: step", line)]
    assert [line.split(" (")[0] for line in lines] == [f"train: step {k}/20" for k in range(2, 21, 2)] + [
        f"train-vae: step {k}/30" for k in range(3, 31, 3)]
    assert lines[9].startswith("train: step 20/20 (100%), loss ") and "samples_s" in lines[9]


def test_no_progress_prints_nothing(capsys):
    data = Circle(2).sample(300, generator=torch.Generator().manual_seed(0))
    train(data, TrainConfig(steps=20, batch_size=32, rank=2, hidden=8, depth=1, emb_dim=8, val_points=30,
                            precision="fp32"), device="cpu", progress=False)
    assert "step" not in capsys.readouterr().err


def test_a_plain_line_names_the_step_its_figures_were_measured_at(capsys):
    """The trainers measure the loss every 50 steps and the lines come every tenth: "step 90/300" printed the
    figures of step 50 as its own (verifier's finding)."""
    bar = Progress(300, 0, True, "train")
    for step in range(1, 301):
        if step % 50 == 0:
            bar.set_postfix(loss=f"{1 / step:.4g}")
        bar.update(1)
    bar.close()
    lines = {line.split(":")[1].split()[1]: line for line in capsys.readouterr().err.splitlines()}
    assert lines["90/300"].endswith("loss 0.02 (at step 50)")
    assert lines["150/300"].endswith("loss 0.006667")  # measured at that step
    assert lines["300/300"].endswith("loss 0.003333")
