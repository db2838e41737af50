"""Smoke test of the roll-chain benchmark (issue 12, item 5): ``--quick`` runs the whole chain, from a ``.npy``
through ``learned-manifold train`` to optimisers and paths, and reports every row, with each optimiser's 16 final
distances (median, largest, counts beyond σ and 0.1) and where its far points end. The figures that matter are the
full run's (``benchmarks/results/cpu/roll-chain/``); here only what holds at any budget is asserted."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import roll_chain  # noqa: E402
from learned_manifold_training.data import SwissRoll  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_quick_roll_chain_reports_every_optimiser_and_path(tmp_path):
    r = roll_chain.main(["--quick", "--out", str(tmp_path)])
    opts = r["optimisers"]
    for tag in ("landing", "no landing"):  # the card's optimiser and geoopt's on a ManifoldParameter agree but for
        # the momentum's first step: the card's seeds it with the Riemannian gradient, geoopt's with the Euclidean one
        card, ours = opts[f"card RiemannianSGD, {tag}"], opts[f"geoopt RiemannianSGD on ManifoldParameter, {tag}"]
        assert math.isclose(card["final_distance_mean"], ours["final_distance_mean"], rel_tol=0.03)
        assert (card["error"] is None) == (ours["error"] is None)  # both finish, or landing stops both
        if card["error"] is not None:  # at about the same step (one apart: the momentum's first step)
            steps = [int(e.split(":")[0].split()[1]) for e in (card["error"], ours["error"])]
            assert abs(steps[0] - steps[1]) <= 2 and "did not land" in card["error"] and "did not land" in ours["error"]
    sigma = r["model"]["sigma"]
    for name, row in opts.items():  # every optimiser: the 16 final distances, not their mean alone
        if not isinstance(row, dict):
            continue
        d = torch.tensor(row["final_distances"], dtype=torch.float64)
        assert d.shape == (16,) and math.isclose(float(d.mean()), row["final_distance_mean"], rel_tol=1e-4), name
        assert row["final_distance_median"] == pytest.approx(float(d.quantile(0.5)))
        assert row["final_distance_max"] == pytest.approx(float(d.max()))
        assert row["beyond_sigma"] == int((d > sigma).sum()) and row["beyond_0.1"] == int((d > 0.1).sum())
        assert [p["point"] for p in row["far_points"]] == sorted(
            (i for i in range(16) if d[i] > min(sigma, 0.1)), key=lambda i: -float(d[i]))
        assert all(row["t_range"][0] <= p["t"] <= row["t_range"][1] for p in row["far_points"])
    plain = opts["torch.optim.SGD (Euclidean)"]["final_distance_mean"]
    assert plain > opts["card RiemannianSGD, landing"]["final_distance_mean"]  # the Euclidean step leaves the roll
    paths = r["paths"]
    assert set(paths) == {"geodesic (defaults)", "interpolate (defaults)", "LERP",
                          "geodesic, tuned centred k-NN (defaults)"}
    lerp = max(paths["LERP"]["max_distance"])
    assert max(paths["geodesic, tuned centred k-NN (defaults)"]["max_distance"]) < lerp  # the graph start
    assert paths["geodesic (defaults)"]["init"] == "graph"  # through the landmarks the CLI stored in the file
    assert all(len(p["max_distance"]) == 3 for p in paths.values())
    md = (tmp_path / "roll_chain.md").read_text()  # a quick run wrote nothing
    assert "| LERP |" in md and "| setting: quick | True |" in md and (tmp_path / "roll_chain.json").exists()
    assert "| final distance: mean | median | largest |" in md and "### Final points farther than" in md


def test_final_points_say_how_many_end_off_the_roll_and_where():
    """Ground truth on the roll itself: 13 of 16 points on it, one 1.5 above its top edge, one 1.2 past its inner
    end along the spiral's tangent, one 0.05 above the top (within σ): the mean (2.75 / 16) hides which, the median
    (0), the largest (1.5), the counts and the far points' nearest roll parameters do not (tester s33/A)."""
    roll = SwissRoll(10, scale=1.0)
    start = roll.sample(16, generator=torch.Generator().manual_seed(2)).double()
    t_in, h_in = torch.tensor([roll.t_min], dtype=torch.float64), torch.tensor([10.0], dtype=torch.float64)
    end = roll.parametrize(t_in, h_in)[0]
    out = end - roll.parametrize(t_in + 1e-3, h_in)[0]  # the spiral's tangent at its inner end, pointing out
    x = start.clone()
    x[3] = end + 1.2 * out / out.norm()
    x[7] = roll.parametrize(torch.tensor([9.0], dtype=torch.float64), torch.tensor([22.5], dtype=torch.float64))[0]
    x[11] = roll.parametrize(torch.tensor([12.0], dtype=torch.float64), torch.tensor([21.05], dtype=torch.float64))[0]
    r = roll_chain.final_points(x, start, roll, sigma=0.186)
    assert sum(r["final_distances"]) / 16 == pytest.approx(2.75 / 16, abs=1e-6)
    assert r["final_distance_median"] == pytest.approx(0.0, abs=1e-6) and r["final_distance_max"] == pytest.approx(1.5)
    assert r["beyond_sigma"] == 2 and r["beyond_0.1"] == 2
    top, inner = r["far_points"]  # the farthest first; the point 0.05 off is not listed
    assert (top["point"], top["where"], inner["point"], inner["where"]) == (7, "top h = width", 3, "inner end t_min")
    assert top["distance"] == pytest.approx(1.5) and inner["distance"] == pytest.approx(1.2, abs=1e-6)
    assert (top["t"], top["h"]) == (pytest.approx(9.0), pytest.approx(21.0))
    assert (inner["t"], inner["h"]) == (pytest.approx(roll.t_min), pytest.approx(10.0))
    t0, h0 = roll.parameters(start[3:4])
    assert (inner["start_t"], inner["start_h"]) == (pytest.approx(float(t0[0])), pytest.approx(float(h0[0])))
    assert r["t_range"] == [roll.t_min, roll.t_max] and r["h_range"] == [0.0, roll.width]
