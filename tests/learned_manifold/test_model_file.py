"""The model file: round trip, never runs code, clear errors for wrong/truncated/foreign files, atomic writes."""

import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from learned_manifold import ModelFileError, load_model, save_model
from learned_manifold.model_file import atomic_write_bytes, read_metadata
from learned_manifold.models import MetricModel, ModelConfig


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
