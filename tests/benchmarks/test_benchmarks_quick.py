"""Smoke tests of the accuracy and comparison benchmarks: ``--quick`` runs into a temporary folder."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

# `benchmarks` is a folder of the repository, not part of the installed packages: import it from the root.
ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import accuracy, compare  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

COMPARE_METHODS = ("learned", "knn_centred", "knn_uncentred", "score_jacobian", "stein", "tangential", "euclidean",
                   "lerp")


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def test_accuracy_quick(tmp_path):
    results = accuracy.main(["--quick", "--out", str(tmp_path)])
    record = json.loads((tmp_path / "accuracy.json").read_text())
    assert (tmp_path / "accuracy.md").read_text().count("| 400 |") == 4
    rows = record["results"]["rows"]
    assert [r["method"] for r in rows] == ["centred", "paper", "knn", "knn_centred"]
    assert len(results["rows"]) == 4
    for row in rows:
        assert row["N"] == 400
        for key in ("tangent_error", "dimension_accuracy", "sigma", "seconds"):
            assert _finite(row[key]), (row["method"], key, row[key])
        assert 0.0 <= row["dimension_accuracy"] <= 1.0
        assert row["median_dimension"] in range(1, 129)
        assert len(row["top_eigenvalues"]) == 10 and all(_finite(v) for v in row["top_eigenvalues"])
    assert {r["k"] for r in rows if r["method"].startswith("knn")} <= {16, 32}
    assert record["environment"]["torch"] and record["settings"]["quick"] is True


def test_compare_quick(tmp_path):
    compare.main(["--quick", "--out", str(tmp_path)])
    record = json.loads((tmp_path / "compare.json").read_text())
    md = (tmp_path / "compare.md").read_text()
    for name in compare.DATASETS:
        assert (tmp_path / f"compare_{name}.png").stat().st_size > 1000
        assert f"### {name} " in md
        rows = record["results"][name]["rows"]
        assert tuple(rows) == COMPARE_METHODS
        for method, row in rows.items():
            if method != "lerp":
                assert _finite(row["dimension_accuracy"]) and _finite(row["apply_s"]), (name, method)
                assert method == "euclidean" or _finite(row["tangent_error"]), (name, method)
            for kind in ("flow", "geodesic"):
                part = row[kind]
                if "error" in part:  # only the score-Jacobian paths may fail (G + δI not positive definite)
                    assert method == "score_jacobian", (name, method, part["error"])
                    continue
                for key in ("max_distance", "mean_distance", "length"):
                    assert _finite(part[key]), (name, method, kind, key)
        for kind in ("flow", "geodesic"):
            assert rows["learned"][kind]["max_distance"] >= 0
        sphere = name.startswith("sphere")
        assert (rows["lerp"]["geodesic"].get("length_ratio") is not None) == sphere
        assert rows["lerp"]["geodesic"]["endpoint_gap"] == 0.0


def test_accuracy_grid_quick(tmp_path):
    """Every (manifold, N, seed, method) is run and summarised by mean and worst seed, with the plot."""
    from benchmarks import accuracy_grid

    results = accuracy_grid.main(["--quick", "--out", str(tmp_path)])
    assert (tmp_path / "accuracy_grid.png").stat().st_size > 0
    runs, summary = results["runs"], results["summary"]
    assert len(runs) == 2 * 1 * 2 * 3  # manifolds × sizes × seeds × methods
    for s in summary:
        errors = [r["tangent_error"] for r in runs if (r["manifold"], r["N"], r["method"]) ==
                  (s["manifold"], s["N"], s["method"])]
        assert s["seeds"] == 2 and s["worst_error"] == max(errors)
        assert math.isclose(s["mean_error"], sum(errors) / len(errors))
    for s in (s for s in summary if s["method"] == "metric matching"):  # the trainer's self-check, counted
        rows = [r for r in runs if (r["manifold"], r["N"], r["method"]) == (s["manifold"], s["N"], s["method"])]
        assert all(isinstance(r["trusted"], bool) and r["refit"] in ("no", "kept", "not kept") for r in rows)
        assert all(r["precision"] in ("fp32", "bf16") for r in rows)  # what "auto" chose, per run
        assert s["checked"] == 2 and s["untrusted"] == sum(not r["trusted"] for r in rows)
        assert s["repaired"] == sum(r["refit"] == "kept" for r in rows)
    # tuned k-NN on 300 points of S² is far better than a random 2-plane in R⁶⁴ (≈ 1.98)
    knn = next(s for s in summary if s["manifold"] == "sphere2" and s["method"] == "k-NN centred")
    assert knn["worst_error"] < 0.5


def _grid_report(folder, seeds, errors, *, network=None, n=1000):
    """A grid report as `accuracy_grid` writes it, for the torus at N = ``n`` (metric matching only)."""
    from benchmarks.common import write_report

    runs = [{"manifold": "torus", "N": n, "seed": s, "method": "metric matching", "tangent_error": e,
             "dimension_accuracy": 1.0 - e, "sigma": 0.05, "seconds": 10.0} for s, e in zip(seeds, errors, strict=True)]
    settings = {"network": network or {"hidden": 256}, "training": "6000 steps", "evaluation σ": "validation",
                "k-NN tuning": "k", "validation / test points": "500 / 500", "quick": False, "threads": 1}
    write_report(folder, "accuracy_grid", title="grid", env={"git_commit": "abc", "date_utc": "today"},
                 settings=settings, tables=[], results={"runs": runs, "summary": []})


def test_accuracy_grid_merges_runs_from_several_folders(tmp_path):
    """Seeds run in separate processes join into one summary: mean and worst over all of them."""
    from benchmarks import accuracy_grid

    _grid_report(tmp_path / "a", [0, 1], [0.02, 0.04])
    _grid_report(tmp_path / "b", [2], [0.09])
    out = tmp_path / "merged"
    results = accuracy_grid.main(["--merge", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)])
    (summary,) = results["summary"]
    assert summary["seeds"] == 3 and summary["worst_error"] == 0.09
    assert math.isclose(summary["mean_error"], 0.05) and math.isclose(summary["worst_dimension_accuracy"], 0.91)
    assert (out / "accuracy_grid.png").stat().st_size > 0
    assert "merged_from" in (out / "accuracy_grid.md").read_text()
    _grid_report(tmp_path / "c", [0], [0.01], n=30_000)  # folders in any order: the report runs N upwards
    _grid_report(tmp_path / "d", [0], [0.01], n=3_000)
    results = accuracy_grid.main(["--merge", str(tmp_path / "c"), str(tmp_path / "a"), str(tmp_path / "d"),
                                  "--out", str(out)])
    assert [s["N"] for s in results["summary"]] == [1000, 3000, 30_000]


def test_accuracy_grid_merge_refuses_a_run_twice_or_different_settings(tmp_path):
    from benchmarks import accuracy_grid

    _grid_report(tmp_path / "a", [0, 1], [0.02, 0.04])
    _grid_report(tmp_path / "b", [1], [0.03])
    _grid_report(tmp_path / "c", [2], [0.03], network={"hidden": 128})
    with pytest.raises(ValueError, match=r"\('torus', 1000, 1, 'metric matching'\) is in both"):
        accuracy_grid.merge_runs([tmp_path / "a", tmp_path / "b"])
    with pytest.raises(ValueError, match="setting 'network'"):
        accuracy_grid.merge_runs([tmp_path / "a", tmp_path / "c"])
    with pytest.raises(SystemExit):  # the command line turns both, and a missing folder, into one usage error
        accuracy_grid.main(["--merge", str(tmp_path / "missing"), "--out", str(tmp_path / "m")])


def test_probe_fit_quick(tmp_path):
    """The S^d projector-fit probe runs every (loss, seed) and scores a fit by the projector error."""
    from benchmarks import probe_fit

    results = probe_fit.main(["--quick", "--dims", "2", "--losses", "exact", "probe-2", "--seeds", "0",
                              "--out", str(tmp_path)])
    runs = results["runs"]
    assert [r["loss"] for r in runs] == ["exact", "probe-2"] and [r["probes"] for r in runs] == [0, 2]
    for r in runs:  # a projector error lies in [0, sqrt(2d)]
        assert 0 <= r["tangent_error"] <= 2 + 1e-6
    assert probe_fit.parse_loss("probe-16") == 16
    with pytest.raises(ValueError, match="unknown loss"):
        probe_fit.parse_loss("probe-0")
