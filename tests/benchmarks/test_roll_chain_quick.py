"""Smoke test of the roll-chain benchmark (issue 12, item 5): ``--quick`` runs the whole chain, from a ``.npy``
through ``learned-manifold train`` to optimisers and paths, and reports every row. The figures that matter are the
full run's (``benchmarks/results/cpu/roll-chain/``); here only what holds at any budget is asserted."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import roll_chain  # noqa: E402

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
