"""The model file: round trip, never runs code, clear errors for wrong/truncated/foreign files, atomic writes."""

import os
import pickle
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from learned_manifold import ModelFileError, load_model, save_model
from learned_manifold.model_file import atomic_write_bytes, read_metadata
from learned_manifold.models import (
    LOSSES,
    SAMPLER_NAMES,
    FiLMResMLP,
    MetricModel,
    ModelConfig,
    backbone_options,
    build_backbone,
)


@pytest.fixture
def model():
    torch.manual_seed(1)
    cfg = ModelConfig(
        data_shape=(4,),
        rank=2,
        arch_kwargs={"hidden": 16, "depth": 1, "emb_dim": 8},
        tikhonov=0.01,
        default_sigma=0.2,
        sigma_rule="test",
    )
    return MetricModel(cfg, scale=3.0, mean=torch.arange(4.0))


def test_round_trip_gives_identical_outputs(model, tmp_path):
    path = save_model(model, tmp_path / "m.lmm", extra={"note": "hello"})
    loaded = load_model(path)
    y = torch.randn(6, 4)
    torch.testing.assert_close(loaded.factor(y, 0.3), model.factor(y, 0.3), rtol=0, atol=0)
    torch.testing.assert_close(loaded.denoise(y, 0.3), model.denoise(y, 0.3), rtol=0, atol=0)
    assert loaded.config == model.config
    assert float(loaded.scale) == 3.0 and loaded.mean.tolist() == [0, 1, 2, 3]
    assert not any(p.requires_grad for p in loaded.parameters())
    assert read_metadata(path)["extra"] == {"note": "hello"}
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    load_model(path)  # loading does not consume the caller's random numbers
    assert torch.equal(torch.rand(3), expected)


class _Bomb:
    def __reduce__(self):
        return (open, (os.environ["BOMB_PATH"], "w"))


def test_pickle_file_is_refused_without_running_code(tmp_path, monkeypatch):
    marker = tmp_path / "exploded"
    monkeypatch.setenv("BOMB_PATH", str(marker))
    evil = tmp_path / "evil.lmm"
    evil.write_bytes(pickle.dumps({"weights": _Bomb()}))
    with pytest.raises(ModelFileError, match="evil.lmm"):
        load_model(evil)
    assert not marker.exists()
    # the payload is real: unpickling it would have created the marker
    pickle.loads(evil.read_bytes()).get("weights").close()
    assert marker.exists()


def test_torch_save_checkpoint_is_refused(model, tmp_path):
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(ModelFileError, match="pickle"):
        load_model(path)


def test_truncated_file_names_the_file(model, tmp_path):
    path = save_model(model, tmp_path / "m.lmm")
    data = path.read_bytes()
    for cut in (4, 100, len(data) - 10):
        bad = tmp_path / f"cut{cut}.lmm"
        bad.write_bytes(data[:cut])
        with pytest.raises(ModelFileError, match=f"cut{cut}.lmm"):
            load_model(bad)


def test_foreign_safetensors_and_missing_file(tmp_path):
    foreign = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, foreign)
    with pytest.raises(ModelFileError, match="not a learned-manifold model"):
        load_model(foreign)
    with pytest.raises(FileNotFoundError, match="nope.lmm"):
        load_model(tmp_path / "nope.lmm")
    with pytest.raises(ModelFileError, match="folder"):
        load_model(tmp_path)


def test_weights_that_do_not_match_the_config(model, tmp_path):
    path = save_model(model, tmp_path / "m.lmm")
    from safetensors.torch import load_file, safe_open

    tensors = load_file(path)
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    tensors.pop("scale")
    save_file(tensors, tmp_path / "broken.lmm", metadata=meta)
    with pytest.raises(ModelFileError, match="missing"):
        load_model(tmp_path / "broken.lmm")


def test_atomic_write_keeps_the_old_file_when_writing_fails(model, tmp_path, monkeypatch):
    path = save_model(model, tmp_path / "m.lmm")
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(path, b"garbage")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.lmm"]  # no temporary file left behind


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_model_with_non_finite_weights_is_not_saved_over_a_good_file(model, tmp_path, bad):
    """load_model refuses NaN/inf weights, so save_model refuses them first: a diverged model must not replace the
    user's good file with one nothing can load (before: written silently, then unloadable)."""
    path = save_model(model, tmp_path / "m.lmm")
    before = path.read_bytes()
    with torch.no_grad():
        model.factor_net.state_dict()[next(iter(model.factor_net.state_dict()))].view(-1)[0] = bad
    name = next(k for k, v in model.state_dict().items() if not bool(torch.isfinite(v).all()))
    with pytest.raises(ValueError, match=rf"model: tensor '{re.escape(name)}' holds non-finite .*m\.lmm"):
        save_model(model, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.lmm"]


# -- writing: permissions, what may stand at the destination, leftovers of crashed writers -------------------

@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_saved_files_respect_the_umask(model, tmp_path, umask, mode):
    """A model (and any atomic write, e.g. the training state) gets ``0o666 & ~umask``, like an ordinary open."""
    old = os.umask(umask)
    try:
        path = save_model(model, tmp_path / "m.lmm")
        atomic_write_bytes(tmp_path / "state.pt", b"state")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "state.pt").stat().st_mode) == mode
    torch.testing.assert_close(load_model(path).mean, model.mean)


