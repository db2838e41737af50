"""The SHA-256 checksum written into model and VAE files (`model_file`, `vae_file`): what it covers, and the
check that refuses a file whose contents no longer match it (step 6 of `model_file`'s validation)."""

from __future__ import annotations

import hashlib
from typing import Protocol

import torch
from torch import Tensor

__all__ = ["CHECKSUM_KEY", "checksum", "verify_checksum"]

CHECKSUM_KEY = "sha256"  # optional: files written before it have none


class _Named(Protocol):
    def error(self, problem: str) -> Exception: ...


def checksum(metadata: dict[str, str], tensors: dict[str, Tensor]) -> str:
    """SHA-256 (hex) of a file's ``config`` and ``extra`` metadata strings and of every tensor (name, dtype,
    shape and bytes, in name order): what `save_model`/`save_vae` store under ``sha256`` and loading checks."""
    h = hashlib.sha256()
    for key in ("config", "extra"):
        h.update(metadata[key].encode() + b"\0")
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{list(t.shape)}\0".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def verify_checksum(reader: _Named, metadata: dict, tensors: dict[str, Tensor]) -> None:
    """Raise ``reader.error(...)`` (a `ModelFileError` naming the file) where the file's stored checksum does not
    match the ``metadata`` and ``tensors`` read; a file without one (written before checksums) passes."""
    stored = metadata.get(CHECKSUM_KEY)
    if stored is not None and checksum(metadata, tensors) != stored:
        raise reader.error("is corrupted: its contents do not match the SHA-256 checksum written with them (a "
                           "byte of the weights or metadata changed since it was saved); it was not loaded")
