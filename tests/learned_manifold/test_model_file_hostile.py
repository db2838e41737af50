"""Hostile model files: every variant is refused by both `load_model` and `read_metadata` with one
`ModelFileError` naming the file, within a bounded time and without large allocations; a good file still loads.

The variants are generated here from one good file: byte-level damage (truncations, flipped header bytes,
foreign formats), header-level damage (dtypes, shapes, offsets), metadata and config damage (every field with a
wrong type, NaN, inf, a negative or a huge value, unknown keys), weight damage (NaN/inf/zero scale, NaN mean and
weights, missing/extra/reshaped tensors), a config claiming a huge network in a small file, and paths that are
not regular files (FIFO, folder, devices, symlink loops).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import resource
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from learned_manifold import ModelFileError, load_model, save_model
from learned_manifold.model_file import CHECKSUM_KEY, MAX_HEADER_BYTES, checksum, read_metadata
from learned_manifold.models import MAX_DEPTH, MAX_DIM, MAX_RANK, MAX_WIDTH, MetricModel, ModelConfig

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:  # `benchmarks` is a folder of the repository, not an installed package
    sys.path.insert(0, ROOT)

from benchmarks.reliability_cases import time_limit  # noqa: E402  (SIGALRM: a hang fails instead of blocking CI)

TIME_LIMIT_S = 10.0
MEMORY_LIMIT = 200 * 2**20


def _model() -> MetricModel:
    torch.manual_seed(3)
    cfg = ModelConfig(data_shape=(4,), rank=2, arch_kwargs={"hidden": 16, "depth": 1, "emb_dim": 8},
                      tikhonov=0.01, default_sigma=0.2, sigma_rule="test")
    return MetricModel(cfg, scale=2.0, mean=torch.arange(4.0))


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> bytes:
    path = save_model(_model(), tmp_path_factory.mktemp("good") / "good.lmm", extra={"validation": {"a": 1.0}})
    return path.read_bytes()


# -- editing a good file -------------------------------------------------------------------------------------

def split(raw: bytes) -> tuple[dict, bytes]:
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def join(header: dict | str, data: bytes) -> bytes:
    h = (header if isinstance(header, str) else json.dumps(header)).encode()
    return len(h).to_bytes(8, "little") + h + data


def with_header(edit):
    def make(raw: bytes) -> bytes:
        header, data = split(raw)
        out = edit(header)
        return join(header if out is None else out, data)
    return make


def with_metadata(**changes):
    def edit(header):
        header["__metadata__"].update(changes)
        for key, value in changes.items():
            if value is None:
                del header["__metadata__"][key]
    return with_header(edit)


def with_config(drop: str | None = None, **changes):
    def edit(header):
        cfg = json.loads(header["__metadata__"]["config"])
        cfg.update(changes)
        if drop:
            del cfg[drop]
        header["__metadata__"]["config"] = json.dumps(cfg)  # NaN and inf are written as NaN / Infinity
    return with_header(edit)


def with_tensors(edit):
    """Decode with safetensors, edit the tensor dict, re-encode with the checksum of the edited tensors: a
    well-formed, correctly signed file with changed weights, so the check of the content itself (dtype, names,
    shapes, finite values, scale > 0) must refuse it, not the checksum."""
    def make(raw: bytes) -> bytes:
        header, _ = split(raw)
        tensors = dict(st_load(raw))
        edit(tensors)
        metadata = dict(header["__metadata__"])
        metadata[CHECKSUM_KEY] = checksum(metadata, tensors)
        return st_save(tensors, metadata=metadata)
    return make


def with_entry(name: str, **fields):
    def edit(header):
        header[name].update(fields)
    return with_header(edit)


def flip(offset: int):
    def make(raw: bytes) -> bytes:
        b = bytearray(raw)
        b[offset] ^= 0xFF
        return bytes(b)
    return make


def set_value(name: str, value: float, index=0):
    def edit(tensors):
        t = tensors[name].clone()
        t.view(-1)[index] = value
        tensors[name] = t
    return edit


def _legacy_pickle(raw: bytes) -> bytes:
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(3)}, buf, _use_new_zipfile_serialization=False)
    return buf.getvalue()


def _torch_zip(raw: bytes) -> bytes:
    buf = io.BytesIO()
    torch.save(_model().state_dict(), buf)
    return buf.getvalue()


def _plain_zip(raw: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("model.lmm", raw)
    return buf.getvalue()


def _numpy_array(raw: bytes) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.zeros((100, 3), dtype=np.float32))
    return buf.getvalue()


def _deep(raw: bytes) -> bytes:
    return join("[" * 200_000 + "]" * 200_000, b"")


def _duplicate_key(raw: bytes) -> bytes:
    header, data = split(raw)
    text = json.dumps(header)
    return join(text[:-1] + ', "scale": ' + json.dumps(header["scale"]) + "}", data)


def _overlap(header: dict) -> None:
    """The 4-byte ``scale`` points into ``mean``'s bytes: offsets still in range, but two tensors share data."""
    begin = header["mean"]["data_offsets"][0]
    header["scale"]["data_offsets"] = [begin, begin + 4]


