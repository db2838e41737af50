"""The validation layer under model and VAE files (`model_file`, `vae_file`): bounded reads of one safetensors file.

Each function here is one step of the order `model_file` documents, every refusal one `ModelFileError` naming the
file (`SafetensorsReader.error`):

1. `SafetensorsReader`: the path is a regular file (a FIFO, device, folder or socket is refused without being
   opened) of at most `MAX_FILE_BYTES`, opened in binary mode;
2. `read_header`: the 8-byte header length (at most `MAX_HEADER_BYTES` and within the file; a pickle, zip or NumPy
   file is named as such) and the JSON header (`parse_json`: duplicate keys refused): floating dtypes only
   (`DTYPES`), non-negative integer shapes, data offsets that tile the data section exactly;
3. `check_metadata_keys`: exactly the metadata keys of the file's format (the format's own schema and config are
   checked by its module);
4. `expected_shapes` and `compare_shapes`: the network the config describes is built on the ``meta`` device (no
   memory) and every tensor name and shape compared with the header;
5. `read_tensors`: only then the tensor data are read, every value finite (float64 values beyond float32's range
   count as infinite).
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from .atomic_write import file_kind
from .model_checksum import CHECKSUM_KEY

__all__ = [
    "DTYPES",
    "MAX_FILE_BYTES",
    "MAX_HEADER_BYTES",
    "ModelFileError",
    "ModelFileIsAFolderError",
    "SafetensorsReader",
    "check_metadata_keys",
    "compare_shapes",
    "expected_shapes",
    "file_state",
    "parse_json",
    "read_header",
    "read_tensors",
]

MAX_FILE_BYTES = 16 * 2**30  # 16 GiB: far above any model of SPEC §9 (the FFHQ network is a few hundred MB)
MAX_HEADER_BYTES = 100 * 2**20  # 100 MB of JSON header
DTYPES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64}
"""The safetensors dtypes a model or VAE file may hold (floating types only), by their header names."""


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


class SafetensorsReader:
    """Bounded reads from one regular file, every error a `ModelFileError` naming the file.

    Args:
        path: the file.
        kind: what the file should be, in messages (``"model file"``, ``"VAE file"``).
        train_command: the command that writes such a file, named where a data file is given instead.

    Attributes:
        name: ``repr`` of the path, as messages name it.
        file: the open file (binary, unbuffered); close it (``with reader.file:``).
        size: its size in bytes at opening.

    Raises:
        FileNotFoundError: the file does not exist.
        ModelFileIsAFolderError: the path is a folder.
        ModelFileError: not a regular file, cannot be opened, replaced while opened, or over `MAX_FILE_BYTES`.
    """

    def __init__(self, path: Path, kind: str = "model file", train_command: str = "learned-manifold train"):
        self.name, self.kind, self.train_command = repr(str(path)), kind, train_command
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
        # O_NONBLOCK: should the path become a FIFO between stat and open, opening cannot block; O_BINARY: Windows
        # would otherwise give a text-mode descriptor (CR LF for LF, a stop at the first 0x1A byte)
        flags = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
                 | getattr(os, "O_BINARY", 0))
        try:
            fd = os.open(path, flags)
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
        """``ModelFileError("<file> <problem>")``, to raise."""
        return ModelFileError(f"{self.name} {problem}")

    def read(self, n: int, what: str) -> bytearray:
        """The next ``n`` bytes (``what`` names them in the error where the file ends first)."""
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


def parse_json(reader: SafetensorsReader, text: bytes | bytearray | str, what: str) -> object:
    """``text`` (UTF-8 bytes or str) as JSON, duplicate keys refused; ``what`` names it in the error."""
    try:
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8")
        return json.loads(text, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise reader.error(f"is not a learned-manifold {reader.kind}: its {what} is not valid JSON ({err})") from None


def _foreign(reader: SafetensorsReader, first: bytes) -> str:
    """What a file starting with ``first`` is where it is a known non-safetensors format, as the end of a sentence
    naming the file ("" where unknown)."""
    not_run = f"not a learned-manifold {reader.kind}; it was not loaded and no code was run"
    if first[:6] == b"\x93NUMPY":
        return (f"is a NumPy array file (data), not a learned-manifold {reader.kind}: train one on it with "
                f"`{reader.train_command}`")
    if first[:1] == b"\x80":
        return f"is a pickle (torch.save) file, {not_run}"
    if first[:4] == b"PK\x03\x04":
        return f"is a zip archive (torch.save writes a pickle inside one), {not_run}"
    return ""


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def read_header(reader: SafetensorsReader) -> tuple[dict, dict, int]:
    """The header → ``(tensor entries, metadata strings, data length)``; checks dtypes, shapes and offsets."""
    if reader.size < 8:
        raise reader.error(f"is not a learned-manifold {reader.kind}: only {reader.size} bytes")
    first = bytes(reader.read(8, "header length"))
    n = int.from_bytes(first, "little")
    if n > MAX_HEADER_BYTES or n > reader.size - 8:
        foreign = _foreign(reader, first)
        if foreign:
            raise reader.error(foreign)
        if n > MAX_HEADER_BYTES:
            raise reader.error(f"is not a learned-manifold {reader.kind}: it claims a {n}-byte header, more than "
                               f"the {MAX_HEADER_BYTES} a {reader.kind} may have")
        raise reader.error(f"is not a learned-manifold {reader.kind} (not safetensors, or truncated): it claims a "
                           f"{n}-byte header but has only {reader.size - 8} bytes after the length")
    header = parse_json(reader, reader.read(n, "header"), "header")
    if not isinstance(header, dict):
        raise reader.error("is not a safetensors file: its header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise reader.error("has header metadata that is not a JSON object of strings")
    data_len, spans = reader.size - 8 - n, []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise reader.error(f"has a malformed header entry for tensor {name!r}")
        if info["dtype"] not in DTYPES:
            raise reader.error(f"holds tensor {name!r} of dtype {info['dtype']!r}; only floating types "
                               f"{sorted(DTYPES)} are allowed")
        shape, offsets = info["shape"], info["data_offsets"]
        if not isinstance(shape, list) or len(shape) > 8 or not all(_is_int(s) and s >= 0 for s in shape):
            raise reader.error(f"gives tensor {name!r} the shape {shape!r:.80}: not a list of non-negative ints")
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= data_len):
            raise reader.error(f"gives tensor {name!r} data offsets {offsets!r:.80}, not 0 <= begin <= end <= "
                               f"{data_len} (the size of its data section; is the file truncated?)")
        if offsets[1] - offsets[0] != math.prod(shape) * DTYPES[info["dtype"]].itemsize:
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


def check_metadata_keys(reader: SafetensorsReader, metadata: dict, keys: tuple[str, ...], kind: str) -> None:
    """Refuse metadata whose keys are not exactly ``keys`` (and `CHECKSUM_KEY`, which files carry since
    version 2); ``kind`` names the file kind in the error."""
    if set(metadata) - {CHECKSUM_KEY} != set(keys):
        raise reader.error(f"has metadata keys {sorted(metadata)[:10]}; a {kind} has exactly {list(keys)} (and "
                           f"{CHECKSUM_KEY!r} since files carry a checksum)")


def expected_shapes(reader: SafetensorsReader, build: Callable[[], torch.nn.Module],
                    what: str) -> dict[str, tuple[int, ...]]:
    """The state-dict names and shapes of the module ``build()`` makes, built on the meta device (no memory); an
    error in building is refused as "an invalid ``what``" (e.g. ``"model config"``)."""
    try:
        with torch.device("meta"):
            module = build()
    except (TypeError, ValueError, RuntimeError) as err:
        raise reader.error(f"has an invalid {what}: {err}") from None
    return {k: tuple(v.shape) for k, v in file_state(module).items()}


def file_state(module: torch.nn.Module) -> dict[str, Tensor]:
    """``module.state_dict()`` as a model or VAE file holds it: its parameters and buffers, without the extra state
    of submodules that define ``get_extra_state`` (``"_extra_state"``, ``"<prefix>._extra_state"``: a file keeps such
    state in its metadata, e.g. a VAE's recorded input spread in ``extra``, `vae_file`), so files stay as earlier
    versions wrote and read them."""
    return {k: v for k, v in module.state_dict().items() if k != "_extra_state" and not k.endswith("._extra_state")}


def compare_shapes(reader: SafetensorsReader, header: dict, expected: dict[str, tuple[int, ...]]) -> None:
    """Refuse a header whose tensor names or shapes differ from ``expected`` (`expected_shapes`), naming them."""
    missing = sorted(set(expected) - set(header))
    unexpected = sorted(set(header) - set(expected))
    wrong = sorted(k for k in set(expected) & set(header) if tuple(header[k]["shape"]) != expected[k])
    if missing or unexpected or wrong:
        shapes = [f"{k}: {tuple(header[k]['shape'])} instead of {expected[k]}" for k in wrong[:5]]
        raise reader.error(f"does not match its architecture: missing {missing[:5]} ({len(missing)} in all), "
                           f"unexpected {unexpected[:5]}, wrong shapes {shapes}")


def read_tensors(reader: SafetensorsReader, header: dict, data_len: int) -> dict[str, Tensor]:
    """The data section (``data_len`` bytes, `read_header`) as CPU tensors by name; refuses non-finite values
    (float64 values beyond float32's range included: the networks compute in float32) and a file that grew."""
    data = reader.read(data_len, "tensor data")
    if reader.file.read(1):
        raise reader.error("grew while it was being read")
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        dtype, shape = DTYPES[info["dtype"]], info["shape"]
        t = (torch.frombuffer(data, dtype=dtype, count=(end - begin) // dtype.itemsize, offset=begin)
             if end > begin else torch.empty(0, dtype=dtype, device="cpu"))
        t = t.reshape(shape)
        if not bool(torch.isfinite(t.float()).all()):  # .float(): F64 values beyond float32 become inf too
            raise reader.error(f"holds non-finite values (NaN or inf) in tensor {name!r}")
        tensors[name] = t
    return tensors