def test_save_refuses_a_symlink_or_special_file_at_the_destination(model, tmp_path):
    """A symlink (to a file or to a device), a FIFO or a folder at ``path`` raises before anything is written;
    the link's target is untouched and no temporary file is left."""
    target = tmp_path / "target.lmm"
    target.write_bytes(b"precious")
    os.symlink(target, tmp_path / "link.lmm")
    os.symlink(os.devnull, tmp_path / "null.lmm")
    os.mkfifo(tmp_path / "fifo.lmm")
    (tmp_path / "folder.lmm").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    for name, kind in [("link.lmm", "symbolic link"), ("null.lmm", "symbolic link"), ("fifo.lmm", "FIFO"),
                       ("folder.lmm", "folder")]:
        with pytest.raises(ValueError, match=f"{name}.*{kind}"):
            save_model(model, tmp_path / name)
        with pytest.raises(ValueError, match=f"{name}.*{kind}"):
            atomic_write_bytes(tmp_path / name, b"data")
    assert target.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_temp_files_of_dead_writers_are_removed(model, tmp_path, monkeypatch):
    """Temporary names are ``.{name}.{pid}.{hex}.tmp``; a save removes those of its target whose pid no longer
    runs, and keeps those of live writers and of other targets."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # a pid that has exited
    stale = tmp_path / f".m.lmm.{child.pid}.0123abcd.tmp"
    live = tmp_path / f".m.lmm.{os.getppid()}.0123abcd.tmp"  # the test runner's parent is alive
    other = tmp_path / f".other.lmm.{child.pid}.0123abcd.tmp"
    for p in (stale, live, other):
        p.write_bytes(b"partial")
    renamed = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (renamed.append(Path(src).name), real_replace(src, dst)))
    save_model(model, tmp_path / "m.lmm")
    assert not stale.exists() and live.exists() and other.exists()
    assert re.fullmatch(rf"\.m\.lmm\.{os.getpid()}\.[0-9a-f]+\.tmp", renamed[0])
    assert load_model(tmp_path / "m.lmm").config == model.config


# -- the argument and config checks the reader relies on --------------------------------------------------------

def test_bad_arguments_name_themselves(model, tmp_path):
    path = save_model(model, tmp_path / "m.lmm")
    with pytest.raises(TypeError, match="path"):
        load_model(5)
    with pytest.raises(ModelFileError, match="null byte"):
        load_model(str(tmp_path / "a\0b.lmm"))
    with pytest.raises(ValueError, match="map_location"):
        load_model(path, map_location="no-such-device")
    with pytest.raises(TypeError, match="extra"):
        save_model(model, tmp_path / "x.lmm", extra=[1])
    with pytest.raises(TypeError, match="model"):
        save_model({"w": torch.zeros(1)}, tmp_path / "x.lmm")


def test_model_config_checks_every_field_before_building():
    """A ModelConfig is valid or does not exist: one TypeError/ValueError naming the field."""
    base = {"data_shape": (3,), "rank": 2}
    cases = [({"rank": "2"}, TypeError, "rank"), ({"rank": 0}, ValueError, "rank"),
             ({"data_shape": (3, 0)}, ValueError, r"data_shape\[1\]"), ({"tikhonov": -1.0}, ValueError, "tikhonov"),
             ({"default_sigma": float("nan")}, ValueError, "default_sigma"), ({"centred": 1}, TypeError, "centred"),
             ({"sampler": "gauss"}, ValueError, "sampler"), ({"sigma_min": 5.0}, ValueError, "sigma_min"),
             ({"arch_kwargs": {"width": 3}}, ValueError, "width"), ({"loss": "full"}, ValueError, "rank = D")]
    for change, error, pattern in cases:
        with pytest.raises(error, match=pattern):
            ModelConfig(**{**base, **change})
    assert ModelConfig(data_shape=[2, 3], rank=6, loss="full").data_shape == (2, 3)


def test_backbone_options_come_from_the_constructor_and_values_are_checked():
    assert set(backbone_options("film_mlp")) == {"hidden", "depth", "emb_dim", "head_std", "out_bias", "final_norm",
                                                   "norm_feature"}
    with pytest.raises(ValueError, match="valid"):
        build_backbone("film_mlp", (3,), 2, dropout=0.1)
    for kwargs, pattern in [({"hidden": 0}, "hidden"), ({"depth": 10**7}, "depth"), ({"head_std": 0.0}, "head_std"),
                            ({"emb_dim": 2.0}, "emb_dim"), ({"out_bias": 1}, "out_bias"),
                            ({"final_norm": "no"}, "final_norm"), ({"norm_feature": 1}, "norm_feature")]:
        with pytest.raises((TypeError, ValueError), match=pattern):
            FiLMResMLP((3,), 2, **kwargs)


def test_metric_model_refuses_bad_scale_and_mean():
    cfg = ModelConfig(data_shape=(3,), rank=2, arch_kwargs={"hidden": 8, "depth": 1, "emb_dim": 8})
    for scale in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="scale"):
            MetricModel(cfg, scale=scale)
    with pytest.raises(ValueError, match="mean"):
        MetricModel(cfg, mean=torch.tensor([0.0, float("nan"), 1.0]))
    with pytest.raises(ValueError, match="mean"):
        MetricModel(cfg, mean=torch.zeros(4))


def test_library_names_match_the_training_registries():
    """The sampler and loss names a config may hold are exactly those the training package implements."""
    from learned_manifold_training.losses import MetricMatchingLoss
    from learned_manifold_training.samplers import SAMPLERS

    assert set(SAMPLERS) == set(SAMPLER_NAMES)
    for kind in LOSSES:
        MetricMatchingLoss(kind)
    with pytest.raises(ValueError):
        MetricMatchingLoss("not-a-loss")


def test_a_changed_byte_anywhere_is_refused_and_only_version_1_files_load_without_a_checksum(model, tmp_path):
    """A flipped bit in the weights is a well-formed file of a different model: the checksum written with the
    file refuses it (the fuzz suite found one that loaded and gave NaN on an AMX-bf16 machine). A version-2 file
    whose checksum was deleted loaded unchecked, even with a changed weight (tester B, s32): every version-2 writer
    wrote one, so it is refused; a version-1 file without one (written before checksums) still loads."""
    import json

    from learned_manifold.model_file import CHECKSUM_KEY

    path = save_model(model, tmp_path / "m.lmm", extra={"note": "x"})
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    assert len(header["__metadata__"][CHECKSUM_KEY]) == 64
    for pos, mask in ((8 + n + 5, 64), (len(raw) - 1, 1)):  # a weight's byte; the last byte of the data
        flipped = tmp_path / f"flip{pos}.lmm"
        flipped.write_bytes(raw[:pos] + bytes([raw[pos] ^ mask]) + raw[pos + 1:])
        with pytest.raises(ModelFileError, match="do not match the SHA-256"):
            load_model(flipped)
    header["__metadata__"]["extra"] = json.dumps({"note": "y"})  # edited metadata, still valid JSON
    text = json.dumps(header).encode()
    edited = tmp_path / "edited.lmm"
    edited.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n:])
    with pytest.raises(ModelFileError, match="SHA-256"):
        read_metadata(edited)
    header["__metadata__"]["extra"] = json.dumps({"note": "x"})
    del header["__metadata__"][CHECKSUM_KEY]  # a version-2 file stripped of its checksum
    for name, version in (("stripped.lmm", "2"), ("old.lmm", "1")):  # version 1: written before checksums
        header["__metadata__"]["version"] = version
        text = json.dumps(header).encode()
        (tmp_path / name).write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n:])
    with pytest.raises(ModelFileError, match=r"^'.*stripped\.lmm' was not loaded: version 2 files carry a checksum "
                       r"\('sha256'\); this one has none: it was edited after writing$"):
        load_model(tmp_path / "stripped.lmm")
    y = torch.randn(4, model.dim)
    torch.testing.assert_close(load_model(tmp_path / "old.lmm").factor(y, 0.1), model.factor(y, 0.1))


def test_a_vae_file_is_recognised_by_vae_files_own_format_name(tmp_path, monkeypatch):
    """`model_file` hard-coded a copy of `vae_file.VAE_FORMAT` (tester C, item 6): the VAE format's one name rules."""
    from learned_manifold import vae_file

    monkeypatch.setattr(vae_file, "VAE_FORMAT", "renamed-vae")
    path = tmp_path / "v.lvae"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"format": "renamed-vae"})
    with pytest.raises(ModelFileError, match="is a learned-manifold VAE file .*load it with load_vae"):
        load_model(path)


def test_a_file_holds_parameters_and_buffers_and_no_extra_state():
    """`safetensors_reader.file_state`: the extra state of submodules (``<prefix>._extra_state``, e.g. a VAE's
    recorded spread, kept in a file's metadata) is left out; a parameter whose own name ends so is kept."""
    from learned_manifold.safetensors_reader import file_state

    class WithExtra(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale_extra_state = torch.nn.Parameter(torch.ones(2))

        def get_extra_state(self):
            return torch.zeros(1, dtype=torch.float64)

        def set_extra_state(self, state):
            pass

    outer = torch.nn.Sequential(WithExtra())
    assert {"_extra_state", "0._extra_state"} <= set(WithExtra().state_dict()) | set(outer.state_dict())
    assert set(file_state(outer)) == {"0.scale_extra_state"}
    assert set(file_state(WithExtra())) == {"scale_extra_state"}
