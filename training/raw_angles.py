"""A pre-check of the trainer (`training/input_choices.choose_by_dimension`): columns that look like raw angles.

A periodic coordinate given as its angle (torsions as molecular-dynamics tools write them, in ``[−π, π)`` or
degrees) puts its two ends, which are the same angle, a whole period apart: the model and every geodesic see a
strip where the data live on a circle, and a geodesic across the cut goes the long way round (3,000 torsion pairs:
length 6.48 where the torus distance is 0.40, reported converged, tester B, s36). The README documents it; this
note points the user at the (cos, sin) embedding before training.

The rule leans towards silence: every column must lie within one of `ANGLE_RANGES`, and the note names the columns
that wrap: those that reach to within 1% of the range's width of both its ends and hold at least `END_SHARE` of
their values within 2.5% of each end (mass on both sides of the cut, as a wrapping angle has); without such a column
there is no note. Uniform angles hold 2.5% there and reach the ends; Gaussian data (n(0, 1): 0.1% beyond 2.98) and
values uniform over ``[−3, 3]`` (not within 1% of ±π) do not. Columns that are angles but never come near the cut
(one torsion's single well) are not named: they do not wrap, and they do not hide the columns that do (molecular
dynamics tables: backbone torsions wrap, side-chain torsions sit in one well; tester N, s36).
"""

from __future__ import annotations

import math

from torch import Tensor

__all__ = ["ANGLE_RANGES", "END_SHARE", "raw_angle_note"]

ANGLE_RANGES = ((-math.pi, math.pi, "[-pi, pi]"), (0.0, 2 * math.pi, "[0, 2 pi]"), (-180.0, 180.0, "[-180, 180]"),
                (0.0, 360.0, "[0, 360]"))
"""The ranges raw angles are written in: radians and degrees, centred or not."""

END_SHARE = 0.01
"""Share of a column's values within 2.5% of the range's width of each end that marks it as wrapping."""


def raw_angle_note(sample: Tensor) -> str | None:
    """The note for data whose columns look like raw angles (module docstring), else ``None``.

    Args:
        sample: ``(n, D)`` training points in data units.
    """
    if sample.ndim != 2 or sample.shape[0] < 2:
        return None
    x = sample.double()
    low, high = x.min(0).values, x.max(0).values
    for lo, hi, name in ANGLE_RANGES:
        width = hi - lo
        inside = bool((low >= lo - 1e-3 * width).all() and (high <= hi + 1e-3 * width).all())
        if not inside:
            continue
        spans = (low <= lo + 0.01 * width) & (high >= hi - 0.01 * width)
        bottom = (x <= lo + 0.025 * width).double().mean(0)
        top = (x >= hi - 0.025 * width).double().mean(0)
        wrapping = (spans & (bottom >= END_SHARE) & (top >= END_SHARE)).nonzero().squeeze(-1).tolist()
        if not wrapping:
            continue
        shown = ", ".join(str(i) for i in wrapping[:5]) + (", ..." if len(wrapping) > 5 else "")
        return (f"every column of the data lies within {name}, as raw angles do, and column(s) {shown} span it "
                f"with points at both ends: if these are angles (torsions), their two ends are the same angle but "
                f"lie a whole period apart here, and geodesics across them go the long way round; give each periodic "
                f"coordinate as its pair (cos, sin) (README, periodic coordinates). If they are not angles, this "
                f"does not apply")
    return None
