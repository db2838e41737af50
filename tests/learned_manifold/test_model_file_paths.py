"""The model-file reader's refusals that the hostile-file suite cannot reach with a file alone: a file that cannot
be opened, one replaced between the check and the open, one that shrinks or grows while it is read (monkeypatched
``os`` calls), and the exact message of weights that do not fit the architecture. Each is one `ModelFileError`
naming the file, and nothing is allocated beyond the file's own size."""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from learned_manifold import ModelFileError, load_model, save_model
from learned_manifold.models import MetricModel, ModelConfig
from learned_manifold.safetensors_reader import SafetensorsReader

MARGIN = 256 * 1024  # bytes of bookkeeping (JSON, dicts, messages) beside the file's own size


@pytest.fixture
def saved(tmp_path) -> Path:
    torch.manual_seed(0)
    cfg = ModelConfig(data_shape=(3,), rank=2, arch_kwargs={"hidden": 8, "depth": 1, "emb_dim": 8})
    return save_model(MetricModel(cfg), tmp_path / "m.lmm")


def _refused(path: Path, message: str) -> None:
    """`load_model(path)` raises exactly ``'<path>' <message>`` and allocates at most the file's size (+ MARGIN)."""
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError) as info:
            load_model(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(info.value) == f"{str(path)!r} {message}"
    assert peak < path.stat().st_size + MARGIN, peak


def test_a_file_that_cannot_be_opened_names_the_os_reason(saved, monkeypatch) -> None:
    real = os.open

    def refuse(path, *args, **kwargs):
        if Path(path) == saved:
            raise PermissionError(13, "Permission denied")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    _refused(saved, "cannot be opened: Permission denied")


def test_a_file_replaced_between_the_check_and_the_open_is_not_read(saved, tmp_path, monkeypatch) -> None:
    other = os.stat(save_model(MetricModel(ModelConfig(data_shape=(3,), rank=2)), tmp_path / "other.lmm"))
    monkeypatch.setattr(os, "fstat", lambda fd: other)  # the opened file is another inode
    _refused(saved, "changed while it was being opened; it was not read")


@pytest.mark.parametrize("change", ["shrinks", "grows"])
def test_a_file_that_changes_size_while_it_is_read_is_refused(saved, monkeypatch, change) -> None:
    """Sizes are checked against ``fstat`` at open; the data read afterwards must be exactly that long."""
    size, real = saved.stat().st_size, SafetensorsReader.__init__

    def opened(self, path, *args):
        real(self, path, *args)
        if change == "shrinks":
            os.truncate(path, size - 10)
        else:
            with open(path, "ab") as f:
                f.write(b"\0" * 10)

    monkeypatch.setattr(SafetensorsReader, "__init__", opened)
    header = int.from_bytes(saved.read_bytes()[:8], "little")
    data = size - 8 - header
    message = (f"is truncated: its tensor data needs {data} bytes, only {data - 10} could be read"
               if change == "shrinks" else "grew while it was being read")
    _refused(saved, message)


def test_weights_that_do_not_fit_the_architecture_are_named_exactly(saved) -> None:
    raw = saved.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    metadata = json.loads(raw[8:8 + n])["__metadata__"]
    tensors = dict(st_load(raw))
    tensors["mean"] = torch.zeros(1, 3)
    del tensors["scale"]
    saved.write_bytes(st_save(tensors, metadata=metadata))
    _refused(saved, "does not match its architecture: missing ['scale'] (1 in all), unexpected [], wrong shapes "
             "['mean: (1, 3) instead of (3,)']")


def test_model_and_vae_files_are_opened_for_reading_in_binary_mode(saved, tmp_path, monkeypatch) -> None:
    """Windows' ``os.open`` without ``O_BINARY`` reads in text mode (stops at the first 0x1A byte, CR LF read as
    LF): the reader's flags include it wherever ``os`` has it (a fake bit here), for model and VAE files alike."""
    from learned_manifold import load_vae, save_vae
    from learned_manifold.vae import VAE, VAEConfig
    from tests.learned_manifold.test_atomic_write import FAKE_O_BINARY, recording_open

    vae = save_vae(VAE(VAEConfig(data_shape=(4,), latent_dim=2, hidden=8)), tmp_path / "v.lvae")
    calls = recording_open(monkeypatch)
    load_model(saved)
    load_vae(vae)
    reads = {path: flags for path, flags in calls if path in (str(saved), str(vae))}
    assert len(reads) == 2 and all(flags & FAKE_O_BINARY for flags in reads.values()), calls
