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


def test_a_leftover_temp_file_with_an_impossible_pid_is_removed_and_the_save_succeeds(tmp_path):
    """A temporary name whose pid no kernel gives (above 2²², beyond a C int here) made every later save of that
    file fail with ``OverflowError`` from ``os.kill``: such a writer cannot be running, so its file is removed."""
    stale = tmp_path / ".m.lmm.99999999999.0a.tmp"
    stale.write_bytes(b"stale")
    atomic_write_bytes(tmp_path / "m.lmm", b"model")
    assert (tmp_path / "m.lmm").read_bytes() == b"model"
    assert [p.name for p in tmp_path.iterdir()] == ["m.lmm"]


FAKE_O_BINARY = 1 << 29  # a bit no Linux or macOS open flag uses


def recording_open(monkeypatch) -> list[tuple[str, int]]:
    """Give ``os`` a fake ``O_BINARY`` (Windows has one) and record ``(path, flags)`` of every ``os.open``; the real
    open gets the flags without the fake bit."""
    calls, real = [], os.open
    monkeypatch.setattr(os, "O_BINARY", FAKE_O_BINARY, raising=False)

    def recorded(path, flags, *args, **kwargs):
        calls.append((os.fspath(path), flags))
        return real(path, flags & ~FAKE_O_BINARY, *args, **kwargs)

    monkeypatch.setattr(os, "open", recorded)
    return calls


def test_the_temporary_file_is_opened_in_binary_mode_where_the_platform_has_one(tmp_path, monkeypatch):
    """Without ``O_BINARY`` Windows gives ``os.open`` a text-mode descriptor (each LF byte written as CR LF), and a
    model file written there could not be loaded: the temporary file's flags include it wherever ``os`` has it."""
    calls = recording_open(monkeypatch)
    atomic_write_bytes(tmp_path / "m.lmm", b"a\nb\x1a")
    temps = [flags for path, flags in calls if path.endswith(".tmp")]
    assert len(temps) == 1 and temps[0] & FAKE_O_BINARY
    assert (tmp_path / "m.lmm").read_bytes() == b"a\nb\x1a"
