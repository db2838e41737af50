"""`KNNCDC` refuses data at a scale whose squared distances leave the data's dtype (tester D: float32 S² at 1e20 or
1e-22 was accepted, then every query, even at a data point, raised "too far outside the data's range"), with an
error naming ``data``, the spread and the remedy; within the limits (`SCALE_HEADROOM`) the field answers the same
at every scale."""

import math

import pytest
import torch

from learned_manifold.metrics import KNNCDC
from learned_manifold.metrics.base import NonFiniteFieldOutput, check_finite_output
from learned_manifold.metrics.knn_scale import SCALE_HEADROOM

F32 = torch.float32


def sphere(n: int = 400) -> torch.Tensor:
    """``n`` points of the unit S² in R³ (float64), RMS spread about their mean ≈ 1."""
    x = torch.randn(n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    return x / x.norm(dim=-1, keepdim=True)


def limits(dtype: torch.dtype) -> tuple[float, float]:
    info = torch.finfo(dtype)
    return math.sqrt(info.tiny * SCALE_HEADROOM), math.sqrt(info.max / SCALE_HEADROOM)


@pytest.mark.parametrize("scale", [1e20, 1e-22])
def test_float32_data_whose_squares_leave_float32_are_refused_naming_data_and_the_remedy(scale):
    """The spread is measured without forming its square (which is inf or 0 in float32 here)."""
    with pytest.raises(ValueError, match=r"data spread 1e[+-]\d\d .*float32.*rescale the data.*float64") as err:
        KNNCDC((sphere() * scale).to(F32), k=16, sigma=0.1 * scale)
    assert f"{scale:.3g}" in str(err.value)


def test_the_float32_limits_are_16_spreads_inside_its_range():
    low, high = limits(F32)
    assert 1e-18 < low < 2e-18 and 1e18 < high < 2e18


@pytest.mark.parametrize("scale", [4e-18, 1e-9, 1.0, 1e9, 5e17])
def test_float32_data_within_the_limits_give_the_unit_scale_answers(scale):
    """Tangent factors scale with the data (``A`` is in data units over σ, so unchanged): same to float32's rounding,
    and queries 10 spreads off the data stay finite."""
    unit = KNNCDC(sphere().to(F32), k=16, sigma=0.2)
    field = KNNCDC((sphere() * scale).to(F32), k=16, sigma=0.2 * scale)
    q = sphere(6).to(F32) * 1.05
    torch.testing.assert_close(field.factor(q * scale), unit.factor(q), rtol=1e-4, atol=1e-4)
    assert torch.isfinite(field.factor(q * 10 * scale)).all()


def test_float64_data_have_their_own_wider_limits():
    low, high = limits(torch.float64)
    assert low < 1e-150 and high > 1e150
    KNNCDC(sphere() * 1e40, k=16, sigma=1e39)  # far outside float32's limits: accepted
    with pytest.raises(ValueError, match="data spread 1e\\+160") as err:
        KNNCDC(sphere() * 1e160, k=16, sigma=1e159)
    assert "float64 data" not in str(err.value)  # no wider dtype to suggest


def test_identical_points_have_no_spread_and_pass():
    assert KNNCDC(torch.ones(5, 3, dtype=F32) * 1e30, k=2, sigma=1.0).length_scale() == 0


def test_an_in_place_edit_to_an_extreme_scale_is_refused_at_the_next_query():
    data = sphere().to(F32)
    field = KNNCDC(data, k=16, sigma=0.2)
    data.mul_(1e21)
    with pytest.raises(ValueError, match="data spread 1e\\+21"):
        field.factor(data[:2])


def test_a_non_finite_field_output_names_the_arithmetic_not_only_the_points_position():
    """The query-time error can come from the data's scale as well as from a far point: it says both and the
    remedy."""
    x = torch.zeros(2, 3)
    with pytest.raises(NonFiniteFieldOutput, match="over- or underflowed.*scale.*rescale the data, or compute in "
                                                   "float64"):
        check_finite_output(x, torch.full((2, 3), float("nan")), "k-NN field")


def test_a_model_whose_landmarks_float32_cannot_search_is_refused_naming_the_landmarks():
    """A model trained before the trainer refused such units (its landmarks at scale 1e20) fails to load into a
    field with a message about the model's landmarks and retraining, not about a ``data`` the caller never gave."""
    from learned_manifold.metrics import LearnedCDC
    from learned_manifold.models import MetricModel, ModelConfig

    model = MetricModel(ModelConfig(data_shape=(3,), rank=2, landmarks=16, arch_kwargs={"hidden": 8, "depth": 1}))
    model.set_landmarks(torch.randn(16, 3, generator=torch.Generator().manual_seed(0)) * 1e20)
    with pytest.raises(ValueError, match="model's landmarks .* retrain on data multiplied by a power of ten"):
        LearnedCDC(model)


def test_half_precision_data_are_not_refused_by_float32_headroom():
    """The scale check is for float32 and float64: float16 data of spread ~90 (which the headroom would refuse:
    float16 would keep only 0.12..16) still build a field whose projection stays finite and near the data."""
    data = (torch.randn(200, 3, generator=torch.Generator().manual_seed(0)) * 50).half()
    field = KNNCDC(data, k=8, sigma=5.0)
    out = field.project(data[:10])
    assert out.dtype == torch.float16 and bool(torch.isfinite(out).all())
    assert float((out.float() - data[:10].float()).norm(dim=-1).max()) < 50
