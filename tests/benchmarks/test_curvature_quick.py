"""Smoke test of the curvature benchmark (SPEC §12): ``--quick`` trains a small S² model and scores the learned
and the tuned k-NN curvature against the closed form. The figures that matter are the full run's
(``benchmarks/results/cpu/curvature/``); here only what holds at any budget is asserted."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import curvature  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_quick_curvature_scores_both_fields_against_the_closed_form(tmp_path):
    r = curvature.main(["--quick", "--out", str(tmp_path)])
    assert set(r) == {"S² in R³"}
    row = r["S² in R³"]
    for field in ("learned", "knn"):
        scores = row[field]
        assert scores["R_true_median"] == 2.0  # the unit 2-sphere: d (d − 1)
        assert 0 <= scores["R_error_relative"] < 1, scores  # the sign and the size of R are read, even briefly trained
        assert scores["tangent_error"] < 1.0 and scores["seconds_per_point"] > 0
    assert row["knn"]["k"] in curvature.KS and row["knn"]["sigma"] in curvature.SIGMAS
    assert "| S² in R³ | 2 |" in curvature._table(r, 100).markdown()
    assert "| S² in R³ | 2 |" in (tmp_path / "curvature.md").read_text()  # a quick run wrote nothing
    assert (tmp_path / "curvature.json").stat().st_size > 0


def test_the_table_title_names_the_number_of_test_points():
    """The title said "on 500 test points" whatever the run used (``--quick``: 100; tester F, item 3)."""
    scores = {"R_true_median": 2.0, "R_error_median": 0.1, "R_error_relative": 0.05, "H_error_median": 0.1,
              "tangent_error": 0.01, "seconds_per_point": 1e-3}
    results = {"S² in R³": {"learned": scores, "knn": {**scores, "k": 32, "sigma": 0.1}}}
    assert curvature._table(results, 100).title.startswith("Scalar curvature R on 100 test points")
    assert curvature._table(results, 500).title.startswith("Scalar curvature R on 500 test points")
