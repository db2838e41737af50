"""The model file (``.lmm``): one safetensors file holding weights and plain-JSON metadata.

Loading never executes code and is validated in one layer (`read_metadata` and `load_model` share it; its
format-independent steps are `learned_manifold.safetensors_reader`, shared with `vae_file`), in this order, each
step before the next reads or allocates anything:

1. the path is a regular file (a FIFO, device, folder or socket is refused without being opened) of at most
   `MAX_FILE_BYTES`, opened in binary mode;
2. the 8-byte header length (at most `MAX_HEADER_BYTES` and within the file; a pickle, zip or NumPy file is named
   as such) and the JSON header: floating dtypes only, non-negative integer shapes, data offsets that tile the
   data section exactly;
3. the metadata schema (format, version, config, extra) and the `ModelConfig` (every field's type and range,
   unknown keys refused, ``arch_kwargs`` checked against the backbone's constructor);
4. the network is built on the ``meta`` device (no memory) and every expected tensor name and shape is
   compared with the header, so a config claiming a huge network in a small file is refused;
5. only then the tensor data is read; every value must be finite and the data scale positive;
6. last, the SHA-256 checksum written with the file (metadata ``sha256``, over the config, the extra metadata and
   every tensor) must match what was read: a changed byte anywhere is refused, not loaded as a different model.
   Version-1 files without one (written before checksums) skip this step; version 2 without one is refused.

`load_model` then builds the network on the CPU in float32 and in the stored dtype, whatever the caller's default
device and dtype (`load_module_state`), and moves it to ``map_location``.

Writing is atomic (temporary file in the same folder, then ``os.replace``), so a crash never leaves a
truncated model where a good one was; a new file gets the permissions of an ordinary ``open`` under the user's
umask, a replaced one keeps its own; a symlink or special file at the destination is refused.

Layout: tensors ``factor_net.*``, ``denoiser_net.*`` (or ``trunk.*`` for a shared trunk), ``scale``, ``mean``
and ``landmarks`` (up to 4,096 training points as read: sharing the file shares them) (the `MetricModel` state
dict); header metadata ``{"format": "learned-manifold", "version": "2", "config":
<ModelConfig JSON>, "extra": <JSON object>, "sha256": <hex digest, `checksum`>}``. Version 2 (files written since
the sixth round of outside testing) is version 1 with the checksum and the config keys added since; both are read
(`model_file_notes.version_problem`), and a newer version is refused as written by a newer library.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
from safetensors.torch import save as st_save
from torch import Tensor

from .atomic_write import as_path, atomic_write_bytes, file_kind
from .model_checksum import CHECKSUM_KEY, checksum, verify_checksum
from .model_file_notes import ModelFileWarning, version_problem, warn_cautions
from .models import MetricModel, ModelConfig
from .safetensors_reader import (
    MAX_FILE_BYTES,
    MAX_HEADER_BYTES,
    ModelFileError,
    ModelFileIsAFolderError,
    SafetensorsReader,
    check_metadata_keys,
    compare_shapes,
    expected_shapes,
    file_state,
    parse_json,
    read_header,
    read_tensors,
)

__all__ = [
    "file_kind",
    "FORMAT",
    "MAX_FILE_BYTES",
    "MAX_HEADER_BYTES",
    "CHECKSUM_KEY",
    "ModelFileError",
    "ModelFileIsAFolderError",
    "ModelFileWarning",
    "atomic_write_bytes",
    "checksum",
    "load_model",
    "load_module_state",
    "read_metadata",
    "save_model",
    "state_to_save",
    "write_module_file",
]

FORMAT = "learned-manifold"
VERSION = "2"  # the newest format written and read (`version_problem`: versions 1 and 2 are read)
_METADATA_KEYS = ("format", "version", "config", "extra")


# ---------------------------------------------------------------------------------------------------------
# reading: one validation layer (`safetensors_reader`, shared with `vae_file`)


@dataclass
class _Checked:
    """A model file that passed every check: its config, extra metadata and tensors (on the CPU)."""

    config: ModelConfig
    extra: dict
    tensors: dict[str, Tensor]


def _read_config(reader: SafetensorsReader, metadata: dict) -> tuple[ModelConfig, dict]:
    """Metadata schema → (validated config, extra)."""
    from .vae_file import VAE_FORMAT  # (here: vae_file imports this module)

    if metadata.get("format") == VAE_FORMAT:
        raise reader.error("is a learned-manifold VAE file (train-vae), not a metric-matching model; load it with "
                           "load_vae, or train metric matching on its codes (learned-manifold encode)")
    if metadata.get("format") != FORMAT:
        raise reader.error(f"is a safetensors file but not a learned-manifold model (no 'format: {FORMAT}' "
                           f"metadata; found keys {sorted(metadata)[:10]})")
    problem = version_problem(metadata.get("version"), VERSION, "model-file")
    if problem:
        raise reader.error(problem)
    check_metadata_keys(reader, metadata, _METADATA_KEYS, "model file")
    try:
        config = ModelConfig.from_dict(parse_json(reader, metadata["config"], "config"), complete=True)
    except (TypeError, ValueError) as err:
        if isinstance(err, ModelFileError):
            raise
        raise reader.error(f"has an invalid model config: {err}") from None
    extra = parse_json(reader, metadata["extra"], "extra metadata")
    objects = ("validation", "precision_probe")  # optional; files written before the probe have none
    if not isinstance(extra, dict) or not all(isinstance(extra.get(k, {}), dict) for k in objects):
        raise reader.error("has extra metadata that is not a JSON object (with objects 'validation' and "
                           "'precision_probe' where present)")
    return config, extra


def _read_checked(path: Path) -> _Checked:
    """Every check of the module docstring, in order; the one road into a model file."""
    reader = SafetensorsReader(path)
    with reader.file:
        header, metadata, data_len = read_header(reader)
        config, extra = _read_config(reader, metadata)
        compare_shapes(reader, header, expected_shapes(reader, lambda: MetricModel(config), "model config"))
        tensors = read_tensors(reader, header, data_len)
    if not float(tensors["scale"]) > 0:
        raise reader.error(f"has data scale {float(tensors['scale'])}; it must be > 0")
    verify_checksum(reader, metadata, tensors)  # last: a crafted file gets the specific error above first
    return _Checked(config, extra, tensors)


def read_metadata(path: str | os.PathLike) -> dict:
    """The JSON metadata of a model file: ``{"config": {...}, "extra": {...}, "standardisation": {...}}``.

    ``standardisation`` summarises the stored units (SPEC §1): a point ``x`` in the user's units is
    ``mean + scale · z`` for the networks' standardised ``z``; it holds ``scale`` and the smallest, largest and
    average value of the stored mean (a point, or an image, of ``data_shape``).

    The file passes every check `load_model` makes (weights included), so a file this accepts loads.

    Raises:
        FileNotFoundError: the file does not exist.
        ModelFileError: anything `load_model` would refuse.
    """
    checked = _read_checked(as_path(path))
    mean = checked.tensors["mean"].double()
    units = {"scale": float(checked.tensors["scale"]), "mean_min": float(mean.min()),
             "mean_max": float(mean.max()), "mean_average": float(mean.mean())}
    return {"config": checked.config.to_dict(), "extra": checked.extra, "standardisation": units}


def load_model(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> MetricModel:
    """Load a `MetricModel` from a model file. Never executes code from the file.

    Args:
        path: a file written by `save_model` (``learned-manifold train`` writes one).
        map_location: device for the weights.

    Returns:
        The model in eval mode with frozen parameters, in the dtype its file stores (float32 as the trainer writes
        it; a file mixing float32 and float64 tensors loads as float64) whatever the caller's
        ``torch.set_default_dtype``/``set_default_device`` (`load_module_state`).

    Warns:
        ModelFileWarning: the file is a checkpoint of an unfinished run (``"complete": false``), its default
            σ was chosen by the eigengap rule of versions before the ``σ ≤ s/2`` rule and lies above ``s/2``, or
            the checks at the end of its training did not trust it (its stored ``validation``: `untrusted_note`)
            (`learned_manifold.model_file_notes`); each message names the file and what to do.

    Raises:
        FileNotFoundError: the file does not exist.
        ModelFileIsAFolderError: the path is a folder (an `IsADirectoryError` and a `ModelFileError`).
        ModelFileError: the file is not a regular file, not a learned-manifold model, is truncated, has an
            invalid config, weights that do not match its own architecture, or non-finite values.

    Example:
        >>> import os, tempfile, torch
        >>> from learned_manifold import MetricModel, ModelConfig, load_model, save_model
        >>> config = ModelConfig(data_shape=(3,), rank=3, arch_kwargs={"hidden": 16, "depth": 1, "emb_dim": 8})
        >>> model = MetricModel(config)
        >>> path = save_model(model, os.path.join(tempfile.mkdtemp(), "model.lmm"))  # as `learned-manifold train` does
        >>> loaded = load_model(path)
        >>> loaded.config == model.config, loaded.factor(torch.zeros(5, 3)).shape  # (B, D) -> (B, D, r)
        (True, torch.Size([5, 3, 3]))
    """
    return _load_model(path, map_location, default_sigma=True)


def _load_model(path: str | os.PathLike, map_location: str | torch.device, *, default_sigma: bool) -> MetricModel:
    """`load_model`, whose stale-σ warning is given only where the caller uses the default σ (``default_sigma``;
    `LearnedCDC` with a ``sigma`` of its own does not); the warnings point at the user's line."""
    path = as_path(path)
    try:
        device = torch.device(map_location)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"map_location {map_location!r} is not a torch device: {err}") from None
    checked = _read_checked(path)
    warn_cautions(path, checked.config.to_dict(), checked.extra, float(checked.tensors["scale"]),
                  default_sigma=default_sigma)
    model = load_module_state(lambda: MetricModel(checked.config), checked.tensors, path)
    return model.to(device)


