"""Where a training run writes, checked before it starts and locked while it runs (issue 13, items 1-3).

A run writes the model file ``OUT``, its training state ``OUT.train-state.pt`` and, while it runs, a lock file
``OUT.lock`` that holds the writer's pid. `check_output` refuses, before any work, an output that would be lost
or would destroy something: an existing model (unless resuming or overwriting), a symbolic link, a folder, a
device or FIFO, a missing or unwritable folder, a name too long for the names derived from it. `OutputLock` keeps
two runs from writing one ``OUT``.
Writing itself is `learned_manifold.model_file.save_model` / ``atomic_write_bytes`` (atomic, so a failed write
keeps the previous checkpoint); `write_failed` turns an ``OSError`` there into one clear line.
"""

from __future__ import annotations

import errno
import io
import json
import os
import stat
import tempfile
from collections.abc import Callable, Collection, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

import learned_manifold
from learned_manifold.atomic_write import TEMP_NAME_EXTRA
from learned_manifold.model_file import atomic_write_bytes, file_kind, read_metadata, save_model
from learned_manifold.user_warnings import warn_user

from .clipping import RelativeClip

try:  # POSIX advisory locks; without them (Windows) runs are not locked against each other
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

__all__ = ["DEFAULT_NAME_MAX", "STATE_KINDS", "Checkpointer", "OutputError", "OutputLock", "check_not_data",
           "check_output", "derived_name_bytes", "irregular_entry", "is_complete", "load_state", "lock_path",
           "name_max", "named_entries", "nearest_existing", "other_kinds_state", "probe_writable", "state_path",
           "write_failed"]


class OutputError(ValueError):
    """An output path that a run must not or cannot write (refused before the run starts)."""


def state_path(out: Path) -> Path:
    """``OUT.train-state.pt``: optimizer, EMA and step, next to the model file."""
    return out.with_name(out.name + ".train-state.pt")


def lock_path(out: Path) -> Path:
    """``OUT.lock``: exists while a run writes ``OUT``; holds its pid."""
    return out.with_name(out.name + ".lock")


def is_complete(out: Path) -> bool:
    """Whether the model file ``out`` holds a finished run: ``complete`` not false (files of older versions, which
    lack it, were written at the end). A training state at the last step beside an incomplete or missing model
    file was saved before the end phase (bandwidth choice, repair, checks), which a resumed run then does."""
    return out.exists() and read_metadata(out)["extra"].get("complete") is not False


def load_state(out: Path, map_location: str | torch.device) -> dict:
    """The training state of ``out`` (`state_path`) for a resumed run, loaded with ``weights_only=True``.

    Raises:
        FileNotFoundError: there is no training state.
        ValueError: it cannot be read as a training state (truncated by a full disk, overwritten, not one): one
            line naming the file and what to do, not ``torch.load``'s traceback.
    """
    path = state_path(out)
    if not path.exists():
        raise FileNotFoundError(f"cannot resume: training state {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except PermissionError:  # unreadable: its own message names the file
        raise
    except Exception as err:  # a damaged zip, pickle or tensor record: each raises its own (an OSError too)
        first = (str(err).strip().splitlines() or [""])[0].split(". ")[0]  # torch's first sentence (of several)
        why = f"{type(err).__name__}: {first}".rstrip(": ")
    else:
        if isinstance(state, dict) and {"step", "config", "fingerprint"} <= state.keys():
            return state
        why = "it holds no training state"
    raise ValueError(f"cannot resume {str(out)!r}: its training state {str(path)!r} is damaged or not a training "
                     f"state ({why}); train again with --overwrite (overwrite=True), or restore the file") from None


DEFAULT_NAME_MAX = 255
"""The longest file name (bytes) assumed where the folder cannot say (``os.pathconf`` fails or is missing)."""


def name_max(folder: Path) -> int:
    """The longest file name, in bytes, that ``folder`` holds: ``os.pathconf(folder, "PC_NAME_MAX")``, or
    `DEFAULT_NAME_MAX` where that fails (a missing folder, no ``pathconf``)."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return DEFAULT_NAME_MAX


def derived_name_bytes(out: Path) -> int:
    """The length in bytes of the longest file name a run writing ``out`` creates in its folder: the training
    state's temporary file ``.OUT.train-state.pt.<pid>.<hex>.tmp`` (`state_path`, `atomic_write_bytes`, its pid and
    hex as wide as they can be), longer than ``OUT``, ``OUT``'s own temporary file, ``OUT.lock`` and
    `check_output`'s probe."""
    return len(os.fsencode(state_path(out).name)) + TEMP_NAME_EXTRA


