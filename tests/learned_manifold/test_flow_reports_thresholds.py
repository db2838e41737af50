"""`flow_reports.pair_reports` at its documented thresholds (SPEC §6 interpolation; its docstring): a pair is
reached when it ends within ``1.5 · stop_tol`` of its target (or within the rounding ``floor``), and a gap that grew
along the path by more than ``max(stop_tol, floor)`` is a solver error, never reached. Each threshold is tested on
both sides."""

import torch

from learned_manifold.flow_reports import pair_reports

F64 = torch.float64


def _reports(gap: list[float], rise: list[float], floor: float = 1e-12):
    """`pair_reports` for pairs with ``stop_tol = 0.1`` that are still moving (end speed 1× the remaining gap)."""
    ones = torch.ones(len(gap), dtype=F64)
    return pair_reports(gap=torch.tensor(gap, dtype=F64), stop_tol=0.1 * ones, floor=floor * ones,
                        rise=torch.tensor(rise, dtype=F64), rel_speed=ones, rel_moved=ones, landing=False,
                        remedy="tighten rtol/atol")


def test_reached_means_within_one_and_a_half_stop_tol():
    """Gaps of 1.4, 1.6 and 2 ``stop_tol`` on still-moving pairs: only the first is reached; the others are out of
    time (the flow brakes from ``2 · stop_tol``: a pair at 2× has not begun to stop)."""
    reached, stalled, reason = _reports(gap=[0.14, 0.16, 0.2], rise=[0.0, 0.0, 0.0])
    assert reached.tolist() == [True, False, False] and not stalled.any()
    assert reason[0] == "reached"
    assert all(r.startswith("out of time") for r in reason[1:]), reason


def test_a_gap_within_the_rounding_floor_is_reached_whatever_stop_tol():
    """``gap ≤ floor`` is reached even where ``floor`` exceeds ``1.5 · stop_tol`` (a target stored in low precision)."""
    reached, _, reason = _reports(gap=[0.3, 0.5], rise=[0.0, 0.0], floor=0.4)
    assert reached.tolist() == [True, False] and reason[0] == "reached"


def test_a_gap_that_grew_by_more_than_stop_tol_is_a_solver_error_never_reached():
    """Pairs that end at ``0.5 · stop_tol`` (within reach) after their gap grew by 0.9, 1.1 and 2 ``stop_tol`` on the
    way: the exact flow never widens the gap, so growth beyond ``max(stop_tol, floor)`` marks the path untrustworthy:
    only the first is reached; the others are solver errors naming the growth and the remedy."""
    reached, stalled, reason = _reports(gap=[0.05, 0.05, 0.05], rise=[0.09, 0.11, 0.2])
    assert reached.tolist() == [True, False, False] and not stalled.any()
    assert reason[1].startswith("solver error: the gap to x1 grew by 0.11 (1.1× stop_tol)"), reason[1]
    assert reason[2].startswith("solver error: the gap to x1 grew by 0.2 (2× stop_tol)"), reason[2]
    assert all("tighten rtol/atol" in r for r in reason[1:])


def test_the_solver_error_limit_is_the_floor_where_the_floor_is_larger():
    """With ``floor = 0.3 > stop_tol`` a growth of 0.2 is rounding, not an error (the pair is within the floor), and
    a growth of 0.4 is an error."""
    reached, _, reason = _reports(gap=[0.05, 0.05], rise=[0.2, 0.4], floor=0.3)
    assert reached.tolist() == [True, False] and reason[1].startswith("solver error")
