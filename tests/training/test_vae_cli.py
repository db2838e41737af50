"""The VAE subcommands: ``train-vae`` then ``encode``, then the ordinary ``train`` on the latent codes; errors are
one line and exit status 2.

Until the lead wires `vae_cli` into ``learned-manifold``, the subcommands are parsed by a parser that holds only
them (`add_subcommands`) and run by `vae_cli.run`, exactly as the main command will call them.
"""

from __future__ import annotations

import shlex

import numpy as np
import pytest
import torch

from learned_manifold import LearnedDataManifold, MetricModel, ModelConfig, load_model, load_vae, save_model
from learned_manifold_training import vae_cli
from learned_manifold_training.cli import build_parser, main

SMALL = ["--steps", "60", "--std-steps", "20", "--batch-size", "64", "--hidden", "16", "--depth", "1",
         "--centres", "8", "--num-points", "300", "--no-progress", "--device", "cpu"]


def command(argv: list[str]) -> int:
    return main(argv)


@pytest.mark.filterwarnings("ignore:.* by the checks at the end:learned_manifold.ModelFileWarning")  # 30 steps
def test_train_vae_encode_then_metric_matching_on_the_codes(tmp_path, capsys):
    vae_path, codes_path = tmp_path / "circle.lvae", tmp_path / "latents.npy"
    assert command(["train-vae", "circle", "--out", str(vae_path), "--latent-dim", "2", *SMALL]) == 0
    assert "wrote" in capsys.readouterr().out
    vae = load_vae(vae_path)
    assert vae.latent_dim == 2 and vae.data_shape == (2,)
    assert command(["encode", str(vae_path), "circle", "--out", str(codes_path), "--num-points", "300"]) == 0
    codes = np.load(codes_path)
    assert codes.shape == (300, 2) and codes.dtype == np.float32
    # the same points as train-vae read (built-in data sets are seeded): the codes are the VAE's posterior means
    from learned_manifold_training.data import resolve_data

    data, _ = resolve_data("circle", n=300, seed=0)
    assert np.allclose(codes, vae.encode(data).numpy(), atol=1e-6)
    latent = tmp_path / "latent.lmm"
    assert main(["train", str(codes_path), "--out", str(latent), "--steps", "30", "--batch-size", "64",
                 "--hidden", "16", "--depth", "1", "--no-progress", "--device", "cpu"]) == 0
    assert load_model(latent).data_shape == (2,)
    assert LearnedDataManifold(str(latent)).factor(torch.from_numpy(codes[:4])).shape == (4, 2, 2)
    # an existing file is not replaced without --overwrite
    assert command(["encode", str(vae_path), "circle", "--out", str(codes_path)]) == 2
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["train-vae", "circle", "--out", "{tmp}/v.lvae", "--latent-dim", "0"], "--latent-dim must be in"),
    (["train-vae", "circle", "--out", "{tmp}/v.lvae", "--latent-dim", "2", "--centres", "0"], "--centres must be in"),
    (["train-vae", "nonsense", "--out", "{tmp}/v.lvae", "--latent-dim", "2"], "neither a built-in data set"),
    (["train-vae", "circle", "--out", "{tmp}/missing/v.lvae", "--latent-dim", "2"], "does not exist"),
    (["encode", "{tmp}/model.lmm", "circle", "--out", "{tmp}/z.npy"], "metric-matching model file, not a VAE"),
    (["encode", "{tmp}/none.lvae", "circle", "--out", "{tmp}/z.npy"], "does not exist"),
    (["encode", "{tmp}/model.lmm", "circle", "--out", "{tmp}/z.txt"], "must end in .npy"),
    (["train-vae", "circle", "--out", "{tmp}/v.lvae", "--latent-dim", "1", "--arch", "conv"],
     "--arch 'conv' needs images"),
    (["train-vae", "digits", "--out", "{tmp}/v.lvae", "--latent-dim", "2", "--depth", "0"],
     "--depth must be in [1, 8] for the conv architecture"),
    (["train-vae", "digits", "--out", "{tmp}/v.lvae", "--latent-dim", "2", "--arch", "conv", "--depth", "9"],
     "--depth must be in [1, 8] for the conv architecture"),
    (["train-vae", "digits", "--out", "{tmp}/v.lvae", "--latent-dim", "2", "--num-points", "5000"],
     "asked for --num-points=5000 (leave --num-points out for all)"),
])
def test_user_errors_are_one_line_and_exit_status_2(argv, message, tmp_path, capsys):
    tiny = ModelConfig(data_shape=(2,), rank=1, arch_kwargs={"hidden": 4, "depth": 1, "emb_dim": 4})
    save_model(MetricModel(tiny), tmp_path / "model.lmm")  # a metric-matching model, not a VAE
    assert command([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_encode_refuses_data_of_another_shape(tmp_path, capsys):
    vae_path = tmp_path / "v.lvae"
    assert command(["train-vae", "circle", "--out", str(vae_path), "--latent-dim", "1", *SMALL]) == 0
    assert command(["encode", str(vae_path), "sphere", "--out", str(tmp_path / "z.npy"), "--num-points", "20"]) == 2
    assert "DATA has points of shape (3,); the model was trained on points of shape (2,)" in capsys.readouterr().err


def test_resuming_a_finished_vae_says_so_and_keeps_the_file(tmp_path, capsys):
    """It printed "wrote v.lvae" after redoing the end phase of a run that was already finished."""
    out = tmp_path / "v.lvae"
    argv = ["train-vae", "circle", "--out", str(out), "--latent-dim", "1", "--steps", "5", "--std-steps", "5",
            "--num-points", "200", "--no-progress", "--device", "cpu"]
    assert command(argv) == 0 and "wrote" in capsys.readouterr().out
    before = out.read_bytes()
    assert command([*argv, "--resume"]) == 0
    assert "is already complete (step 10): nothing to resume" in capsys.readouterr().out
    assert out.read_bytes() == before


def test_train_resume_on_a_vae_state_says_it_is_a_vaes(tmp_path, capsys):
    """It listed twenty "differing" settings instead."""
    out = tmp_path / "v.lvae"
    assert command(["train-vae", "circle", "--out", str(out), "--latent-dim", "1", "--steps", "5", "--std-steps",
                    "5", "--checkpoint-every", "5", "--num-points", "200", "--no-progress", "--device", "cpu"]) == 0
    assert command(["train", "circle", "--out", str(out), "--resume", "--num-points", "200", "--no-progress"]) == 2
    assert "its training state is a VAE's" in capsys.readouterr().err


def test_train_vae_resume_on_a_train_state_is_refused_before_the_data_are_read(tmp_path, capsys, monkeypatch):
    """``train-vae --resume`` on a ``train`` run's state was refused only after the data were read."""
    out = tmp_path / "m.lmm"
    assert command(["train", "circle", "--out", str(out), "--steps", "4", "--checkpoint-every", "2",
                    "--num-points", "200", "--no-progress", "--device", "cpu"]) == 0

    def no_read(args):
        raise AssertionError("the data were read")

    monkeypatch.setattr(vae_cli, "_read", no_read)
    assert command(["train-vae", "circle", "--out", str(out), "--resume", "--latent-dim", "1", "--no-progress",
                    "--device", "cpu"]) == 2
    assert "its training state is a metric-matching run's" in capsys.readouterr().err


def test_the_printed_resume_command_repeats_every_option_layout_included():
    """The ``--resume`` command printed after an interrupted ``train-vae`` parses back to the run's own options
    (``--resume`` added): it dropped ``--layout``, so a 4-axis array that needs one could not be resumed."""
    argv = ["train-vae", "images.npy", "--layout", "NHWC", "--out", "v.lvae", "--latent-dim", "3", "--depth", "3",
            "--num-points", "50", "--arch", "conv", "--seed", "4", "--no-progress", "--device", "cpu"]
    args = build_parser().parse_args(argv)
    command = vae_cli._resume_command(args)
    assert command.startswith("learned-manifold train-vae ")
    again = build_parser().parse_args(shlex.split(command)[1:])
    assert again.layout == "NHWC"
    assert vars(again) == {**vars(args), "resume": True}


def test_the_printed_resume_command_is_quoted_for_windows_cmd_there(monkeypatch):
    """On Windows the ``--resume`` command is quoted as cmd.exe reads it (double quotes), not with POSIX single
    quotes that cmd.exe would pass on as part of the file names (tester C, s34)."""
    import os

    args = build_parser().parse_args(["train-vae", r"C:\my data\x.npy", "--out", r"C:\m\v.lvae", "--latent-dim", "1"])
    monkeypatch.setattr(os, "name", "nt")
    command = vae_cli._resume_command(args)
    assert command.startswith(r'learned-manifold train-vae "C:\my data\x.npy" --out C:\m\v.lvae ')
    assert "'" not in command and command.endswith("--resume")


def test_train_vae_never_writes_its_lock_over_the_input_data(tmp_path, capsys):
    """``train-vae DATA --out OUT`` where DATA is ``OUT.lock`` (or the training state) is refused before the lock
    file is written, and the data file is kept byte for byte (the lock wrote its pid into it, then removed it)."""
    data = tmp_path / "v.lvae.lock"
    np.save(tmp_path / "rows.npy", np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32))
    data.write_bytes((tmp_path / "rows.npy").read_bytes())
    before = data.read_bytes()
    assert command(["train-vae", str(data), "--out", str(tmp_path / "v.lvae"), "--latent-dim", "1", *SMALL]) == 2
    assert "is the input data" in capsys.readouterr().err
    assert data.read_bytes() == before


def test_encode_refuses_to_write_over_its_own_vae_file(tmp_path, capsys):
    """``encode VAE DATA --out VAE --overwrite`` (a VAE file named ``*.npy``) is refused in one line and the VAE is
    left as it was: the codes replaced it."""
    vae_path = tmp_path / "v.lvae"
    assert command(["train-vae", "circle", "--out", str(vae_path), "--latent-dim", "1", *SMALL]) == 0
    named_npy = tmp_path / "vae.npy"
    named_npy.write_bytes(vae_path.read_bytes())
    (tmp_path / "sub").mkdir()
    capsys.readouterr()
    for out in (named_npy, tmp_path / "sub" / ".." / "vae.npy"):
        assert command(["encode", str(named_npy), "circle", "--out", str(out), "--overwrite",
                        "--num-points", "20"]) == 2
        err = capsys.readouterr().err.strip()
        assert "is the VAE file itself" in err and "\n" not in err
        assert named_npy.read_bytes() == vae_path.read_bytes()
    assert load_vae(named_npy).latent_dim == 1


def test_encode_names_num_points_when_the_data_set_is_smaller(tmp_path, capsys):
    """Asking ``encode`` for more digits than exist names ``--num-points`` (not the data layer's ``n`` and its
    ``n <= 0``, which the command refuses)."""
    vae_path = tmp_path / "v.lvae"
    assert command(["train-vae", "circle", "--out", str(vae_path), "--latent-dim", "1", *SMALL]) == 0
    capsys.readouterr()
    assert command(["encode", str(vae_path), "digits", "--out", str(tmp_path / "z.npy"), "--num-points",
                    "5000"]) == 2
    err = capsys.readouterr().err.strip()
    assert "asked for --num-points=5000 (leave --num-points out for all)" in err and "n <= 0" not in err


def test_encode_repeats_the_collapse_the_vae_file_records(tmp_path, capsys):
    """``train-vae`` warned that the VAE collapsed to the prior (its file records the reconstruction error); ``encode``
    then wrote the codes and recommended training on them without a word: it repeats the recorded warning."""
    from learned_manifold import save_vae
    from learned_manifold.vae import VAE, VAEConfig

    vae = VAE(VAEConfig(data_shape=(2,), latent_dim=1, arch="mlp"))
    for name, error in [("collapsed", 0.978), ("fine", 0.05)]:
        path = save_vae(vae, tmp_path / f"{name}.lvae", extra={"validation": {"relative_reconstruction_error": error}})
        codes = str(tmp_path / f"{name}.npy")
        assert command(["encode", str(path), "circle", "--out", codes, "--num-points", "20"]) == 0
        printed = capsys.readouterr()
        assert "wrote" in printed.out
        collapsed = f"warning: the VAE file {path} records that the VAE reconstructs held-out points barely better"
        assert (collapsed in printed.err) is (name == "collapsed")
        assert ("collapsed to the prior" in printed.err) is (name == "collapsed")


def test_encode_of_a_subset_of_a_files_rows_writes_their_indices(tmp_path, capsys):
    """``encode --num-points n`` encoded a random subset of a user's rows and wrote only the codes: names, labels or
    times could not be matched to them (tester A, s30, item 4). The rows' indices go to ``CODES.rows.npy``, named in
    the printed line; they are the rows ``train-vae`` draws with the same seed, and the codes are theirs."""
    from learned_manifold import save_vae
    from learned_manifold.vae import VAE, VAEConfig
    from learned_manifold_training.data.files import resolve_source

    torch.manual_seed(0)
    vae = VAE(VAEConfig(data_shape=(3,), latent_dim=2, arch="mlp", hidden=8, depth=1, n_centres=4))
    vae_path = save_vae(vae, tmp_path / "v.lvae")
    rows = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    np.save(tmp_path / "cells.npy", rows)
    codes_path = tmp_path / "z.npy"
    argv = ["encode", str(vae_path), str(tmp_path / "cells.npy"), "--out", str(codes_path), "--seed", "3"]
    assert command([*argv, "--num-points", "20"]) == 0
    printed = capsys.readouterr().out
    index = np.load(tmp_path / "z.rows.npy")
    assert f"whose indices (0-based, in file order) are in {tmp_path / 'z.rows.npy'}" in printed
    assert index.dtype == np.int64 and index.shape == (20,) and np.all(np.diff(index) > 0)
    with torch.no_grad():
        np.testing.assert_allclose(np.load(codes_path), vae.encode(torch.from_numpy(rows[index])).numpy(), atol=1e-6)
    same = resolve_source(str(tmp_path / "cells.npy"), n=20, seed=3).x.numpy()  # as train-vae reads them
    np.testing.assert_array_equal(same, rows[index])
    codes_path.unlink()
    assert command([*argv, "--num-points", "10"]) == 2  # an earlier run's indices are not replaced silently
    assert "z.rows.npy' already exists; replace it with --overwrite" in capsys.readouterr().err
    assert command([*argv, "--overwrite"]) == 0  # all rows, in order: no indices, and none left from before
    assert "indices" not in capsys.readouterr().out and not (tmp_path / "z.rows.npy").exists()


def test_the_vae_settings_that_were_python_only_have_flags_that_reach_the_config(tmp_path, monkeypatch, capsys):
    """``std_lr``, ``kl_weight`` and ``val_points`` of `VAETrainConfig` had no ``train-vae`` flag (tester F, item 4):
    they reach the config, the printed resume command repeats them, and a bad value names its flag."""
    seen = {}

    def stand_in(data, cfg, **kwargs):
        seen["cfg"] = cfg
        raise KeyboardInterrupt  # stop before any training: the config is what is checked

    monkeypatch.setattr("learned_manifold_training.vae_trainer.train_vae", stand_in)
    argv = ["train-vae", "circle", "--out", str(tmp_path / "v.lvae"), "--latent-dim", "2", *SMALL,
            "--std-lr", "0.01", "--kl-weight", "0.5", "--val-points", "50"]
    assert command(argv) == 130
    cfg = seen["cfg"]
    assert (cfg.std_lr, cfg.kl_weight, cfg.val_points) == (0.01, 0.5, 50)
    args = build_parser().parse_args(argv)
    again = build_parser().parse_args(shlex.split(vae_cli._resume_command(args))[1:])
    assert (again.std_lr, again.kl_weight, again.val_points) == (0.01, 0.5, 50)
    capsys.readouterr()
    assert command([*argv[:-2], "--val-points", "0"]) == 2
    assert "--val-points must be in [1, " in capsys.readouterr().err


# every `VAETrainConfig` field, the train-vae flag that sets it, and a value that is no field's default and no other
# flag's value (so a flag read into the wrong field, or ignored, shows)
EVERY_FLAG = {"latent_dim": ("--latent-dim", "3"), "steps": ("--steps", "7"), "std_steps": ("--std-steps", "5"),
              "batch_size": ("--batch-size", "33"), "arch": ("--arch", "mlp"), "hidden": ("--hidden", "17"),
              "depth": ("--depth", "4"), "channels": ("--channels", "9"), "lr": ("--lr", "0.0007"),
              "std_lr": ("--std-lr", "0.02"), "kl_weight": ("--kl-weight", "0.5"), "n_centres": ("--centres", "11"),
              "rbf_scale": ("--rbf-scale", "1.5"), "zeta": ("--zeta", "2.5"), "val_points": ("--val-points", "50"),
              "checkpoint_every": ("--checkpoint-every", "13"), "seed": ("--seed", "6")}


def test_every_train_vae_flag_reaches_its_own_config_field(tmp_path, monkeypatch):
    """``train-vae --lr`` read as ``--std-lr`` (or dropped) passed every test (tester A s35 9): each flag, given a
    value of its own, reaches its field of `VAETrainConfig` (and the printed resume command repeats it)."""
    import dataclasses

    from learned_manifold_training.vae_trainer import VAETrainConfig

    defaults = VAETrainConfig()
    assert set(EVERY_FLAG) == {f.name for f in dataclasses.fields(VAETrainConfig)}  # a new field gets a flag here
    values = [value for _, value in EVERY_FLAG.values()]
    assert len(set(values)) == len(values)
    for name, (_, value) in EVERY_FLAG.items():
        assert str(getattr(defaults, name)) != value, name
    seen = {}

    def stand_in(data, cfg, **kwargs):
        seen["cfg"] = cfg
        raise KeyboardInterrupt  # stop before any training: the config is what is checked

    monkeypatch.setattr("learned_manifold_training.vae_trainer.train_vae", stand_in)
    flags = [word for flag_value in EVERY_FLAG.values() for word in flag_value]
    argv = ["train-vae", "circle", "--out", str(tmp_path / "v.lvae"), "--num-points", "300", "--no-progress",
            "--device", "cpu", *flags]
    assert command(argv) == 130
    for name, (flag, value) in EVERY_FLAG.items():
        got = getattr(seen["cfg"], name)
        assert got == type(got)(value), f"{flag} {value} gave {name}={got!r}"
    args = build_parser().parse_args(argv)
    again = build_parser().parse_args(shlex.split(vae_cli._resume_command(args))[1:])
    assert vars(again) == {**vars(args), "resume": True}


def test_encode_of_data_in_other_units_warns_naming_both_files_and_the_gap(tmp_path, capsys):
    """The raw counts of the cells a VAE was trained on as log1p were encoded silently, with advice to train on
    the codes (tester s36/B, problem 3); the cells themselves stay silent."""
    from learned_manifold.vae import BEYOND_FACTOR
    from learned_manifold.vae_file import read_vae_metadata
    from tests.learned_manifold.test_vae_far_inputs import single_cells

    counts, log1p = single_cells(600)
    counts_path, log1p_path, vae_path = tmp_path / "counts.npy", tmp_path / "log1p.npy", tmp_path / "cells.lvae"
    np.save(counts_path, counts.numpy())
    np.save(log1p_path, log1p.numpy())
    assert command(["train-vae", str(log1p_path), "--out", str(vae_path), "--latent-dim", "2", *SMALL]) == 0
    recorded = read_vae_metadata(vae_path)["extra"]["input_spread_max"]
    vae = load_vae(vae_path)
    assert vae.input_spread_max == recorded and 1.0 < recorded < 2.0  # the largest training spread (< 1,000 rows)
    capsys.readouterr()
    assert command(["encode", str(vae_path), str(log1p_path), "--out", str(tmp_path / "ok.npy")]) == 0
    out, err = capsys.readouterr()
    assert "lie far from" not in err and "train metric matching on them" in out
    assert command(["encode", str(vae_path), str(counts_path), "--out", str(tmp_path / "bad.npy")]) == 0
    out, err = capsys.readouterr()
    assert f"the points of {counts_path} lie far from the data the VAE file {vae_path} was trained on" in err
    assert f"{BEYOND_FACTOR:g} times the training data's largest" in err and "Other units" in err
    assert "train metric matching" not in out and "see the warning below" in out
    assert np.load(tmp_path / "bad.npy").shape == (600, 2)  # written all the same: a warning, not a refusal
