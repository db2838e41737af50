"""`learned-manifold train` (`learned_manifold_training.cli`): what it writes, the data it reads, and the one-line
errors that end a run that cannot go on."""

import json
import os
import shlex
import subprocess
import sys

import numpy as np
import pytest
import torch

from learned_manifold import LearnedDataManifold, load_model
from learned_manifold.model_file import read_metadata
from learned_manifold_training.cli import main
from learned_manifold_training.outputs import state_path

SMALL = ["--num-points", "600", "--steps", "30", "--batch-size", "64", "--hidden", "16",
        "--depth", "1", "--no-progress",
         "--device", "cpu"]


@pytest.mark.filterwarnings("ignore:.* by the checks at the end:learned_manifold.ModelFileWarning")  # a tiny run
def test_train_writes_a_model_the_manifold_loads(tmp_path, capsys):
    out = tmp_path / "circle.lmm"
    assert main(["train", "circle", "--out", str(out), "--rank", "2", *SMALL]) == 0
    printed = capsys.readouterr()
    assert "wrote" in printed.out and "read 600 points of shape (2,) from circle" in printed.out
    model = load_model(out)
    assert model.config.rank == 2 and model.config.data_shape == (2,)
    # 30 steps of a 16-wide network have not learned the circle: the trainer's own check says so, stores it in
    # the model file and warns on stderr
    assert read_metadata(out)["extra"]["validation"]["self_consistency"]["trusted"] is False
    assert "warning: the model does not agree with itself" in printed.err
    M = LearnedDataManifold(str(out))
    assert M.factor(torch.randn(3, 2)).shape == (3, 2, 2)
    assert main(["info", "--json", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["config"]["rank"] == 2 and "validation" in info["extra"]


@pytest.mark.filterwarnings("ignore:.* by the checks at the end:learned_manifold.ModelFileWarning")  # a tiny run
def test_train_from_a_user_file_and_resume(tmp_path):
    data = np.random.default_rng(0).normal(size=(600, 4)).astype(np.float32)
    np.save(tmp_path / "data.npy", data)
    out = tmp_path / "m.lmm"
    args = ["train", str(tmp_path / "data.npy"), "--out", str(out), *SMALL, "--checkpoint-every", "10"]
    assert main(args) == 0
    assert (tmp_path / "m.lmm.train-state.pt").exists()
    before = out.read_bytes()
    assert main(args + ["--resume"]) == 0  # already finished: nothing to do (before: the end-of-run bandwidth
    assert out.read_bytes() == before      # choice and factor repair ran again and rewrote a changed model)


def test_an_existing_output_names_the_flags_only(tmp_path, capsys):
    (tmp_path / "m.lmm").write_bytes(b"keep")
    assert main(["train", "circle", "--out", str(tmp_path / "m.lmm"), *SMALL]) == 2
    err = capsys.readouterr().err
    assert "continue its training with --resume or replace it with --overwrite" in err and "=True" not in err
    assert (tmp_path / "m.lmm").read_bytes() == b"keep"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: np.save(p / "bad.npy", np.full((700, 3), np.nan, dtype=np.float32)), "NaN"),
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


def test_too_few_points_name_the_file(tmp_path, capsys):
    np.save(tmp_path / "five.npy", np.ones((5, 3), dtype=np.float32))
    assert main(["train", str(tmp_path / "five.npy"), "--out", str(tmp_path / "m.lmm"), "--no-progress",
                 "--device", "cpu"]) == 2
    assert "five.npy': data must have at least 10 points, got shape (5, 3)" in capsys.readouterr().err


def test_unknown_dataset_lists_the_valid_names(tmp_path, capsys):
    assert main(["train", "klein_bottle", "--out", str(tmp_path / "m.lmm"), *SMALL]) == 2
    assert "sphere" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:.* by the checks at the end:learned_manifold.ModelFileWarning")  # a tiny run
def test_gaussian_preconditioning_from_the_command_line(tmp_path):
    """``--input-scaling gaussian --grad-clip 0`` reach the model file: the Gaussian model of the 2-D circle data
    (its rank capped at D = 2) is stored and loads back. The circle fills R², where ``auto`` does not precondition:
    the forced option is warned of (`input_choices.choose_input_scaling`)."""
    out = tmp_path / "g.lmm"
    with pytest.warns(UserWarning, match=r"input_scaling 'gaussian' \(--input-scaling gaussian\) is forced on data "
                                         r"whose linear span has 2 of their 2 dimensions"):
        assert main(["train", "circle", "--out", str(out), "--rank", "2", *SMALL, "--input-scaling", "gaussian",
                     "--grad-clip", "0"]) == 0
    model = load_model(out)
    assert model.config.input_scaling == "gaussian" and model.config.gaussian_rank == 2
    assert model.pc_var.sum().item() == pytest.approx(1.0, rel=0.05)  # standardised data: E‖z‖² = 1
    state = torch.load(state_path(out), weights_only=True)  # the run's settings, kept for --resume
    assert json.loads(state["config"])["grad_clip"] == 0.0


def test_a_cuda_device_that_is_not_there_is_one_line(tmp_path, capsys):
    """``--device cuda`` without CUDA (or a GPU index beyond those present): one line saying so, exit 2."""
    device = "cuda:999" if torch.cuda.is_available() else "cuda"
    assert main(["train", "circle", "--out", str(tmp_path / "m.lmm"), *SMALL[:-2], "--device", device]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    if torch.cuda.is_available():
        assert "--device cuda:999: only" in err
    elif torch.version.cuda is None:
        assert "--device cuda: this torch build has no CUDA" in err
    else:
        assert "--device cuda: no CUDA GPU is visible" in err


def test_a_diverging_run_is_one_line_with_a_hint(tmp_path, capsys):
    """``--lr 1e30``: training stops at once with "training diverged at step k ... try a smaller --lr",
    exit 2, and no model is written."""
    assert main(["train", "circle", "--out", str(tmp_path / "m.lmm"), *SMALL, "--lr", "1e30"]) == 2
    err = capsys.readouterr().err
    assert "training diverged at step" in err and "try a smaller --lr" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "m.lmm").exists()


def test_a_run_whose_factor_exploded_exits_2_and_keeps_its_file(tmp_path, capsys, monkeypatch):
    """A run at --lr 0.5 on a circle ended with finite factor eigenvalues of 2.6e12 (a CDC's are about 1): it
    warned "training diverged" yet exited 0, so a script went on with a meaningless model. Now exit status 2, as a
    run stopped for divergence; the file stays for `info`, which says the same."""
    from learned_manifold_training import trainer

    real = trainer.train

    def exploding(*args, **kwargs):
        result = real(*args, **kwargs)
        result.validation["self_consistency"]["factor_top_eigenvalues"] = [2.6e12, 1.0]
        return result

    monkeypatch.setattr(trainer, "train", exploding)
    out = tmp_path / "m.lmm"
    assert main(["train", "circle", "--out", str(out), "--rank", "2", *SMALL]) == 2
    assert "warning: training diverged: the factor's eigenvalues reach 2.6e+12" in capsys.readouterr().err
    assert out.is_file()


def test_the_info_hint_is_a_command_that_runs_as_printed(tmp_path, capsys):
    """A failed check's hint read ``learned-manifold info my model.lmm --data ...``: run as printed, the space split
    the path (``unrecognized arguments: model.lmm``). It is quoted as a shell command now."""
    out = tmp_path / "my model.lmm"
    assert main(["train", "circle", "--out", str(out), "--rank", "2", *SMALL]) == 0
    err = capsys.readouterr().err
    hint = f"`learned-manifold info '{out}' --data circle` shows the spectra and why"
    assert hint in err
    assert main(shlex.split(hint.split("`")[1])[1:]) == 0


@pytest.mark.filterwarnings("ignore:.* by the checks at the end:learned_manifold.ModelFileWarning")  # a tiny run
def test_a_users_own_training_package_does_not_shadow_the_installed_one(tmp_path):
    """In a folder holding a user's ``training/`` package (which fails on import), ``python -m
    learned_manifold_training.cli`` (the current folder first on sys.path) still runs, help and training."""
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "__init__.py").write_text("raise ImportError('the user package was imported')\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "learned_manifold_training.cli"]
    script = (f"{shlex.join(cmd)} --help && {shlex.join(cmd)} train circle --out m.lmm --num-points 100 "
              f"--steps 3 --batch-size 16 --hidden 8 --depth 1 --no-progress --device cpu")
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage: learned-manifold" in proc.stdout and "wrote m.lmm" in proc.stdout
    load_model(tmp_path / "m.lmm")


@pytest.mark.parametrize("error", [RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate "
                                                "16000000000 bytes"), MemoryError()])
