"""The warnings `curvature.curvature` gives about a batch of points as a whole (SPEC §12), with their thresholds:
a ``d`` that many points do not read (`MIXED_SHARE`), a k-NN field's truncated or too narrow kernel (`CUTOFF_LIMIT`,
`NEIGHBOURS_PER_DIM`), and points where the field is zero (``G = 0``: no tangent directions). Moved out of
`curvature` to keep that module short; `curvature` re-exports the thresholds."""

from __future__ import annotations

from torch import Tensor

from .geometry import intrinsic_dimension
from .metrics.base import CoMetricField
from .user_warnings import warn_user

__all__ = ["CUTOFF_LIMIT", "MIXED_SHARE", "NEIGHBOURS_PER_DIM", "warn_about_mixed_dimensions",
           "warn_about_the_kernel", "warn_about_zero_field"]

CUTOFF_LIMIT = 1e-4
"""A field that reports ``cutoff_weight`` (`KNNCDC`: its ``k``-th neighbour's kernel weight relative to the
nearest's) above this at the median point gets a warning: its curvature is biased low."""

MIXED_SHARE = 0.2
"""A batch whose default ``d`` (the lower median of the gap rule's pointwise dimensions) differs from the
pointwise dimension at more than this share of its points gets a warning: one ``d`` serves every point, so a
batch drawn from parts of several dimensions mixes tangent and normal directions (tester J: a 1-D branch read
|H| = 0.027 with a 1-D/2-D/3-D batch's d = 2, 0.127 with d = 1; closed form 0.172). The share leaves noise alone:
a trained model read another dimension than its own at 5–11% of the points of a branch (tester J)."""

NEIGHBOURS_PER_DIM = 2
"""A `KNNCDC` whose kernel holds fewer than ``NEIGHBOURS_PER_DIM · (d + 1)`` effective neighbours ``(Σw)²/Σw²``
at the median point gets a warning (σ too small for the data's spacing: its tangent planes follow single
neighbours). Measured on S² from 2,000 points, k = 64, d = 2: 7.9 effective neighbours gave R = 1.67 (as 20 did),
3.7 gave 1.2, 2.3 gave 0.2, and at 1.4 the gap rule read d = 1 and R = 0 (truth 2)."""


def warn_about_mixed_dimensions(values: Tensor, dim: int) -> None:
    """Warn (at the caller of `curvature`) when more than `MIXED_SHARE` of the points, eigenvalues ``values``
    ``(B, r)``, read another dimension by the gap rule than ``dim``, the batch's (lower median) that serves them
    all."""
    own = intrinsic_dimension(values)
    other = int((own != dim).sum())
    if other <= MIXED_SHARE * own.numel():
        return
    dims, counts = own.unique(return_counts=True)  # read as ints before the text is built (`warn_about_zero_field`)
    mix = ", ".join(f"{d}: {c}" for d, c in zip(dims.tolist(), counts.tolist(), strict=True))
    warn_user(f"{other} of {own.numel()} points ({100 * other / own.numel():.0f}%) read another dimension by the "
              f"gap rule than the batch's {dim} (dimensions: {mix}), which curvature uses at every point: where a "
              f"point's own dimension is lower, a normal direction counts as tangent (|H| reads too small), where "
              f"it is higher, a tangent direction as normal; call curvature on each group of points (grouped by "
              f"geometry.intrinsic_dimension or LearnedDataManifold.intrinsic_dimension) or pass tangent_dim",
              RuntimeWarning)


def warn_about_the_kernel(field: CoMetricField, x: Tensor, dim: int) -> None:
    """Warn (at the caller of `curvature`, past its `torch.inference_mode` wrapper) when a k-NN field's kernel is
    truncated (`CUTOFF_LIMIT`) or holds too few effective neighbours ``(Σw)²/Σw²`` for a ``dim``-dimensional
    tangent plane (`NEIGHBOURS_PER_DIM`), at the median point of ``x`` ``(B, D)``."""
    if not x.shape[0]:
        return
    cutoff = getattr(field, "cutoff_weight", None)
    if callable(cutoff):
        weight = float(cutoff(x).median())
        if weight > CUTOFF_LIMIT:
            warn_user(f"{type(field).__name__}: the k-th neighbour still carries {weight:.2g} of the nearest's "
                      f"kernel weight (median point), so the field is a truncated kernel whose tangent planes "
                      f"turn too little as x moves: its curvature is biased low; raise k or lower sigma until "
                      f"cutoff_weight is below {CUTOFF_LIMIT:g}", RuntimeWarning)
    effective = getattr(field, "effective_neighbours", None)  # `KNNCDC.effective_neighbours`
    if callable(effective):
        count = float(effective(x).median())
        if count < NEIGHBOURS_PER_DIM * (dim + 1):
            warn_user(f"{type(field).__name__}: the kernel holds {count:.2g} effective neighbours (Σw)²/Σw² at the "
                      f"median point, fewer than {NEIGHBOURS_PER_DIM * (dim + 1)} for a {dim}-dimensional tangent "
                      f"plane: sigma = {field.sigma:g} is too small for the data's spacing, so the tangent planes "
                      f"(and the dimension) follow single neighbours and the curvature is meaningless (often 0); "
                      f"raise sigma", RuntimeWarning)


def warn_about_zero_field(field: CoMetricField, zero: Tensor) -> None:
    """Warn (at the caller of `curvature`) where ``G = 0`` (``λ₁ = 0``: the factor is zero), ``zero`` ``(B,)``: the
    field has no tangent directions at those points, so no tangent plane, whatever ``tangent_dim``; their rows are
    NaN. The gap and dimension warnings had spoken of an eigengap ``0 / 0`` and advised another ``tangent_dim``,
    which cannot help (tester D, p05)."""
    count = int(zero.sum())
    if not count:
        return
    # Every number is read from the tensors before the message is built (as in the module's other warnings): under
    # torch.compile a host sync (a graph break) inside an f-string, after a number that varies between calls, left
    # that number among the pieces the resumed frame joins ("TypeError: sequence item 1: expected str instance,
    # int found", s37; torch 2.13's dynamo).
    first = int(zero.nonzero()[0])
    warn_user(f"{type(field).__name__}: G = 0 (the factor is zero) at {count} of {zero.numel()} point(s) (the "
              f"first: {first}): the field has no tangent directions there, so their curvature is "
              "NaN whatever tangent_dim; evaluate it where the field is nonzero (at such points a trained model's "
              "factor head is dead, a hand-made field is off its support, or a k-NN field's neighbours all "
              "coincide)", RuntimeWarning)
