"""Smoke test of the latent-space benchmark (SPEC §11): ``--quick`` runs into a temporary folder and writes every
row, table and figure."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:  # `benchmarks` is a folder of the repository, not an installed package
    sys.path.insert(0, ROOT)

from benchmarks import latent  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_latent_quick(tmp_path):
    latent.main(["--quick", "--out", str(tmp_path)])
    record = json.loads((tmp_path / "latent.json").read_text())
    md = (tmp_path / "latent.md").read_text()
    for name in latent.DATASETS:
        assert (tmp_path / f"latent_{name}.png").stat().st_size > 10_000
        assert f"### {name}: decoded paths" in md
        rows = record["results"][name]["rows"]
        assert tuple(rows) == tuple(latent.METHODS)
        for method, row in rows.items():
            keys = ["nearest_max", "nearest_mean", "euclidean_length"]
            keys += ["dist_max", "length_ratio"] if name == "circle" else ["confidence_mean", "confidence_min"]
            for key in keys:
                assert isinstance(row[key], float) and math.isfinite(row[key]), (name, method, key)
    assert record["environment"]["device"] and record["settings"]["quick"] is True
