"""The model file (``.lmm``): one safetensors file holding weights and plain-JSON metadata.

Loading never executes code and is validated in one layer (`read_metadata` and `load_model` share it), in
this order, each step before the next reads or allocates anything:

1. the path is a regular file (a FIFO, device, folder or socket is refused without being opened) of at most
   `MAX_FILE_BYTES`;
2. the 8-byte header length (at most `MAX_HEADER_BYTES` and within the file) and the JSON header: floating
   dtypes only, non-negative integer shapes, data offsets that tile the data section exactly;
3. the metadata schema (format, version, config, extra) and the `ModelConfig` (every field's type and range,
   unknown keys refused, ``arch_kwargs`` checked against the backbone's constructor);
4. the network is built on the ``meta`` device (no memory) and every expected tensor name and shape is
   compared with the header, so a config claiming a huge network in a small file is refused;
5. only then the tensor data is read; every value must be finite and the data scale positive;
6. last, the SHA-256 checksum written with the file (metadata ``sha256``, over the config, the extra metadata and
   every tensor) must match what was read: a changed byte anywhere is refused, not loaded as a different model.
   Version-1 files without one (written before checksums) skip this step; version 2 without one is refused.

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

import json
import math
import os
import stat
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save as st_save
from torch import Tensor

from .atomic_write import _as_path, atomic_write_bytes, file_kind
from .model_checksum import CHECKSUM_KEY, checksum
from .model_checksum import verify_checksum as _verify_checksum
from .model_file_notes import ModelFileWarning, version_problem, warn_cautions
from .models import MetricModel, ModelConfig

__all__ = [
    "file_kind",
    "FORMAT",
    "MAX_FILE_BYTES",
    "MAX_HEADER_BYTES",
    "CHECKSUM_KEY",
    "ModelFileError",
    "ModelFileWarning",
    "atomic_write_bytes",
    "checksum",
    "load_model",
    "read_metadata",
    "save_model",
    "state_to_save",
]

FORMAT = "learned-manifold"
VERSION = "2"  # the newest format written and read (`version_problem`: versions 1 and 2 are read)
MAX_FILE_BYTES = 16 * 2**30  # 16 GiB: far above any model of SPEC §9 (the FFHQ network is a few hundred MB)
MAX_HEADER_BYTES = 100 * 2**20  # 100 MB of JSON header
_DTYPES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64}
_METADATA_KEYS = ("format", "version", "config", "extra")


class ModelFileError(ValueError):
    """A file that is not a readable learned-manifold model (wrong format, truncated, foreign, mismatched).

    Example:
        >>> import os, tempfile
        >>> from learned_manifold import ModelFileError, load_model
        >>> path = os.path.join(tempfile.mkdtemp(), "not-a-model.lmm")
        >>> with open(path, "wb") as f:
        ...     _ = f.write(b"hello")
        >>> try:
        ...     load_model(path)
        ... except ModelFileError as err:
        ...     print("refused:", isinstance(err, ValueError))
        refused: True
    """


class ModelFileIsAFolderError(IsADirectoryError, ModelFileError):
    """A folder given as a model or VAE file: an `IsADirectoryError`, and a `ModelFileError` as before."""


# ---------------------------------------------------------------------------------------------------------
# reading: one validation layer


@dataclass
class _Checked:
    """A model file that passed every check: its config, extra metadata and tensors (on the CPU)."""

    config: ModelConfig
    extra: dict
    tensors: dict[str, Tensor]


class _Reader:
    """Bounded reads from one regular file, every error a `ModelFileError` naming the file."""

    def __init__(self, path: Path, kind: str = "model file"):
        self.name, self.kind = repr(str(path)), kind  # kind: what the file should be, in messages ("VAE file")
        try:
            st = os.stat(path)  # follows symlinks: a link to /dev/zero is judged by what it points to
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.kind} {self.name} does not exist") from None
        except (OSError, ValueError) as err:  # ValueError: an embedded NUL byte
            raise self.error(f"cannot be examined: {getattr(err, 'strerror', None) or err}") from None
        if stat.S_ISDIR(st.st_mode):
            raise ModelFileIsAFolderError(f"{self.name} is a folder, not a {self.kind}; it was not opened")
        if not stat.S_ISREG(st.st_mode):
            raise self.error(f"is a {file_kind(st.st_mode)}, not a {self.kind}; it was not opened")
        try:  # O_NONBLOCK: should the path become a FIFO between stat and open, opening cannot block
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        except OSError as err:
            raise self.error(f"cannot be opened: {err.strerror}") from None
        fst = os.fstat(fd)
        if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(fst.st_mode):
            os.close(fd)
            raise self.error("changed while it was being opened; it was not read")
        if fst.st_size > MAX_FILE_BYTES:
            os.close(fd)
            raise self.error(f"has {fst.st_size} bytes, more than the {MAX_FILE_BYTES} a {self.kind} may have")
        self.file = os.fdopen(fd, "rb", buffering=0)
        self.size = fst.st_size

    def error(self, problem: str) -> ModelFileError:
        return ModelFileError(f"{self.name} {problem}")

    def read(self, n: int, what: str) -> bytearray:
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            k = self.file.readinto(view[got:])
            if not k:
                raise self.error(f"is truncated: its {what} needs {n} bytes, only {got} could be read")
            got += k
        return buf


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        counts = Counter(k for k, _ in pairs)
        raise ValueError(f"duplicate keys {sorted(k for k, c in counts.items() if c > 1)[:5]}")
    return out


def _json(reader: _Reader, text: bytes | bytearray | str, what: str) -> object:
    try:
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8")
        return json.loads(text, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise reader.error(f"is not a learned-manifold {reader.kind}: its {what} is not valid JSON ({err})") from None


def _foreign(first: bytes) -> str:
    if first[:1] == b"\x80":
        return "a pickle (torch.save) file"
    if first[:4] == b"PK\x03\x04":
        return "a zip archive (torch.save writes a pickle inside one)"
    return ""


def _read_header(reader: _Reader) -> tuple[dict, dict, int]:
    """Header → (tensor entries, metadata strings, data length). Checks dtypes, shapes and offsets."""
    if reader.size < 8:
        raise reader.error(f"is not a learned-manifold {reader.kind}: only {reader.size} bytes")
    first = bytes(reader.read(8, "header length"))
    n = int.from_bytes(first, "little")
    if n > MAX_HEADER_BYTES or n > reader.size - 8:
        kind = _foreign(first)
        if kind:
            raise reader.error(f"is {kind}, not a learned-manifold {reader.kind}; it was not loaded and no code "
                               f"was run")
        if n > MAX_HEADER_BYTES:
            raise reader.error(f"is not a learned-manifold {reader.kind}: it claims a {n}-byte header, more than "
                               f"the {MAX_HEADER_BYTES} a {reader.kind} may have")
        raise reader.error(f"is not a learned-manifold {reader.kind} (not safetensors, or truncated): it claims a "
                           f"{n}-byte header but has only {reader.size - 8} bytes after the length")
    header = _json(reader, reader.read(n, "header"), "header")
    if not isinstance(header, dict):
        raise reader.error("is not a safetensors file: its header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise reader.error("has header metadata that is not a JSON object of strings")
    data_len, spans = reader.size - 8 - n, []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise reader.error(f"has a malformed header entry for tensor {name!r}")
        if info["dtype"] not in _DTYPES:
            raise reader.error(f"holds tensor {name!r} of dtype {info['dtype']!r}; only floating types "
                               f"{sorted(_DTYPES)} are allowed")
        shape, offsets = info["shape"], info["data_offsets"]
        if not isinstance(shape, list) or len(shape) > 8 or not all(_is_int(s) and s >= 0 for s in shape):
            raise reader.error(f"gives tensor {name!r} the shape {shape!r:.80}: not a list of non-negative ints")
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= data_len):
            raise reader.error(f"gives tensor {name!r} data offsets {offsets!r:.80}, not 0 <= begin <= end <= "
                               f"{data_len} (the size of its data section; is the file truncated?)")
        if offsets[1] - offsets[0] != math.prod(shape) * _DTYPES[info["dtype"]].itemsize:
            raise reader.error(f"gives tensor {name!r} {offsets[1] - offsets[0]} bytes for shape {shape}")
        spans.append((offsets[0], offsets[1], name))
    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            raise reader.error(f"has tensor data that overlaps or leaves a gap at tensor {name!r}")
        end = stop
    if end != data_len:
        raise reader.error(f"has {data_len - end} byte(s) of data that belong to no tensor")
    return header, metadata, data_len


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_metadata_keys(reader: _Reader, metadata: dict, keys: tuple[str, ...], kind: str) -> None:
    if set(metadata) - {CHECKSUM_KEY} != set(keys):
        raise reader.error(f"has metadata keys {sorted(metadata)[:10]}; a {kind} has exactly {list(keys)} (and "
                           f"{CHECKSUM_KEY!r} since files carry a checksum)")


def _read_config(reader: _Reader, metadata: dict) -> tuple[ModelConfig, dict]:
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
    _check_metadata_keys(reader, metadata, _METADATA_KEYS, "model file")
    try:
        config = ModelConfig.from_dict(_json(reader, metadata["config"], "config"), complete=True)
    except (TypeError, ValueError) as err:
        if isinstance(err, ModelFileError):
            raise
        raise reader.error(f"has an invalid model config: {err}") from None
    extra = _json(reader, metadata["extra"], "extra metadata")
    objects = ("validation", "precision_probe")  # optional; files written before the probe have none
    if not isinstance(extra, dict) or not all(isinstance(extra.get(k, {}), dict) for k in objects):
        raise reader.error("has extra metadata that is not a JSON object (with objects 'validation' and "
                           "'precision_probe' where present)")
    return config, extra


def _expected_shapes(reader: _Reader, config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The state-dict names and shapes of the model ``config`` describes, built on the meta device (no memory)."""
    try:
        with torch.device("meta"):
            model = MetricModel(config)
    except (TypeError, ValueError, RuntimeError) as err:
        raise reader.error(f"has an invalid model config: {err}") from None
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _compare(reader: _Reader, header: dict, expected: dict[str, tuple[int, ...]]) -> None:
    missing = sorted(set(expected) - set(header))
    unexpected = sorted(set(header) - set(expected))
    wrong = sorted(k for k in set(expected) & set(header) if tuple(header[k]["shape"]) != expected[k])
    if missing or unexpected or wrong:
        shapes = [f"{k}: {tuple(header[k]['shape'])} instead of {expected[k]}" for k in wrong[:5]]
        raise reader.error(f"does not match its architecture: missing {missing[:5]} ({len(missing)} in all), "
                           f"unexpected {unexpected[:5]}, wrong shapes {shapes}")


