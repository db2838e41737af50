"""geoopt's public checks on `LearnedDataManifold` refuse non-tensors with one ``TypeError`` naming the argument
(tester C, item 3): ``check_point``/``check_vector`` raised a bare ``AttributeError`` for a list, and
``assert_check_point``/``assert_check_vector`` passed a NumPy array that every method then refuses."""

import numpy as np
import pytest
import torch

from learned_manifold import LearnedDataManifold
from tests.conftest import FixedSubspaceField

M = LearnedDataManifold(FixedSubspaceField(torch.eye(3)[:, :2]))


@pytest.mark.parametrize("value", [[[1.0, 0.0, 0.0]], np.zeros((2, 3))], ids=["list", "numpy"])
@pytest.mark.parametrize("check,name", [
    (M.check_point, "x"), (M.assert_check_point, "x"), (M.check_vector, "u"), (M.assert_check_vector, "u"),
], ids=["check_point", "assert_check_point", "check_vector", "assert_check_vector"])
def test_every_public_check_refuses_a_non_tensor_naming_the_argument(check, name, value):
    with pytest.raises(TypeError, match=rf"^{name} must be a torch.Tensor, got {type(value).__name__}"):
        check(value)


def test_the_checks_still_judge_tensors_by_their_shape():
    assert M.check_point(torch.zeros(4, 3)) is True and M.check_vector(torch.zeros(3)) is True
    ok, reason = M.check_point(torch.zeros(4, 2), explain=True)
    assert not ok and "data shape (3,)" in reason
    with pytest.raises(ValueError, match="data shape"):
        M.assert_check_vector(torch.zeros(5))
