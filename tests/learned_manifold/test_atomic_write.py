"""Atomic writes (`learned_manifold.atomic_write`): a rewrite keeps the replaced file's permissions, a new file gets
the umask's; the temporary name's length bound."""

import os
import stat

import pytest

from learned_manifold.atomic_write import TEMP_NAME_EXTRA, atomic_write_bytes


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o444, 0o640])
def test_a_rewrite_keeps_the_replaced_files_permissions(tmp_path, mode):
    """A private (0600) or read-only (0400, 0444) model or training state came back 0644 after the next write (a
    fresh temporary file under the umask renamed over it): it keeps its own mode now, with the new bytes."""
    path = tmp_path / "m.lmm"
    old = os.umask(0o022)
    try:
        atomic_write_bytes(path, b"first")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        os.chmod(path, mode)
        atomic_write_bytes(path, b"second")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert path.read_bytes() == b"second"
    assert [p.name for p in tmp_path.iterdir()] == ["m.lmm"]  # no temporary file left


def test_a_new_file_still_gets_the_umasks_mode(tmp_path):
    """Nothing to keep: ``0o666 & ~umask``, as an ordinary ``open``."""
    old = os.umask(0o077)
    try:
        atomic_write_bytes(tmp_path / "new.pt", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.pt").stat().st_mode) == 0o600


def test_the_temporary_names_bound_covers_the_widest_pid():
    """``.{name}.{pid}.{12 hex}.tmp``: 26 bytes more than ``name`` at a 7-digit pid (Linux's pids are below 2²²)."""
    assert TEMP_NAME_EXTRA == len(f"..{2**22 - 1}.{'f' * 12}.tmp") == 26
    assert len(str(os.getpid())) <= 7
