"""Array files read safely: ``.npy`` (memory-mapped), ``.npz`` and ``.pt``/``.pth``, and the checks every array
passes before it becomes training data (`validate`). Nothing here runs code from a file (no pickles), and
nothing allocates more than the file holds: a ``.npy`` is mapped, not read, so callers slice the rows they keep
before anything is copied; a ``.npz`` entry's header is checked against the entry's size and the memory available
before it is read; a ``.pt`` file's records are checked against the file's size and the memory available before
``torch.load`` reads them (a compressed record would inflate); a ``.pt`` tensor that claims more values than it
stores (a broadcast view) is refused. A ``.npz`` written by ``scipy.sparse.save_npz`` (csr, csc or coo) is
made dense (`sparse_npz`), within `MAX_DENSE_FROM_SPARSE` values. Only regular files are opened (a FIFO, device or
socket is refused unopened: reading one would block or never end). Running out of memory while the data is read or
converted gives one ValueError naming the file and the size it needs."""

from __future__ import annotations

import errno
import math
import os
import stat
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .sparse_npz import densify_scipy_npz, is_scipy_sparse

__all__ = ["DataFileNotFoundError", "DataPathIsAFolderError", "DataPathNotAFolderError",
           "MAX_DENSE_FROM_SPARSE", "SUPPORTED_EXTENSIONS", "path_text", "read_file",
           "validate"]

SUPPORTED_EXTENSIONS = (".npy", ".npz", ".pt", ".pth")


class DataFileNotFoundError(FileNotFoundError, ValueError):
    """A data file does not exist (both a FileNotFoundError and a ValueError)."""


class DataPathIsAFolderError(IsADirectoryError, ValueError):
    """A folder was given where a data file is expected (both an IsADirectoryError and a ValueError, as before)."""


class DataPathNotAFolderError(NotADirectoryError, ValueError):
    """A file was given where a folder of images is expected (both a NotADirectoryError and a ValueError)."""


def path_text(path: str | os.PathLike[str]) -> str:
    """``path`` as text in its real characters, for the record of where data came from (``ImageData.source``, a
    model file's ``data.source``): the file-system bytes decoded as UTF-8 where they are valid UTF-8, others as
    ``\\xNN``. Under an ASCII file-system encoding (``LC_ALL=C PYTHONUTF8=0``) ``str(path)`` holds lone surrogates
    in their place (``\\udcc3\\udca9`` for "é"), which strict JSON readers refuse."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        return text.decode("utf-8", "backslashreplace")
    try:
        return os.fsencode(text).decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # characters the file-system encoding lacks: text already, lone surrogates escaped
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _select_entry(keys: Sequence[str], label: str, save: str = "np.savez(path, data=X, ...)") -> str:
    """The entry of a .npz (or key of a .pt dict) that holds the data: the only one, else the one named "data";
    else one ValueError listing the entries found and saying how to save them (``save``, e.g. ``np.savez(...)``)."""
    if not keys:
        raise ValueError(f"{label}: contains no arrays")
    if len(keys) == 1:
        return keys[0]
    if "data" in keys:
        return "data"
    raise ValueError(f"{label}: holds several arrays {sorted(keys)} and none named 'data'; save the array to use "
                     f"under the name 'data' ({save})")


_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive (.npz), possibly empty


def _check_magic(path: Path, label: str) -> bool:
    """Refuse a file whose first bytes are not those of its format (before np.load guesses "pickle"); whether it
    is a ``.npy`` (else a zip archive, ``.npz``)."""
    with open(path, "rb") as fh:
        head = fh.read(len(_NPY_MAGIC))
    if head.startswith(_NPY_MAGIC) or head.startswith(_ZIP_MAGIC):
        return head.startswith(_NPY_MAGIC)
    what = ("a Python pickle, not NumPy data" if head[:1] == b"\x80"
            else "no NumPy (.npy) header and no zip (.npz) signature")
    raise ValueError(f"{label}: is not a valid {path.suffix.lower()} file ({what}; first bytes {head!r})")


def _memory_bytes() -> int | None:
    """The memory available for new data in bytes: Linux's ``MemAvailable`` (``/proc/meminfo``: free memory plus
    what the kernel can reclaim, such as the page cache), else the machine's physical memory (``sysconf``), else
    ``None`` where the OS tells neither."""
    try:
        with open("/proc/meminfo", "rb") as fh:
            for line in fh:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024  # in kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` says an allocation failed: NumPy's MemoryError, torch's RuntimeError "can't allocate
    memory" (``alloc_cpu``), or an OSError ENOMEM (e.g. ``mmap`` under an address-space limit)."""
    if isinstance(err, MemoryError):
        return True
    if isinstance(err, OSError):
        return err.errno == errno.ENOMEM
    return isinstance(err, RuntimeError) and "can't allocate memory" in str(err)


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.3g} GiB"