def _read_tensors(reader: _Reader, header: dict, data_len: int) -> dict[str, Tensor]:
    data = reader.read(data_len, "tensor data")
    if reader.file.read(1):
        raise reader.error("grew while it was being read")
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        dtype, shape = _DTYPES[info["dtype"]], info["shape"]
        t = (torch.frombuffer(data, dtype=dtype, count=(end - begin) // dtype.itemsize, offset=begin)
             if end > begin else torch.empty(0, dtype=dtype))
        t = t.reshape(shape)
        if not bool(torch.isfinite(t.float()).all()):  # .float(): F64 values beyond float32 become inf too
            raise reader.error(f"holds non-finite values (NaN or inf) in tensor {name!r}")
        tensors[name] = t
    return tensors


def _read_checked(path: Path) -> _Checked:
    """Every check of the module docstring, in order; the one road into a model file."""
    reader = _Reader(path)
    with reader.file:
        header, metadata, data_len = _read_header(reader)
        config, extra = _read_config(reader, metadata)
        _compare(reader, header, _expected_shapes(reader, config))
        tensors = _read_tensors(reader, header, data_len)
    if not float(tensors["scale"]) > 0:
        raise reader.error(f"has data scale {float(tensors['scale'])}; it must be > 0")
    _verify_checksum(reader, metadata, tensors)  # last: a crafted file gets the specific error above first
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
    checked = _read_checked(_as_path(path))
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
        The model in eval mode with frozen parameters.

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
    path = _as_path(path)
    try:
        device = torch.device(map_location)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"map_location {map_location!r} is not a torch device: {err}") from None
    checked = _read_checked(path)
    warn_cautions(path, checked.config.to_dict(), checked.extra, float(checked.tensors["scale"]),
                  default_sigma=default_sigma)
    with torch.random.fork_rng(devices=[]):  # the throw-away initialisation leaves the caller's RNG as it was
        model = MetricModel(checked.config)
    try:
        model.load_state_dict(checked.tensors)
    except RuntimeError as err:  # unreachable after the header comparison; kept as a named error
        raise ModelFileError(f"{str(path)!r} has weights that do not fit its architecture: {err}") from None
    model.requires_grad_(False)
    return model.eval().to(device)


# ---------------------------------------------------------------------------------------------------------
# writing


def state_to_save(module: torch.nn.Module, name: str, path: str | os.PathLike) -> dict[str, Tensor]:
    """``module``'s state dict on the CPU, contiguous, for writing to ``path``.

    Raises:
        ValueError: a tensor holds NaN or inf (as `load_model` reads it: float64 values beyond float32's range
            count), before anything is written, so a diverged model never replaces a good file with one that
            cannot be loaded.
    """
    state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
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
    atomic_write_bytes(_as_path(path), st_save(state, metadata=metadata))
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
