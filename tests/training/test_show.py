"""`training.show`: how interpolation paths are scored (the numbers of `learned-manifold show` and of
`benchmarks/image_paths.py`)."""

import pytest
import torch

from learned_manifold_training.show import interpolation_scores


def test_paths_are_scored_by_their_interior_points_distance_to_the_data():
    data = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]]).reshape(3, 1, 1, 2)
    through = data.clone()  # interior point (1, 0) is a data point: distance 0
    above = torch.tensor([[0.0, 0.0], [0.5, 0.3], [1.0, 0.4], [2.0, 0.0]]).reshape(4, 1, 1, 2)
    scores = interpolation_scores({"through": through, "above": above}, data)
    assert scores["through"].mean_nearest == 0.0
    want = [(0.5**2 + 0.3**2) ** 0.5, 0.4]  # nearest: (0, 0) or (1, 0), then (1, 0)
    assert scores["above"].mean_nearest == pytest.approx(sum(want) / 2)
    assert scores["above"].max_nearest == pytest.approx(max(want))


def test_a_path_without_interior_points_is_refused():
    data = torch.zeros(3, 1, 2, 2)
    with pytest.raises(ValueError, match=r"path 'LERP' must have shape \(T >= 3, \*\(1, 2, 2\)\)"):
        interpolation_scores({"LERP": torch.zeros(2, 1, 2, 2)}, data)  # was a reshape error