def _check_name(out: str | os.PathLike) -> Path:
    """``out`` as a `Path`, refused where it names no file or where a name derived from it (`derived_name_bytes`)
    exceeds its folder's name limit (`name_max`): before any work, not at the first checkpoint."""
    out = Path(out)
    if out.name in ("", ".", ".."):
        raise OutputError(f"cannot write {str(out)!r}: the output must name a file, e.g. model.lmm")
    limit, size = name_max(out.parent), len(os.fsencode(out.name))
    extra = derived_name_bytes(out) - size
    if size + extra > limit:
        raise OutputError(f"cannot write {str(out)!r}: its name is too long ({size} bytes); the files derived from it "
                          f"need {extra} bytes more (its training state's temporary file "
                          f"'.NAME.train-state.pt.<pid>.<hex>.tmp'), and the folder allows names of at most {limit} "
                          f"bytes: choose a name of at most {limit - extra} bytes")
    return out


def _check_folder(out: str | os.PathLike) -> Path:
    out = _check_name(out)
    parent = out.parent
    if not parent.exists():
        raise OutputError(f"cannot write {str(out)!r}: the folder {str(parent)!r} does not exist (create it first)")
    if not parent.is_dir():
        raise OutputError(f"cannot write {str(out)!r}: {str(parent)!r} is not a folder")
    return out


def nearest_existing(path: Path) -> tuple[Path, str | None]:
    """``path``, or the nearest of its parents that exists, and, where that is not a folder, what ``path`` is in
    words (``"is a file"``, ``"is under 'F', a file"``): the first checks of a folder a command writes into
    (`show.check_show_folder`, `demo.check_demo_folder`), before anything is created."""
    for folder in (path, *path.parents):
        if folder.exists():
            break
    if folder.is_dir():
        return folder, None
    return folder, ("is a file" if folder == path else f"is under {str(folder)!r}, a file")


def named_entries(folder: Path, names: Collection[str], also: Callable[[str], bool]) -> list[Path]:
    """The entries of ``folder`` (none where it is not a folder) named in ``names`` or whose name ``also`` accepts
    (the files a command writes there, an earlier run's included), sorted."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name in names or also(p.name))


def irregular_entry(paths: Iterable[Path]) -> tuple[Path, str] | None:
    """The first of ``paths`` that is a symbolic link or not a regular file (a folder, a FIFO), with what it is
    (``"a link"``, ``"not a regular file"``); ``None`` where all are regular files. A command refuses to replace
    one."""
    for path in paths:
        if path.is_symlink() or not path.is_file():
            return path, "a link" if path.is_symlink() else "not a regular file"
    return None


def probe_writable(folder: Path, prefix: str) -> None:
    """Create and remove an empty file ``<prefix>…probe`` in ``folder``: the only reliable writability test
    (permissions, read-only mounts, ACLs). Raises the ``OSError`` of the creation where the folder refuses it."""
    fd, probe = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".probe")
    os.close(fd)
    os.unlink(probe)


STATE_KINDS = {"train": False, "train-vae": True}
"""The commands that write training states, and whether theirs is a VAE's (its ``config`` has ``latent_dim``)."""


def other_kinds_state(out: Path, *, vae: bool) -> dict | None:
    """``out``'s training state (`state_path`) where the other command wrote it, else ``None``.

    The state is opened with its tensors mapped, not read (``mmap``): the cost of its small settings record only.
    A VAE's state records ``latent_dim`` among its settings, a metric-matching run's does not.

    Args:
        out: the model file being resumed.
        vae: whether the run resuming it is a VAE's (`train_vae`); ``False`` for `train`.

    Returns:
        The state (for `check_resume` / `check_vae_resume` to refuse in their own words), or ``None`` where it is
        the run's own kind, missing or unreadable (the run's `load_state` says why later; beside a finished model
        file a damaged state is not an error).
    """
    try:
        state = torch.load(state_path(out), map_location="cpu", weights_only=True, mmap=True)
        stored = json.loads(state["config"])
    except Exception:  # missing, damaged or not a state: left to `load_state`
        return None
    if not isinstance(stored, dict) or ("latent_dim" in stored) == vae:
        return None
    return state


def _check_state_kind(out: Path, kind: str) -> None:
    """Refuse, before any work, to resume ``out`` with the command ``kind`` (`STATE_KINDS`) when its training state
    is the other command's (`other_kinds_state`)."""
    if other_kinds_state(out, vae=STATE_KINDS[kind]) is None:
        return
    other = next(name for name, vae in STATE_KINDS.items() if vae != STATE_KINDS[kind])
    whose = "a metric-matching run's" if STATE_KINDS[kind] else "a VAE's"
    raise OutputError(f"cannot resume {str(out)!r}: its training state is {whose} (learned-manifold {other}); "
                      f"resume it with {other}, or give {kind} another output path")


