"""The neighbour check on data that repeat rows: its no-verdict sentence (`NeighbourReport.message`, and the
trainer's warning through `learned_manifold_training.validation.distrust`) counts what it counted, the distinct
reference rows left once copies of the held-out points are left out, and says the data repeat rows."""

import torch

from learned_manifold.models import MetricModel, ModelConfig
from learned_manifold.neighbour_check import MIN_REFERENCE, neighbour_check, reference_shortage
from learned_manifold_training.validation import distrust


def _repeated_rows() -> tuple[torch.Tensor, torch.Tensor]:
    """300 rows holding 10 distinct points of a circle, 30 copies each (tester D, s34), split as the trainer does:
    60 held-out rows (every distinct point among them) and 240 reference rows."""
    angles = torch.rand(10, generator=torch.Generator().manual_seed(0)) * 6.28
    rows = torch.stack([angles.cos(), angles.sin()], 1).repeat(30, 1)  # (300, 2)
    return rows[:60], rows[60:]


def test_repeated_rows_are_counted_as_distinct_reference_rows_left_and_named_as_repeats():
    held_out, reference = _repeated_rows()
    model = MetricModel(ModelConfig(data_shape=(2,), rank=2, arch_kwargs={"hidden": 8, "depth": 1}))
    report = neighbour_check(model, held_out, reference, [0.1])
    assert report.trusted is None and report.distinct_reference == 0 and report.copies_left_out == 240
    message = report.message()
    assert message.startswith("neighbour check: no verdict, so this independent check could not judge the model: "
                              "the reference holds 0 distinct points once the 240 rows equal to held-out points are "
                              f"left out, too few for an estimate from their neighbours (it needs {MIN_REFERENCE})")
    assert "the data repeat rows" in message
    (warning,) = distrust({"neighbour_check": {**report.summary(), "reference_points": 240}})
    assert ("no verdict: of the 240 training rows it compares with, 0 distinct points are left once the 240 rows "
            "equal to held-out points are left out") in warning
    assert "the data repeat rows" in warning and "0 distinct training points" not in warning


def test_too_few_points_without_repeats_say_nothing_of_repeats():
    summary = {"distinct_reference_points": 150, "copies_left_out": 0, "reference_points": 150}
    assert reference_shortage(summary) == ("of the 150 training rows it compares with, 150 distinct points are left, "
                                           f"too few for an estimate from their neighbours (it needs {MIN_REFERENCE})")
    repeated_inside = {**summary, "distinct_reference_points": 15}  # 150 rows, 15 distinct, none held out
    assert "the data repeat rows" in reference_shortage(repeated_inside)


def test_an_older_summary_without_the_distinct_count_names_its_rows_not_distinct_points():
    # files before the distinct count: the trainer's rows, which may repeat points (not "24 distinct points")
    (warning,) = distrust({"neighbour_check": {"sigma": None, "informative": False, "trusted": None,
                                               "reference_points": 24}})
    assert (f"no verdict: the reference holds 24 rows, too few for an estimate from their neighbours (it needs "
            f"{MIN_REFERENCE})") in warning and "distinct" not in warning.split(";")[0]
