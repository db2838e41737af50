"""The device a run trains on and the process group under torchrun (issue 13).

- `resolve_device` checks a device name before any work (``"bogus"``, ``"cuda"`` on a CPU-only build, ``"mps"``).
- `init_distributed` binds each rank's GPU and starts the process group with `distributed_backend`'s backend.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

__all__ = ["distributed_backend", "init_distributed", "resolve_device"]


def init_distributed(device: str | torch.device | None = "auto", *, name: str = "device") -> tuple[int, int]:
    """``(rank, world_size)``; under torchrun (``WORLD_SIZE > 1``) first binds this rank's GPU, then starts the
    process group (if not yet): call it before the first collective. The device is ``device`` resolved for
    ``LOCAL_RANK`` (`resolve_device`; plain ``"cuda"``: GPU ``LOCAL_RANK``), bound by ``torch.cuda.set_device``
    (NCCL runs on the current GPU: GPU 0 for every rank otherwise); the backend is `distributed_backend`'s (gloo
    for ``--device cpu`` on a machine with GPUs too).

    Raises:
        ValueError: ``device`` as `resolve_device` refuses it, before the process group starts.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        local = int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")))
        dev = resolve_device(device, local, name=name)
        if dev.type == "cuda":  # plain "cuda" is the rank's own GPU too; "cuda:N" is N for every rank, as asked
            torch.cuda.set_device(dev.index if dev.index is not None else local % torch.cuda.device_count())
        if not dist.is_initialized():
            dist.init_process_group(backend=distributed_backend(dev))
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def distributed_backend(device: torch.device) -> str:
    """The process group's backend for ranks training on ``device``: ``"nccl"`` for CUDA, else ``"gloo"``."""
    return "nccl" if device.type == "cuda" else "gloo"


def resolve_device(device: str | torch.device | None, rank: int = 0, *, name: str = "device") -> torch.device:
    """The torch device for ``device`` (``"auto"``/``None``: CUDA when present, rank-local under DDP).

    Raises:
        TypeError: ``device`` is not a string or a `torch.device`.
        ValueError: an unknown device name, a device type this torch build lacks (``"cuda"`` on a CPU-only
            build), a CUDA index beyond the visible GPUs, or ``"mps"`` (no float64, which the eigen step needs).
            Messages start with ``name`` (the CLI passes ``"--device"``).
    """
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", rank % torch.cuda.device_count())
        return torch.device("cpu")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"{name} must be a string such as 'cpu' or 'cuda:0', got {type(device).__name__}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        prefix = "" if name == "device" else f"{name}: "
        raise ValueError(f"{prefix}unknown device {str(device)!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if torch.version.cuda is None and torch.version.hip is None:
            raise ValueError(f"{name} {device}: this torch build has no CUDA")
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"{name} {device}: no CUDA GPU is visible")
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"{name} {device}: only {count} CUDA GPU(s) are visible (cuda:0..cuda:{count - 1})")
    elif dev.type == "mps":  # refused before any work, not after the last step
        raise ValueError(f"{name} {device}: MPS is not supported: it has no float64, which the geometry's eigen "
                         f"step needs (SPEC §5); use cpu")
    elif dev.type != "cpu":
        raise ValueError(f"{name} {device}: device type {dev.type!r} is not supported; use cpu or cuda")
    return dev
