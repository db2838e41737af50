"""The model file (``.lmm``): one safetensors file holding weights and plain-JSON metadata.

Loading never executes code: safetensors stores raw tensors and a JSON header, nothing is unpickled.
Writing is atomic (temporary file in the same folder, then ``os.replace``), so a crash never leaves a
truncated model where a good one was.

Layout: tensors ``factor_net.*``, ``denoiser_net.*``, ``scale``, ``mean`` (the `MetricModel` state dict);
header metadata ``{"format": "learned-manifold", "version": "1", "config": <ModelConfig JSON>,
"extra": <free JSON>}``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .models import MetricModel, ModelConfig

__all__ = ["FORMAT", "ModelFileError", "atomic_write_bytes", "load_model", "read_metadata", "save_model"]

FORMAT = "learned-manifold"
VERSION = "1"


class ModelFileError(ValueError):
    """A file that is not a readable learned-manifold model (wrong format, truncated, foreign, mismatched)."""


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, fsync, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_model(model: MetricModel, path: str | os.PathLike, *, extra: dict | None = None) -> Path:
    """Save ``model`` (weights + config) to ``path`` atomically; ``extra`` is free JSON (e.g. validation).

    Returns:
        The path written.
    """
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "config": json.dumps(model.config.to_dict()),
        "extra": json.dumps(extra or {}),
    }
    atomic_write_bytes(path, st_save(state, metadata=metadata))
    return Path(path)


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not path.exists():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
    if path.is_dir():
        raise ModelFileError(f"{str(path)!r} is a folder, not a model file")
    raw = path.read_bytes()
    if len(raw) < 8:
        raise ModelFileError(f"{str(path)!r} is not a learned-manifold model file: only {len(raw)} bytes")
    header_len = int.from_bytes(raw[:8], "little")
    if header_len > len(raw) - 8:
        kind = "a pickle (torch.save) file" if raw[:1] == b"\x80" or raw[:2] == b"PK" else "not a safetensors file"
        raise ModelFileError(
            f"{str(path)!r} is not a learned-manifold model file ({kind}, or truncated: header claims "
            f"{header_len} bytes, file has {len(raw) - 8}); it was not loaded and no code was run"
        )
    try:
        header = json.loads(raw[8 : 8 + header_len])
        tensors = st_load(raw)
    except (SafetensorError, ValueError, UnicodeDecodeError) as err:
        raise ModelFileError(f"{str(path)!r} is corrupt or truncated: {err}") from None
    metadata = header.get("__metadata__") or {}
    if metadata.get("format") != FORMAT:
        raise ModelFileError(
            f"{str(path)!r} is a safetensors file but not a learned-manifold model (no 'format: {FORMAT}' "
            f"metadata; found keys {sorted(metadata)})"
        )
    if metadata.get("version") != VERSION:
        raise ModelFileError(f"{str(path)!r} has model-file version {metadata.get('version')!r}; "
                             f"this library reads version {VERSION}")
    return tensors, metadata


def read_metadata(path: str | os.PathLike) -> dict:
    """The JSON metadata of a model file: ``{"config": {...}, "extra": {...}}``, without building the model."""
    _, metadata = _read(Path(path))
    return {"config": json.loads(metadata["config"]), "extra": json.loads(metadata.get("extra", "{}"))}


def load_model(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> MetricModel:
    """Load a `MetricModel` from a model file. Never executes code from the file.

    Args:
        path: a file written by `save_model` (``learned-manifold train`` writes one).
        map_location: device for the weights.

    Returns:
        The model in eval mode with frozen parameters.

    Raises:
        FileNotFoundError: the file does not exist.
        ModelFileError: the file is not a learned-manifold model, is truncated, or its weights do not match
            its own architecture.
    """
    path = Path(path)
    tensors, metadata = _read(path)
    try:
        config = ModelConfig.from_dict(json.loads(metadata["config"]))
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFileError(f"{str(path)!r} has an invalid model config: {err}") from None
    model = MetricModel(config)
    expected = set(model.state_dict())
    missing, unexpected = expected - set(tensors), set(tensors) - expected
    if missing or unexpected:
        raise ModelFileError(
            f"{str(path)!r} does not match its architecture: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )
    try:
        model.load_state_dict(tensors)
    except RuntimeError as err:
        raise ModelFileError(f"{str(path)!r} has weights of the wrong shape: {err}") from None
    model.requires_grad_(False)
    return model.eval().to(map_location)
