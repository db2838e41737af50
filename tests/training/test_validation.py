"""`distrust`: the failed checks of a training result, one sentence each, and nothing for checks that passed."""

from learned_manifold_training.validation import distrust

SELF_FAILED = {"trusted": False, "tangent_disagreement": 0.4, "normal_growth": 0.0, "outside_eigenvalue": 0.9}
NEAR_FAILED = {"trusted": False, "informative": True, "sigma": 8.666, "model_dimension": 16,
               "neighbour_dimension": 1, "tangent_disagreement": 1.5}


def test_passing_or_absent_checks_give_no_reason():
    assert distrust({}) == []
    assert distrust({"self_consistency": {**SELF_FAILED, "trusted": True},
                     "neighbour_check": {**NEAR_FAILED, "trusted": True}}) == []


def test_each_failed_check_gives_one_sentence_with_its_numbers():
    reasons = distrust({"self_consistency": SELF_FAILED, "neighbour_check": NEAR_FAILED})
    assert len(reasons) == 2
    assert "does not agree with itself" in reasons[0] and "outside eigenvalue 0.9" in reasons[0]
    assert "neighbours at sigma=8.666" in reasons[1] and "dimension 16 against 1" in reasons[1]
    assert distrust({"neighbour_check": NEAR_FAILED}) == reasons[1:]
