"""The SHA-256 checksum written into model and VAE files (`model_file`, `vae_file`): what it covers, and the
check that refuses a file whose contents no longer match it (step 6 of `model_file`'s validation)."""

from __future__ import annotations

import hashlib
from typing import Protocol

import torch
from torch import Tensor

__all__ = ["CHECKSUM_KEY", "checksum", "verify_checksum"]

CHECKSUM_KEY = "sha256"  # absent only from version-1 files (written before checksums); version 2 always has it


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
    match the ``metadata`` and ``tensors`` read, or where a file of format version 2 or later has none (every
    writer of version 2, model and VAE files alike, wrote one: git history from its introduction on, so its
    absence means the file was edited, and the edit may have changed a weight). A version-1 file without one
    (written before checksums) passes. ``metadata["version"]`` has been checked to be a version this library
    reads (`model_file_notes.version_problem`)."""
    stored = metadata.get(CHECKSUM_KEY)
    if stored is None:
        if metadata.get("version") != "1":
            raise reader.error(f"was not loaded: version {metadata.get('version')} files carry a checksum "
                               f"({CHECKSUM_KEY!r}); this one has none: it was edited after writing")
        return
    if checksum(metadata, tensors) != stored:
        raise reader.error("is corrupted: its contents do not match the SHA-256 checksum written with them (a "
                           "byte of the weights or metadata changed since it was saved); it was not loaded")