# Byte-level, header-level, metadata, config and weight variants: name -> good bytes -> hostile bytes.
BYTE_VARIANTS = {
    "empty": lambda raw: b"",
    "cut_4": lambda raw: raw[:4],
    "cut_8": lambda raw: raw[:8],
    "cut_60": lambda raw: raw[:60],
    "cut_header_end": lambda raw: raw[:8 + int.from_bytes(raw[:8], "little") - 1],
    "cut_data_middle": lambda raw: raw[: len(raw) // 2 + 300],
    "cut_last_byte": lambda raw: raw[:-1],
    "trailing_byte": lambda raw: raw + b"\0",
    "flip_length_byte": flip(0),
    "flip_header_brace": flip(8),
    "flip_header_middle": lambda raw: flip(8 + int.from_bytes(raw[:8], "little") // 2)(raw),
    "pickle": lambda raw: pickle.dumps({"weights": [1.0, 2.0]}),
    "torch_legacy_pickle": _legacy_pickle,
    "torch_zip": _torch_zip,
    "plain_zip": _plain_zip,
    "numpy_array": _numpy_array,
    "random_bytes": lambda raw: bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0))
                                      .to(torch.uint8).tolist()),
    "header_length_2e63": lambda raw: (2**63).to_bytes(8, "little") + raw[8:],
    "header_not_json": lambda raw: join("{not json at all", split(raw)[1]),
    "header_not_utf8": lambda raw: len(b"{\xff\xfe}").to_bytes(8, "little") + b"{\xff\xfe}" + split(raw)[1],
    "header_json_array": lambda raw: join("[1, 2, 3]", split(raw)[1]),
    "header_deeply_nested": _deep,
    "header_duplicate_key": _duplicate_key,
    "foreign_safetensors": lambda raw: st_save({"w": torch.zeros(2)}),
    "format_wrong": with_metadata(format="pytorch"),
    "version_3": with_metadata(version="3"),
    "metadata_unknown_key": with_metadata(surprise="1"),
    "metadata_no_extra": with_metadata(extra=None),
    "metadata_not_object": with_header(lambda h: {**h, "__metadata__": [1, 2]}),
    "metadata_non_string": with_header(lambda h: h["__metadata__"].update(version=1)),
    "config_not_json": with_metadata(config="{rank: 2"),
    "config_array": with_metadata(config="[4, 2]"),
    "extra_not_object": with_metadata(extra="[1, 2]"),
    "extra_validation_list": with_metadata(extra='{"validation": [1]}'),
    "dtype_I32": with_entry("mean", dtype="I32"),
    "dtype_BOOL": with_tensors(lambda t: t.update(mean=torch.ones(4, dtype=torch.bool))),
    "dtype_U8": with_tensors(lambda t: t.update(mean=torch.ones(4, dtype=torch.uint8))),
    "dtype_F8": with_entry("mean", dtype="F8_E4M3"),
    "shape_negative": with_entry("mean", shape=[-4]),
    "shape_float": with_entry("mean", shape=[4.0]),
    "shape_mismatch_bytes": with_entry("mean", shape=[5]),
    "offsets_beyond_data": with_entry("scale", data_offsets=[0, 10**12]),
    "offsets_reversed": with_entry("scale", data_offsets=[4, 0]),
    "offsets_overlap": with_header(_overlap),
    "entry_extra_field": with_entry("scale", note="hi"),
    "tensor_missing": with_tensors(lambda t: t.pop("factor_net.head.weight")),
    "tensor_extra": with_tensors(lambda t: t.update(payload=torch.zeros(3))),
    "tensor_wrong_shape": with_tensors(lambda t: t.update(mean=torch.zeros(2, 2))),
    "scale_nan": with_tensors(set_value("scale", float("nan"))),
    "scale_zero": with_tensors(set_value("scale", 0.0)),
    "scale_negative": with_tensors(set_value("scale", -2.0)),
    "scale_inf": with_tensors(set_value("scale", float("inf"))),
    "mean_nan": with_tensors(set_value("mean", float("nan"), 2)),
    "weight_nan": with_tensors(set_value("factor_net.inp.weight", float("nan"), 5)),
    "weight_inf": with_tensors(set_value("denoiser_net.head.weight", float("-inf"), 1)),
    "weight_f64_overflows_f32": with_tensors(lambda t: t.update(mean=torch.full((4,), 1e300, dtype=torch.float64))),
    "config_unknown_key": with_config(surprise=1),
    "config_missing_key": with_config(drop="default_sigma"),
    "depth_1e7": with_config(arch_kwargs={"hidden": 16, "depth": 10**7, "emb_dim": 8}),
    "depth_200_small_file": with_config(arch_kwargs={"hidden": 16, "depth": 200, "emb_dim": 8}),
    "hidden_1e9": with_config(arch_kwargs={"hidden": 10**9, "depth": 1, "emb_dim": 8}),
    "hidden_string": with_config(arch_kwargs={"hidden": "16", "depth": 1, "emb_dim": 8}),
    "hidden_negative": with_config(arch_kwargs={"hidden": -16, "depth": 1, "emb_dim": 8}),
    "head_std_nan": with_config(arch_kwargs={"hidden": 16, "depth": 1, "emb_dim": 8, "head_std": float("nan")}),
    "arch_kwargs_unknown": with_config(arch_kwargs={"hidden": 16, "depth": 1, "emb_dim": 8, "dropout": 0.1}),
    "arch_kwargs_list": with_config(arch_kwargs=[16, 1, 8]),
    "arch_unknown": with_config(arch="unet9000"),
    "every_size_at_its_cap_small_file": with_config(
        data_shape=[MAX_DIM], rank=MAX_RANK,
        arch_kwargs={"hidden": MAX_WIDTH, "depth": MAX_DEPTH, "emb_dim": MAX_WIDTH}),
    "arch_number": with_config(arch=5),
}
# Every config field with a wrong type, non-finite, negative or huge value.
for _field, _values in {
    "data_shape": ["4", [-4], [4.0], [], [2**40], [True]],
    "rank": [-1, 0, "2", 2.5, 10**7, True, None],
    "centred": ["yes", 1],
    "loss": ["l2", None],
    "tikhonov": [float("nan"), -1.0, float("inf"), "0"],
    "sampler": ["gauss", 3],
    "sigma_min": [float("nan"), -0.1, 0.0, 5.0],
    "sigma_max": [float("inf"), 1e-4, "4"],
    "default_sigma": [float("nan"), -0.1, 0.0, float("inf"), "0.05"],
    "sigma_rule": [5],
}.items():
    for _i, _v in enumerate(_values):
        BYTE_VARIANTS[f"config_{_field}_{_i}_{str(_v)[:12]}"] = with_config(**{_field: _v})