def check_not_data(out: str | os.PathLike, data: object) -> None:
    """Refuse (`OutputError`) an ``out`` whose model file, training state or lock file is the input ``data`` (a
    path; else ignored), even with ``--overwrite``: commands call it before `OutputLock` writes ``OUT.lock``."""
    if not isinstance(data, (str, os.PathLike)) or not Path(data).exists():
        return
    source = Path(data).resolve()
    for path in (Path(out), state_path(Path(out)), lock_path(Path(out))):
        if path.resolve() == source:
            raise OutputError(f"{str(out)!r} is the input data {str(data)!r} (or would write over it); "
                              "refusing to replace your data with a model: choose another output path")


def check_output(out: str | os.PathLike, *, resume: bool = False, overwrite: bool = False,
                 data: object = None, kind: str | None = None) -> Path:
    """Refuse, before any work, an output path a run must not or cannot write.

    Args:
        out: the model file to write.
        resume: the run continues ``out``'s training (so ``out`` may exist).
        overwrite: the run may replace an existing ``out`` and its training state.
        data: the run's input when it is a path (else ignored): ``out``, its state and lock file must not be it.
        kind: the command that resumes (``"train"`` or ``"train-vae"``, `STATE_KINDS`), or ``None``: with
            ``resume``, a training state of the other command is refused.

    Returns:
        ``out`` as a `Path`.

    Raises:
        OutputError: ``out`` (or its state or lock file) is the input ``data``, even with ``overwrite``;
            ``resume`` and ``overwrite`` together; ``out`` (or its state or lock file) is a symbolic
            link, a folder, a device, FIFO or socket; a name derived from ``out``'s is longer than its folder
            allows (`derived_name_bytes` against `name_max`); its folder is missing, not a folder, or not writable
            (tested by creating and removing a probe file); ``out`` exists and neither flag is given; ``resume``
            and ``out``'s training state is of the other ``kind``.
        FileNotFoundError: ``resume`` and ``out`` has no training state (`state_path`), as `load_state` says, but
            before the data are read and the networks built.
    """
    check_not_data(out, data)
    if resume and overwrite:
        raise OutputError("resume and overwrite exclude each other: resume continues OUT, overwrite replaces it")
    out = _check_folder(out)
    parent = out.parent
    for path in (out, state_path(out), lock_path(out)):
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(mode):
            raise OutputError(f"cannot write {str(path)!r}: it is a {file_kind(mode)}, not a regular file; "
                              f"refusing to replace it")
    if not (resume or overwrite) and (out.exists() or state_path(out).exists()):
        what = (repr(str(out)) if out.exists() else
                f"the training state {str(state_path(out))!r} of {str(out)!r} (a run stopped before writing it)")
        raise OutputError(f"{what} already exists; continue its training with --resume (resume=True) "
                          f"or replace it with --overwrite (overwrite=True)")
    if resume and not state_path(out).exists():
        raise FileNotFoundError(f"cannot resume: training state {str(state_path(out))!r} does not exist (no stopped "
                                f"run of {str(out)!r} to continue): start a run without --resume (resume=True)")
    if resume and kind is not None:
        _check_state_kind(out, kind)
    try:
        probe_writable(parent, f".{out.name}.")
    except OSError as err:
        raise OutputError(f"cannot write {str(out)!r}: the folder {str(parent)!r} is not writable "
                          f"({err.strerror or err})") from None
    return out


def write_failed(out: Path, err: OSError, kept: int | None) -> OutputError:
    """One clear line for a checkpoint write that failed (full disk, quota, I/O error)."""
    previous = (f"the previous checkpoint (step {kept}) is kept" if kept
                else "nothing was written")
    return OutputError(f"could not write {str(out)!r}: {err.strerror or err}; {previous}")


_HELD: dict[str, list] = {}  # lock path -> [fd, count]: this process's locks (re-entrant: CLI, then `train`)
_UNLOCKED_WARNED = [False]  # `OutputLock` without fcntl (Windows) has said so in this process


