"""`validate` with a user's known manifold (`train(..., manifold=...)`, SPEC §8): ``point_dimension`` answers that
`runtime.check_manifold` accepts before the run (whole-valued floats, a list, one number) are scored as the same
integers, and a run with such a manifold finishes; a fractional answer is still refused by name (s35 review,
finding 3: whole floats and lists had failed at the first validation, after the training steps)."""

import numpy as np
import pytest
import torch

from learned_manifold.models import MetricModel, ModelConfig
from learned_manifold_training.data import Circle, Sphere
from learned_manifold_training.trainer import TrainConfig, train
from learned_manifold_training.validation import validate


class Custom:
    """The unit sphere in R³ with a ``point_dimension`` answer chosen by the test (``answer(n)``)."""

    ambient_dim = 3

    def __init__(self, answer):
        self.answer = answer

    def tangent_basis(self, x: torch.Tensor) -> torch.Tensor:
        return Sphere(2, 3).tangent_basis(x)

    def point_dimension(self, x: torch.Tensor) -> object:
        return self.answer(x.shape[0])


ACCEPTED = {
    "float32 2.0s": lambda n: torch.full((n,), 2.0),
    "float64 with a 1": lambda n: torch.tensor([1.0] + [2.0] * (n - 1), dtype=torch.float64),
    "list of ints": lambda n: [2] * n,
    "list of floats": lambda n: [2.0] * n,
    "NumPy floats": lambda n: np.full(n, 2.0),
    "one int": lambda n: 2,
    "one float": lambda n: 2.0,
}


@pytest.fixture(scope="module")
def setting() -> tuple[MetricModel, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(24, 3, generator=torch.Generator().manual_seed(1)), dim=-1)
    return MetricModel(ModelConfig(data_shape=(3,), rank=2)), x


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_dimensions_the_up_front_check_accepts_are_scored_as_the_same_integers(setting, case):
    model, x = setting
    answer = ACCEPTED[case]
    as_long = Custom(lambda n: torch.as_tensor(answer(n)).long().expand(n))
    got, expected = validate(model, x, 0.1, Custom(answer)), validate(model, x, 0.1, as_long)
    assert got == expected
    assert 0.0 <= got["dimension_accuracy"] <= 1.0 and got["tangent_error"] >= 0.0


@pytest.mark.parametrize("answer", [lambda n: torch.full((n,), 1.9), lambda n: [2.5] * n,
                                    lambda n: torch.full((n,), float("inf"))])
def test_a_fractional_or_infinite_dimension_is_still_refused_by_name(setting, answer):
    model, x = setting
    with pytest.raises(ValueError, match=r"^manifold\.point_dimension on \d+ points .* must return n = \d+ integers"):
        validate(model, x, 0.1, Custom(answer))


def test_a_run_with_a_manifold_of_float_dimensions_finishes_and_scores_them():
    """A circle in R² whose ``point_dimension`` gives float 1.0s: the run validates and reports its accuracy."""

    class FloatCircle:
        ambient_dim = 2

        def tangent_basis(self, x):
            return Circle(2).tangent_basis(x)

        def point_dimension(self, x):
            return torch.ones(x.shape[0])

    data = Circle(2).sample(200, generator=torch.Generator().manual_seed(0))
    config = TrainConfig(steps=4, batch_size=32, rank=2, hidden=8, depth=1, emb_dim=8, val_points=20,
                         factor_refit=0.0, seed=3)
    result = train(data, config, manifold=FloatCircle(), progress=False, device="cpu")
    assert 0.0 <= result.validation["dimension_accuracy"] <= 1.0 and result.validation["tangent_error"] >= 0.0
