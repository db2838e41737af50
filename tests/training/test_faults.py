"""Fault injection on ``learned-manifold train`` (issue 13): kills, interrupts, concurrent runs, bad outputs.

Subprocesses run the real command (``python -m learned_manifold_training.cli``) with tiny data and networks;
each costs a few seconds of imports, so there are few of them (six in all). The end phase's signals are sent
in-process, from inside it.
"""

import os
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import learned_manifold_training.data as data_module
from learned_manifold import ModelFileWarning, load_model
from learned_manifold.model_file import read_metadata
from learned_manifold_training.cli import main
from learned_manifold_training.outputs import lock_path, state_path

TINY = ["circle", "--num-points", "300", "--hidden", "16", "--depth", "1", "--batch-size", "32",
        "--device", "cpu", "--precision", "fp32", "--no-progress", "--seed", "1"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "learned_manifold_training.cli", "train", *args], cwd=cwd,
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120.0) -> bool:
    """Poll until ``predicate()`` holds (True) or the process ends first (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    raise AssertionError("the training subprocess neither started writing nor ended in time")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_run_saves_an_incomplete_checkpoint_and_says_how_to_resume(tmp_path, capsys, signum):
    """Ctrl-C (SIGINT) or SIGTERM: a checkpoint at the current step, marked incomplete; one line naming the
    step and the ``--resume`` command; exit status 130; no traceback."""
    out = tmp_path / "m.lmm"
    args = [*TINY, "--steps", "100000", "--checkpoint-every", "5", "--out", str(out)]
    proc = start(args, tmp_path)
    assert wait_for(lambda: state_path(out).exists(), proc), proc.communicate()
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    line = [x for x in err.splitlines() if x.startswith("interrupted at step")]
    assert len(line) == 1, err
    step = int(line[0].split()[3])
    assert line[0] == (f"interrupted at step {step} of 100000; the partial model is in {out} (incomplete); "
                       f"continue with: learned-manifold train {' '.join(args)} --resume")
    extra = read_metadata(out)["extra"]
    assert (extra["complete"], extra["step"], extra["total_steps"]) == (False, step, 100000)
    assert torch.load(state_path(out), weights_only=True)["step"] == step  # the state matches the model
    with pytest.warns(ModelFileWarning, match="unfinished training run"):
        load_model(out)
    assert not lock_path(out).exists()
    assert main(["info", str(out)]) == 0
    assert f"INCOMPLETE (step {step} of 100000)" in capsys.readouterr().out


def test_sigkill_during_checkpoints_never_leaves_a_broken_file_and_resume_is_bit_identical(tmp_path):
    """SIGKILL at random times while checkpoints are written (one every 2 steps): afterwards ``OUT`` is absent
    or loads, the training state is absent or loads, and after resuming no temporary file remains and the
    weights equal those of an uninterrupted run bit for bit."""
    args = [*TINY, "--steps", "100", "--checkpoint-every", "2"]
    reference = tmp_path / "reference.lmm"  # checkpoints do not change the weights: the reference skips them
    assert main(["train", *TINY, "--steps", "100", "--checkpoint-every", "0", "--out", str(reference)]) == 0
    work = tmp_path / "killed"
    work.mkdir()
    out = work / "m.lmm"
    rng = random.Random(2024)
    kills = 0
    for _ in range(3):
        mode = ["--resume"] if state_path(out).exists() else ["--overwrite"]
        before = state_path(out).stat().st_mtime_ns if state_path(out).exists() else None
        proc = start([*args, "--out", str(out), *mode], work)
        if wait_for(lambda b=before: state_path(out).exists() and state_path(out).stat().st_mtime_ns != b, proc):
            time.sleep(rng.uniform(0.0, 0.4))
            proc.kill()
            proc.communicate()
            kills += proc.returncode == -signal.SIGKILL
        else:
            proc.communicate()
        if out.exists():
            with warnings.catch_warnings():  # a checkpoint of the unfinished run says so
                warnings.simplefilter("ignore", ModelFileWarning)
                load_model(out)
        if state_path(out).exists():
            torch.load(state_path(out), weights_only=True)
    assert kills >= 1
    resume = ["--resume"] if state_path(out).exists() else ["--overwrite"]
    assert main(["train", *args, "--out", str(out), *resume]) == 0
    assert sorted(p.name for p in work.iterdir()) == ["m.lmm", "m.lmm.train-state.pt"]  # no .tmp, no lock
    a, b = load_file(reference), load_file(out)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert read_metadata(out)["extra"]["complete"] is True


def test_two_concurrent_runs_on_one_output_one_succeeds_the_other_fails_fast(tmp_path, capsys):
    """While one run writes ``OUT`` (it holds ``OUT.lock``), a second run on ``OUT`` fails at once naming the
    first run's pid and writes nothing; the first run finishes normally."""
    out = tmp_path / "m.lmm"
    args = [*TINY, "--steps", "400", "--checkpoint-every", "50", "--out", str(out)]
    proc = start(args, tmp_path)
    assert wait_for(lambda: lock_path(out).exists() and lock_path(out).read_text().strip(), proc)
    assert main(["train", *args]) == 2
    err = capsys.readouterr().err
    assert f"another run is writing '{out}' (pid {proc.pid})" in err and "Traceback" not in err
    assert main(["train", *args, "--overwrite"]) == 2  # --overwrite does not break the lock either
    assert "another run is writing" in capsys.readouterr().err
    _, perr = proc.communicate(timeout=300)
    assert proc.returncode == 0, perr
    assert read_metadata(out)["extra"]["complete"] is True
    assert not lock_path(out).exists()


