"""The feature-stability part of `benchmarks/images.py` (SPEC §10), on a tiny model: what each curve is scored on."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

# `benchmarks` is a folder of the repository, not part of the installed packages: import it from the root.
ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import benchmarks.images as images  # noqa: E402
from learned_manifold.feature_stability import feature_stability  # noqa: E402
from learned_manifold.metrics import EuclideanMetric, LearnedCDC, ScoreJacobianMetric, SteinScoreMetric  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_every_curve_is_scored_on_the_same_test_points_against_the_euclidean_baseline(monkeypatch):
    """Tester A, item 3: no test ran `_stability_on`, and a Euclidean ("random") baseline scored on the validation
    points instead of the test points of the other curves passed (and reversed SPEC §10's comparison on digits).
    Each field's σ is chosen on held-out points, none of them a test point; the four curves are then scored on one
    set of test points, the baseline with `EuclideanMetric`, and the reported means are those scores."""
    calls = []

    def spy(field, x, features, eps, **kwargs):
        result = feature_stability(field, x, features, eps, **kwargs)
        calls.append((field, x.clone(), list(eps), result))
        return result

    monkeypatch.setattr(images, "feature_stability", spy)
    cfg = images.settings_for(torch.device("cpu"), True)
    cfg.update(steps=2, classifier_steps=2, test_points=4, samples=1, sigma_candidates=2)
    g = torch.Generator().manual_seed(0)
    pictures = torch.rand(40, 1, 4, 4, generator=g)
    labels = (pictures.mean((1, 2, 3)) > pictures.mean()).long()
    out = images._stability_on("tiny", pictures, labels, cfg, torch.device("cpu"))

    curves = [c for c in calls if c[2] == cfg["eps"]]
    tuning = [c for c in calls if c[2] != cfg["eps"]]
    assert [type(c[0]) for c in curves] == [LearnedCDC, SteinScoreMetric, ScoreJacobianMetric, EuclideanMetric]
    test_points = curves[0][1]
    assert test_points.shape == (4, 16)
    for field, x, _, _ in curves:
        assert torch.equal(x, test_points), type(field).__name__
    assert len(tuning) == 3 * 2  # three fields, two candidate σ each, all on held-out points
    for _, x, _, _ in tuning:
        assert x.shape == (4, 16) and not bool((x[:, None] == test_points[None]).all(-1).any())
    assert list(out["curves"]) == ["metric matching", "Stein", "score Jacobian", "Euclidean (random)"]
    for (_, _, _, result), (method, curve) in zip(curves, out["curves"].items(), strict=True):
        assert curve["mean"] == result.mean and curve["eps"] == cfg["eps"], method
