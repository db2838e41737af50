"""Atomic file writes: a temporary file in the same folder, then ``os.replace`` (SPEC §1 model files).

A crash never leaves a half-written file under the final name; temporary files left by dead processes are removed
on the next write; the destination may not be a symlink or special file, and its folder must exist (it is not
created: a mistyped path is refused, `FileNotFoundError`); a new file gets the umask's mode and a
replaced file keeps its own (as an ordinary ``open`` of an existing file would).
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from pathlib import Path

__all__ = ["TEMP_NAME_EXTRA", "FolderGivenError", "as_path", "atomic_write_bytes", "file_kind", "pid_alive"]

TEMP_NAME_EXTRA = len(".") + len(f".{2**22}.{'0' * 12}.tmp")
"""Bytes that `atomic_write_bytes`'s temporary name ``.{name}.{pid}.{12 hex digits}.tmp`` adds to the name
``name`` at most (a pid of up to 7 digits: Linux's largest ``pid_max`` is 2²²): 26. A folder's name limit
(``NAME_MAX``, usually 255 bytes) must hold ``name`` plus this."""


def as_path(path: object, name: str = "path") -> Path:
    """``path`` (a str or ``os.PathLike``) as a `Path`; a `TypeError` naming ``name`` for anything else."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike, got {type(path).__name__}")
    return Path(path)


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words (``os.stat`` mode → "folder", "FIFO (named pipe)", ...)."""
    kinds = ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISCHR, "character device"),
             (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"), (stat.S_ISLNK, "symbolic link"))
    return next((word for test, word in kinds if test(mode)), "special file")


class FolderGivenError(IsADirectoryError, ValueError):
    """A folder where a file was to be written: the standard `IsADirectoryError` (what ``open`` raises), and a
    `ValueError` as the refusal of other special files is, so that older ``except ValueError`` clauses still hold."""


def _check_parent(path: Path) -> None:
    """Refuse, as ``open``/``torch.save`` would, to write into a folder that does not exist (a mistyped path is not
    created: `learned_manifold_training.outputs.check_output` refuses it too) or a parent that is not a folder.

    Raises:
        FileNotFoundError: naming the missing folder.
        NotADirectoryError: naming the parent that is a file.
    """
    parent = path.parent
    if parent.is_dir():
        return
    if not os.path.lexists(parent):
        raise FileNotFoundError(f"cannot write {str(path)!r}: the folder {str(parent)!r} does not exist "
                                f"(create it first)")
    raise NotADirectoryError(f"cannot write {str(path)!r}: {str(parent)!r} is not a folder")


def _temp_pattern(name: str) -> re.Pattern:
    return re.compile(rf"\.{re.escape(name)}\.(\d+)\.[0-9a-f]+\.tmp")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` may still run: True on Windows (never probed: ``os.kill(pid, 0)`` terminates a
    process there), False for a pid no system gives (above Linux's largest ``pid_max``, ``2**22``), else whether
    ``os.kill(pid, 0)`` finds it."""
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows: assume alive
        return True
    if not 0 < pid < 2**22:  # above Linux's largest pid_max: no such process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, owned by someone else
        return True
    return True


def _remove_stale_temps(path: Path) -> None:
    """Delete ``.{name}.<pid>.<hex>.tmp`` files (regular files only) whose writer ``<pid>`` no longer runs:
    leftovers of a crash. Assumes the writers of one folder run on one host (not a folder shared over NFS)."""
    pattern = _temp_pattern(path.name)
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or int(match[1]) == os.getpid() or pid_alive(int(match[1])):
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
        except OSError:
            pass


def _check_destination(path: Path) -> int | None:
    """Refuse to replace a symlink or a special file (device, FIFO, folder, socket) at ``path``; the permission
    bits of the regular file there (``None``: nothing there)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise ValueError(f"refusing to write {str(path)!r}: it is a symbolic link (to {os.readlink(path)!r}); "
                         f"remove it or write to the target itself")
    if stat.S_ISDIR(st.st_mode):
        raise FolderGivenError(f"refusing to write {str(path)!r}: it is a folder, not a regular file")
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"refusing to write {str(path)!r}: it is a {file_kind(st.st_mode)}, not a regular file")
    return st.st_mode & 0o777


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, fsync, then rename.

    The temporary file is ``.{name}.{pid}.{random hex}.tmp`` (`TEMP_NAME_EXTRA` bytes longer than the name),
    created with mode ``0o666`` so the kernel applies the user's umask exactly as for an ordinary ``open`` (no
    process-wide ``os.umask`` round trip). Where ``path`` already holds a file, the temporary file takes that
    file's permission bits (``0o777``; not set-id or sticky bits, nor its owner) before it replaces it, so a
    private (``0o600``) or read-only (``0o400``) model or training state stays so after a rewrite. Temporary
    files of the same target left by a writer process that no longer runs are removed first.

    Raises:
        FolderGivenError: ``path`` is a folder (an `IsADirectoryError` and a `ValueError`); nothing is written.
        ValueError: ``path`` is a symlink or another special file (device, FIFO); nothing is written.
        FileNotFoundError: ``path``'s folder does not exist (it is not created, as ``open`` does not create it).
        OSError: writing failed; the previous file at ``path``, if any, is unchanged.
    """
    path = as_path(path)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    _check_parent(path)
    mode = _check_destination(path)
    _remove_stale_temps(path)
    # O_BINARY: without it Windows gives a text-mode descriptor (each LF byte written as CR LF)
    flags = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
             | getattr(os, "O_BINARY", 0))
    while True:
        tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, flags, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if mode is not None and hasattr(os, "fchmod"):  # the replaced file's mode (the fd stays writable)
                os.fchmod(f.fileno(), mode)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None and not hasattr(os, "fchmod"):  # pragma: no cover (Windows before Python 3.13)
            os.chmod(tmp, mode)
        _check_destination(path)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable; not every platform can fsync a folder
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
