"""What the training loop reads: the data split, standardised (SPEC §1), in memory on the device or streamed.

`TrainingRows` hides the difference. In memory, the standardised training rows live on the device and a batch is
an index into them. Streamed (an `ArraySource` that is not in memory, e.g. a memory-mapped ``.npy`` larger than
RAM), a `DataLoader` over `BatchStream` reads and standardises each step's rows in worker processes, pinned for a
non-blocking copy to the GPU, while the previous step runs. Both read the same rows in the same order for the
same seed (`batch_rows`), and both compute the statistics with `row_statistics`, so a streamed run on the CPU
reaches the weights of the in-memory run bit for bit (tested).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .data.stream import ArraySource, BatchStream, data_digest, row_statistics

__all__ = ["TrainingRows", "split_rows", "standardisation"]

_F32 = torch.finfo(torch.float32)


def split_rows(n: int, n_val: int, seed: int) -> tuple[Tensor, Tensor]:
    """``(train_rows, val_rows)``: a seeded permutation of ``range(n)``; at most a fifth is held out."""
    n_val = min(n_val, n // 5)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_val:], perm[:n_val]


def standardisation(data: Tensor | ArraySource, rows: Tensor | None = None) -> tuple[float, Tensor]:
    """Global scalar scale and mean (SPEC §1) of ``data[rows]`` (all rows by default): ``μ`` the mean point,
    ``s = sqrt(E‖x − μ‖²)``, accumulated in float64 chunk by chunk (`row_statistics`).

    Returns:
        ``(s, μ)`` with ``μ`` float32 of the point shape.

    Raises:
        ValueError: non-finite values, ``s`` overflows float32 (the model stores it in float32), or all points are
            identical.
    """
    source = data if isinstance(data, ArraySource) else ArraySource(data)
    rows = torch.arange(len(source)) if rows is None else rows
    mean, scale, _ = row_statistics(source, rows)
    if not (math.isfinite(scale) and scale <= _F32.max):
        raise ValueError(f"the data overflow float32: their scale s = sqrt(E|x - mean|^2) = {scale:.3g} exceeds "
                         f"float32's largest value {_F32.max:.3g}; rescale the data")
    if not scale > 0:
        raise ValueError("all data points are identical: the data scale is zero")
    return scale, mean.float()


def _standardise(x: Tensor, scale: float, mean: Tensor) -> Tensor:
    """``z = (x − μ)/s`` computed in float64 and returned in float32 (the formula `BatchStream` uses too)."""
    return ((x.double() - mean.double()) / scale).float()


class TrainingRows:
    """The split and standardised data of one run, and the rows of each step.

    Args:
        data: ``(N, *shape)`` tensor, or an `ArraySource` (streamed when it is not in memory).
        val_points, seed, batch_size: from the `TrainConfig`.
        device: where the loop runs; rank, world: the DDP setting.
        workers: `DataLoader` worker processes for a streamed source (0: read in the main process).

    Attributes:
        shape: a point's shape; n: number of points; n_train: training rows; scale, mean: the standardisation;
        val_x: ``(n_val, *shape)`` held-out points in data units, on the device; fingerprint: ``[N, D, Σx, Σx²]``
        (what states of earlier versions recorded); digest: `data_digest`, what a run resumes on.
    """

    def __init__(self, data: Tensor | ArraySource, *, val_points: int, seed: int, batch_size: int,
                 device: torch.device, rank: int = 0, world: int = 1, workers: int = 0):
        self.source = data if isinstance(data, ArraySource) else ArraySource(data.float())
        self.shape = tuple(self.source.shape[1:])
        self.n = len(self.source)
        self.train_rows, val_rows = split_rows(self.n, val_points, seed)
        self.n_train = int(self.train_rows.numel())
        self.scale, self.mean = standardisation(self.source, self.train_rows)
        self.val_x = self.source.rows(val_rows).to(device)
        if self.source.in_memory:  # the formula of every earlier version, so their runs still resume
            flat = self.source.rows(torch.arange(self.n)).reshape(self.n, -1).double()
            self.fingerprint = [float(self.n), float(flat.shape[1]), float(flat.sum()), float(flat.pow(2).sum())]
        else:
            _, _, self.fingerprint = row_statistics(self.source, torch.arange(self.n))
        self.digest = data_digest(self.source)
        self.device, self.seed, self.batch_size = device, seed, batch_size
        self.rank, self.world, self.workers = rank, world, workers
        self._z = None
        if self.source.in_memory:
            z = torch.cat([_standardise(c, self.scale, self.mean) for c in self.source.chunks(self.train_rows)])
            if not bool(torch.isfinite(z).all()):
                raise ValueError("the standardised data (x - mean) / scale are not finite in float32: rescale the "
                                 "data")
            self._z = z.to(device)
        self._stream = None
        self._next_step = self._end = None

    def standardised_sample(self, n: int) -> Tensor:
        """Up to ``n`` training rows, standardised and flat, ``(m, D)`` float32 on the CPU (a seeded subsample
        when there are more)."""
        rows = self.train_rows
        if len(rows) > n:
            pick = torch.randperm(len(rows), generator=torch.Generator().manual_seed(self.seed))[:n]
            rows = rows[pick.sort().values]
        chunks = [_standardise(c, self.scale, self.mean) for c in self.source.chunks(rows)]
        return torch.cat(chunks).reshape(len(rows), -1)

    @property
    def streamed(self) -> bool:
        return self._z is None

    def _open(self, start: int, end: int) -> None:
        dataset = BatchStream(self.source, self.train_rows, self.mean, self.scale, batch_size=self.batch_size,
                              seed=self.seed, rank=self.rank, world=self.world)
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=None, sampler=range(start, end), num_workers=self.workers,
            pin_memory=self.device.type == "cuda", prefetch_factor=4 if self.workers else None,
            persistent_workers=False)
        self._stream, self._next_step, self._end = iter(loader), start, end

    def rows(self, step: int, idx: Tensor, end: int) -> Tensor:
        """Standardised rows of step ``step`` on the device, ``(b, *shape)``: ``z[idx]`` in memory; streamed,
        the next item of the loader (``idx`` is then the same draw, made on the device, and unused)."""
        if self._z is not None:
            return self._z[idx]
        if self._stream is None or step != self._next_step or end != self._end:  # a new range of steps
            self._open(step, end)
        self._next_step = step + 1
        return next(self._stream).to(self.device, non_blocking=True)