def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "fifo.lmm")
    return tmp / "fifo.lmm"


def _folder(tmp: Path) -> Path:
    (tmp / "folder.lmm").mkdir()
    return tmp / "folder.lmm"


def _symlink_loop(tmp: Path) -> Path:
    os.symlink(tmp / "b.lmm", tmp / "a.lmm")
    os.symlink(tmp / "a.lmm", tmp / "b.lmm")
    return tmp / "a.lmm"


def _link_to(device: str):
    def make(tmp: Path) -> Path:
        os.symlink(device, tmp / "link.lmm")
        return tmp / "link.lmm"
    return make


def _sparse(size: int, header_len: int):
    """A sparse file of ``size`` bytes (no disk used) whose first 8 bytes claim a ``header_len`` header."""
    def make(tmp: Path) -> Path:
        path = tmp / "sparse.lmm"
        with open(path, "wb") as f:
            f.write(header_len.to_bytes(8, "little"))
            f.truncate(size)
        return path
    return make


# Paths that are not regular files, or too big to read: name -> tmp folder -> path.
PATH_VARIANTS = {
    "fifo": _fifo,
    "folder": _folder,
    "symlink_loop": _symlink_loop,
    "header_over_cap_in_big_sparse_file": _sparse(MAX_HEADER_BYTES + 2**20, MAX_HEADER_BYTES + 1),
    "file_over_16GiB_sparse": _sparse(17 * 2**30, 100),
}
for _dev in ("/dev/zero", "/dev/null", "/dev/urandom"):
    if os.path.exists(_dev):
        PATH_VARIANTS[f"symlink_to_{_dev[5:]}"] = _link_to(_dev)
        PATH_VARIANTS[f"device_{_dev[5:]}"] = (lambda d: lambda tmp: Path(d))(_dev)

