"""What happened to each pair of `flows.interpolate` (SPEC §6): reached, stalled, out of time, or a solver error.

The exact flow ``ẋ = −(G + δI)(x − x₁)`` never moves away from its target: ``d/dt ½‖x − x₁‖² =
−(x − x₁)ᵀ(G + δI)(x − x₁) ≤ 0`` for a positive semi-definite ``G`` (the stopping rule only scales the velocity by a
factor in ``[0, 1]``). A gap that grows along a computed path is therefore the solver's error, whatever the end gap.
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["STALL_SPEED", "pair_reports"]

STALL_SPEED = 1e-2
"""`interpolate`: a pair not reached whose end speed is below this fraction of its remaining gap has stalled."""


def pair_reports(*, gap: Tensor, stop_tol: Tensor, floor: Tensor, rise: Tensor, rel_speed: Tensor,
                 rel_moved: Tensor, landing: bool, remedy: str) -> tuple[Tensor, Tensor, list[str]]:
    """Classify each pair of a batch of `interpolate` paths.

    Args:
        gap: ``(B,)`` ``‖x(t_end) − x₁‖``.
        stop_tol: ``(B,)`` each pair's stopping tolerance (the flow brakes from ``2 · stop_tol`` and freezes at it).
        floor: ``(B,)`` the rounding of a gap at the target (a few ulps of ``x₁``, or the landing map's rounding).
        rise: ``(B,)`` how far the gap grew along the flow: above its running minimum on the path, or with landing,
            the sum of the growths within the output intervals (each landing step may legitimately move it).
        rel_speed: ``(B,)`` the end speed ``‖(G + δI)(x − x₁)‖`` over the remaining gap.
        rel_moved: ``(B,)`` the landed path's speed over the last output interval over the remaining gap.
        landing: whether the flow landed after every output interval.
        remedy: what to change when the solver erred (``"tighten rtol/atol (now …)"`` or ``"use a smaller
            step_size (now …)"``).

    Returns:
        ``reached`` ``(B,)`` bool: ended within ``1.5 · stop_tol`` of the target or within the rounding ``floor``,
        and the gap did not grow by more than ``max(stop_tol, floor)`` on the way (else a solver error, never
        reached); ``stalled`` ``(B,)`` bool: not reached, no solver error, and no longer moving (end speed below
        `STALL_SPEED` times the remaining gap, or with landing a path whose landing undoes the flow);
        ``reason`` per pair: ``"reached"``, ``"solver error: …"``, ``"stalled: …"`` or ``"out of time: …"``.
    """
    erred = rise > stop_tol.maximum(floor)
    reached = ((gap <= 1.5 * stop_tol) | (gap <= floor)) & ~erred
    moving = ~reached & ~erred
    # with landing, a path whose flow still pulls but which no longer moves: the landing undoes the flow
    undone = moving & (rel_speed >= STALL_SPEED) & (rel_moved < STALL_SPEED) & landing
    stalled = moving & (rel_speed < STALL_SPEED) | undone
    reason = []
    for r, e, st, u, v, m, g, tol in zip(reached.tolist(), erred.tolist(), stalled.tolist(), undone.tolist(),
                                         rel_speed.tolist(), rel_moved.tolist(), rise.tolist(), stop_tol.tolist(),
                                         strict=True):
        if r:
            reason.append("reached")
        elif e:
            reason.append(f"solver error: the gap to x1 grew by {g:.2g} ({g / max(tol, 1e-300):.2g}× stop_tol) "
                          f"along the path, which the exact flow never does, so the path is not to be trusted; "
                          f"{remedy} (a longer t_end does not help)")
        elif u:
            reason.append(f"stalled: the landing undoes the flow (over the last output interval the path moved "
                          f"{m:.2g}× the remaining gap per unit time, against a flow speed of {v:.2g}×); a longer "
                          f"t_end does not help, landing=False or a geodesic may")
        elif st:
            reason.append(f"stalled: end speed {v:.2g}× the remaining gap; the rest of the gap is normal to the data")
        else:
            reason.append(f"out of time: still moving at t_end (speed {v:.2g}× the remaining gap); raise t_end")
    return reached, stalled, reason