def _special_outputs(tmp_path: Path) -> dict:
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "afolder").mkdir()
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "target.lmm").write_bytes(b"precious")
    (tmp_path / "link.lmm").symlink_to(tmp_path / "target.lmm")
    return {
        "under a regular file": (tmp_path / "afile" / "m.lmm", "is not a folder"),
        "missing folder": (tmp_path / "nowhere" / "m.lmm", "does not exist"),
        "a folder": (tmp_path / "afolder", "a folder"),
        "a FIFO": (tmp_path / "fifo", "FIFO"),
        "a symlink": (tmp_path / "link.lmm", "symbolic link"),
        "/dev/null": (Path("/dev/null"), "a character device"),
    }


@pytest.mark.parametrize("case", ["under a regular file", "missing folder", "a folder", "a FIFO", "a symlink",
                                  "/dev/null"])
def test_unwritable_or_special_outputs_are_refused_before_the_data_are_read(tmp_path, capsys, monkeypatch, case):
    """An output that cannot or must not be written is refused with one line and exit 2 before any work (the
    data are never read), and nothing at that path changes."""
    out, message = _special_outputs(tmp_path)[case]

    def no_data(*a, **k):
        raise AssertionError("the data were read before the output was checked")

    monkeypatch.setattr(data_module, "resolve_data", no_data)
    before = sorted(os.listdir(tmp_path))
    assert main(["train", *TINY, "--steps", "5", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(out) in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert sorted(os.listdir(tmp_path)) == before
    assert (tmp_path / "target.lmm").read_bytes() == b"precious" and (tmp_path / "link.lmm").is_symlink()
    assert Path("/dev/null").is_char_device()


def _signal_in_the_end_phase(monkeypatch, signals: list[int]) -> list[str]:
    """Make the factor's repair (inside the end phase, after the last step) send this process ``signals`` first;
    returns a log that says whether the end phase went on after them."""
    import learned_manifold_training.trainer as trainer

    real, log = trainer.refit_factor, []

    def signalled(*args, **kwargs):
        for signum in signals:
            os.kill(os.getpid(), signum)
        log.append("went on")
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "refit_factor", signalled)
    return log


def test_a_first_signal_in_the_end_phase_is_acknowledged_at_once_and_the_run_finishes(tmp_path, capsys, monkeypatch):
    """A first SIGTERM after the last step (bandwidth choice, repair, checks: minutes on large runs) was ignored
    silently: it is acknowledged on stderr at once, the end phase goes on and the run ends complete (exit 0)."""
    from learned_manifold_training.end_phase import END_PHASE_NOTICE

    log = _signal_in_the_end_phase(monkeypatch, [signal.SIGTERM])
    out = tmp_path / "m.lmm"
    assert main(["train", *TINY, "--steps", "20", "--out", str(out)]) == 0
    assert log == ["went on"]
    assert END_PHASE_NOTICE in capsys.readouterr().err
    assert "interrupt again to stop now: the run can be resumed" in END_PHASE_NOTICE
    extra = read_metadata(out)["extra"]
    assert (extra["complete"], extra["step"]) == (True, 20)


def test_a_second_signal_in_the_end_phase_leaves_the_last_step_resumable_and_says_how(tmp_path, capsys, monkeypatch):
    """Two SIGINTs in the end phase lost every step since the last periodic checkpoint (the file stayed at step 10
    of 40, with "interrupted; nothing more was written" and no ``--resume`` command). Now the state of the last
    step is saved before the end phase: the second signal leaves it (marked incomplete), prints the loop's line
    with the ``--resume`` command and exits 130; resuming does the end phase alone and writes the same model as
    an uninterrupted run."""
    reference = tmp_path / "reference.lmm"
    assert main(["train", *TINY, "--steps", "40", "--out", str(reference)]) == 0
    log = _signal_in_the_end_phase(monkeypatch, [signal.SIGINT, signal.SIGINT])
    out = tmp_path / "m.lmm"
    args = [*TINY, "--steps", "40", "--checkpoint-every", "10", "--out", str(out)]
    capsys.readouterr()
    assert main(["train", *args]) == 130
    assert log == []  # stopped inside the end phase
    err = capsys.readouterr().err
    assert (f"interrupted at step 40 of 40; the partial model is in {out} (incomplete); continue with: "
            f"learned-manifold train {' '.join(args)} --resume") in err
    extra = read_metadata(out)["extra"]
    assert (extra["complete"], extra["step"]) == (False, 40)
    assert torch.load(state_path(out), weights_only=True)["step"] == 40
    assert not lock_path(out).exists()
    monkeypatch.undo()
    assert main(["train", *args, "--resume"]) == 0
    assert read_metadata(out)["extra"]["complete"] is True
    a, b = load_file(reference), load_file(out)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
