"""The data rows the end phase gives the neighbour check (`training/end_phase.data_rows`): those of the held-out
points and of the reference sample, so that its Theiler window for sequential data reads the right row lags."""

import torch

from learned_manifold_training.batches import TrainingRows
from learned_manifold_training.end_phase import data_rows


def test_the_rows_given_to_the_neighbour_check_are_those_of_the_held_out_and_reference_points():
    """Each point holds its own row number, so the rows can be read back from the points themselves."""
    n = 1000
    data = torch.stack([torch.arange(n, dtype=torch.float32), torch.randn(n)], 1)
    rows = TrainingRows(data, val_points=150, seed=3, batch_size=64, device=torch.device("cpu"))
    for size in (rows.n_train, 300):  # all the training rows, and a subsample
        reference = rows.sample_rows(size)
        held, ref_rows = data_rows(rows, reference.shape[0])
        assert torch.equal(held.float(), rows.val_x[:, 0]) and torch.equal(ref_rows.float(), reference[:, 0])


def test_the_held_out_rows_are_read_from_the_split_made_not_drawn_again():
    """`data_rows` needs no configuration: it reads the split `TrainingRows` made (``val_rows``), so a
    configuration resolved differently later (a resumed run) cannot give the window other rows than ``val_x``'s."""
    data = torch.stack([torch.arange(500, dtype=torch.float32), torch.randn(500)], 1)
    rows = TrainingRows(data, val_points=80, seed=7, batch_size=64, device=torch.device("cpu"))
    held, _ = data_rows(rows, 100)
    assert held is rows.val_rows
