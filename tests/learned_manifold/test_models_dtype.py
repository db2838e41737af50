"""A `MetricModel`'s data statistics (``scale``, ``mean``, SPEC §1) are in its weights' dtype: a float64 model
keeps the user's mean exactly and round-trips through its file as float64, and a file written before (a float32
mean beside float64 weights) loads in its widest dtype, computing what the saved model computed
(`model_file.load_module_state`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from learned_manifold import load_model, save_model
from learned_manifold.model_file import load_module_state
from learned_manifold.models import MetricModel, ModelConfig

F64 = torch.float64
CONFIG = ModelConfig(data_shape=(5,), rank=3, arch_kwargs={"hidden": 16, "depth": 1, "emb_dim": 8},
                     sigma_min=0.01, sigma_max=2.0, default_sigma=0.3)
MEAN = torch.tensor([12345.678901, -2.0, 3.0, 0.0, 1.0 + 1e-9], dtype=F64)  # not representable in float32


@pytest.fixture
def float64_default() -> Iterator[None]:
    before = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def _random_weights(model: MetricModel) -> MetricModel:
    """Random weights everywhere (an untrained model's zero heads would hide the inputs)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def _same_factor(loaded: MetricModel, saved: MetricModel, x: torch.Tensor) -> None:
    """The factors agree bit for bit: the σ embedding's frequencies (`mlp.SigmaEmbedding.freqs`, not stored) are
    computed again in float64 when the loader casts its float32 build to float64 (they were the float32 ones
    rounded, and moved the factor by about 1e-6; a float32 mean moved it by 3e-5)."""
    assert torch.equal(loaded.factor(x, 0.3), saved.factor(x, 0.3))


def test_a_float64_model_keeps_its_mean_exactly_and_in_one_dtype(float64_default):
    """Under a float64 default dtype every weight and buffer is float64 and the mean is the user's, bit for bit
    (it was rounded to float32: 12345.678901 became 12345.678711)."""
    model = MetricModel(CONFIG, scale=7.0, mean=MEAN)
    assert {t.dtype for t in model.state_dict().values()} == {F64}
    assert torch.equal(model.mean, MEAN)


def test_under_float32_the_statistics_are_float32_like_the_weights():
    """A float64 mean given to a float32 model is stored in float32, as the weights; ``.double()`` and
    ``.to(float32)`` convert the statistics with the weights."""
    model = MetricModel(CONFIG, scale=7.0, mean=MEAN)
    assert {t.dtype for t in model.state_dict().values()} == {torch.float32}
    assert torch.equal(model.mean, MEAN.float())
    model.double()
    assert {t.dtype for t in model.state_dict().values()} == {F64}
    assert {t.dtype for t in model.to(torch.float32).state_dict().values()} == {torch.float32}


def test_a_float64_model_round_trips_through_its_file_as_float64_bit_for_bit(float64_default, tmp_path):
    """Saved and loaded, a float64 model is float64 with the same mean and weights, bit for bit, and the same
    factor (its mixed-dtype file loaded as float32: the factor changed by 3e-5, silently)."""
    model = _random_weights(MetricModel(CONFIG, scale=7.0, mean=MEAN))
    loaded = load_model(save_model(model, tmp_path / "m64.lmm"))
    assert {t.dtype for t in loaded.state_dict().values()} == {F64}
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    x = MEAN + 7.0 * torch.randn(4, 5, dtype=F64)
    _same_factor(loaded, model, x)


def test_an_old_file_with_a_float32_mean_beside_float64_weights_loads_as_float64(float64_default, tmp_path):
    """A file written before the mean followed the weights' dtype holds a float32 mean beside float64 weights:
    it loads in its widest dtype, float64, with every stored value exact (the mean upcast), so it computes what
    the saved model computed (it loaded as float32, rounding every weight)."""
    old = _random_weights(MetricModel(CONFIG, scale=7.0, mean=MEAN))
    old.mean = old.mean.float()  # as the old constructor stored it
    stored = old.state_dict()
    assert {t.dtype for k, t in stored.items() if k != "mean"} == {F64} and stored["mean"].dtype == torch.float32
    loaded = load_model(save_model(old, tmp_path / "old.lmm"))
    assert {t.dtype for t in loaded.state_dict().values()} == {F64}
    assert all(torch.equal(loaded.state_dict()[k], v.double()) for k, v in stored.items())
    x = MEAN + 7.0 * torch.randn(4, 5, dtype=F64)
    _same_factor(loaded, old, x)


class _Counted(torch.nn.Module):
    """A module with float weights beside an integer buffer (a step counter, say)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(3))
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))


@pytest.mark.parametrize("weights", [torch.float16, torch.float32, F64])
def test_an_integer_buffer_never_sets_the_dtype_a_module_loads_in(weights, tmp_path):
    """`load_module_state` loads in the widest *floating* dtype stored (at least float32): an int64 buffer, wider
    than float32 by itemsize, keeps its own dtype and leaves the weights' as they were stored."""
    tensors = {"weight": torch.tensor([1.0, -2.0, 0.5], dtype=weights), "steps": torch.tensor(7)}
    loaded = load_module_state(_Counted, tensors, tmp_path / "counted.bin")
    assert loaded.weight.dtype == (F64 if weights == F64 else torch.float32)
    assert torch.equal(loaded.weight, tensors["weight"].to(loaded.weight.dtype))
    assert loaded.steps.dtype == torch.int64 and int(loaded.steps) == 7
