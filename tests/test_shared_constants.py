"""Rules that several modules apply are written once (tester B, s34, item 5): the σ slack of every bandwidth
comparison (`model_file_notes.SIGMA_RTOL`), the dimension agreement both model checks require
(`diagnostics.DIMENSION_AGREEMENT`) and the test of a stored figure being a number (`consistency_text.is_number`)."""

import math
import warnings
from pathlib import Path

import pytest

from learned_manifold import consistency_text, diagnostics, model_file_notes, neighbour_check
from learned_manifold.metrics import LearnedCDC
from learned_manifold.metrics import learned as learned_metrics
from learned_manifold.models import MetricModel, ModelConfig
from learned_manifold_training import validation

ROOT = Path(__file__).resolve().parents[1]


def test_the_sigma_slack_is_one_constant_in_every_comparison():
    """``1e-6`` had been written in `LearnedCDC`'s range warning, the trainer's grid (twice) and the stale-σ note:
    changing one would let the trainer choose a default σ that `LearnedCDC` warns about (the behaviour: below)."""
    assert validation.SIGMA_RTOL is learned_metrics.SIGMA_RTOL is model_file_notes.SIGMA_RTOL


@pytest.mark.parametrize("excess, inside", [(0.5, True), (2.0, False)])
def test_a_grid_sigma_the_trainer_may_choose_is_one_learned_cdc_accepts(excess, inside):
    """A grid σ just past the training range's top by ``excess`` slacks: the trainer's grid holds it exactly where
    `LearnedCDC` takes it without a range warning."""
    grid_sigma = 2.0 ** -3  # s = 1: the SPEC §8 grid holds 1/8
    top = grid_sigma / (1 + excess * model_file_notes.SIGMA_RTOL)
    model = MetricModel(ModelConfig(data_shape=(2,), rank=1, arch_kwargs={"hidden": 8, "depth": 1},
                                    sigma_min=2.0 ** -6, sigma_max=top, default_sigma=2.0 ** -6))
    assert float(model.scale) == 1.0
    assert (grid_sigma in validation.sigma_grid(model)) is inside
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        LearnedCDC(model, grid_sigma)
    assert any("training range" in str(w.message) for w in caught) is (not inside)


def test_the_dimension_agreement_limit_is_one_constant_for_both_checks():
    assert neighbour_check.DIMENSION_AGREEMENT is diagnostics.DIMENSION_AGREEMENT
    text = neighbour_check.neighbour_figures({"dimension_agreement": 0.79, "tangent_disagreement": 0.1})
    assert f"same dimension at only 79% of points (limit {diagnostics.DIMENSION_AGREEMENT:.0%})" in text


def test_a_stored_figure_is_a_number_by_one_rule():
    is_number = consistency_text.is_number
    assert [is_number(v) for v in (1, 2.5, math.nan, math.inf)] == [True] * 4
    assert [is_number(v) for v in (True, False, None, "1", [1])] == [False] * 5
    for module in (neighbour_check, model_file_notes, validation):
        assert module.is_number is is_number and not hasattr(module, "_number"), module.__name__
