"""A streamed run's `DataLoader` failing mid-run (a worker killed by ``kill -9`` or the OOM killer, a failed read):
the trainer saves the steps done and says how to continue (`train`'s ``RuntimeError``).

A worker's death reaches the loop two ways. The loader finds it when it next waits for a batch (the error comes out
of ``next``, between steps: nothing of the step is applied yet). And torch's ``SIGCHLD`` handler raises it at once,
wherever the main thread is: inside ``optimizer.step()`` that would leave half a step applied, and inside the
checkpoint's write, no checkpoint. `DeferredChildSignals` holds ``SIGCHLD`` back while the loop runs and replays
it where the step's batch is read, so every such error comes out at a step boundary.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .outputs import Checkpointer

__all__ = ["DataReadingFailed", "DeferredChildSignals", "read_at_boundary", "reading_failed"]

T = TypeVar("T")


class DeferredChildSignals:
    """Hold ``SIGCHLD`` back while the training loop runs (a context manager); `boundary` replays it.

    Main thread on POSIX only (Python delivers signals there; torch installs its handler there only). torch
    installs its handler once per process, when its first loader with workers starts, possibly inside the loop:
    `boundary` takes it over then, and replays through it. On exit the handler found is put back: the caller's, or
    torch's where torch installed its handler inside the loop. torch's then stays (it checks the process's later
    loaders' workers, and torch never installs it again); the handler it calls after its check is the one it found,
    ours, which passes a replayed signal, and every signal once released, on to the caller's handler found on entry:
    a child's exit reaches it during and after the run, as with a plain ``DataLoader`` (tester C s35 5).
    """

    def __init__(self) -> None:
        self._active = False
        self._pending = False
        self._replaying = False  # a handler that chains to ours (torch's) runs: its call is no new signal
        self._handler: object = None  # the handler a deferred signal is replayed through (torch's once it is in)
        self._callers: object = None  # the handler found on entry: ours passes torch's calls on to it (`_defer`)
        self._defer_fn = self._defer  # one bound method, to tell it from the handler installed

    def _defer(self, signum, frame) -> None:
        if self._active and not self._replaying:
            self._pending = True  # replayed at the next boundary
        elif callable(self._callers):  # torch's handler chains to ours (a replay, or after release): the caller's
            self._callers(signum, frame)

    def __enter__(self) -> DeferredChildSignals:
        sigchld = getattr(signal, "SIGCHLD", None)
        if sigchld is not None and threading.current_thread() is threading.main_thread():
            self._handler = self._callers = signal.signal(sigchld, self._defer_fn)
            self._active = True
        return self

    def boundary(self) -> None:
        """Between steps: take back ``SIGCHLD`` from a loader that installed its handler since, then run a
        deferred one through it (torch's raises ``RuntimeError`` where one of its workers died)."""
        if not self._active:
            return
        current = signal.getsignal(signal.SIGCHLD)
        if current is not self._defer_fn:
            self._handler = current
            signal.signal(signal.SIGCHLD, self._defer_fn)
        if self._pending:
            self._pending = False
            if callable(self._handler):
                self._replaying = True  # torch's handler calls the one it found (ours): not a signal to replay
                try:
                    self._handler(signal.SIGCHLD, None)
                finally:
                    self._replaying = False

    def release(self) -> None:
        """Put the handler found back (idempotent): after the loop, and on exit. Where torch installed its handler
        inside the loop, that one (which calls ours, which then calls the caller's): see the class's note."""
        if self._active:
            self._active = False
            found = self._handler
            if signal.getsignal(signal.SIGCHLD) is not self._defer_fn:  # installed since the last boundary
                found = signal.getsignal(signal.SIGCHLD)
            # None: a handler not installed from Python (it cannot be put back): the default's
            signal.signal(signal.SIGCHLD, signal.SIG_DFL if found is None else found)

    def __exit__(self, *exc) -> None:
        self.release()


class DataReadingFailed(RuntimeError):
    """The training data stopped coming mid-run (a DataLoader worker died, a read failed); the message says which
    checkpoint was saved. The console prints it as one line (exit status 2)."""


def reading_failed(err: Exception, step: int, total: int, out: Path, saved: int | None) -> DataReadingFailed:
    """The error of a run whose data stopped coming at step ``step + 1`` of ``total``: what failed (``err``'s first
    line), and the checkpoint of step ``saved`` in ``out`` to resume from (``None``: no step was done)."""
    first = (str(err).strip().splitlines() or [""])[0][:300]
    where = ("no step was done, so nothing was saved" if saved is None else
             f"a checkpoint of step {saved} was saved to {str(out)!r} (incomplete): continue with --resume "
             f"(resume=True)")
    return DataReadingFailed(f"reading the training data of step {step + 1} of {total} failed "
                        f"({type(err).__name__}: {first}); {where}")


def read_at_boundary(read: Callable[[], T], children: DeferredChildSignals, step: int, total: int,
                     ckpt: Checkpointer | None,
                     keep: Callable[[int], None]) -> T:
    """Step ``step``'s batch (``read()``), then `children.boundary`: a worker's death held back since the last step
    raises here, between steps.

    Args:
        read: reads the step's batch (a streamed source's worker may be killed, a read may fail).
        children: the loop's `DeferredChildSignals`.
        step: the step (0-based) whose batch is read; ``total``: the run's steps.
        ckpt: the run's `outputs.Checkpointer`, or ``None`` where nothing is saved (the error is then raised as is).
        keep: saves the ``step`` steps done (health check, then checkpoint), called where ``step > 0`` and they
            are not saved yet, as a signal would.

    Raises:
        DataReadingFailed: the read (or the replayed ``SIGCHLD``) failed: `reading_failed`'s line, with the
            checkpoint to resume from.
    """
    try:
        batch = read()
        children.boundary()  # a loader worker's death, held back since the last step, raises here
    except Exception as err:  # a streamed source's worker killed (the OOM killer), a failed read
        if ckpt is None:
            raise
        if step > 0 and ckpt.saved_step != step:  # keep the steps done, as a signal would
            keep(step)
        raise reading_failed(err, step, total, ckpt.out, ckpt.saved_step) from err
    return batch
