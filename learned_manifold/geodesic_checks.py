"""Checks of a solved geodesic before `geodesics.geodesic` calls it converged (SPEC §6): the path resolves the
metric (`unresolved`), and a path between distinct ends does not have metric length 0 (`zero_length`). Each marks
its pairs unconverged and warns, naming the cause."""

from __future__ import annotations

import torch
from torch import Tensor

from .geodesic_solvers import RESOLUTION_COARSE, RESOLUTION_GROWTH, RESOLUTION_SUBSTEPS, RESOLUTION_TOL, resolution
from .metrics.base import CoMetricField
from .user_warnings import warn_user

__all__ = ["ZERO_LENGTH", "unresolved", "zero_length"]

ZERO_LENGTH = 1e-6
"""A reported length at most this fraction of the length in the metric the solver minimised counts as 0
(`zero_length`)."""


def _singular_hint(field: CoMetricField, delta: float | Tensor, landing: bool) -> str:
    """Advice for an unresolved path on a singular metric: with ``δ = 0`` (and the field's own ``δ = 0``) and no
    landing, moves along the factor's null directions cost nothing, so the path may leave the data (a sphere's
    projector field sent it through the centre), which more points do not cure."""
    own = torch.as_tensor(getattr(field, "delta", 0.0))  # (a `Regularised` holds a (B,) δ per pair)
    if landing or bool(own.gt(0).any()) or bool(torch.as_tensor(delta).gt(0).any()):
        return ""
    return ("; with delta = 0 and no landing the metric is singular (moves along the field's null directions "
            "cost nothing) and a path may leave the data: give delta > 0 (the default) or landing=True")


def unresolved(field: CoMetricField, path: Tensor, lengths: list[tuple[CoMetricField, Tensor]], candidates: Tensor,
               delta: float | Tensor, landing: bool) -> Tensor:
    """``(B,)`` bool: the ``candidates`` (converged pairs) whose ``path`` ``(B, T, D)`` does not resolve the metric.
    ``lengths``: pairs of a metric and the path's length ``(B,)`` in it, the solver's (``field``) first and the
    reported one last (the same where they agree). Not resolved: re-measured between its points in the solver's
    metric (`geodesic_solvers.resolution`) it is more than ``1 + RESOLUTION_TOL`` times as long, or in the reported
    metric that re-measured length still grows by more than `RESOLUTION_GROWTH` from `RESOLUTION_COARSE` to
    `RESOLUTION_SUBSTEPS` sub-points (the metric changes by orders of magnitude across a segment).

    The growth is taken in the reported metric: the solver's can hide it (a float32 Woodbury solve of ``G + δI``
    rounds ``g`` to about 0 where ``λ ≫ δ``: a half-plane path climbed to y = 994 for free and re-measured
    exactly), and its dear normal directions amplify rounding (a float32 unit sphere at 5,000: +30%). Only for the
    midpoint rule: a VAE's decoded energy (`path_energies.segment_energies`) grew 6–12% on 16-point paths whose
    length changed 1% at 64 points. Warns once."""
    (solver, solved), (reported, length) = lengths[0], lengths[-1]
    fine = resolution(solver, path, solved)
    ratio = torch.where(torch.isfinite(fine), fine, torch.ones_like(fine))
    growth = torch.ones_like(ratio)
    if getattr(reported, "segment_energies", None) is None:  # the midpoint rule (a VAE's decoded energy: none)
        if reported is not solver or length is not solved:  # (the same metric and length: measured once)
            fine = resolution(reported, path, length)
        growth = fine / resolution(reported, path, length, RESOLUTION_COARSE)
        growth = torch.where(torch.isfinite(growth), growth, torch.ones_like(growth))
    bad = candidates & ((ratio > 1 + RESOLUTION_TOL) | (growth > 1 + RESOLUTION_GROWTH))
    if bool(bad.any()):
        # Every number (and the hint, which reads δ) is read before the message is built: under torch.compile a
        # host sync (a graph break) inside an f-string, after a number that varies between calls, left that number
        # among the pieces the resumed frame joins ("TypeError: sequence item 1: expected str instance, int found",
        # s37; torch 2.13's dynamo). `zero_length` does the same.
        found = []  # only the test(s) that fired, so no "1 times as long"
        if bool((ratio[bad] > 1 + RESOLUTION_TOL).any()):
            longest = float(ratio[bad].max())
            found.append(f"measured between their points they are up to {longest:.3g} times as long "
                         "as their discrete length")
        if bool((growth[bad] > 1 + RESOLUTION_GROWTH).any()):
            grown = 100 * (float(growth[bad].max()) - 1)
            found.append(f"their length grows by up to {grown:.3g}% from "
                         f"{RESOLUTION_COARSE} to {RESOLUTION_SUBSTEPS} sub-points per segment")
        count, listed, hint = int(bad.sum()), ", and ".join(found), _singular_hint(field, delta, landing)
        warn_user(f"geodesic: {count} of {len(ratio)} converged path(s) do not resolve the metric: "
                  f"{listed} (the metric rises or changes by orders of magnitude between the "
                  f"points); marked unconverged: use more n_points{hint}")
    return bad


def zero_length(reported: Tensor, solved: Tensor, candidates: Tensor) -> Tensor:
    """``(B,)`` bool: the ``candidates`` (converged pairs with distinct ends) whose ``reported`` length ``(B,)`` is
    at most `ZERO_LENGTH` times their length ``solved`` ``(B,)`` in the metric the solver minimised (or both are
    0); warns once naming why. A converged length 0 between distinct points means the path moves only along
    directions the reported metric does not charge: the field's null directions (a singular metric, ``δ = 0``),
    or directions the gap rule dropped from the reported length (a full-rank field read as lower-dimensional)."""
    bad = candidates & (reported <= ZERO_LENGTH * solved)
    if bool(bad.any()):
        count = int(bad.sum())  # read first (`unresolved`)
        warn_user(f"geodesic: {count} of {len(bad)} converged path(s) between distinct points have "
                  "metric length 0: the path moves only along directions the metric gives no cost (the "
                  "field's metric is singular along it, delta = 0, or the gap rule dropped those directions "
                  "from the reported length); marked unconverged: pass delta > 0 (or leave the default) or "
                  "tangent_dim= (the field's true dimension)")
    return bad
