"""Where a run writes (`learned_manifold_training.outputs`): no silent overwrite, checks before work, the lock,
and a failed write that keeps the previous checkpoint (issue 13, items 1-3)."""

import errno
import fcntl
import os
import re
import warnings
from pathlib import Path

import pytest
import torch

from learned_manifold import load_model
from learned_manifold.model_file import read_metadata
from learned_manifold_training.cli import main
from learned_manifold_training.data import Circle
from learned_manifold_training.outputs import (
    OutputError,
    OutputLock,
    check_output,
    derived_name_bytes,
    irregular_entry,
    lock_path,
    name_max,
    named_entries,
    nearest_existing,
    other_kinds_state,
    probe_writable,
    state_path,
)
from learned_manifold_training.trainer import TrainConfig, train

CFG = TrainConfig(steps=20, batch_size=32, rank=2, hidden=8, depth=1, emb_dim=8, val_points=20, checkpoint_every=10)
SMALL = ["circle", "--num-points", "200", "--steps", "10", "--batch-size", "32", "--hidden", "8", "--depth", "1",
         "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def data():
    return Circle(2).sample(200, generator=torch.Generator().manual_seed(0))


def test_an_existing_model_is_never_replaced_without_resume_or_overwrite(tmp_path, data):
    """``train(out=...)`` refuses an existing model (and leaves it byte for byte); ``overwrite=True`` replaces
    it; ``resume`` and ``overwrite`` together are refused."""
    out = tmp_path / "m.lmm"
    train(data, CFG, out=out, progress=False, device="cpu")
    before = out.read_bytes(), state_path(out).read_bytes()
    short = TrainConfig(**{**CFG.__dict__, "steps": 5, "checkpoint_every": 0})
    with pytest.raises(OutputError, match="already exists.*--resume.*--overwrite"):
        train(data, short, out=out, progress=False, device="cpu")
    assert (out.read_bytes(), state_path(out).read_bytes()) == before
    train(data, short, out=out, overwrite=True, progress=False, device="cpu")
    assert read_metadata(out)["extra"]["total_steps"] == 5
    with pytest.raises(OutputError, match="exclude each other"):
        train(data, short, out=out, resume=True, overwrite=True, progress=False, device="cpu")


def test_a_lone_training_state_also_counts_as_existing_output(tmp_path):
    """A training state without its model (a run killed between the two writes) is refused too."""
    out = tmp_path / "m.lmm"
    state_path(out).write_bytes(b"state")
    with pytest.raises(OutputError, match="already exists"):
        check_output(out)
    assert check_output(out, overwrite=True) == out and check_output(out, resume=True) == out


def test_the_cli_refuses_to_overwrite_and_accepts_overwrite(tmp_path, capsys):
    """``train`` into an existing ``--out``: exit 2 with one line; ``--overwrite`` trains; both flags: usage."""
    out = tmp_path / "m.lmm"
    assert main(["train", *SMALL, "--out", str(out)]) == 0
    before = out.read_bytes()
    capsys.readouterr()
    assert main(["train", *SMALL, "--steps", "5", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and len(err.splitlines()) == 1 and out.read_bytes() == before
    assert main(["train", *SMALL, "--steps", "5", "--out", str(out), "--overwrite"]) == 0
    assert read_metadata(out)["extra"]["total_steps"] == 5
    with pytest.raises(SystemExit) as exit_:
        main(["train", *SMALL, "--out", str(out), "--overwrite", "--resume"])
    assert exit_.value.code == 2 and "not allowed with" in capsys.readouterr().err


def test_a_resume_without_a_state_or_with_the_other_commands_state_is_refused_before_any_work(tmp_path, capsys,
                                                                                               monkeypatch):
    """``train --resume`` of an OUT with no training state failed only after the data were read, standardised and
    the networks built (`load_state`); a VAE's state given to ``train`` only at `check_resume`."""
    import json

    from learned_manifold_training import cli

    out = tmp_path / "m.lmm"
    with pytest.raises(FileNotFoundError, match=r"cannot resume: training state '.*m\.lmm\.train-state\.pt' does "
                                                r"not exist"):
        check_output(out, resume=True)
    torch.save({"step": 3, "config": json.dumps({"latent_dim": 2, "steps": 10}), "fingerprint": [0.0]},
               state_path(out))
    assert check_output(out, resume=True, kind="train-vae") == out
    with pytest.raises(OutputError, match=r"its training state is a VAE's \(learned-manifold train-vae\); resume it "
                                          r"with train-vae, or give train another output path"):
        check_output(out, resume=True, kind="train")

    def no_data(*args, **kwargs):
        raise AssertionError("the data were read")

    monkeypatch.setattr(cli, "_training_data", no_data)
    for name in ("m.lmm", "none.lmm"):
        assert main(["train", *SMALL, "--out", str(tmp_path / name), "--resume"]) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and ("is a VAE's" in err if name == "m.lmm" else "does not exist" in err)


def test_the_output_check_creates_nothing(tmp_path):
    """`check_output` probes the folder with a temporary file and leaves the folder as it was."""
    check_output(tmp_path / "m.lmm")
    assert os.listdir(tmp_path) == []


def test_the_lock_refuses_a_second_holder_names_its_pid_and_is_reentrant(tmp_path):
    """A held lock makes a second acquisition (another open file, as in another process) fail with the
    holder's pid; within one process the lock is re-entrant; the lock file goes away on release."""
    out = tmp_path / "m.lmm"
    with OutputLock(out):
        assert lock_path(out).read_text().strip() == str(os.getpid())
        with OutputLock(out):  # re-entrant: the CLI holds it, then `train` takes it again
            pass
        assert lock_path(out).exists()
        fd = os.open(lock_path(out), os.O_RDWR)  # another open file description, as in another process
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)
    assert not lock_path(out).exists()
    lock_path(out).write_text("999999\n")  # a stale lock file of a killed run: unlocked, so it is taken over
    with OutputLock(out):
        assert lock_path(out).read_text().strip() == str(os.getpid())
    assert not lock_path(out).exists()


def test_a_run_holding_the_lock_blocks_another_run_on_the_same_output(tmp_path, data, monkeypatch):
    """`train` fails at once with "another run is writing OUT (pid N)" while the lock is held elsewhere."""
    import learned_manifold_training.outputs as outputs

    out = tmp_path / "m.lmm"
    lock_path(out).write_text("4242\n")
    fd = os.open(lock_path(out), os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        monkeypatch.setattr(outputs, "_HELD", {})  # not this process's own (re-entrant) lock
        with pytest.raises(OutputError, match=r"another run is writing .*m\.lmm' \(pid 4242\)"):
            train(data, CFG, out=out, progress=False, device="cpu")
    finally:
        os.close(fd)
    assert not out.exists()


def test_a_full_disk_at_a_checkpoint_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, data, monkeypatch,
                                                                                    capsys):
    """When the disk refuses a checkpoint (ENOSPC at fsync), the run stops with one clear line naming the file
    and the kept step; the model and state of the previous checkpoint are intact and load."""
    out = tmp_path / "m.lmm"
    train(data, CFG, out=out, progress=False, device="cpu", stop_after=10)
    before = out.read_bytes(), state_path(out).read_bytes()
    real_fsync = os.fsync

    def full_disk(fd):
        if os.path.isfile(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OutputError) as err:
        train(data, CFG, out=out, resume=True, progress=False, device="cpu")
    monkeypatch.undo()
    message = str(err.value)
    assert "No space left on device" in message and "m.lmm" in message and "step 10" in message
    assert "\n" not in message
    assert (out.read_bytes(), state_path(out).read_bytes()) == before
    with warnings.catch_warnings():  # loading a checkpoint of an unfinished run may warn that it is one
        warnings.simplefilter("ignore")
        assert read_metadata(out)["extra"]["step"] == 10 and load_model(out) is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.lmm", "m.lmm.train-state.pt"]  # no temp, no lock


def test_a_lock_file_that_cannot_be_removed_neither_masks_the_write_error_nor_stays_locked(tmp_path, data,
                                                                                             monkeypatch):
    """A folder that turns read-only mid-run fails the checkpoint write and then the lock file's removal: the
    run's error stays the write's one line (it was replaced by the unlink's ``PermissionError``), the removal
    only warns, and the lock is closed and forgotten (the same process was then refused with "another run is
    writing ... (pid <its own pid>)")."""
    import learned_manifold_training.outputs as outputs

    out = tmp_path / "m.lmm"
    train(data, CFG, out=out, progress=False, device="cpu", stop_after=10)
    real_fsync, real_unlink = os.fsync, os.unlink

    def read_only_fsync(fd):
        if os.path.isfile(f"/proc/self/fd/{fd}"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_fsync(fd)

    def read_only_unlink(path, *args, **kwargs):
        if str(path).endswith(".lock"):
            raise PermissionError(errno.EPERM, os.strerror(errno.EPERM), str(path))
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", read_only_fsync)
    monkeypatch.setattr(os, "unlink", read_only_unlink)
    with pytest.raises(OutputError, match=r"could not write .*m\.lmm': Read-only file system; the previous "
                                          r"checkpoint \(step 10\) is kept"):
        with pytest.warns(UserWarning, match=r"could not remove the lock file .*m\.lmm\.lock' \(Operation not "
                                             r"permitted\); it is unlocked"):
            train(data, CFG, out=out, resume=True, progress=False, device="cpu")
    monkeypatch.undo()
    assert outputs._HELD == {} and lock_path(out).exists()
    fd = os.open(lock_path(out), os.O_RDWR)  # not locked any more: another process could take it
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(fd)
    train(data, CFG, out=out, resume=True, progress=False, device="cpu")  # the same process resumes
    assert read_metadata(out)["extra"]["step"] == 20 and not lock_path(out).exists()


def test_a_folder_read_only_from_the_start_is_named_not_writable(tmp_path, data, monkeypatch):
    """The lock file is the first thing a run creates: a folder that refuses it gave "cannot lock ... with ...:
    Permission denied"; it gives `check_output`'s "the folder ... is not writable" (root ignores ``chmod``, so the
    refusal is simulated)."""
    real_open = os.open

    def refusing_open(path, flags, *args, **kwargs):
        if str(path).endswith(".lock") and flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    with pytest.raises(OutputError, match=rf"cannot write .*m\.lmm': the folder '{tmp_path}' is not writable "
                                          r"\(Permission denied\)$"):
        train(data, CFG, out=tmp_path / "m.lmm", progress=False, device="cpu")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


def _info(path, capsys) -> str:
    assert main(["info", str(path)]) == 0
    return capsys.readouterr().out


def _rewritten(path, out, **extra):
    """A copy of the model file ``path`` at ``out`` with its extra metadata updated by ``extra``."""
    from learned_manifold.model_file import save_model

    with warnings.catch_warnings():  # (a checkpoint of an unfinished run may warn on loading)
        warnings.simplefilter("ignore")
        save_model(load_model(path), out, extra={**read_metadata(path)["extra"], **extra})
    return out


def test_info_names_only_the_factor_choices_that_applied(tmp_path, data, capsys):
    """``info`` printed "width ... (auto: 2 x hidden where the estimated dimension exceeds 8 ...)" for data of
    D <= 16, where no dimension is estimated, and "its rate ramped up over 2% of the steps" for an uncentred run,
    whose optimiser never ramps (the factor starts at step 0). Files without the ``ramp_steps`` record (older)
    are read by the same rule: a ramp only for a centred run with a warm-up."""
    cfg = TrainConfig(**{**CFG.__dict__, "centred": False, "precision": "fp32"})  # (an explicit ramp is refused)
    uncentred = tmp_path / "u.lmm"
    train(data, cfg, out=uncentred, progress=False, device="cpu", stop_after=2)
    guards = read_metadata(uncentred)["extra"]["factor_guards"]
    assert guards["ramp_steps"] == 0
    ramp_unapplied = _rewritten(uncentred, tmp_path / "u-ramp.lmm", factor_guards={**guards, "factor_ramp": 0.02})
    text = _info(ramp_unapplied, capsys)
    assert "  width:" not in text and "ramped" not in text
    estimated = {"rank_choice": {"chosen": 18, "estimated_dimension": 9, "rule": "auto"},
                 "factor_width": {"factor_hidden": 64, "rule": "auto: 2 x hidden where the estimated dimension "
                                                            "exceeds 8, else hidden"}}
    old_guards = {"factor_ramp": 0.02, "factor_clip": 3.0, "rule": "auto", "factor_lr_scale": 0.5}
    old = _rewritten(uncentred, tmp_path / "old-u.lmm", **estimated, factor_guards=old_guards)
    text = _info(old, capsys)
    assert "width:       factor network 64 (auto: 2 x hidden" in text and "its rate 0.5 x lr" in text
    assert "ramped" not in text
    centred = tmp_path / "c.lmm"
    train(data, TrainConfig(**{**CFG.__dict__, "factor_ramp": 0.02, "precision": "fp32"}), out=centred,
          progress=False, device="cpu", stop_after=2)
    old = _rewritten(centred, tmp_path / "old-c.lmm", **estimated, factor_guards=old_guards,
                     denoiser_warmup={"denoiser_warmup": 0.25, "rule": "auto"})
    assert "its rate ramped up over 2% of the steps to 0.5 x lr" in _info(old, capsys)


def test_info_names_the_sigma_of_each_check(tmp_path, data, capsys):
    """The "repair:" line gave the disagreement at the σ chosen before the repair beside a consistency line at the
    final σ, neither named: each now says its σ (files without the repair's σ: "the bandwidth chosen before the
    repair"), and the stored tangent error says it was measured on the points its σ was chosen on."""
    path = tmp_path / "m.lmm"
    train(data, TrainConfig(**{**CFG.__dict__, "precision": "fp32"}), out=path, manifold=Circle(2), progress=False,
          device="cpu")
    validation = read_metadata(path)["extra"]["validation"]
    assert validation["neighbour_check"]["reference_points"] == 180  # the fitted points: a verdict needs 200
    refit = {"ran": True, "steps": 5, "disagreement_before": 0.41, "disagreement_after": 0.07, "kept": True}
    check = {**validation["self_consistency"], "sigma": 0.5}
    for stored, said in (({**refit, "sigma": 0.25}, "0.41 -> 0.07 at sigma 0.25, the bandwidth chosen before"),
                         (refit, "0.41 -> 0.07 at the bandwidth chosen before the repair")):
        text = _info(_rewritten(path, tmp_path / "r.lmm", validation={
            **validation, "factor_refit": stored, "self_consistency": check}), capsys)
        assert said in text
        assert "consistency: " in text and "on held-out points at sigma 0.5 (tangent disagreement" in text
    assert "(on the points sigma was chosen on: slightly optimistic)" in text
    assert "neighbours:  no verdict (too few training points for a neighbour estimate: 180, fewer than 200)" in text


@pytest.mark.parametrize("out", [".", "..", ""])
def test_an_output_that_names_no_file_is_refused_by_every_writer(out, tmp_path):
    """``OutputLock('.')`` built ``.lock``'s name from an empty file name: pathlib's "has an empty name" reached
    users of train-vae (train and its CLI checked first). The lock checks the name itself now."""
    from learned_manifold_training.vae_trainer import VAETrainConfig, train_vae

    with pytest.raises(OutputError, match="the output must name a file, e.g. model.lmm"):
        OutputLock(out)
    data = Circle(2).sample(50, generator=torch.Generator().manual_seed(0))
    with pytest.raises(OutputError, match="the output must name a file"):
        train_vae(data, VAETrainConfig(steps=2), out=out, device="cpu", progress=False)


def test_a_name_too_long_for_the_files_derived_from_it_is_refused_before_any_work(tmp_path, data):
    """A legal name of 215-255 bytes passed the check, trained to the first checkpoint, then failed with "File name
    too long": the training state's temporary name ``.OUT.train-state.pt.<pid>.<hex>.tmp`` is 41 bytes longer. Such
    a name is refused before any work now (`check_output`, `OutputLock`, `train`), and the longest accepted name
    trains through its checkpoints."""
    limit, extra = name_max(tmp_path), derived_name_bytes(Path("m")) - 1
    assert extra == 41 and limit >= 100
    fits = tmp_path / ("m" * (limit - extra - 4) + ".lmm")  # exactly limit - 41 bytes
    long = tmp_path / ("m" * (limit - extra - 3) + ".lmm")
    message = re.escape(f"its name is too long ({limit - extra + 1} bytes); the files derived from it need 41 bytes "
                        f"more (its training state's temporary file '.NAME.train-state.pt.<pid>.<hex>.tmp'), and the "
                        f"folder allows names of at most {limit} bytes: choose a name of at most {limit - extra} bytes")
    with pytest.raises(OutputError, match=message):
        check_output(long)
    with pytest.raises(OutputError, match=message):
        OutputLock(long)
    with pytest.raises(OutputError, match=message):
        train(data, CFG, out=long, progress=False, device="cpu")
    assert list(tmp_path.iterdir()) == []
    assert check_output(fits) == fits
    train(data, CFG, out=fits, progress=False, device="cpu")  # checkpoints at steps 10 and 20
    assert read_metadata(fits)["extra"]["complete"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == [fits.name, state_path(fits).name]


def test_one_peek_at_the_state_kind_serves_check_output_and_the_trainers(tmp_path):
    """`check_output`'s refusal of the other command's state and the trainers' peek were two copies of one
    memory-mapped load: now one function, `other_kinds_state`."""
    import json

    from learned_manifold_training import trainer, vae_trainer

    assert trainer.other_kinds_state is other_kinds_state and vae_trainer.other_kinds_state is other_kinds_state
    out = tmp_path / "m.lmm"
    assert other_kinds_state(out, vae=False) is None  # no state: left to `load_state`
    torch.save({"step": 3, "config": json.dumps({"latent_dim": 2}), "fingerprint": [0.0]}, state_path(out))
    assert other_kinds_state(out, vae=False)["step"] == 3 and other_kinds_state(out, vae=True) is None
    with pytest.raises(OutputError, match="is a VAE's"):
        check_output(out, resume=True, kind="train")
    torch.save({"step": 3, "config": json.dumps({"steps": 10}), "fingerprint": [0.0]}, state_path(out))
    assert other_kinds_state(out, vae=True)["step"] == 3 and other_kinds_state(out, vae=False) is None
    with pytest.raises(OutputError, match="is a metric-matching run's"):
        check_output(out, resume=True, kind="train-vae")


def test_the_folder_checks_that_show_demo_and_check_output_share(tmp_path):
    """`show.check_show_folder` and `demo.check_demo_folder` each had their own copy of these steps, and show its
    own copy of `check_output`'s writability probe."""
    afile = tmp_path / "f.txt"
    afile.write_text("x")
    assert nearest_existing(tmp_path / "a" / "b") == (tmp_path, None)
    assert nearest_existing(afile) == (afile, "is a file")
    assert nearest_existing(afile / "a" / "b") == (afile, f"is under {str(afile)!r}, a file")
    (tmp_path / "x.png").mkdir()
    (tmp_path / "y.png").symlink_to(afile)
    (tmp_path / "interpolations_3.png").write_bytes(b"")
    found = named_entries(tmp_path, ("x.png", "y.png"), lambda name: name.startswith("interpolations_"))
    assert [p.name for p in found] == ["interpolations_3.png", "x.png", "y.png"]
    assert named_entries(afile, ("f.txt",), lambda name: True) == []
    assert irregular_entry(found) == (tmp_path / "x.png", "not a regular file")
    assert irregular_entry(found[2:]) == (tmp_path / "y.png", "a link") and irregular_entry(found[:1]) is None
    before = sorted(tmp_path.iterdir())
    probe_writable(tmp_path, ".t.")
    assert sorted(tmp_path.iterdir()) == before  # the probe is removed
    with pytest.raises(OSError):
        probe_writable(tmp_path / "missing", ".t.")


@pytest.mark.parametrize("derived", [state_path, lock_path])
def test_a_data_file_that_is_the_outputs_state_or_lock_file_is_refused_and_kept(tmp_path, capsys, derived):
    """``train x.train-state.pt --out x --overwrite``: the run would write its training state over the data (only
    DATA = OUT was tested); ``train x.lock --out x``: the lock, taken before the output checks, wrote its pid into
    the data and removed it on release. Both are refused before any work, and the data file is unchanged."""
    out = tmp_path / "x"
    source = derived(out)
    torch.save({"data": torch.randn(200, 3)}, source)
    before = source.read_bytes()
    for flags in ([], ["--overwrite"]):
        with pytest.raises(OutputError, match="is the input data"):
            check_output(out, overwrite=bool(flags), data=str(source))
        assert main(["train", str(source), "--out", str(out), *flags, *SMALL[1:]]) == 2
        err = capsys.readouterr().err
        assert "is the input data" in err and len(err.splitlines()) == 1
        assert source.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [source.name]


def test_the_lock_never_replaces_a_file_that_is_not_a_lock(tmp_path):
    """A file of the user's at ``OUT.lock`` (any content but a pid) is neither overwritten nor removed by the lock;
    a stale lock file (a pid) or an empty one is taken over as before."""
    out = tmp_path / "m.lmm"
    lock_path(out).write_bytes(b"\x93NUMPY my measurements")
    with pytest.raises(OutputError, match=r"m\.lmm\.lock' exists and is not a lock file"):
        OutputLock(out).acquire()
    assert lock_path(out).read_bytes() == b"\x93NUMPY my measurements"
    for stale in (b"12345\n", b""):
        lock_path(out).write_bytes(stale)
        with OutputLock(out):
            assert lock_path(out).read_text() == f"{os.getpid()}\n"
        assert not lock_path(out).exists()


def test_without_fcntl_the_lock_warns_once_that_runs_are_not_kept_apart(tmp_path, monkeypatch):
    """On Windows (no ``fcntl``) `OutputLock` locks nothing: it says so once per process, not silently, and writes
    no lock file."""
    from learned_manifold_training import outputs

    monkeypatch.setattr(outputs, "fcntl", None)
    monkeypatch.setattr(outputs, "_UNLOCKED_WARNED", [False])
    with pytest.warns(UserWarning, match=r"m\.lmm' are not locked on this platform .* two runs on one output"):
        with OutputLock(tmp_path / "m.lmm"):
            pass
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second run in the same process: no second warning
        with OutputLock(tmp_path / "m.lmm"), OutputLock(tmp_path / "n.lmm"):
            pass
    assert list(tmp_path.iterdir()) == []
