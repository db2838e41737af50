"""`TrainingRows` (training/batches.py): what the training loop reads, in memory or streamed, costs one copy of
the data's size and leaves the caller's state alone."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch

from learned_manifold_training.batches import TrainingRows
from learned_manifold_training.data.stream import open_npy

_PEAK = """
import resource, torch
torch.set_num_threads(1)
import learned_manifold_training.data.stream as stream
from learned_manifold_training.batches import TrainingRows
stream.CHUNK_ROWS = 2048  # chunk temporaries of 1 MB: what remains is what grows with the data
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
x = torch.randn(250_000, 64)  # 64 MB, made in place: the baseline holds no freed temporary
x.add_(1.0)
TrainingRows(x[:64], val_points=5, seed=0, batch_size=8, device=torch.device("cpu"))  # lazy allocations first
before = peak()
TrainingRows(x, val_points=1000, seed=0, batch_size=512, device=torch.device("cpu"))
print((peak() - before) / (x.numel() * 4))
"""


def test_in_memory_preparation_makes_one_copy_of_the_data_size():
    """The standardised rows are the one copy needed; the fingerprint took a full index copy, a float64 copy and
    its square, and the copy was a list of chunks concatenated: peak growth 4.8x the data (tester N #2; 5.8x here,
    against 1.1x now)."""
    done = subprocess.run([sys.executable, "-c", _PEAK], capture_output=True, text=True, timeout=120, check=True)
    growth = float(done.stdout.split()[-1])
    assert growth < 1.5, f"preparing the rows grew the peak memory by {growth:.2f}x the data"


def test_streamed_rows_leave_the_callers_global_rng_as_it_was(tmp_path):
    """The DataLoader drew its base seed from the global torch RNG on every ``iter`` (tester C #8)."""
    x = torch.randn(200, 3, generator=torch.Generator().manual_seed(0))
    np.save(tmp_path / "x.npy", x.numpy())
    rows = TrainingRows(open_npy(tmp_path / "x.npy"), val_points=20, seed=3, batch_size=16,
                        device=torch.device("cpu"))
    expected = TrainingRows(x, val_points=20, seed=3, batch_size=16, device=torch.device("cpu"))
    assert rows.streamed and not expected.streamed
    state = torch.get_rng_state()
    got = [rows.rows(step, None, 4) for step in range(4)]
    assert torch.equal(torch.get_rng_state(), state)
    from learned_manifold_training.data.stream import batch_rows

    for step in range(4):
        assert torch.equal(got[step], expected.rows(step, batch_rows(step, 3, expected.n_train, 16), 4))
