"""`training.data.readers`: special files refused unopened, `.pt` records bounded before `torch.load`, and running
out of memory named (the file and the size) rather than a bare MemoryError."""

import io
import os
import re
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from learned_manifold_training.data import load_array, readers


def _unblock_after(path: Path, seconds: float = 10.0) -> None:
    """Should a reader block opening the FIFO ``path`` (the bug), open its writing end after ``seconds`` so that the
    reader sees an empty file and the test fails instead of hanging; with no reader waiting this does nothing."""
    def writer() -> None:
        threading.Event().wait(seconds)
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:  # ENXIO: nobody is reading it (refused unopened, as it should be)
            pass

    threading.Thread(target=writer, daemon=True).start()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this OS")
@pytest.mark.parametrize("suffix", [".npy", ".npz", ".pt"])
def test_a_fifo_is_refused_without_being_opened(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"data{suffix}"
    os.mkfifo(path)
    _unblock_after(path)
    name = re.escape(str(path))
    with pytest.raises(ValueError, match=rf"^data file '{name}': is a FIFO \(named pipe\), not a data file; it was "
                                         "not opened$"):
        load_array(path)


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="no /dev/null")
def test_a_link_to_a_device_is_judged_by_what_it_points_to(tmp_path: Path) -> None:
    path = tmp_path / "data.npy"
    path.symlink_to("/dev/null")
    with pytest.raises(ValueError, match=r"data.npy': is a character device, not a data file; it was not opened$"):
        load_array(path)


def _deflated_pt(path: Path, tensor: torch.Tensor) -> None:
    """``torch.save(tensor)`` with its zip records deflate-compressed (torch.load reads them)."""
    buf = io.BytesIO()
    torch.save({"data": tensor}, buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as zin, zipfile.ZipFile(path, "w") as out:
        for info in zin.infolist():
            entry = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            entry.compress_type = zipfile.ZIP_DEFLATED
            out.writestr(entry, zin.read(info.filename))


def test_compressed_pt_records_are_refused_before_they_inflate(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "bomb.pt"
    _deflated_pt(path, torch.zeros(20_000, 4))  # 320 kB of zeros in a file of about 1 kB
    size = path.stat().st_size
    assert size < 10_000

    def no_load(*args, **kwargs):
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", no_load)
    with pytest.raises(ValueError, match=rf"bomb.pt': its records hold 3\d\d,\d\d\d bytes uncompressed, more than "
                                         rf"the file's {size:,} bytes \(compressed records"):
        load_array(path)


def test_pt_records_larger_than_the_memory_available_are_refused(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "big.pt"
    torch.save({"data": torch.zeros(1000, 300)}, path)  # 1.2 MB, stored as torch.save stores it
    monkeypatch.setattr(readers, "_memory_bytes", lambda: 2**20)
    with pytest.raises(ValueError, match=r"big.pt': holds 0.00112 GiB of records, more than the memory available "
                                         r"\(0.000977 GiB\)"):
        load_array(path)
    monkeypatch.setattr(readers, "_memory_bytes", lambda: None)  # where the OS does not tell: read as before
    assert load_array(path).shape == (1000, 300)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="MemAvailable is Linux's")
def test_the_memory_bound_is_the_memory_available_not_the_machine_total() -> None:
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert 0 < readers._memory_bytes() < total


def test_running_out_of_memory_converting_an_array_names_the_file_and_sizes(monkeypatch) -> None:
    def out_of_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 4.00 GiB for an array")

    monkeypatch.setattr(torch, "from_numpy", out_of_memory)
    raw = np.zeros((2**10, 2**10), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"^data file 'x.npy': too large for the memory available: its 0.000977 GiB "
                                         r"of uint8 become 0.00391 GiB of float32, plus 0.000977 GiB for the "
                                         r"finiteness check \(MemoryError\); read fewer rows"):
        readers.validate(raw, "data file 'x.npy'")


def test_torch_allocation_failures_are_named_and_other_errors_pass(monkeypatch) -> None:
    message = "[enforce fail at alloc_cpu.cpp:127] data. DefaultCPUAllocator: can't allocate memory: you tried to ..."

    def fail(error):
        def isfinite(*args, **kwargs):
            raise error
        return isfinite

    monkeypatch.setattr(torch, "isfinite", fail(RuntimeError(message)))
    with pytest.raises(ValueError, match=r"^data file 'x.pt': too large for the memory available: its 7.45e-09 GiB of "
                                         r"float64 become 7.45e-09 GiB of float64.*\(RuntimeError\)"):
        readers.validate(torch.zeros(1, 1, dtype=torch.float64), "data file 'x.pt'")
    monkeypatch.setattr(torch, "isfinite", fail(RuntimeError("some other failure")))
    with pytest.raises(RuntimeError, match="some other failure"):
        readers.validate(torch.zeros(2, 1), "data file 'x.pt'")