class OutputLock:
    """An exclusive, non-blocking ``flock`` on ``OUT.lock`` for the whole run (a re-entrant context manager).

    A second run on the same ``OUT`` fails at once with ``"another run is writing OUT (pid N)"``. Within one
    process the lock is re-entrant (the CLI takes it before reading the data, `train` again). The lock file is
    removed on release; a run killed with SIGKILL leaves it behind, unlocked, and the next run reuses it.
    """

    def __init__(self, out: str | os.PathLike):
        self.out = _check_name(out)  # before OUT.lock's name is built from it
        self.path = lock_path(self.out)
        self._key = os.path.abspath(self.path)
        self._held = False

    def acquire(self) -> None:
        """Take the lock; without ``fcntl`` (Windows) nothing is locked, which it says once per process (`warn_user`).
        `OutputError` where another run holds it, ``OUT.lock`` cannot be opened, or holds no pid (a user's file,
        neither replaced nor removed)."""
        if self._held:
            return
        if fcntl is None:
            if not _UNLOCKED_WARNED[0]:
                _UNLOCKED_WARNED[0] = True
                warn_user(f"runs writing {str(self.out)!r} are not locked on this platform (no fcntl, e.g. Windows): "
                          "two runs on one output (two --resume runs) are not kept apart and would overwrite each "
                          "other's checkpoints; start one run per output at a time")
            return
        if self._key in _HELD:
            _HELD[self._key][1] += 1
            self._held = True
            return
        _check_folder(self.out)
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            except OSError as err:
                if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS) and not os.path.lexists(self.path):
                    raise OutputError(f"cannot write {str(self.out)!r}: the folder {str(self.out.parent)!r} is not "
                                      f"writable ({err.strerror or err})") from None  # `check_output`'s words
                raise OutputError(f"cannot lock {str(self.out)!r} with {str(self.path)!r}: "
                                  f"{err.strerror or err}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise OutputError(f"another run is writing {str(self.out)!r} (pid {pid})") from None
            try:  # a run that released the lock unlinked the file: lock the file now at the path instead
                here, there = os.fstat(fd), os.stat(self.path, follow_symlinks=False)
                same = (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        held = os.pread(fd, 64, 0).strip()
        if held and not held.isdigit():  # a lock file holds a pid (or nothing: a run killed before writing it)
            os.close(fd)
            raise OutputError(f"cannot lock {str(self.out)!r}: {str(self.path)!r} exists and is not a lock file "
                              f"(it holds no run's pid); refusing to replace it: move it away or choose another "
                              f"output path")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _HELD[self._key] = [fd, 1]
        self._held = True

    def release(self) -> None:
        """Forget the lock and close its file (which releases the ``flock``) whatever happens; a lock file that
        cannot be removed (the folder turned read-only, a lost mount) only warns, so that it never replaces an
        error in flight (a failed checkpoint write's `write_failed` line); the next run reuses it."""
        if not self._held:
            return
        self._held = False
        entry = _HELD[self._key]
        entry[1] -= 1
        if entry[1]:
            return
        del _HELD[self._key]
        try:
            os.unlink(self.path)  # unlink while still holding the lock (see `acquire`)
        except FileNotFoundError:
            pass
        except OSError as err:
            warn_user(f"could not remove the lock file {str(self.path)!r} ({err.strerror or err}); it is "
                      "unlocked, and the next run on this output reuses it")
        finally:
            os.close(entry[0])  # closing releases the flock

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


@dataclass
class Checkpointer:
    """Writes a run's checkpoints: the training state, then the model file with its extra metadata.

    The state goes first, so a run killed between the two writes still resumes (from the newer state). It holds
    the run's ``history`` too (as JSON text, loadable with ``weights_only=True``), so that the ``val_every``
    validations of an interrupted run reach the resumed run's file. Every
    model file records ``complete`` (``False`` for checkpoints before the end and on interruption), ``step``,
    ``total_steps``, the number of points, the training seconds (summed over resumed runs), the precision, the
    seed and the library version (`learned-manifold info` shows them).
    """

    out: Path
    model: nn.Module
    ema: nn.Module
    optimizer: torch.optim.Optimizer
    config: object  # TrainConfig (a dataclass)
    fingerprint: list[float]
    guard: RelativeClip | None = None  # the factor's gradient guard: its state resumes with the run
    digest: str | None = None  # `data_digest` of the data: what a resumed run must match
    info: dict = field(default_factory=dict)  # num_points, num_train_points, num_val_points, precision
    saved_step: int | None = None  # the step of the last checkpoint on disk
    history: list[dict] | None = None  # the run's loss log and `val_every` validations: resumed with the run

    def save(self, step: int, seconds: float, *, complete: bool, validation: dict | None = None) -> None:
        """Write the checkpoint of ``step`` after ``seconds`` of training in all; `OutputError` (one line, the
        previous checkpoint kept) if the disk refuses it."""
        cfg = asdict(self.config)
        extra = {"complete": complete, "step": step, "total_steps": cfg["steps"], **self.info,
                 "training_seconds": round(seconds, 3), "seed": cfg["seed"],
                 "library_version": learned_manifold.__version__}
        if validation is not None:
            extra["validation"] = validation
        buf = io.BytesIO()
        torch.save({
            "step": step,
            "seconds": seconds,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "config": json.dumps(cfg),
            "fingerprint": self.fingerprint,
            **({"data_digest": self.digest} if self.digest is not None else {}),
            **({"factor_clip": self.guard.state_dict()} if self.guard is not None else {}),
            **({"history": json.dumps(self.history)} if self.history is not None else {}),
        }, buf)
        try:
            atomic_write_bytes(state_path(self.out), buf.getvalue())
            save_model(self.ema, self.out, extra=extra)
        except OSError as err:
            raise write_failed(self.out, err, self.saved_step) from None
        self.saved_step = step