_M = TypeVar("_M", bound=torch.nn.Module)


def load_module_state(build: Callable[[], _M], tensors: dict[str, Tensor], path: str | os.PathLike) -> _M:
    """``build()`` with ``tensors`` (checked, on the CPU) loaded: the one loader behind `load_model` and
    `vae_file.load_vae`, whatever the caller set with ``torch.set_default_dtype``/``set_default_device``.

    The module is built on the CPU in float32 (a caller's ``torch.set_default_device("meta")`` would leave it
    without data, a ``bfloat16`` default dtype would round the stored float32 weights), its throw-away
    initialisation leaving the caller's RNG as it was, then cast to the widest floating dtype the tensors hold, at
    least float32 (a float64 file loads as float64, float16 and bfloat16 ones as float32; a file that mixes dtypes,
    such as one written before the mean was kept in the weights' dtype, with a float32 mean beside float64
    weights, loads in the widest, float64 there; integer tensors keep their own dtype and play no part), so every
    stored value is given exactly: bit for bit in float32 and float64, the narrower tensors upcast. The caller's
    default dtype and device are as they were on return.

    Returns:
        The module on the CPU, in eval mode, with frozen parameters.

    Raises:
        ModelFileError: the tensors do not fit the module (naming ``path``).
    """
    previous = torch.get_default_dtype()
    on_cpu = torch.get_default_device().type == "cpu"
    try:
        if previous != torch.float32:
            torch.set_default_dtype(torch.float32)  # process-wide in torch, as in the trainer's `caller_state_off`
        with torch.random.fork_rng(devices=[]), contextlib.nullcontext() if on_cpu else torch.device("cpu"):
            module = build()
    finally:
        if previous != torch.float32:
            torch.set_default_dtype(previous)
    floats = [t.dtype for t in tensors.values() if t.dtype.is_floating_point]  # an int64 buffer keeps its own
    widest = max(floats, key=lambda dtype: dtype.itemsize, default=torch.float32)
    module.to(torch.float32 if widest.itemsize < 4 else widest)  # half precision computes in float32, as it did
    try:
        module.load_state_dict(tensors)
    except RuntimeError as err:  # unreachable after the header comparison; kept as a named error
        raise ModelFileError(f"{os.fspath(path)!r} has weights that do not fit its architecture: {err}") from None
    module.requires_grad_(False)
    return module.eval()