ALL = sorted(BYTE_VARIANTS) + sorted(PATH_VARIANTS)


def test_the_suite_has_many_variants():
    """The hostile suite covers at least 40 distinct files (it generates about 120)."""
    assert len(ALL) >= 40 and len(set(ALL)) == len(ALL)


def _build(name: str, good: bytes, tmp: Path) -> Path:
    if name in PATH_VARIANTS:
        return PATH_VARIANTS[name](tmp)
    path = tmp / f"{name}.lmm"
    path.write_bytes(BYTE_VARIANTS[name](good))
    return path


@pytest.mark.parametrize("name", ALL)
def test_hostile_file_is_refused_by_load_and_read_metadata(name, good, tmp_path):
    """Both readers raise one `ModelFileError` naming the file, in under 10 s, allocating under 200 MB."""
    path = _build(name, good, tmp_path)
    for reader in (load_model, read_metadata):
        tracemalloc.start()
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        start = time.perf_counter()
        try:
            with time_limit(TIME_LIMIT_S), pytest.raises(ModelFileError) as info:
                reader(path)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
        assert str(path) in str(info.value), info.value
        assert time.perf_counter() - start < TIME_LIMIT_S
        assert peak < MEMORY_LIMIT and rss_growth < MEMORY_LIMIT, (peak, rss_growth)


def test_the_cli_info_command_refuses_what_the_loader_refuses(good, tmp_path, capsys):
    """``learned-manifold info`` exits with status 2 and one error line (no traceback) for hostile files."""
    from learned_manifold_training.cli import main

    for name in ("scale_nan", "depth_1e7", "extra_validation_list", "config_rank_2_2", "fifo", "weight_nan"):
        folder = tmp_path / name
        folder.mkdir()
        path = _build(name, good, folder)
        with time_limit(TIME_LIMIT_S):
            assert main(["info", str(path)]) == 2, name
        assert str(path) in capsys.readouterr().err