def _too_large(label: str, err: BaseException, what: str) -> ValueError:
    """The ValueError for an allocation that failed (`_out_of_memory`): ``what`` says how much of what was needed."""
    return ValueError(f"{label}: too large for the memory available: {what} ({type(err).__name__}); read fewer rows "
                      "or use a machine with more memory")


def _check_regular(path: Path, label: str) -> os.stat_result:
    """``path``'s status when it is a regular file (symlinks followed); else one error naming it, nothing opened: a
    FIFO would block the reader until a writer came, a device such as /dev/zero would never end."""
    from learned_manifold.atomic_write import file_kind

    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DataFileNotFoundError(f"{label}: file does not exist") from None
    except (OSError, ValueError) as err:  # ValueError: an embedded NUL byte
        raise ValueError(f"{label}: cannot be examined: {getattr(err, 'strerror', None) or err}") from None
    if stat.S_ISDIR(st.st_mode):
        raise DataPathIsAFolderError(f"{label}: is a directory, expected a file")
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{label}: is a {file_kind(st.st_mode)}, not a data file; it was not opened")
    return st


def _check_npz_entries(path: Path, label: str) -> None:
    """Refuse a ``.npz`` entry whose header declares more bytes than the entry holds (np.load would allocate the
    declared size first) or than the memory available (a compressed entry inflates: a zip bomb of a few kB can
    declare, and hold, terabytes of zeros), and entries of Python objects (pickles), before any entry is read."""
    with zipfile.ZipFile(path) as archive:
        for entry in archive.infolist():
            if not entry.filename.endswith(".npy"):
                continue  # np.load hands those out as bytes: refused by name if asked for
            with archive.open(entry) as fh:
                try:
                    version = np.lib.format.read_magic(fh)
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                        np.lib.format.read_array_header_2_0
                    shape, _, dtype = read(fh)
                except ValueError as err:
                    name = entry.filename[:-4]
                    raise ValueError(f"{label}: entry {name!r} is not NumPy array data ({err})") from None
                header = fh.tell()
            if dtype.hasobject:
                raise ValueError(f"{label}: holds a pickled Python object array; refusing to load it (np.load "
                                 "allow_pickle=False)")
            declared = math.prod(shape) * dtype.itemsize
            if declared > entry.file_size - header:
                raise ValueError(f"{label}: entry {entry.filename[:-4]!r} declares shape {tuple(shape)} of {dtype} "
                                 f"({declared:,} bytes) but holds {entry.file_size - header:,} bytes: the file "
                                 "is corrupt")
            memory = _memory_bytes()
            if memory is not None and declared > memory:  # a compressed entry (np.savez_compressed) may inflate
                raise ValueError(f"{label}: entry {entry.filename[:-4]!r} holds {_gib(declared)} uncompressed "
                                 f"({tuple(shape)} of {dtype}), more than the memory available ({_gib(memory)}): "
                                 "save the array as .npy, which is memory-mapped")


def _npz_entry(loaded: np.lib.npyio.NpzFile, name: str, label: str) -> np.ndarray:
    value = loaded[name]
    if not isinstance(value, np.ndarray):
        raise ValueError(f"{label}: entry {name!r} is not NumPy array data ({type(value).__name__})")
    return value


