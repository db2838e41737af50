"""`knn_spacing.graph_point_count`: one rule, with two floors, for the rows a k-NN field's neighbour graph joins
(`KNNCDC.graph_rows`) and the landmarks a trained model stores by default (`TrainConfig.landmark_count`). Before,
the two were written out twice, and the trainer's default was 1 for 2²⁰ < D ≤ 2²¹ (a value an explicit setting is
refused for: one point makes no graph) and 0 beyond (tester B, s34)."""

import pytest
import torch

from learned_manifold.metrics import KNNCDC
from learned_manifold.metrics.knn_spacing import graph_point_count
from learned_manifold.models import MAX_LANDMARK_NUMBERS
from learned_manifold_training.config import TrainConfig

DIMS = sorted({2, 3, 10, 511, 512, 513, 4096, 8192, 12288, 32768, 32769, 196608, 2**20, 2**20 + 1, 2**21,
               2**21 + 1, 2**22 - 1, 2**22} | {2**e + d for e in range(1, 22) for d in (-1, 0, 1)})


@pytest.mark.parametrize("n", [2, 10, 63, 64, 65, 1000, 10_000, 100_000])
def test_the_default_landmarks_are_never_one_and_fit_a_model_file(n):
    for D in DIMS:
        count = TrainConfig().landmark_count(n, D)
        assert 2 <= count <= min(n, 4096) and count * D <= MAX_LANDMARK_NUMBERS, (n, D)
        assert count * D <= max(2**21, 2 * D), (n, D)  # the 8 MB budget, or the two points a graph needs


def test_the_graph_and_the_landmarks_agree_up_to_8192_dimensions_and_each_keeps_its_floor_beyond():
    for D in DIMS:
        graph, landmarks = graph_point_count(10_000, D), TrainConfig().landmark_count(10_000, D)
        if D <= 8192:
            assert graph == landmarks == min(4096, 2**21 // D), D
        else:
            assert graph == 256 and landmarks == max(2, 2**21 // D), D  # the field's own rows vs the file's budget
    assert TrainConfig().landmark_count(10_000, 196_608) == 10  # FFHQ 256²×3: 7.5 MB, as before
    assert TrainConfig().landmark_count(10_000, 2**21) == 2  # was 1, which an explicit setting is refused for
    assert TrainConfig().landmark_count(10_000, 2**21 + 1) == 2  # was 0
    assert TrainConfig().landmark_count(1, 3) == graph_point_count(1, 3) == 1


def test_a_field_joins_the_rows_the_rule_gives():
    for n, D in [(300, 12288), (100, 2**15), (5000, 1024)]:
        field = KNNCDC(torch.randn(n, D, generator=torch.Generator().manual_seed(0)), k=4, sigma=1.0)
        rows = field.graph_rows()
        assert rows.shape == (graph_point_count(n, D),) == (min(n, 256 if D > 8192 else 2048),)
        assert bool((rows.diff() > 0).all())
