"""What the training loop reads: the data split, standardised (SPEC §1), in memory on the device or streamed.

`TrainingRows` hides the difference. In memory, the standardised training rows live on the device and a batch is
an index into them. Streamed (an `ArraySource` that is not in memory, e.g. a memory-mapped ``.npy`` larger than
RAM), a `DataLoader` over `BatchStream` reads and standardises each step's rows in worker processes, pinned for a
non-blocking copy to the GPU, while the previous step runs. Both read the same rows in the same order for the
same seed (`batch_rows`), and both compute the statistics with `row_statistics` and the fingerprint with
`data_summary`, so a streamed run on the CPU reaches the weights of the in-memory run bit for bit (tested) and a
run resumes across the two kinds of source.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .data.stream import ArraySource, BatchStream, data_summary, row_statistics
from .runtime import _F32

__all__ = ["TrainingRows", "same_fingerprint", "split_rows", "standardisation", "standardised_copy"]


def split_rows(n: int, n_val: int, seed: int) -> tuple[Tensor, Tensor]:
    """``(train_rows, val_rows)``: a seeded permutation of ``range(n)``; ``min(n_val, n // 5)`` rows are held out
    (`TrainConfig.val_points` is capped silently: 500 asked of 600 points hold out 120; the model file records the
    counts, ``num_val_points`` and ``num_train_points``)."""
    n_val = min(n_val, n // 5)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_val:], perm[:n_val]


def standardisation(data: Tensor | ArraySource, rows: Tensor | None = None) -> tuple[float, Tensor]:
    """Global scalar scale and mean (SPEC §1) of ``data[rows]`` (all rows by default): ``μ`` the mean point,
    ``s = sqrt(E‖x − μ‖²)``, accumulated in float64 chunk by chunk in file order (`row_statistics`).

    Returns:
        ``(s, μ)`` with ``μ`` float32 of the point shape.

    Raises:
        ValueError: non-finite values, ``s`` overflows float32 (the model stores it in float32), or all points are
            identical.
    """
    source = data if isinstance(data, ArraySource) else ArraySource(data)
    rows = torch.arange(len(source)) if rows is None else rows
    mean, scale = row_statistics(source, rows)
    if not (math.isfinite(scale) and scale <= _F32.max):
        raise ValueError(f"the data overflow float32: their scale s = sqrt(E|x - mean|^2) = {scale:.3g} exceeds "
                         f"float32's largest value {_F32.max:.3g}; rescale the data")
    if not scale > 0:
        raise ValueError("all data points are identical: the data scale is zero")
    return scale, mean.float()


def _standardise(x: Tensor, scale: float, mean: Tensor) -> Tensor:
    """``z = (x − μ)/s`` computed in float64 and returned in float32 (the formula `BatchStream` uses too)."""
    return ((x.double() - mean.double()) / scale).float()


def standardised_copy(data: Tensor | ArraySource, rows: Tensor, scale: float, mean: Tensor,
                      device: torch.device) -> Tensor:
    """``z = (x − μ)/s`` of ``data[rows]``, ``(len(rows), *shape)`` float32 on ``device``, in ``rows`` order.

    Written chunk by chunk (`CHUNK_ROWS` rows, `_standardise`) into one preallocated tensor: the only copy of the
    data's size that is made (no float64 copy, no list of chunks to concatenate).

    Raises:
        ValueError: a standardised value is not finite in float32.
    """
    source = data if isinstance(data, ArraySource) else ArraySource(data)
    z = torch.empty((int(rows.numel()), *source.shape[1:]), dtype=torch.float32, device=device)
    start = 0
    for chunk in source.chunks(rows):
        part = _standardise(chunk, scale, mean)
        if not bool(torch.isfinite(part).all()):
            raise ValueError("the standardised data (x - mean) / scale are not finite in float32: rescale the data")
        z[start:start + len(part)] = part
        start += len(part)
    return z


class TrainingRows:
    """The split and standardised data of one run, and the rows of each step.

    Args:
        data: ``(N, *shape)`` tensor, or an `ArraySource` (streamed when it is not in memory).
        val_points, seed, batch_size: from the `TrainConfig` (at most ``N // 5`` held out: `split_rows`).
        device: where the loop runs; rank, world: the DDP setting.
        workers: `DataLoader` worker processes for a streamed source (0: read in the main process).

    Attributes:
        shape: a point's shape; n: number of points; n_train: training rows; train_rows, val_rows: the split's
        ``(n_train,)`` and ``(n_val,)`` ``int64`` data rows (`split_rows`); scale, mean: the standardisation;
        val_x: ``(n_val, *shape)`` held-out points in data units (the rows ``val_rows``), on the device;
        fingerprint: ``[N, D, Σx, Σx²]`` (what states of earlier versions recorded); digest: `data_digest`, what a
        run resumes on. Both come from `data_summary` (one pass), the same bits for a tensor and a file of the same
        values.

    Memory: in memory, the standardised training rows (float32, on ``device``) are the only copy of the data's
    size; the statistics are summed chunk by chunk and the copy is filled chunk by chunk.
    """

    def __init__(self, data: Tensor | ArraySource, *, val_points: int, seed: int, batch_size: int,
                 device: torch.device, rank: int = 0, world: int = 1, workers: int = 0):
        self.source = data if isinstance(data, ArraySource) else ArraySource(data.float())
        self.shape = tuple(self.source.shape[1:])
        self.n = len(self.source)
        self.train_rows, self.val_rows = split_rows(self.n, val_points, seed)
        self.n_train = int(self.train_rows.numel())
        self.scale, self.mean = standardisation(self.source, self.train_rows)
        self.val_x = self.source.rows(self.val_rows).to(device)
        self.fingerprint, self.digest = data_summary(self.source)
        self.device, self.seed, self.batch_size = device, seed, batch_size
        self.rank, self.world, self.workers = rank, world, workers
        self._z = None
        if self.source.in_memory:
            self._z = standardised_copy(self.source, self.train_rows, self.scale, self.mean, device)
        self._stream = None
        self._next_step = self._end = None

    def standardised_sample(self, n: int) -> Tensor:
        """Up to ``n`` training rows, standardised and flat, ``(m, D)`` float32 on the CPU (a seeded subsample
        when there are more)."""
        rows = self.sample_indices(n)
        chunks = [_standardise(c, self.scale, self.mean) for c in self.source.chunks(rows)]
        return torch.cat(chunks).reshape(len(rows), -1)

    def sample_rows(self, n: int) -> Tensor:
        """The rows of `standardised_sample` in data units as the source reads them, flat ``(m, D)`` float32 on the
        CPU: read as `val_x` is, so a training row equal to a held-out one stays bit-equal to it (through the
        standardisation and back, 37% of Gaussian rows moved by an ulp, and `neighbour_check` missed copies of
        held-out points among them, reviewer s31)."""
        return self.source.rows(self.sample_indices(n)).reshape(-1, math.prod(self.shape))

    def sample_indices(self, n: int) -> Tensor:
        """The data rows that `standardised_sample` and `sample_rows` read for ``n``, in their order: ``(m,)``
        ``int64`` indices into the whole data, ``m = min(n, n_train)``. All the training rows (`train_rows`, in
        the split's seeded order) when there are at most ``n``, else a subsample of them seeded by the run's seed,
        in the same order; the same draw on every call."""
        rows = self.train_rows
        if len(rows) > n:
            pick = torch.randperm(len(rows), generator=torch.Generator().manual_seed(self.seed))[:n]
            rows = rows[pick.sort().values]
        return rows

    @property
    def streamed(self) -> bool:
        return self._z is None

    def _dataset(self) -> BatchStream:
        """Step ``t``'s standardised rows as item ``t`` (this rank's slice)."""
        return BatchStream(self.source, self.train_rows, self.mean, self.scale, batch_size=self.batch_size,
                           seed=self.seed, rank=self.rank, world=self.world)

    def _open(self, start: int, end: int) -> None:
        """A loader over steps ``start … end − 1``. It draws its workers' base seed from its own generator,
        seeded by the run's seed, not from the caller's global torch RNG (which a run leaves as it was)."""
        loader = torch.utils.data.DataLoader(
            self._dataset(), batch_size=None, sampler=range(start, end), num_workers=self.workers,
            pin_memory=self.device.type == "cuda", prefetch_factor=4 if self.workers else None,
            persistent_workers=False, generator=torch.Generator().manual_seed(self.seed))
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

    def step_rows(self, step: int, idx: Tensor) -> Tensor:
        """The rows of `rows` for step ``step``, ``(b, *shape)`` on the device, read once in this process: no
        loader is opened (its workers started) and the run's loader is left as it is (the precision probe's batch,
        read before the run's first step)."""
        if self._z is not None:
            return self._z[idx]
        return self._dataset()[step].to(self.device)


def same_fingerprint(saved: list[float], now: list[float]) -> bool:
    """Whether a training state's fingerprint ``[N, D, Σx, Σx²]`` is the data's, to 1e-9 relative: states of
    earlier versions summed all rows at once, and in-memory and streamed rows once used two formulas; for large
    data the last digits differ (``data_summary`` now sums chunk by chunk for both). The digest beside it tells
    different data apart."""
    return len(saved) == len(now) and all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)
                                          for a, b in zip(saved, now, strict=True))