def _read_numpy(path: Path, label: str, extra: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The data array of a .npy/.npz file and, from a .npz that has it, the entry named ``extra``. A ``.npy``
    comes back memory-mapped (read-only): its rows are read when they are copied."""
    pickled = (
        f"{label}: holds a pickled Python object array; refusing to load it (np.load allow_pickle=False)"
    )
    is_npy = _check_magic(path, label)
    try:
        if is_npy:  # mapped: a header that claims more than the file holds fails here, allocating nothing
            return np.load(path, mmap_mode="r", allow_pickle=False), None
        _check_npz_entries(path, label)
        # Open the file ourselves: np.load leaks its own handle when a zip archive is corrupt.
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as loaded:
            names = list(loaded.files)
            side = _npz_entry(loaded, extra, label) if extra is not None and extra in names else None
            if side is not None:
                names.remove(extra)
            if is_scipy_sparse(names):  # scipy.sparse.save_npz: its 'data' is the nonzero values, not the points
                entries = {name: _npz_entry(loaded, name, label) for name in names}
                return densify_scipy_npz(entries, label, MAX_DENSE_FROM_SPARSE), side
            return _npz_entry(loaded, _select_entry(names, label), label), side
    except ValueError as err:
        if "allow_pickle" in str(err) or "Python objects" in str(err):
            raise ValueError(pickled) from err
        if str(err).startswith(label):
            raise
        raise ValueError(f"{label}: corrupt or unreadable ({err})") from err
    except Exception as err:
        if _out_of_memory(err):
            raise _too_large(label, err, f"reading its {_gib(path.stat().st_size)}") from None
        raise ValueError(f"{label}: corrupt or unreadable ({type(err).__name__}: {err})") from err


def _check_torch_records(path: Path, label: str, size: int) -> None:
    """Refuse a zip-format ``.pt`` whose records (``data.pkl`` and one per tensor storage) declare more bytes
    uncompressed than the file's ``size`` (``torch.save`` stores them uncompressed: only compressed records, a
    zip bomb of a few kB inflating to gigabytes, can hold more) or than the memory available, before ``torch.load``
    allocates them. A file that is not a zip archive (the legacy format, or not a torch file) is left to
    ``torch.load``."""
    try:
        with zipfile.ZipFile(path) as archive:
            declared = sum(entry.file_size for entry in archive.infolist())
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return
    if declared > size:
        raise ValueError(f"{label}: its records hold {declared:,} bytes uncompressed, more than the file's {size:,} "
                         "bytes (compressed records, which torch.save does not write); refusing to inflate them: "
                         "save the data again with torch.save, or as .npy")
    memory = _memory_bytes()
    if memory is not None and declared > memory:
        raise ValueError(f"{label}: holds {_gib(declared)} of records, more than the memory available "
                         f"({_gib(memory)}): save the array as .npy, which is memory-mapped")


def _read_torch(path: Path, label: str, extra: str | None = None) -> tuple[Tensor, object | None]:
    """The data tensor of a .pt file and, from a dict that has it, the entry named ``extra``."""
    size = path.stat().st_size
    _check_torch_records(path, label, size)
    try:
        obj = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:
        if _out_of_memory(err):
            raise _too_large(label, err, f"reading its {_gib(size)}") from None
        raise ValueError(
            f"{label}: corrupt, unreadable or not a weights-only torch file ({type(err).__name__}: {err})"
        ) from err
    side = None
    if isinstance(obj, dict):
        keys = {str(k): k for k in obj}  # keys may be ints or other non-strings
        if extra is not None and extra in keys:
            side = obj[keys.pop(extra)]
        obj = obj[keys[_select_entry(list(keys), label, "torch.save({'data': x, ...}, path)")]]
    if not isinstance(obj, Tensor):
        raise ValueError(
            f"{label}: holds a {type(obj).__name__}, expected a tensor or a dict with key 'data'"
        )
    return obj, side


def read_file(path: Path, label: str, extra: str | None = None) -> tuple[np.ndarray | Tensor, object | None]:
    """A .npy/.npz/.pt file's data array and (from a .npz or a .pt dict that has it) its entry ``extra``; a
    ``.npy`` memory-mapped (read-only: slice the rows to keep, then `validate` copies them)."""
    _check_regular(path, label)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        raise ValueError(
            f"{label}: unsupported extension {suffix or '(none)'!r}; "
            f"supported: {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    if suffix in (".npy", ".npz"):
        return _read_numpy(path, label, extra)
    return _read_torch(path, label, extra)


MAX_DENSE_FROM_SPARSE = 2**27  # values (512 MiB in float32): larger sparse tensors are refused, not densified


def _densify(raw: Tensor, label: str) -> Tensor:
    """A sparse tensor as a dense one when it has at most `MAX_DENSE_FROM_SPARSE` values; refuse it otherwise."""
    if raw.layout == torch.strided:
        dense, stored = raw.numel() * raw.element_size(), raw.untyped_storage().nbytes()
        if dense > stored:  # a broadcast (expanded) view: a few stored values standing for many
            raise ValueError(f"{label}: holds a tensor of shape {tuple(raw.shape)} ({dense:,} bytes) that stores only "
                             f"{stored:,} bytes (a broadcast view, e.g. from .expand); save x.contiguous() instead")
        return raw
    if raw.numel() > MAX_DENSE_FROM_SPARSE:
        raise ValueError(
            f"{label}: is a sparse tensor ({raw.layout}) of shape {tuple(raw.shape)} whose dense form has "
            f"{raw.numel():,} values (more than {MAX_DENSE_FROM_SPARSE:,}); store the data dense"
        )
    try:
        return raw.to_dense()
    except (RuntimeError, NotImplementedError) as err:
        raise ValueError(f"{label}: a sparse tensor ({raw.layout}) that cannot be made dense: {err}") from None


def validate(raw: np.ndarray | Tensor, label: str) -> Tensor:
    """``raw`` as a new float32 tensor (float64 for float64 data), or one ValueError naming ``label``: a real
    dtype, at least 2 axes, no empty axis, every value finite, at least 2 samples."""
    shape = tuple(raw.shape)
    if isinstance(raw, np.ndarray):
        if raw.dtype.kind not in "biuf":
            raise ValueError(
                f"{label}: non-numeric dtype {raw.dtype}; expected real numbers (bool, integer or floating)"
            )
        is_f64 = raw.dtype == np.float64
    else:
        if raw.is_complex() or raw.is_quantized:
            raise ValueError(f"{label}: non-numeric dtype {raw.dtype}; expected real numbers")
        raw = _densify(raw, label)
        is_f64 = raw.dtype == torch.float64
    if len(shape) < 2:
        hint = " (reshape N scalars to (N, 1))" if len(shape) == 1 else ""
        raise ValueError(
            f"{label}: expected an array of shape (N, ...) with at least 2 axes, got shape {shape}{hint}"
        )
    if shape[0] == 0:
        raise ValueError(f"{label}: is empty (0 samples, shape {shape})")
    if 0 in shape[1:]:
        raise ValueError(f"{label}: has an empty feature axis (shape {shape})")
    target = torch.float64 if is_f64 else torch.float32
    try:
        if isinstance(raw, np.ndarray):
            x = torch.from_numpy(np.array(raw, dtype=np.float64 if is_f64 else np.float32))
        else:
            x = raw.detach().to(dtype=target, copy=True)
        bad = ~torch.isfinite(x)
    except (MemoryError, RuntimeError, OSError) as err:  # OSError: reading a memory-mapped .npy's rows
        if not _out_of_memory(err):
            raise
        values = math.prod(shape)
        stored = values * (raw.dtype.itemsize if isinstance(raw, np.ndarray) else raw.element_size())
        need = values * (8 if is_f64 else 4)
        kind = str(raw.dtype).removeprefix("torch.")
        raise _too_large(label, err, f"its {_gib(stored)} of {kind} become {_gib(need)} of "
                                     f"{'float64' if is_f64 else 'float32'}, plus {_gib(values)} for the "
                                     "finiteness check") from None
    count = int(bad.sum())
    if count:
        bad_rows = bad.reshape(shape[0], -1).any(dim=1).nonzero()[:, 0]
        raise ValueError(
            f"{label}: contains {count} non-finite value(s) (NaN or inf) in {bad_rows.numel()} row(s); "
            f"the first bad row is index {int(bad_rows[0])}"
        )
    if shape[0] < 2:
        raise ValueError(f"{label}: needs at least 2 samples, got {shape[0]}")
    return x
