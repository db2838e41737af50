"""Path scores where the true geodesic is missing or degenerate, and the input checks of `lerp`, `path_quality`
and `nearest_distance` (SPEC §6): the exact messages."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from learned_manifold.evaluation import lerp, nearest_distance, path_quality

F64 = torch.float64


class TwoCircles:
    """Unit circles in the planes z = 0 and z = 5 (a union: no geodesic joins points of different circles)."""

    def distance(self, x: Tensor) -> Tensor:
        z = torch.where(x[:, 2] > 2.5, x[:, 2] - 5, x[:, 2])
        return torch.hypot(x[:, :2].norm(dim=-1) - 1, z)

    def geodesic_distance(self, x0: Tensor, x1: Tensor) -> Tensor:
        angle = torch.arccos(torch.nn.functional.cosine_similarity(x0[:, :2], x1[:, :2], dim=-1).clamp(-1, 1))
        return torch.where((x0[:, 2] > 2.5) == (x1[:, 2] > 2.5), angle, torch.full_like(angle, math.inf))


def test_pairs_without_a_finite_positive_geodesic_get_no_ratio_and_the_summary_leaves_them_out() -> None:
    """A pair across the pieces of a union (geodesic distance inf) had length_ratio 0, "better than perfect", and
    a pair with coincident ends NaN; `summary` averaged the inf and the NaN into the table (tester B, s32)."""
    a, b, top = torch.tensor([1.0, 0.0, 0.0], dtype=F64), torch.tensor([0.0, 1.0, 0.0], dtype=F64), 5.0
    x0 = torch.stack([a, a, a])
    x1 = torch.stack([b, b + torch.tensor([0.0, 0.0, top], dtype=F64), a])  # same circle, other circle, same point
    q = path_quality(lerp(x0, x1, 9), manifold=TwoCircles(), target=x1)
    chord = math.sqrt(2.0)
    torch.testing.assert_close(q.geodesic_length[0], torch.tensor(math.pi / 2, dtype=F64))
    assert math.isinf(float(q.geodesic_length[1])) and float(q.geodesic_length[2]) == 0.0
    torch.testing.assert_close(q.length_ratio[0], torch.tensor(chord / (math.pi / 2), dtype=F64))
    assert bool(q.length_ratio[1:].isnan().all()), q.length_ratio
    summary = q.summary()
    assert summary["length_ratio"] == pytest.approx(chord / (math.pi / 2), rel=1e-6)
    assert summary["length_ratio_left_out"] == 2
    assert summary["geodesic_length"] == pytest.approx(math.pi / 4, rel=1e-6)  # the inf left out, the 0 kept
    assert summary["geodesic_length_left_out"] == 1
    assert summary["length"] == pytest.approx((chord + math.hypot(chord, top)) / 3, rel=1e-6)
    assert "length_left_out" not in summary and "endpoint_gap_left_out" not in summary
    alone = path_quality(lerp(x0[1:2], x1[1:2], 5), manifold=TwoCircles(), target=x1[1:2]).summary()
    assert math.isnan(alone["length_ratio"]) and alone["length_ratio_left_out"] == 1


def test_lerp_names_mismatched_ends() -> None:
    with pytest.raises(ValueError, match=r"^x0 and x1 must have the same shape, got \(2, 3\) and \(2, 2\)$"):
        lerp(torch.zeros(2, 3), torch.zeros(2, 2), 4)


def test_path_quality_names_a_path_without_points_and_a_wrong_target() -> None:
    with pytest.raises(ValueError, match=r"^path must have shape \(B, T, D\) with T >= 1 points, got \(2, 0, 3\)$"):
        path_quality(torch.zeros(2, 0, 3))
    with pytest.raises(ValueError, match=r"^path must have shape \(B, T, D\) with T >= 1 points, got \(4,\)$"):
        path_quality(torch.zeros(4))
    path = lerp(torch.zeros(2, 3), torch.ones(2, 3), 4)
    with pytest.raises(ValueError, match=r"^target must have shape \(2, 3\), got \(2, 2\)$"):
        path_quality(path, target=torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"^need x \(n, D\) and non-empty data \(N, D\), got \(8, 3\), \(5, 2\)$"):
        path_quality(path, data=torch.zeros(5, 2))


def test_nearest_distance_names_mismatched_or_empty_data() -> None:
    x = torch.zeros(4, 3)
    for data, shape in ((torch.zeros(5, 2), "(5, 2)"), (torch.zeros(0, 3), "(0, 3)"), (torch.zeros(5), "(5,)")):
        with pytest.raises(ValueError, match=rf"^need x \(n, D\) and non-empty data \(N, D\), got \(4, 3\), "
                           rf"{shape.replace('(', '[(]').replace(')', '[)]')}$"):
            nearest_distance(x, data)
