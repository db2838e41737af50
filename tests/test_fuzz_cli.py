"""Fuzz suite over the command line (issue 13): ``learned_manifold_training.cli.main`` called in-process.

Generated ``train`` (tiny: ``--steps ≤ 5``, ``--hidden 8``, ``--depth 1`` on a small ``.npy``) and ``info``
argument lists, some over an existing model file, with a bounded, derandomised budget. Specified: every run
exits 0 (and a trained model then loads) or 2 with one ``error:`` line, never a traceback, another exit code,
an escaping exception or a hang, and an existing model file is never changed or removed by a failed run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:  # `benchmarks` is a folder of the repository, not an installed package
    sys.path.insert(0, ROOT)

from benchmarks.reliability import run_family  # noqa: E402
from benchmarks.reliability_cases import Context  # noqa: E402
from benchmarks.reliability_cli import cli  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

BUDGET = 12


def test_cli_commands(sphere_model, sphere_model_path, sphere):
    """Every generated command line is a success or a clean exit 2, and no model file is lost."""
    ctx = Context(sphere_model, sphere.sample(100, generator=torch.Generator().manual_seed(1)),
                  Path(sphere_model_path).read_bytes())
    outcomes = run_family(cli, ctx, BUDGET)
    assert len(outcomes) >= BUDGET // 2
    bad = [f"{o.category}: {o.detail}" for o in outcomes if o.category not in ("ok", "clean_error")]
    assert not bad, "\n".join(bad)
    assert {o.category for o in outcomes} == {"ok", "clean_error"}, [o.detail for o in outcomes]