# ---------------------------------------------------------------------------------------------------------
# writing


def state_to_save(module: torch.nn.Module, name: str, path: str | os.PathLike) -> dict[str, Tensor]:
    """``module``'s state as its file holds it (`safetensors_reader.file_state`) on the CPU, contiguous, for writing to
    ``path``.

    Raises:
        ValueError: a tensor holds NaN or inf (as `load_model` reads it: float64 values beyond float32's range
            count), before anything is written, so a diverged model never replaces a good file with one that
            cannot be loaded.
    """
    state = {k: v.detach().to("cpu").contiguous() for k, v in file_state(module).items()}
    for key, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t.float()).all()):
            raise ValueError(f"{name}: tensor {key!r} holds non-finite values (NaN or inf), which no model file may "
                             f"hold; nothing was written to {os.fspath(path)!r}")
    return state


def write_module_file(module: torch.nn.Module, name: str, path: str | os.PathLike, *, file_format: str,
                      version: str, config: dict, extra: dict | None) -> Path:
    """Write ``module``'s state and the metadata ``format, version, config, extra`` (+ checksum) to ``path``.

    The one writer behind `save_model` and `vae_file.save_vae`: ``extra`` checked to be a dict, every tensor
    finite (`state_to_save`), the SHA-256 checksum of metadata and tensors added, the file written atomically
    (`atomic_write_bytes`).

    Raises:
        TypeError: ``extra`` is not a dict or None.
        ValueError: a tensor holds NaN or inf; nothing is written.
    """
    if extra is not None and not isinstance(extra, dict):
        raise TypeError(f"extra must be a dict (a JSON object) or None, got {type(extra).__name__}")
    state = state_to_save(module, name, path)
    metadata = {"format": file_format, "version": version, "config": json.dumps(config),
                "extra": json.dumps(extra or {})}
    metadata[CHECKSUM_KEY] = checksum(metadata, state)
    atomic_write_bytes(as_path(path), st_save(state, metadata=metadata))
    return Path(path)


