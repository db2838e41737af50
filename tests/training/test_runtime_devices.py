"""`training.runtime`'s devices: a caller's default device does not reach a run (and is back afterwards), ``mps``
is refused up front, and under torchrun the process group's backend and each rank's GPU follow the run's device."""

import pytest
import torch

import learned_manifold_training.runtime as runtime
from learned_manifold_training.data import Circle
from learned_manifold_training.runtime import (
    check_training_tensor,
    distributed_backend,
    init_distributed,
    resolve_device,
)
from learned_manifold_training.trainer import TrainConfig, train

TINY = dict(steps=4, batch_size=32, rank=2, hidden=8, depth=1, emb_dim=8, val_points=20, factor_refit=0.0, seed=3,
            precision="fp32")


def test_a_run_under_a_meta_default_device_trains_on_its_own_device_and_gives_the_default_back():
    """``torch.set_default_device("meta")`` made the data check's own index tensor a meta one, and a false
    "rescale your data" error: the run's tensors are its own device's, and the caller's default is restored."""
    data = Circle(2).sample(200, generator=torch.Generator().manual_seed(0))
    torch.set_default_device("meta")
    try:
        result = train(data, TrainConfig(**TINY), progress=False, device="cpu")
        after = torch.get_default_device()
    finally:
        torch.set_default_device(None)
    assert after.type == "meta"
    weights = list(result.model.parameters())
    assert all(w.device.type == "cpu" and bool(torch.isfinite(w).all()) for w in weights)


def test_the_data_check_judges_cpu_data_alike_under_a_meta_default_device():
    """The check is a public function too: its own tensors do not follow the caller's default device."""
    ok = Circle(2).sample(200, generator=torch.Generator().manual_seed(0))
    torch.set_default_device("meta")
    try:
        check_training_tensor(ok)
        with pytest.raises(ValueError, match=r"RMS spread about their mean of \d\.\d+e\+17"):
            check_training_tensor(ok * 1e18)
    finally:
        torch.set_default_device(None)


@pytest.mark.parametrize("name", ["mps", "mps:0"])
def test_mps_is_refused_up_front_naming_float64(monkeypatch, name):
    """MPS has no float64, which the eigen step needs: refused before any work, even where MPS is available."""
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    with pytest.raises(ValueError, match=r"--device mps.*no float64.*use cpu"):
        resolve_device(name, name="--device")


def test_the_cpu_has_gloo_and_cuda_nccl():
    assert distributed_backend(torch.device("cpu")) == "gloo"
    assert distributed_backend(torch.device("cuda", 1)) == "nccl"


@pytest.fixture
def torchrun(monkeypatch) -> dict:
    """Rank 1 of 2 under torchrun on a machine with 2 GPUs (monkeypatched): what `init_distributed` started."""
    started: dict = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda dev: started.setdefault("gpu", torch.device("cuda", dev)))
    monkeypatch.setattr(runtime.dist, "is_initialized", lambda: "backend" in started)
    monkeypatch.setattr(runtime.dist, "init_process_group", lambda backend: started.setdefault("backend", backend))
    monkeypatch.setattr(runtime.dist, "get_rank", lambda: 1)
    monkeypatch.setattr(runtime.dist, "get_world_size", lambda: 2)
    return started


def test_a_cpu_run_under_torchrun_uses_gloo_even_where_cuda_exists(torchrun):
    assert init_distributed("cpu") == (1, 2)
    assert torchrun == {"backend": "gloo"}  # and no GPU bound


@pytest.mark.parametrize("device", ["auto", "cuda"])
def test_a_cuda_run_under_torchrun_binds_its_local_gpu_before_starting_nccl(torchrun, device):
    assert init_distributed(device) == (1, 2)
    assert torchrun == {"gpu": torch.device("cuda", 1), "backend": "nccl"}
    assert list(torchrun) == ["gpu", "backend"]  # bound first: NCCL's first collective runs on the rank's GPU
