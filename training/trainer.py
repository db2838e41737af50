"""Training: `train` checks its settings, data and output, then runs the loop (`training/train_loop.py`: AdamW,
clipping, warm-up + cosine decay, EMA, validation, atomic checkpoints, resume, DDP) under the output lock.

Randomness is keyed by ``(seed, step)``: at every step one generator, seeded from both, draws the whole
*global* batch (data indices, bandwidths, noise) and each DDP rank takes its slice. Any number of processes
therefore sees the same batches (results equal up to the order of DDP's gradient sum, whose rounding training
amplifies), and resuming needs no RNG state: step ``k`` always sees the same batch.

Checkpoints: the model file ``OUT`` (safetensors, `learned_manifold.model_file`) and the training state
``OUT.train-state.pt`` (optimizer, EMA, step, settings and recipe version, `training/resume.py`; plain tensors,
loaded with ``weights_only=True``), both written atomically (`training/outputs.py`). Every checkpoint before the end
is marked ``"complete": false`` in the model file; an interrupted run (SIGINT/SIGTERM) saves one at a step boundary
and raises `TrainingInterrupted` (a failed read of the data, such as a killed `DataLoader` worker, saves one of the
last step done before its error: `training/loader_failures.py`); a diverging run stops with `TrainingDiverged`
before writing non-finite weights (`training/runtime.py`). The state holds the loss log and the ``val_every``
validations too, so a resumed run's file keeps those made before the interruption. After the last step the state is
saved (incomplete) before the end phase (`training/end_phase.py`: bandwidth choice, factor repair, checks): a first
signal there is acknowledged on stderr, a second raises `TrainingInterrupted` of that state, and ``resume`` then
does the end phase alone.

The loss of one step is `training/objective.py`'s; validation and the choice of the evaluation σ are
`training/validation.py`'s (re-exported here). A checkpoint before the end defaults to ``s/16`` clamped into the
training range (`initial_sigma`).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch
from torch import Tensor

from learned_manifold.models import check_int
from learned_manifold.precision import full_precision
from learned_manifold.user_warnings import warn_user

from .backbone_spec import is_image_shape
from .batches import TrainingRows, standardisation
from .config import TrainConfig
from .data.base import KnownManifold
from .data.stream import ArraySource
from .outputs import OutputLock, check_output, other_kinds_state
from .refit import refit_factor
from .result import TrainResult
from .resume import check_resume, saved_choices
from .runtime import (
    TrainingDiverged,
    TrainingInterrupted,
    caller_state_off,
    check_data_info,
    check_manifold,
    check_training_tensor,
    init_distributed,
    resolve_device,
)
from .train_loop import bandwidth_sampler, run
from .validation import select_sigma, sigma_grid, validate

__all__ = [
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "TrainingInterrupted",
    "bandwidth_sampler",
    "sigma_grid",
    "select_sigma",
    "standardisation",
    "train",
    "validate",
]


def _check_data(data: Tensor | ArraySource, manifold) -> None:
    """Refuse data the loop cannot train on, before any work: shape, dtype, NaN/inf, float32 range; and a known
    ``manifold`` that cannot validate them (`check_manifold`). Warn about channels-last images (`_check_layout`,
    not refused: points can have that shape too). A streamed source is checked for its shape here (its values as
    the statistics are accumulated, its float32 resolution from them: `check_source_resolution`)."""
    if isinstance(data, ArraySource):
        if len(data) < 10:
            raise ValueError(f"{data.label}: need at least 10 points, got {len(data)}")
        points = data.rows(torch.arange(2))
    else:
        check_training_tensor(data)
        points = data[:2].float()
    _check_layout(tuple(data.shape[1:]), data.label if isinstance(data, ArraySource) else "data")
    check_manifold(manifold, points.reshape(2, -1))


def _check_layout(shape: tuple[int, ...], label: str) -> None:
    """Warn (`warn_user`) where points of shape ``(a, b, c)`` look like channels-last images: ``c`` in 1, 3, 4 and
    ``a``, ``b`` ≥ 4 with ``a`` no channel count (PIL, NumPy, TensorFlow layouts). `train` reads images as
    ``(C, H, W)``, as PyTorch does, so such data would train as an MLP on points (``(16, 16, 3)``) or as a
    16-channel image (``(16, 16, 4)``) without a word, where the CLI turns such arrays channels-first. A warning,
    not an error: point data can have this shape too (30 frames × 17 joints × xyz); a ``.npy`` file's
    `ArraySource` is served channels-first already (tester D s34 7; reviewer s34 1)."""
    if len(shape) == 3 and shape[2] in (1, 3, 4) and shape[0] not in (1, 3, 4) and min(shape[:2]) >= 4:
        read = f"a {shape[0]}-channel image" if is_image_shape(shape) else "points, with an MLP"
        warn_user(f"{label}: points of shape {shape} look like channels-last images (N, H, W, C), but train reads "
                  f"images channels-first, (N, C, H, W), as PyTorch does: these train as {read}. If they are "
                  f"images, pass x.permute(0, 3, 1, 2); if not, flatten them to (N, D) to silence this",
                  UserWarning)


@full_precision
@caller_state_off
def train(
    data: Tensor | ArraySource,
    config: TrainConfig | None = None,
    *,
    manifold: KnownManifold | None = None,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
    device: str | torch.device | None = "auto",
    progress: bool = True,
    stop_after: int | None = None,
    data_info: dict | None = None,
    workers: int = 0,
) -> TrainResult:
    """Train a metric-matching model on ``data`` ``(N, *data_shape)``.

    Everything that can be checked is checked before the first step: the config (`TrainConfig`), the data
    (finite floats within float32's range, ``rank <= D``), ``manifold``'s dimension, the device, and the output
    (`check_output`: no existing model unless ``resume``/``overwrite``, no link/folder/device, a writable folder).
    While it runs, ``OUT.lock`` keeps a second run off the same ``out`` (`OutputLock`; rank 0 only under DDP).

    The run does not depend on the caller's torch state: it trains with grad enabled and outside
    ``inference_mode``, in float32 whatever the default dtype (`caller_state_off`), and with the caller's autocast
    switched off (`full_precision`): the config's ``precision`` alone decides whether it opens its own bf16
    autocast. The caller's settings are back when it returns.

    Args:
        data: training points ``(N, *data_shape)`` (validated finite floats), or an
            `learned_manifold_training.data.stream.ArraySource` (e.g. `open_npy` of a memory-mapped ``.npy``),
            streamed through a `DataLoader` (`training/batches.py`); a held-out split is taken for validation.
            Images channels-first ``(N, C, H, W)``, as PyTorch lays them out: a tensor that looks channels-last
            ``(N, H, W, C)`` is warned about (`_check_layout`: points can have that shape too) and trained as
            given.
        config: `TrainConfig`; defaults if ``None``.
        manifold: the data's true manifold when known (validation by tangent error and dimension).
        out: model file to write (atomically, at every checkpoint and at the end); ``None`` keeps it in memory.
            Checkpoints before the end are marked ``"complete": false`` in the file's extra metadata.
        resume: continue from ``out`` and its training state (same data and config required; a state of an older
            version warns, one of a newer version is refused: `training/resume.py`). With the state damaged, a
            finished ``out`` is the result only where it records the same data and settings (`finished_result`).
            A VAE's state (`train_vae`) is refused before the data are read (`other_kinds_state`).
        overwrite: replace an existing ``out`` (and its training state) with a new run.
        device: ``"auto"`` (CUDA when present), or a torch device (checked: `resolve_device`).
        progress: show a tqdm bar with loss and speed (plain lines where stderr is not a terminal: `Progress`).
        stop_after: stop (after checkpointing) once this step is reached: simulates an interrupted run.
        data_info: what the data are, stored under ``"data"`` in the model file's extra metadata (e.g. an image
            source's stored dtype and value range, `learned_manifold_training.data.ImageData.metadata`); JSON.
        workers: `DataLoader` worker processes that read a streamed source ahead of the loop (0: in-process).
            torch's ``SIGCHLD`` handler, installed by a process's first loader with workers, stays after the run
            (as after a plain `DataLoader`) and passes a child's exit on to the caller's handler
            (`training/loader_failures.py`).

    Returns:
        `TrainResult` holding the EMA model (the one saved) with its chosen default bandwidth.

    Raises:
        TypeError, ValueError: bad settings, data, device or output (`OutputError`), before any work.
        TrainingDiverged: the loss or weights became non-finite (the last good checkpoint is kept).
        TrainingInterrupted: SIGINT/SIGTERM; a checkpoint of the current step was saved first. After the last step
            (in the end phase) a first signal is acknowledged on stderr and the run goes on; a second raises it
            with the state saved at the last step, from which ``resume`` does the end phase.
        RuntimeError: the data stopped coming (a streamed source's `DataLoader` worker killed, e.g. by the OOM
            killer, or a failed read): with ``out``, a checkpoint of the last step done was saved first and the
            message says so; ``resume`` continues from it.
        OutputError: a checkpoint could not be written (e.g. a full disk); the previous one is kept.
    """
    cfg = TrainConfig() if config is None else config
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(cfg).__name__}")
    _check_data(data, manifold)
    data_info = check_data_info(data_info)  # stored as JSON in the model file: a set would fail after the last step
    cfg.model_spec(tuple(data.shape[1:]))  # rank <= D; backbone, preset and denoiser width fit: before any work
    if stop_after is not None:
        check_int(stop_after, "stop_after", 0, cfg.steps)
    out = Path(out) if out is not None else None
    if resume and out is None:
        raise ValueError("resume needs the model path `out`")
    workers = check_int(workers, "workers", 0, 256)
    rank_id, world = init_distributed(device)  # binds this rank's GPU; the backend from the device
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the number of processes {world}")
    device = resolve_device(device, rank_id)
    writes = out is not None and rank_id == 0  # under DDP only rank 0 writes (and locks)
    with OutputLock(out) if writes else contextlib.nullcontext():
        if writes:
            check_output(out, resume=resume, overwrite=overwrite)
            other = other_kinds_state(out, vae=False) if resume else None
            if other is not None:  # a VAE's state: refused at once, before the data are read
                check_resume(out, other, cfg, tuple(data.shape[1:]))
        if resume:  # a setting left to a rule takes an older saved run's value (`resume.saved_choices`)
            cfg = saved_choices(out, cfg, tuple(data.shape[1:]))
        rows = TrainingRows(data, val_points=cfg.val_points, seed=cfg.seed, batch_size=cfg.batch_size,
                            device=device, rank=rank_id, world=world, workers=workers)
        # `refit_factor` by this module's name: a test can stand in for it here
        return run(rows, data, cfg, manifold, out, resume, device, progress, stop_after, rank_id, world, data_info,
                   refit=refit_factor)

