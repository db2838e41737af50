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


def test_the_float32_limits_are_defined_once_for_the_training_modules():
    """``_F32 = torch.finfo(torch.float32)`` was defined in batches, runtime and trainer (tester C, item 6)."""
    from learned_manifold_training import batches, runtime

    assert batches._F32 is runtime._F32
    assert runtime._F32.max == torch.finfo(torch.float32).max


def test_the_reference_sample_reads_rows_as_the_held_out_points_are_so_copies_stay_bit_equal():
    """The trainer's neighbour-check reference (`TrainingRows.sample_rows`) and the held-out points (`val_x`) are
    read the same way: a training row equal to a held-out row is bit-equal to it, so `neighbour_check` leaves every
    such copy out. Through the standardisation and back (the reference before), Gaussian float64 rows came back an
    ulp off (37%), and 208 of 354 copies of held-out points stayed in the reference (reviewer s31)."""
    from learned_manifold.neighbour_check import _without_copies

    x = torch.randn(2000, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3.7 + 11.0
    rows = TrainingRows(torch.cat([x, x]), val_points=400, seed=0, batch_size=64, device=torch.device("cpu"))
    reference = rows.sample_rows(20_000)
    assert reference.shape == (rows.n_train, 3) and reference.dtype == torch.float32
    held = rows.val_x.reshape(400, 3)
    with_copy = (held[:, None, :] == reference[None]).all(-1).any(1)  # exact copies, counted directly
    assert int(with_copy.sum()) > 300  # each row twice: most held-out rows have their twin in training
    kept, left_out, _ = _without_copies(held, reference)
    assert not (held[:, None, :] == kept[None]).all(-1).any()  # none is left
    assert left_out == reference.shape[0] - kept.shape[0] >= int(with_copy.sum())
    old = rows.standardised_sample(20_000).double() * rows.scale + rows.mean.reshape(1, -1).double()
    assert not torch.equal(old.float(), reference)  # the round trip the trainer used to take moves rows


def test_sample_indices_are_the_training_rows_the_samples_read_in_their_order_and_seeded():
    """`TrainingRows.sample_indices(n)`: ``(min(n, n_train),)`` indices into the data of training rows only (all
    of them, or a subsample, in the split's order); the rows `sample_rows` and `standardised_sample` read, in
    their order, the same draw on every call."""
    n = 500
    data = torch.stack([torch.arange(n, dtype=torch.float32), torch.randn(n)], 1)  # each point holds its row
    rows = TrainingRows(data, val_points=100, seed=4, batch_size=8, device=torch.device("cpu"))
    held = set(rows.val_x[:, 0].long().tolist())
    for size in (rows.n_train + 7, rows.n_train, 50):
        picked = rows.sample_indices(size)
        assert picked.shape == (min(size, rows.n_train),) and picked.dtype == torch.int64
        assert len(set(picked.tolist())) == len(picked)
        position = {int(row): i for i, row in enumerate(rows.train_rows)}  # in the split's order
        assert [position[int(row)] for row in picked] == sorted(position[int(row)] for row in picked)
        assert size < rows.n_train or torch.equal(picked, rows.train_rows)
        assert not held & set(picked.tolist())
        assert torch.equal(picked.float(), rows.sample_rows(size)[:, 0])
        standardised = rows.standardised_sample(size)[:, 0].double() * rows.scale + rows.mean[0].double()
        torch.testing.assert_close(standardised, picked.double(), rtol=0.0, atol=1e-3)
        assert torch.equal(picked, rows.sample_indices(size))
    assert not torch.equal(rows.sample_indices(50), rows.train_rows[:50])  # drawn from all of them


def test_the_held_out_rows_are_kept_and_are_the_rows_val_x_holds():
    """`TrainingRows.val_rows`: the ``(n_val,)`` data rows of `val_x`, in its order, the rows the split held out
    (`split_rows`), disjoint from `train_rows` and with them every row once: what the end phase gives the neighbour
    check instead of drawing the split again (reviewer s36)."""
    n = 400
    data = torch.stack([torch.arange(n, dtype=torch.float32), torch.randn(n)], 1)  # each point holds its row
    rows = TrainingRows(data, val_points=60, seed=2, batch_size=8, device=torch.device("cpu"))
    assert rows.val_rows.shape == (60,) and rows.val_rows.dtype == torch.int64
    assert torch.equal(rows.val_rows.float(), rows.val_x[:, 0])
    assert sorted(rows.val_rows.tolist() + rows.train_rows.tolist()) == list(range(n))