def test_good_file_loads_and_round_trips_exactly(good, tmp_path):
    """The unmodified file loads to the saved model bit for bit, and saving it again writes the same header
    entries, metadata and tensor bytes (safetensors may order the header's keys differently)."""
    path = tmp_path / "good.lmm"
    path.write_bytes(good)
    loaded = load_model(path)
    reference = _model()
    for key, value in reference.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert loaded.config == reference.config
    meta = read_metadata(path)
    mean = reference.mean.double()
    units = {"scale": float(reference.scale), "mean_min": float(mean.min()), "mean_max": float(mean.max()),
             "mean_average": float(mean.mean())}
    assert meta == {"config": reference.config.to_dict(), "extra": {"validation": {"a": 1.0}}, "standardisation": units}
    again = save_model(loaded, tmp_path / "again.lmm", extra=meta["extra"])
    assert split(again.read_bytes()) == split(good)


# Each content check by itself: the file is correctly signed (`with_tensors`) or its edit is caught before the
# checksum is read, so removing the check lets the file load or be refused by another check with another message.
CONTENT_CHECKS = {
    "scale_zero": "has data scale 0.0; it must be > 0",
    "scale_negative": "has data scale -2.0; it must be > 0",
    "scale_nan": "holds non-finite values (NaN or inf) in tensor 'scale'",
    "mean_nan": "holds non-finite values (NaN or inf) in tensor 'mean'",
    "weight_nan": "holds non-finite values (NaN or inf) in tensor 'factor_net.inp.weight'",
    "weight_inf": "holds non-finite values (NaN or inf) in tensor 'denoiser_net.head.weight'",
    "weight_f64_overflows_f32": "holds non-finite values (NaN or inf) in tensor 'mean'",  # 1e300 is finite in F64
    "offsets_overlap": "has tensor data that overlaps or leaves a gap at tensor 'mean'",
    "numpy_array": "is a NumPy array file (data), not a learned-manifold model file: train one on it with "
                   "`learned-manifold train`",
}


def test_a_re_signed_file_with_unchanged_weights_loads(good, tmp_path):
    """The helper's checksum is the one the loader checks: what `with_tensors` writes is refused for its content
    alone (the variants below), never for its signature."""
    path = tmp_path / "resigned.lmm"
    path.write_bytes(with_tensors(lambda tensors: None)(good))
    loaded = load_model(path)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in _model().state_dict().items())


@pytest.mark.parametrize("name", sorted(CONTENT_CHECKS))
def test_each_content_check_refuses_its_file_with_its_own_message(name, good, tmp_path):
    """A zero or negative data scale, a non-finite value (a float64 one beyond float32's range included), tensor
    data that overlap, and a NumPy array file are each refused by their own check and message, not by the
    checksum's ("is corrupted") or the header-length check's ("claims a ...-byte header")."""
    path = _build(name, good, tmp_path)
    for reader in (load_model, read_metadata):
        with pytest.raises(ModelFileError) as info:
            reader(path)
        assert str(info.value) == f"{str(path)!r} {CONTENT_CHECKS[name]}"


def test_a_numpy_data_file_given_as_a_model_or_vae_is_named_as_data(good, tmp_path):
    """``LearnedDataManifold("data.npy")`` said the file "claims a 379676406402707-byte header"; it now names a
    NumPy array (data) and the command that trains a model (for a VAE file: ``train-vae``)."""
    from learned_manifold import LearnedDataManifold, load_vae

    path = tmp_path / "data.npy"
    np.save(path, np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32))
    with pytest.raises(ModelFileError, match=r"is a NumPy array file \(data\), not a learned-manifold model file: "
                                             r"train one on it with `learned-manifold train`$"):
        LearnedDataManifold(path)
    with pytest.raises(ModelFileError, match=r"is a NumPy array file \(data\), not a learned-manifold VAE file: "
                                             r"train one on it with `learned-manifold train-vae`$"):
        load_vae(path)
