"""Loading a model or VAE file (`model_file.load_model`, `vae_file.load_vae`, `model_file.load_module_state`) gives
the stored network whatever the caller set with ``torch.set_default_dtype`` or ``torch.set_default_device``, and
leaves those settings as they were."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from learned_manifold import load_model, load_vae, save_model, save_vae
from learned_manifold.models import MetricModel, ModelConfig
from learned_manifold.vae import VAE, VAEConfig


def _model(dtype: torch.dtype = torch.float32) -> MetricModel:
    """A small model with random weights everywhere (an untrained one's zero FiLM and head ignore the σ embedding,
    whose frequencies are computed at build, not stored)."""
    torch.manual_seed(0)
    cfg = ModelConfig(data_shape=(3,), rank=2, arch_kwargs={"hidden": 16, "depth": 1, "emb_dim": 8})
    model = MetricModel(cfg, scale=2.0, mean=torch.arange(3.0))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.5 * torch.randn_like(p))
    return model.to(dtype)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("files")
    torch.manual_seed(1)
    vae = VAE(VAEConfig(data_shape=(6,), latent_dim=2, hidden=16))
    return save_model(_model(), folder / "m.lmm"), save_vae(vae, folder / "v.lvae")


@pytest.fixture
def restore_defaults() -> Iterator[None]:
    dtype, device = torch.get_default_dtype(), torch.get_default_device()
    try:
        yield
    finally:
        torch.set_default_dtype(dtype)
        # None, not "cpu": setting "cpu" leaves a DeviceContext mode active for the rest of the process
        torch.set_default_device(None if device == torch.device("cpu") else device)


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("default", [torch.bfloat16, torch.float16, torch.float64])
def test_a_half_or_double_default_dtype_neither_rounds_nor_casts_the_stored_weights(files, default,
                                                                                   restore_defaults):
    """Under a bfloat16 default the loaded weights were bfloat16, the file's float32 values rounded to 8 bits
    (tangent eigenvalues off by 6e-3, every result still float32, so nothing showed it): now they are the file's
    float32 values bit for bit, the outputs equal a normal load's, and the caller's default dtype is unchanged."""
    model_path, vae_path = files
    reference, reference_vae = load_model(model_path), load_vae(vae_path)
    x, z = torch.randn(5, 3), torch.randn(5, 2)
    torch.set_default_dtype(default)
    loaded, loaded_vae = load_model(model_path), load_vae(vae_path)
    assert torch.get_default_dtype() == default
    torch.set_default_dtype(torch.float32)
    assert _same_state(loaded, reference) and _same_state(loaded_vae, reference_vae)
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    assert torch.equal(loaded.factor(x), reference.factor(x))
    assert torch.equal(loaded_vae.decode(z), reference_vae.decode(z))


def test_a_meta_default_device_still_loads_real_weights_on_the_cpu(files, restore_defaults):
    """``torch.set_default_device("meta")`` made ``load_model(path, map_location="cpu")`` fail with torch's
    "Cannot copy out of meta tensor ... use to_empty()": the network is built on the CPU whatever the default
    device, and the caller's default device is unchanged."""
    model_path, vae_path = files
    reference, reference_vae = load_model(model_path), load_vae(vae_path)
    torch.set_default_device("meta")
    loaded, loaded_vae = load_model(model_path, map_location="cpu"), load_vae(vae_path, map_location="cpu")
    assert torch.get_default_device().type == "meta"
    torch.set_default_device("cpu")
    for module in (loaded, loaded_vae):
        assert {t.device.type for t in (*module.parameters(), *module.buffers())} == {"cpu"}
    assert _same_state(loaded, reference) and _same_state(loaded_vae, reference_vae)
    x = torch.randn(5, 3)
    assert torch.equal(loaded.factor(x), reference.factor(x))


def test_a_model_stored_in_float64_loads_in_float64_bit_for_bit(tmp_path):
    """The network is built in the file's dtype (as a VAE is): a float64 model was cast to float32 on loading."""
    model = _model(torch.float64)
    loaded = load_model(save_model(model, tmp_path / "m64.lmm"))
    assert {p.dtype for p in loaded.parameters()} == {torch.float64}
    assert _same_state(loaded, model)


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
def test_a_model_stored_in_half_precision_computes_in_float32_as_before(tmp_path, half):
    """A float16/bfloat16 file loads as float32 (its weights exactly, upcast), as `load_model` always did: building
    in the stored dtype had made such a model compute in half precision (λ₁ off by 0.5%; reviewer s34)."""
    model = _model(half)
    loaded = load_model(save_model(model, tmp_path / "half.lmm"))
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    pairs = zip(loaded.state_dict().values(), model.state_dict().values(), strict=True)
    assert all(torch.equal(a, b.float()) for a, b in pairs)
