"""Data larger than memory: rows read on demand from a memory-mapped ``.npy``, and the training batches of each
step prepared by `torch.utils.data.DataLoader` workers (issue 9, item 3).

The trainer draws the rows of step ``t`` from a generator keyed by ``(seed, t)`` (`batch_rows`), on the CPU, so
a streamed run takes exactly the rows of an in-memory run of the same data and seed on the CPU, whatever the
number of workers, and resuming at step ``t`` continues the same sequence. Under DDP every rank reads only its
own slice of the global batch. The statistics of SPEC §1 (mean, scale) and the data's fingerprint are accumulated
over chunks of rows in float64, in file order and in the same order for both kinds of source, so both give the same
standardisation and fingerprint bit for bit, and a file is read in contiguous chunks, a few times in all.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .images import _nchw_order, _reads_as_images

__all__ = ["CHUNK_ROWS", "ArraySource", "BatchStream", "batch_rows", "data_digest", "data_summary", "open_npy",
           "row_statistics"]

CHUNK_ROWS = 1 << 14
"""Rows per chunk when statistics or standardised copies are computed chunk by chunk."""

_SEED_STRIDE = 1_000_003  # batches are keyed by seed * 1_000_003 + step (as in the trainer)


class ArraySource:
    """Rows of an ``(N, *shape)`` array, read on demand: a ``.npy`` file opened memory-mapped (lazily, once per
    process, so `DataLoader` workers each map the file instead of receiving a pickled copy), or a tensor.

    Batches are read and standardised on the CPU and sent to the training device step by step, so a tensor on
    another device (a GPU) is copied to the CPU once, here.

    A file's 4-axis array that reads as images is served channels-first, as `learned-manifold train` reads the
    same file (`files.resolve_source`): channels-last ``(N, H, W, C)`` rows are transposed as they are read, and
    a shape that fits both layouts needs ``layout``.

    Args:
        source: a ``.npy`` path (numeric dtype, at least 2 axes, not pickled) or a tensor (any device; served as
            it is).
        layout: a file's image layout: None (automatic), "NCHW" or "NHWC".
    """

    def __init__(self, source: str | os.PathLike | Tensor, *, layout: str | None = None):
        self._array: np.ndarray | Tensor | None = None
        self._order: tuple[int, ...] | None = None
        if isinstance(source, Tensor):
            if source.ndim < 2:
                raise ValueError(f"data must have shape (N, ...) with at least 2 axes, got {tuple(source.shape)}")
            if layout is not None:
                raise ValueError("layout applies to .npy files; give a tensor channels-first (N, C, H, W)")
            self.path, self._array = None, source.detach().cpu()
            self.shape = tuple(source.shape)
        else:
            self.path = Path(source)
            array = _map(self.path)
            self.shape = tuple(array.shape)
            if _reads_as_images(self.shape, layout):
                self._order = _nchw_order(self.shape, layout, f"data file '{self.path}'")
                self.shape = tuple(self.shape[i] for i in self._order)
        self.label = f"data file '{self.path}'" if self.path is not None else "data"

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def in_memory(self) -> bool:
        return self.path is None

    def _data(self) -> np.ndarray | Tensor:
        if self._array is None:
            self._array = _map(self.path)
        return self._array

    def __getstate__(self) -> dict:  # workers re-open the map instead of receiving a copy of the data
        state = dict(self.__dict__)
        if self.path is not None:
            state["_array"] = None
        return state

    def rows(self, idx: Tensor) -> Tensor:
        """Rows ``idx`` ``(n,)`` (any order, repeats allowed) as float32 ``(n, *shape)``; a file is read in sorted
        order (one pass over the pages), then the rows are put back in the order asked."""
        data = self._data()
        if isinstance(data, Tensor):
            return data[idx].float()
        order = torch.argsort(idx)
        raw = np.asarray(data[idx[order].numpy()])
        if raw.dtype.kind == "f" and raw.dtype.itemsize > 4 and raw.size:  # float64 beyond float32: say so
            top, limit = float(np.nanmax(np.abs(raw), initial=0.0)), float(np.finfo(np.float32).max)
            if math.isfinite(top) and top > limit:
                raise ValueError(f"{self.label}: data values overflow float32 (largest |x| = {top:.3g}, float32 "
                                 f"holds up to {limit:.3g}): rescale the data")
        sorted_rows = torch.from_numpy(raw.astype(np.float32))
        if self._order is not None:
            sorted_rows = sorted_rows.permute(self._order).contiguous()
        out = torch.empty_like(sorted_rows)
        out[order] = sorted_rows
        return out

    def chunks(self, idx: Tensor) -> Iterator[Tensor]:
        """The rows ``idx`` in order, as float32 chunks of `CHUNK_ROWS`."""
        for part in idx.split(CHUNK_ROWS):
            yield self.rows(part)


def _map(path: Path) -> np.ndarray:
    """Open a ``.npy`` memory-mapped, with one clear error for anything that cannot be streamed."""
    label = f"data file '{path}'"
    if path.suffix.lower() != ".npy":
        raise ValueError(f"{label}: only .npy files can be streamed (memory-mapped); got {path.suffix or 'no'} "
                         "extension")
    if path.is_dir():
        from .readers import DataPathIsAFolderError

        raise DataPathIsAFolderError(f"{label}: is a directory, expected a .npy file")
    if not path.is_file():
        raise FileNotFoundError(f"{label} does not exist or is not a regular file")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as err:
        raise ValueError(f"{label}: not a valid .npy file that can be memory-mapped ({err})") from err
    if array.dtype.kind not in "uif" or array.dtype.itemsize > 8:
        raise ValueError(f"{label}: dtype {array.dtype} is not a real numeric type")
    if array.ndim < 2 or array.shape[0] < 2:
        raise ValueError(f"{label}: need shape (N >= 2, ...) with at least 2 axes, got {array.shape}")
    return array


def open_npy(path: str | os.PathLike, *, layout: str | None = None) -> ArraySource:
    """A memory-mapped ``.npy`` as an `ArraySource` (nothing is read but the header); images channels-first
    (``layout`` as in `ArraySource`)."""
    return ArraySource(path, layout=layout)


def row_statistics(source: ArraySource | Tensor, idx: Tensor) -> tuple[Tensor, float]:
    """Mean point and scale ``s = sqrt(E‖x − μ‖²)`` (SPEC §1) of rows ``idx``, in float64 by chunks.

    The rows are read in file order (``idx`` sorted; the statistics do not depend on the order but for rounding),
    so a memory-mapped file is read in contiguous chunks, not page by scattered page. Two passes (mean, then
    spread), each summing chunk by chunk in that order, so an in-memory tensor and a memory-mapped file of the
    same values give the same bits. Also checks every value is finite.

    Returns:
        ``(mean (*shape) float64, scale)``.
    """
    source = source if isinstance(source, ArraySource) else ArraySource(source)
    idx = idx.sort().values
    total = torch.zeros(math.prod(source.shape[1:]), dtype=torch.float64, device="cpu")
    for chunk in source.chunks(idx):
        flat = chunk.reshape(chunk.shape[0], -1).double()
        _check_finite(flat, source)
        total += flat.sum(0)
    n = int(idx.numel())
    mean = total / n
    spread = 0.0
    for chunk in source.chunks(idx):
        spread += float((chunk.reshape(chunk.shape[0], -1).double() - mean).pow(2).sum(-1).sum())
    return mean.reshape(source.shape[1:]), math.sqrt(spread / n)


def _check_finite(flat: Tensor, source: ArraySource) -> None:
    if not bool(torch.isfinite(flat).all()):
        raise ValueError(f"{source.label}: contains non-finite values (NaN or inf)")


def data_summary(source: ArraySource | Tensor) -> tuple[list[float], str]:
    """The fingerprint ``[N, D, Σx, Σx²]`` and the `data_digest` of all rows, in one pass in file order.

    The one formula of both kinds of source: chunks of `CHUNK_ROWS` rows in order, each summed in float64 and
    the sums accumulated chunk by chunk (the streamed formula of earlier versions), so an in-memory tensor and a
    memory-mapped file of the same values give the same fingerprint bit for bit. Also checks every value is
    finite.

    Returns:
        ``(fingerprint, digest)``: four floats, and the SHA-256 hex digest of `data_digest`.
    """
    source = source if isinstance(source, ArraySource) else ArraySource(source)
    digest = hashlib.sha256(repr(tuple(source.shape)).encode())
    total = torch.zeros(math.prod(source.shape[1:]), dtype=torch.float64, device="cpu")
    total_sq = 0.0
    for chunk in source.chunks(torch.arange(len(source), device="cpu")):
        digest.update(chunk.contiguous().numpy())
        flat = chunk.reshape(chunk.shape[0], -1).double()
        _check_finite(flat, source)
        total += flat.sum(0)
        total_sq += float(flat.pow(2).sum())
    fingerprint = [float(len(source)), float(total.numel()), float(total.sum()), total_sq]
    return fingerprint, digest.hexdigest()


def data_digest(source: ArraySource | Tensor) -> str:
    """SHA-256 of the shape and of every row in order as float32 bytes, read chunk by chunk: what a run resumes
    only on. The sums of the fingerprint (`data_summary`) miss a reordering of the rows or of the columns (the
    same ``Σx`` and ``Σx²``); this does not. An in-memory tensor and a memory-mapped file of the same values
    agree. (The digest of `data_summary`, which computes it beside the sums in the same pass.)"""
    return data_summary(source)[1]


def batch_rows(step: int, seed: int, n_rows: int, batch_size: int, rank: int = 0, world: int = 1) -> Tensor:
    """Indices (into the training rows) of this rank's slice of the global batch of ``step``, on the CPU.

    The same draw as the trainer's in-memory batch on the CPU: a generator keyed by ``seed·1000003 + step``
    whose first call draws the ``batch_size`` indices.
    """
    g = torch.Generator().manual_seed(seed * _SEED_STRIDE + step)
    idx = torch.randint(n_rows, (batch_size,), generator=g)
    lo, hi = rank * batch_size // world, (rank + 1) * batch_size // world
    return idx[lo:hi]


class BatchStream(torch.utils.data.Dataset):
    """Item ``t`` is the standardised rows ``z = (x − μ)/s`` of step ``t``'s batch (this rank's slice), float32.

    Used as ``DataLoader(BatchStream(...), batch_size=None, sampler=range(start, end), num_workers=w)``: workers
    read and standardise the rows of coming steps while the current step runs.

    Args:
        source: the data; train_rows: ``(n,)`` indices of the training rows in ``source``.
        mean, scale: the standardisation (float64 mean of the data's point shape, float scale).
        batch_size, seed, rank, world: as in the trainer's config and DDP setting.
    """

    def __init__(self, source: ArraySource, train_rows: Tensor, mean: Tensor, scale: float, *, batch_size: int,
                 seed: int, rank: int = 0, world: int = 1):
        self.source, self.train_rows = source, train_rows
        self.mean, self.scale = mean.double(), float(scale)
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world

    def __len__(self) -> int:  # steps are drawn by the sampler; any step number is valid
        return 2**62

    def __getitem__(self, step: int) -> Tensor:
        idx = batch_rows(step, self.seed, self.train_rows.numel(), self.batch_size, self.rank, self.world)
        rows = self.source.rows(self.train_rows[idx])
        return ((rows.double() - self.mean) / self.scale).float()