def save_model(model: MetricModel, path: str | os.PathLike, *, extra: dict | None = None) -> Path:
    """Save ``model`` (weights + config) to ``path`` atomically; ``extra`` is a free JSON object (e.g.
    validation). See `atomic_write_bytes` for permissions and what may stand at ``path``.

    Returns:
        The path written.

    Raises:
        TypeError: ``model`` is not a `MetricModel` or ``extra`` not a dict.
        ValueError: a weight or buffer holds NaN or inf (`state_to_save`); nothing is written.
        FileNotFoundError: ``path``'s folder does not exist: it is not created (as by ``open`` or ``torch.save``).
        IsADirectoryError: ``path`` is a folder (`atomic_write.FolderGivenError`, also a ValueError).

    Example:
        >>> import os, tempfile
        >>> from learned_manifold import MetricModel, ModelConfig, save_model
        >>> from learned_manifold.model_file import read_metadata
        >>> model = MetricModel(ModelConfig(data_shape=(3,), rank=2, arch_kwargs={"hidden": 16, "depth": 1}))
        >>> path = save_model(model, os.path.join(tempfile.mkdtemp(), "m.lmm"), extra={"note": "untrained"})
        >>> read_metadata(path)["extra"]["note"], read_metadata(path)["config"]["rank"]
        ('untrained', 2)
    """
    if not isinstance(model, MetricModel):
        raise TypeError(f"model must be a MetricModel, got {type(model).__name__}")
    return write_module_file(model, "model", path, file_format=FORMAT, version=VERSION,
                             config=model.config.to_dict(), extra=extra)
