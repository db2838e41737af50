"""The digit-paths benchmark (issue 9): its numbers are what they say, and a quick run writes the report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import image_paths  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_relative_difference_matches_the_dense_matrices():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 6, 2, generator=g, dtype=torch.float64)
    b = torch.randn(3, 6, 9, generator=g, dtype=torch.float64)  # more columns than D: the D-side Gram is used
    dense = [(x @ x.mT) for x in (a, b)]
    want = (dense[0] - dense[1]).norm(dim=(1, 2)) / (dense[0].norm(dim=(1, 2)) + dense[1].norm(dim=(1, 2)))
    torch.testing.assert_close(image_paths.relative_difference(a, b), want)
    torch.testing.assert_close(image_paths.relative_difference(a, a), torch.zeros(3, dtype=torch.float64),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(image_paths.relative_difference(a, 0 * b), torch.ones(3, dtype=torch.float64))


def test_quick_run_scores_every_path_against_lerp(tmp_path):
    assert image_paths.main(["--quick", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "image_paths.json").read_text())["results"]
    methods = record["methods"]
    assert set(methods) == {"LERP", "metric matching flow", "metric matching geodesic", "k-NN centred flow",
                            "k-NN centred geodesic"}
    for name, m in methods.items():
        assert len(m["per_pair"]) == 2 and all(d > 0 for d in m["per_pair"]), name
        assert abs(m["mean_nearest"] - sum(m["per_pair"]) / 2) < 1e-2, name
        assert 0.0 <= m["confidence"] <= 1.0, name
    assert 0.0 < methods["k-NN centred flow"]["gap_closed"] <= 1.0
    for row in record["shell"]:
        assert 0.0 <= row["relative_difference"] <= 1.0
    assert "| LERP |" in (tmp_path / "image_paths.md").read_text()
    assert (tmp_path / "image_paths.png").stat().st_size > 0