def test_an_allocation_failure_is_one_line_naming_the_batch_size(tmp_path, capsys, monkeypatch, error):
    """``--batch-size 2000000000`` ended in an allocation traceback (or an out-of-memory kill)."""
    import learned_manifold_training.trainer as trainer

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(trainer, "train", fail)
    assert main(["train", "circle", "--out", str(tmp_path / "m.lmm"), "--num-points", "50", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "error: out of memory" in err and "lower --batch-size" in err and "Traceback" not in err


def test_train_says_what_it_read_and_refuses_abbreviated_options(tmp_path, capsys, monkeypatch):
    """``train`` said nothing of how many images it read (a class folder's ``day2/`` was left out silently: the
    reader warns now, and train prints the count). argparse took ``--overw`` for ``--overwrite``, and the
    ``--resume`` command printed after Ctrl-C kept it and failed ("--resume: not allowed with --overwrite"): no
    option may be abbreviated, and the printed command runs."""
    from PIL import Image

    from learned_manifold_training import trainer
    from learned_manifold_training.runtime import TrainingInterrupted

    pictures = np.random.default_rng(0).integers(0, 256, (14, 4, 4)).astype(np.uint8)
    for i, path in enumerate([f"{'ab'[i % 2]}/{i}.png" for i in range(12)] + ["a/day2/12.png", "a/day2/13.png"]):
        (tmp_path / "imgs" / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pictures[i]).save(tmp_path / "imgs" / path)

    def interrupted(*args, **kwargs):
        raise TrainingInterrupted(3, 30, tmp_path / "m.lmm")

    monkeypatch.setattr(trainer, "train", interrupted)
    argv = ["train", str(tmp_path / "imgs"), "--out", str(tmp_path / "m.lmm"), "--steps", "30", "--overwrite"]
    with pytest.warns(UserWarning, match=r"2 .* file\(s\) in 1 sub-folder\(s\) are not read: '.*day2' \(2\)"):
        assert main(argv) == 130
    printed = capsys.readouterr()
    assert f"read 12 images of shape (1, 4, 4) from {tmp_path / 'imgs'}" in printed.out
    resume = printed.err.split("continue with: ")[1].strip()
    assert shlex.split(resume)[1:] == [*argv[:-1], "--resume"]
    for command, short in [(["train", "circle", "--out", str(tmp_path / "m.lmm")], ["--overw"]),
                           (["show", str(tmp_path / "m.lmm"), "circle", "--out", "pics"], ["--num", "8"]),
                           (["train-vae", "circle", "--out", "v", "--latent-dim", "1"], ["--ste", "5"])]:
        with pytest.raises(SystemExit) as stop:
            main([*command, *short])
        assert stop.value.code == 2 and f"unrecognized arguments: {' '.join(short)}" in capsys.readouterr().err


def test_a_num_points_beyond_the_data_is_named_as_the_option(tmp_path, capsys):
    """``train digits --num-points 5000`` said "asked for n=5000 (use n <= 0 for all)": the Python name, and a
    hint the parser refuses; train now says it as train-vae and demo do."""
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((50, 3)).astype(np.float32))
    for data, message in [("digits", "asked for --num-points=5000 (leave --num-points out for all)"),
                          (str(tmp_path / "x.npy"), "asked for --num-points=5000 rows but the data has only 50")]:
        assert main(["train", data, "--num-points", "5000", "--out", str(tmp_path / "m.lmm")]) == 2
        err = capsys.readouterr().err
        assert message in err and "n <= 0" not in err and "n=" not in err.replace("--num-points=", "")


def test_an_interrupted_overwrite_says_the_earlier_model_is_gone_and_the_help_says_when(tmp_path, monkeypatch,
                                                                                         capsys):
    """``train --overwrite`` replaces the earlier complete model at its first checkpoint or interruption, while its
    help said only "replace an existing --out" and the interruption named the partial model alone."""
    from learned_manifold_training import trainer
    from learned_manifold_training.runtime import TrainingInterrupted

    out = tmp_path / "m.lmm"
    out.write_bytes(b"the earlier complete model")

    def interrupted(data, config, *, out, **kwargs):
        raise TrainingInterrupted(7, config.steps, out)

    monkeypatch.setattr(trainer, "train", interrupted)
    args = ["train", "circle", "--num-points", "100", "--steps", "30", "--out", str(out), "--device", "cpu"]
    assert main([*args, "--overwrite"]) == 130
    err = capsys.readouterr().err
    assert f"interrupted at step 7 of 30; the partial model is in {out} (incomplete; --overwrite has replaced the " \
           "earlier model); continue with: " in err
    out.unlink()
    assert main([*args, "--overwrite"]) == 130  # nothing was replaced: the usual words
    assert f"the partial model is in {out} (incomplete); continue with: " in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert ("The earlier model is replaced at the new run's first checkpoint (--checkpoint-every) or interruption, "
            "not when it finishes") in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("system", ["posix", "nt"])
def test_printed_commands_are_quoted_for_this_platforms_shell(monkeypatch, system):
    """The ``--resume`` command (and the ``info`` hint, `shell_command`) were POSIX-quoted everywhere: cmd.exe
    reads ``'C:\\...'`` with its single quotes as part of the name. On Windows they are quoted as cmd.exe reads
    them (``subprocess.list2cmdline``), elsewhere as a POSIX shell does; ``--overwrite`` is dropped either way."""
    from learned_manifold.shell_command import shell_command
    from learned_manifold_training.cli import _resume_command

    data, out = r"C:\Users\ana b\cells.npy", r"C:\models\cells.lmm"
    words = ["train", data, "--out", out, "--steps", "100", "--overwrite"]
    monkeypatch.setattr(os, "name", system)
    printed = _resume_command(words)
    hint = shell_command(["learned-manifold", "info", out, "--data", data])
    if system == "nt":
        assert printed == r'learned-manifold train "C:\Users\ana b\cells.npy" --out C:\models\cells.lmm --steps 100 ' \
                          "--resume"
        assert hint == r'learned-manifold info C:\models\cells.lmm --data "C:\Users\ana b\cells.npy"'
    else:
        assert shlex.split(printed) == ["learned-manifold", *words[:-1], "--resume"]
        assert shlex.split(hint) == ["learned-manifold", "info", out, "--data", data]
        assert printed.startswith("learned-manifold train 'C:\\Users\\ana b\\cells.npy' --out")
