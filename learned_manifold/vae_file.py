"""The VAE file: one safetensors file holding a `VAE`'s weights and plain-JSON metadata (SPEC §11).

VAE files are named ``*.lvae`` by convention (``learned-manifold train-vae --out vae.lvae``); any name is read.
Tensors are stored in the VAE's dtype and `load_vae` builds the VAE in it (float64 stays float64).

It is read by the same validation layer as the model file (`learned_manifold.safetensors_reader`: its bounded
reader, header checks and tensor reads), in the same order, each step before the next reads or allocates anything:

1. the path is a regular file (a FIFO, device, folder or socket is refused unopened) within the size cap;
2. the header: floating dtypes only, non-negative integer shapes, data offsets that tile the data exactly;
3. the metadata: ``format`` must be ``"learned-manifold-vae"`` (a metric-matching model file is named as such),
   the version, exactly the keys ``format, version, config, extra`` (and ``sha256``), and a `VAEConfig` whose
   every field is checked (types, ranges, unknown or missing keys);
4. the VAE is built on the ``meta`` device and every tensor name and shape compared with the header, so a
   config claiming a huge network in a small file is refused without allocating it;
5. only then the data are read: every value finite, ``scale > 0``, RBF bandwidths ``> 0``, weights ``W ≥ 0``;
6. the SHA-256 checksum written with the file must match (`model_file.checksum`; version-1 files without one skip it; a
   version-2 file without one is refused).

The tensors are the VAE's parameters and buffers: its state dict less its extra state (``_extra_state``, the
VAE's ``input_spread_max``, which the file keeps in ``extra`` as files did before ``state_dict`` carried it:
`safetensors_reader.file_state`, for model files too), so files read and write as they did.

Every refusal is one `ModelFileError` (a ``ValueError``) naming the file. Writing is atomic
(`model_file.atomic_write_bytes`: same-folder temporary file and rename, umask respected, a symlink or special
file at the destination refused).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .atomic_write import as_path
from .checks import check_real
from .model_checksum import verify_checksum
from .model_file import FORMAT as MODEL_FORMAT
from .model_file import load_module_state, write_module_file
from .model_file_notes import version_problem
from .safetensors_reader import (
    ModelFileError,
    SafetensorsReader,
    check_metadata_keys,
    compare_shapes,
    expected_shapes,
    parse_json,
    read_header,
    read_tensors,
)
from .vae import VAE, VAEConfig
from .vae_spread import check_spread_max

__all__ = ["VAE_FORMAT", "VAE_VERSION", "load_vae", "read_vae_metadata", "save_vae"]

VAE_FORMAT = "learned-manifold-vae"
VAE_VERSION = "2"  # 2: the checksum and the config keys added since 1; both are read
_KEYS = ("format", "version", "config", "extra")
_KIND = "VAE file"
SPREAD_KEY = "input_spread_max"  # `VAE.input_spread_max` in the file's ``extra``


def _read_config(reader: SafetensorsReader, metadata: dict) -> tuple[VAEConfig, dict]:
    fmt = metadata.get("format")
    if fmt == MODEL_FORMAT:
        raise reader.error("is a learned-manifold metric-matching model file, not a VAE; load it with load_model")
    if fmt != VAE_FORMAT:
        raise reader.error(f"is a safetensors file but not a learned-manifold VAE (no 'format: {VAE_FORMAT}' "
                           f"metadata; found keys {sorted(metadata)[:10]})")
    problem = version_problem(metadata.get("version"), VAE_VERSION, "VAE-file")
    if problem:
        raise reader.error(problem)
    check_metadata_keys(reader, metadata, _KEYS, "VAE file")
    try:
        config = VAEConfig.from_dict(parse_json(reader, metadata["config"], "config"))
    except (TypeError, ValueError) as err:
        if isinstance(err, ModelFileError):
            raise
        raise reader.error(f"has an invalid VAE config: {err}") from None
    extra = parse_json(reader, metadata["extra"], "extra metadata")
    if not isinstance(extra, dict):
        raise reader.error("has extra metadata that is not a JSON object")
    if extra.get(SPREAD_KEY) is not None:  # absent (or null: unknown) in files written before it was recorded
        try:
            extra[SPREAD_KEY] = check_real(extra[SPREAD_KEY], SPREAD_KEY, positive=True)  # a JSON 2 as 2.0
        except (ValueError, OverflowError) as err:  # OverflowError: an integer too large for a float
            raise reader.error(f"has an invalid extra '{SPREAD_KEY}': {err}") from None
    return config, extra


def _read_checked(path: Path) -> tuple[VAEConfig, dict, dict]:
    """Every check of the module docstring, in order: ``(config, extra, tensors)``."""
    reader = SafetensorsReader(path, _KIND, "learned-manifold train-vae")
    with reader.file:
        header, metadata, data_len = read_header(reader)
        config, extra = _read_config(reader, metadata)
        compare_shapes(reader, header, expected_shapes(reader, lambda: VAE(config), "VAE config"))
        tensors = read_tensors(reader, header, data_len)
    for name, ok, rule in (("scale", float(tensors["scale"]) > 0, "> 0"),
                           ("bandwidths", bool((tensors["bandwidths"] > 0).all()), "> 0"),
                           ("std_weights", bool((tensors["std_weights"] >= 0).all()), ">= 0")):
        if not ok:
            raise reader.error(f"has {name} that are not {rule} (the RBF precision of SPEC §11 needs them)")
    verify_checksum(reader, metadata, tensors)  # last: a crafted file gets the specific error above first
    return config, extra, tensors


def read_vae_metadata(path: str | os.PathLike) -> dict:
    """``{"config": {...}, "extra": {...}}`` of a VAE file that passes every check `load_vae` makes."""
    config, extra, _ = _read_checked(as_path(path))
    return {"config": config.to_dict(), "extra": extra}


def load_vae(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> VAE:
    """Load a `VAE` from a VAE file (``learned-manifold train-vae`` writes one). Never executes code from it.

    Returns:
        The VAE in eval mode with frozen parameters: ``encode(x) -> (N, d)`` (posterior mean),
        ``decode(z) -> (N, *data_shape)`` (decoder mean), ``decoder_std(z)``. It has the dtype its tensors were
        stored in (a float64 VAE loads as float64); a file whose tensors mix dtypes loads in the widest
        (`model_file.load_module_state`). Its ``input_spread_max`` is the file's ``extra`` value of that name
        (`learned_manifold.vae.far_inputs` judges data sets against it; `vae.training_spread_limit`, or the true
        largest spread in files written before that rule), ``None`` for files without one.

    Raises:
        FileNotFoundError: the file does not exist.
        IsADirectoryError: the path is a folder (`model_file.ModelFileIsAFolderError`, also a `ModelFileError`).
        ModelFileError: not a regular file, not a VAE file (a metric-matching model file included), truncated,
            an invalid config, weights that do not fit it, non-finite values or an invalid RBF precision, an
            ``input_spread_max`` in ``extra`` that is not a finite positive number (before anything is allocated).

    Example:
        >>> import os, tempfile, torch
        >>> from learned_manifold import ModelFileError, load_vae, save_vae
        >>> from learned_manifold.vae import VAE, VAEConfig
        >>> vae = VAE(VAEConfig(data_shape=(10,), latent_dim=2, hidden=16))  # untrained; `train-vae` writes real ones
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     loaded = load_vae(save_vae(vae, os.path.join(folder, "vae.lvae")))
        ...     with open(os.path.join(folder, "notes.lvae"), "w") as f:
        ...         _ = f.write("not a VAE")
        ...     try:
        ...         load_vae(os.path.join(folder, "notes.lvae"))
        ...     except ModelFileError as err:  # one clear error, before anything is allocated
        ...         print(str(err).replace(folder, "FOLDER"))
        'FOLDER/notes.lvae' is not a learned-manifold VAE file: ...
        >>> z = torch.randn(4, 2)
        >>> loaded.decode(z).shape, loaded.encode(torch.randn(4, 10)).shape, loaded.decoder_std(z).shape
        (torch.Size([4, 10]), torch.Size([4, 2]), torch.Size([4, 10]))
        >>> frozen = not any(p.requires_grad for p in loaded.parameters())
        >>> torch.equal(loaded.decode(z), vae.decode(z)), loaded.training, frozen
        (True, False, True)
    """
    path = as_path(path)
    try:
        device = torch.device(map_location)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"map_location {map_location!r} is not a torch device: {err}") from None
    config, extra, tensors = _read_checked(path)
    # built on the CPU in float32 whatever the caller's defaults, then in the stored dtype, bit for bit
    vae = load_module_state(lambda: VAE(config), tensors, path).to(device)
    vae.input_spread_max = extra.get(SPREAD_KEY)  # checked by `_read_config`; None where absent (older files)
    return vae


def _spread_max(vae: VAE) -> float | None:
    """``vae.input_spread_max`` checked as ``None`` or a finite positive real (an int or a 0-d tensor as float)."""
    return check_spread_max(vae.input_spread_max, "vae.input_spread_max")


def save_vae(vae: VAE, path: str | os.PathLike, *, extra: dict | None = None) -> Path:
    """Write ``vae`` (weights, buffers, config) to ``path`` atomically; ``extra`` is a free JSON object, to which
    the VAE's ``input_spread_max`` is added where known (`load_vae` reads it back). The file records the VAE's own
    value: an ``input_spread_max`` key of ``extra`` must be ``None`` (dropped: an ``extra`` copied from an older
    file) or equal to it.

    Returns:
        The path written.

    Raises:
        TypeError: ``vae`` is not a `VAE` or ``extra`` not a dict; ``vae.input_spread_max`` is not ``None``, a real
            number or a 0-d floating tensor (`checks.NotANumberError`).
        ValueError: ``vae.input_spread_max`` is not finite and > 0; ``extra["input_spread_max"]`` is neither
            ``None`` nor the VAE's own value.
        ValueError: a weight or buffer holds NaN or inf (`model_file.state_to_save`); nothing is written.
        FileNotFoundError: ``path``'s folder does not exist: it is not created (as by ``open`` or ``torch.save``).
        IsADirectoryError: ``path`` is a folder (`atomic_write.FolderGivenError`, also a ValueError).

    Example:
        >>> import os, tempfile, torch
        >>> from learned_manifold import save_vae
        >>> from learned_manifold.vae import VAE, VAEConfig
        >>> from learned_manifold.vae_file import read_vae_metadata
        >>> vae = VAE(VAEConfig(data_shape=(8, 8), latent_dim=2, arch="conv"))  # untrained
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = save_vae(vae, os.path.join(folder, "vae.lvae"), extra={"data": "digits"})
        ...     meta = read_vae_metadata(path)  # checked exactly as load_vae checks it
        >>> path.name, meta["extra"], meta["config"]["arch"], meta["config"]["data_shape"]
        ('vae.lvae', {'data': 'digits'}, 'conv', [8, 8])
        >>> save_vae(torch.nn.Linear(2, 2), "linear.lvae")
        Traceback (most recent call last):
            ...
        TypeError: vae must be a VAE, got Linear
    """
    if not isinstance(vae, VAE):
        raise TypeError(f"vae must be a VAE, got {type(vae).__name__}")
    spread = _spread_max(vae)  # before anything is written
    if extra is None or isinstance(extra, dict):  # the VAE's own value (or none) is written, not extra's
        given = (extra or {}).get(SPREAD_KEY)
        if given is not None and given != spread:
            raise ValueError(f"extra['{SPREAD_KEY}'] = {given!r:.60} differs from vae.{SPREAD_KEY} = {spread!r}: "
                             f"the file records the VAE's own value; set vae.{SPREAD_KEY} instead")
        extra = {key: value for key, value in (extra or {}).items() if key != SPREAD_KEY}
        extra = extra if spread is None else {SPREAD_KEY: spread, **extra}
    return write_module_file(vae, "vae", path, file_format=VAE_FORMAT, version=VAE_VERSION,
                             config=vae.config.to_dict(), extra=extra)
