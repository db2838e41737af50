"""`training/loader_failures.py`: a loader's ``SIGCHLD`` error held back to a step boundary, and the message of a
run whose data stopped coming."""

import os
import signal
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from learned_manifold_training.loader_failures import DeferredChildSignals, reading_failed

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGCHLD"), reason="SIGCHLD is POSIX's")


def dead_worker(signum, frame):
    """What torch's handler does where one of its workers died."""
    raise RuntimeError("DataLoader worker (pid 4242) is killed by signal: Killed.")


def test_a_sigchld_in_the_loop_raises_at_the_boundary_only_and_the_handler_is_put_back():
    """torch's ``SIGCHLD`` handler raised wherever the main thread was (half-way through ``optimizer.step()``, or
    in the checkpoint's write after a first error, which then wrote nothing): held back, it raises at `boundary`."""
    previous = signal.signal(signal.SIGCHLD, dead_worker)
    try:
        with DeferredChildSignals() as children:
            os.kill(os.getpid(), signal.SIGCHLD)  # the handler runs at the next bytecode: it only takes note
            assert children._pending
            with pytest.raises(RuntimeError, match="is killed by signal"):
                children.boundary()
            children.boundary()  # replayed once
        assert signal.getsignal(signal.SIGCHLD) is dead_worker
    finally:
        signal.signal(signal.SIGCHLD, previous)


def test_a_handler_installed_inside_the_loop_is_taken_over_at_the_next_boundary():
    """torch installs its handler once per process, when its first loader with workers starts: inside the loop."""
    previous = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        with DeferredChildSignals() as children:
            signal.signal(signal.SIGCHLD, dead_worker)  # a loader starts
            children.boundary()
            os.kill(os.getpid(), signal.SIGCHLD)
            with pytest.raises(RuntimeError, match="is killed by signal"):
                children.boundary()
        assert signal.getsignal(signal.SIGCHLD) is dead_worker  # torch's stays installed, as torch expects
    finally:
        signal.signal(signal.SIGCHLD, previous)


def test_the_message_says_what_failed_and_where_the_steps_done_are():
    err = RuntimeError("DataLoader worker (pid(s) 7) exited unexpectedly\nmore")
    assert str(reading_failed(err, 9, 100, Path("m.lmm"), 9)) == (
        "reading the training data of step 10 of 100 failed (RuntimeError: DataLoader worker (pid(s) 7) exited "
        "unexpectedly); a checkpoint of step 9 was saved to 'm.lmm' (incomplete): continue with --resume "
        "(resume=True)")
    assert str(reading_failed(OSError("read failed"), 0, 100, Path("m.lmm"), None)).endswith(
        "(OSError: read failed); no step was done, so nothing was saved")


def test_the_console_prints_a_failed_read_as_one_line(monkeypatch, capsys):
    """The trainer's message (which checkpoint to ``--resume``) came at the end of a traceback."""
    from learned_manifold_training import cli

    def failing(args, argv):
        raise reading_failed(RuntimeError("DataLoader worker (pid(s) 7) exited unexpectedly"), 9, 100,
                             Path("m.lmm"), 9)

    monkeypatch.setattr(cli, "_train", failing)
    assert cli.main(["train", "circle", "--out", "m.lmm"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("learned-manifold train: error: reading the training data of step 10 of 100 failed")
    assert "a checkpoint of step 9 was saved to 'm.lmm' (incomplete): continue with --resume" in err


def test_a_replayed_signal_is_not_taken_for_a_new_one_by_a_handler_that_chains_to_ours():
    """torch's handler calls the one it found when installed (ours, inside the loop): one ``SIGCHLD`` replays once,
    not at every later boundary."""
    calls = []
    previous = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        with DeferredChildSignals() as children:
            found = signal.getsignal(signal.SIGCHLD)  # ours, as torch finds it when a loader starts in the loop

            def chaining(signum, frame):
                calls.append(signum)
                found(signum, frame)

            signal.signal(signal.SIGCHLD, chaining)
            children.boundary()
            os.kill(os.getpid(), signal.SIGCHLD)
            for _ in range(5):
                children.boundary()
            assert len(calls) == 1
            assert not children._pending
    finally:
        signal.signal(signal.SIGCHLD, previous)


def _reaches(handler_calls: list) -> bool:
    """Whether a child's exit reaches the handler that appends to ``handler_calls`` (Python runs it in the main
    thread at the next bytecode after the signal)."""
    handler_calls.clear()
    subprocess.run(["true"], check=True)
    for _ in range(50):
        if handler_calls:
            return True
        time.sleep(0.01)
    return False


def test_a_loader_handler_installed_in_the_loop_leaves_the_callers_handler_in_its_chain():
    """torch installs its handler once per process and chains to the one it found (ours, inside the loop): after
    the run, and on a replay in it, a child's exit goes on to the handler the caller had (tester C s35 5)."""
    calls, torch_calls = [], []
    previous = signal.signal(signal.SIGCHLD, lambda signum, frame: calls.append(signum))
    try:
        with DeferredChildSignals() as children:
            found = signal.getsignal(signal.SIGCHLD)  # ours, as torch finds it when a loader starts in the loop

            def torch_like(signum, frame):
                torch_calls.append(signum)
                found(signum, frame)

            signal.signal(signal.SIGCHLD, torch_like)
            children.boundary()
            calls.clear()
            os.kill(os.getpid(), signal.SIGCHLD)
            assert calls == []  # held back in the loop ...
            children.boundary()
            assert len(calls) == 1 and len(torch_calls) == 1  # ... and replayed once, through torch's, to the caller's
        assert signal.getsignal(signal.SIGCHLD) is torch_like  # torch's stays installed, as torch expects
        assert _reaches(calls)
    finally:
        signal.signal(signal.SIGCHLD, previous)


def test_a_streamed_run_with_workers_keeps_the_callers_sigchld_handler(tmp_path, monkeypatch):
    """The loop of ``train(..., workers=2)``, the first in the process to start loader workers: a child's exit
    reached torch's handler, then the trainer's released one, never the caller's."""
    from torch.utils.data._utils import signal_handling

    from learned_manifold_training.data.stream import open_npy
    from learned_manifold_training.trainer import TrainConfig, train

    monkeypatch.setattr(signal_handling, "_SIGCHLD_handler_set", False)  # torch installs its handler in the loop
    g = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", g.normal(size=(200, 3)).astype(np.float32))
    cfg = TrainConfig(steps=4, batch_size=32, hidden=16, depth=1, emb_dim=16, val_points=20, checkpoint_every=0,
                      precision="fp32")
    calls = []
    previous = signal.signal(signal.SIGCHLD, lambda signum, frame: calls.append(signum))
    try:
        assert _reaches(calls)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # 4 steps fail the trainer's checks of the model
            train(open_npy(tmp_path / "x.npy"), cfg, progress=False, device="cpu", workers=2)
        assert _reaches(calls)
    finally:
        signal.signal(signal.SIGCHLD, previous)
