"""A trained model against an independent estimate from the data's neighbours: a check without ground truth.

`learned_manifold.diagnostics.self_consistency` compares the model's two networks. When both fail the same
way it cannot see it: on S⁸ in R⁶⁴ the default recipe's denoiser learned only the data's linear span (the
Wiener filter of a Gaussian with the data's covariance, dimension 9 everywhere), the factor learned it too, and
the two agreed (``benchmarks/RESULTS.md``). A factor trained on the denoiser's Jacobian
(``factor_target="jacobian"``) agrees with its denoiser by construction. So this check asks a third estimator
that shares nothing with the networks: the centred k-NN carré du champ of the data themselves (SPEC §7).

Which bandwidth (derived here, docs/SPEC.md §8): a neighbour estimate is only informative at a ``σ`` where the
data are dense enough. Its denoiser (the kernel-weighted mean of the neighbours of ``y = x + σε``, the
empirical-Bayes posterior mean) is compared, on held-out points, with the best *linear* denoiser of the same
data (the Gaussian model's ``m + Σ(Σ + σ²I)⁻¹(y − m)``, `learned_manifold.preconditioning`). The reference
bandwidth is the ``σ`` of the grid at which the neighbours beat the linear fit by the largest factor (none
where they never do: no verdict). Where they lose, the neighbours are too far apart to say anything the data's
covariance does not; where they only just win (the first such σ), too few of them carry weight and their
gap-rule dimension reads low (S² and the torus read 1 there). Measured (held-out mean squared error over ``σ²``,
10,000 reference points): S⁸ in R⁶⁴ linear 7.7 / neighbours 10.8 at ``σ = 1/8``, 5.89 / 5.76 at ``σ = 1/4``;
the swiss roll in R¹⁰ 2.99 / 2.05 at ``σ = 1/32``.

That best ratio is noisy (the torus: 0.722 at ``σ = 0.139`` against 0.725 at 0.279), and at the best σ the
neighbours can still read too low: 2,500 points of the torus read dimension 1 at ~20% of points at 0.139, all 2
at 0.279, and a good model was distrusted on 4 of 6 random splits (tester B). So where the model fails at the best
σ it is judged again at the second best (one more k-NN pass), and distrusted only when it fails at both; the
report keeps the other σ's figures (``also_judged``). On tester B's trained models (6 splits each: S² in R³ and
R¹⁰, a circle, the torus, under-trained, rank-1) and tester D's swiss roll this trusted every good model (the torus
on 6 of 6 splits, was 2) and still distrusted every bad one (dimension agreement at most 0.19 at both σ).

At that bandwidth the model's ``Γᶜ_σ`` and the neighbours' are compared at the held-out points as in
`self_consistency`: gap-rule dimensions (SPEC §5) and the projector distance of the top-``d`` eigenvectors at
the smaller of the two dimensions. A model that keeps a normal direction the data do not have (S⁸'s ninth
dimension) disagrees in dimension at every point.

Held-out points must not be in the reference: a copy is its own nearest neighbour at distance 0, and the
neighbours read dimension 1 there (data with repeated rows: a good S² model distrusted at 2% dimension agreement,
tester E). Reference rows exactly equal to a held-out row are left out (``copies_left_out``), and `MIN_REFERENCE`
counts the distinct rows kept.

Sequential rows (a trajectory saved every step): given the data rows of the held-out and reference points, the
check leaves out each held-out point's neighbours within a window of rows chosen from the data (a Theiler window,
`learned_manifold.neighbour_estimates`); without it the neighbours read the trajectory's thread (dimension 1 at 73%
of the points of a 2-torus, and a right model was distrusted, tester B, s36). Rows in random order get no window,
nor data ordered along the manifold itself (a curve sampled in order, whose true neighbours a window left out).

Cost: ``k``-nearest-neighbour searches of ``B`` queries in ``N`` reference points per grid ``σ`` (brute force,
chunked; `learned_manifold.metrics.knn.KNNCDC`; with a window, ``B × N`` distances, and one more pass per doubling
of the window while it is chosen) and one ``k × k`` Gram eigen-problem per query at one or two σ;
nothing ``D × D``; finding the copies sorts the ``B + N`` rows once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .consistency_text import _past, is_number
from .diagnostics import DIMENSION_AGREEMENT
from .metrics.base import check_count, check_finite_points, check_scalar
from .models import MetricModel
from .neighbour_estimates import Neighbours, compare, linear_denoiser, theiler_window
from .precision import full_precision

__all__ = ["NEIGHBOUR_THRESHOLD", "NeighbourReport", "neighbour_check", "neighbour_figures", "reference_shortage"]

NEIGHBOUR_THRESHOLD = 0.5
"""Mean tangent disagreement with the neighbour estimate above which a model is not trusted. The neighbour
estimate has its own error (tuned centred k-NN: 0.01–0.08 on the benchmarks of SPEC §8), so the limit is looser
than the networks' mutual one; see `neighbour_check` for the values measured."""

MIN_REFERENCE = 200
"""Fewer reference points give no verdict: the neighbours' estimate is then the check's weak side (measured on a
well-trained S² model: 50 points disagreed 0.43 and read dimension 3, 5 points 1.30; 3,000 points 0.023)."""

@dataclass
class NeighbourReport:
    """The model against the neighbour estimate at ``B`` held-out points.

    Attributes:
        sigma: the bandwidth (data units) the verdict was read at: the grid σ where the neighbours beat the linear
            fit most, or the second such σ where the model fails at the first and passes there (`neighbour_check`);
            ``None`` when the neighbours never denoise as well as the linear fit on the grid, or the reference holds
            fewer than `MIN_REFERENCE` distinct points (no verdict).
        denoising: per grid σ tried, ``{"sigma", "neighbours", "linear"}``: held-out mean squared error over σ²
            of the two reference denoisers.
        tangent_disagreement: ``(B,)`` projector distance at the smaller of the two dimensions (empty without σ).
        model_dimension, neighbour_dimension: ``(B,)`` gap-rule dimensions (empty without σ).
        threshold: limit on the mean tangent disagreement.
        copies_left_out: reference rows left out because they equal a held-out point exactly.
        distinct_reference: distinct reference rows kept (``None`` for a report built by hand).
        also_judged: the figures (`summary` keys) at the other of the two bandwidths judged, where the model
            failed at the first: ``None`` where it passed at the first, or the grid had one bandwidth to offer.
        window: the Theiler window in rows (neighbours within it of a held-out point left out; ``0``: none, rows in
            no order the neighbours follow; ``None``: the rows were not given).
        adjacent_share: share of held-out points whose nearest reference neighbour is their adjacent row (``None``
            without rows).
    """

    sigma: float | None
    denoising: list[dict]
    tangent_disagreement: Tensor = field(default_factory=lambda: torch.zeros(0))
    model_dimension: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    neighbour_dimension: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    threshold: float = NEIGHBOUR_THRESHOLD
    copies_left_out: int = 0
    distinct_reference: int | None = None
    also_judged: dict | None = None
    window: int | None = None
    adjacent_share: float | None = None

    @property
    def informative(self) -> bool:
        """Whether a reference bandwidth was found (else the check says nothing)."""
        return self.sigma is not None

    @property
    def dimension_agreement(self) -> float:
        """Fraction of points where the model and the neighbours read the same dimension (1 without σ)."""
        if not self.informative:
            return 1.0
        return float((self.model_dimension == self.neighbour_dimension).float().mean())

    @property
    def trusted(self) -> bool | None:
        """No disagreement beyond the limits (nothing `failed`); ``None`` when the check is not informative (no
        verdict: it neither confirms nor refutes the model, and ``None`` is falsy, so a caller asking
        ``if report.trusted`` does not read it as confirmed; it had read ``True``, and a model of a circle's linear
        span passed so, tester E)."""
        if not self.informative:
            return None
        return not self.failed

    @property
    def failed(self) -> dict[str, float]:
        """The figures past their limits, unrounded, by their `summary` names (``dimension_agreement``,
        ``tangent_disagreement``; empty without a verdict): the one comparison behind `trusted` and the figures
        `neighbour_figures` names first."""
        if not self.informative:
            return {}
        tangent, agreement = float(self.tangent_disagreement.mean()), self.dimension_agreement
        figures = {"dimension_agreement": (agreement, not agreement >= DIMENSION_AGREEMENT),
                   "tangent_disagreement": (tangent, not tangent <= self.threshold)}
        return {name: value for name, (value, fails) in figures.items() if fails}

    def summary(self) -> dict:
        """Plain numbers for logs, reports and the model file: with a verdict, the mean tangent disagreement, the
        per-point dimension agreement, the median dimensions, the number of points at each dimension
        (``model_dimensions``, ``neighbour_dimensions``: ``{"1": 196, "2": 204}``, the spread a median hides on
        data of mixed dimension) and ``failed`` (`failed`)."""
        out = {"sigma": self.sigma, "informative": self.informative, "trusted": self.trusted,
               "denoising": self.denoising, "threshold": self.threshold,
               "distinct_reference_points": self.distinct_reference, "copies_left_out": self.copies_left_out}
        if self.also_judged is not None:
            out["also_judged"] = self.also_judged
        if self.window is not None:
            out["window"], out["adjacent_share"] = self.window, round(float(self.adjacent_share), 4)
        if self.informative:
            out.update({
                "tangent_disagreement": round(float(self.tangent_disagreement.mean()), 4),
                "dimension_agreement": round(self.dimension_agreement, 4),
                "model_dimension": int(self.model_dimension.float().median()),
                "neighbour_dimension": int(self.neighbour_dimension.float().median()),
                "model_dimensions": _counts(self.model_dimension),
                "neighbour_dimensions": _counts(self.neighbour_dimension),
                "failed": self.failed,
            })
        return out

    def message(self) -> str:
        """One line for a user."""
        copies = (f" ({self.copies_left_out:,} reference rows equal to held-out points were left out)"
                  if self.copies_left_out else "")
        if self.distinct_reference is not None and self.distinct_reference < MIN_REFERENCE:
            return ("neighbour check: no verdict, so this independent check could not judge the model: "
                    + reference_shortage(self.summary()))
        if not self.informative:
            return ("neighbour check: no verdict, so this independent check could not judge the model (the data's "
                    "neighbours never denoise as well as a linear fit on the model's bandwidth grid: too few points "
                    "for an independent estimate, bandwidths below the points' spacing or far above it, at the data's "
                    "scale, or data with no structure "
                    f"beyond their linear span){copies}")
        figures = f"at sigma={self.sigma:.4g}: {neighbour_figures(self.summary())}"
        if self.trusted:
            return f"neighbour check: the model agrees with the data's neighbours {figures}"
        if self.window:
            return (f"neighbour check WARNING: the model disagrees with an estimate from the data's neighbours "
                    f"{figures}. Where frames still lie close along the trajectory past the window the neighbours "
                    f"read its thread: thin the frames (keep every n-th) and train again; else both networks can "
                    f"share a failure: do not trust the tangent spaces")
        return (f"neighbour check WARNING: the model disagrees with an estimate from the data's neighbours "
                f"{figures}. Both networks can share a failure (e.g. keep the data's linear span instead of the "
                f"manifold); do not trust the tangent spaces")


def neighbour_figures(summary: dict) -> str:
    """The figures of an informative check's `NeighbourReport.summary`, each with its limit, those that failed first
    (the summary's ``failed``; older files: their rounded figures against the limits), then the dimensions each side
    reads: a single value where all points read one, else the share of points at each (a circle ∪ S² had printed
    the medians "dimension 2 against the neighbours' 1" while the two agreed at 97% of points; a thick tube
    distrusted at 60% agreement had printed "dimension 1 against the neighbours' 1"). Files without the counts:
    the medians, called so. Then, where two bandwidths were judged (``also_judged``), the other one's figures, and
    the reference rows left out as copies of held-out points (``copies_left_out``)."""
    agreement, tangent = summary.get("dimension_agreement"), summary.get("tangent_disagreement")
    limit = summary.get("threshold", NEIGHBOUR_THRESHOLD)
    failed = summary.get("failed")
    if not isinstance(failed, dict):
        failed = {name: value for name, value, fails in [
            ("dimension_agreement", agreement, is_number(agreement) and agreement < DIMENSION_AGREEMENT),
            ("tangent_disagreement", tangent, is_number(tangent) and tangent > limit)] if fails}
    figures = {}
    if is_number(agreement):
        value = failed.get("dimension_agreement", agreement)
        only = "only " if "dimension_agreement" in failed else ""
        figures["dimension_agreement"] = (f"same dimension at {only}{_past(value, DIMENSION_AGREEMENT, percent=True)} "
                                          f"of points (limit {DIMENSION_AGREEMENT:.0%})")
    if is_number(tangent):
        value = failed.get("tangent_disagreement", tangent)
        shown = _past(value, limit) if "tangent_disagreement" in failed else f"{tangent:.3f}"
        figures["tangent_disagreement"] = f"tangent disagreement {shown} (limit {limit})"
    ordered = [figures[name] for name in figures if name in failed] + [figures[n] for n in figures if n not in failed]
    mine, theirs = summary.get("model_dimensions"), summary.get("neighbour_dimensions")
    if isinstance(mine, dict) and isinstance(theirs, dict) and mine and theirs:
        dims = f"dimension {_spread(mine)} against the neighbours' {_spread(theirs)}"
    else:
        dims = (f"median dimension {summary.get('model_dimension')} against the neighbours' "
                f"{summary.get('neighbour_dimension')}")
    text = ", ".join(ordered) + "; " + dims if ordered else dims
    other = summary.get("also_judged")
    if isinstance(other, dict) and is_number(other.get("sigma")):
        where = (f"also at sigma={other['sigma']:.4g}" if failed else f"not at sigma={other['sigma']:.4g}, where the "
                 f"neighbours denoise best (a model is distrusted only where it fails at both)")
        text += f"; {where}: {neighbour_figures(other)}"
    copies = summary.get("copies_left_out")
    if is_number(copies) and copies > 0:
        text += f"; {copies:,} reference rows equal to held-out points were left out"
    window, adjacent = summary.get("window"), summary.get("adjacent_share")
    if is_number(window) and window > 0 and is_number(adjacent):
        text += (f"; consecutive rows are neighbours (time-correlated frames: the nearest neighbour of {adjacent:.0%} "
                 f"of held-out points is the row before or after it), so neighbours within {window} rows were left "
                 f"out (a Theiler window)")
    elif window == 0 and is_number(adjacent) and adjacent > 0.5:
        text += (f"; the nearest neighbour of {adjacent:.0%} of held-out points is the row before or after it, but "
                 f"they follow the rows at every window (data ordered along the manifold, or frames that never "
                 f"return near themselves), so no window was taken")
    return text


def reference_shortage(summary: dict) -> str:
    """Why a neighbour check had too few reference points for a verdict (fewer than `MIN_REFERENCE`), from its
    `NeighbourReport.summary`, in words that say what was counted: the distinct rows of the reference left once the
    rows equal to a held-out point are left out (``distinct_reference_points``, ``copies_left_out``), out of the
    training rows it was given where recorded (``reference_points``, the trainer's), and, where rows repeat (a copy
    of a held-out point, or fewer distinct rows than rows), that the data repeat rows: 300 rows holding 10 distinct
    points had read "0 distinct training points are too few" (tester D, s34). A summary without the distinct count
    (files before it): its rows."""
    distinct, rows = summary.get("distinct_reference_points"), summary.get("reference_points")
    copies = summary.get("copies_left_out") if is_number(summary.get("copies_left_out")) else 0
    needs = f"too few for an estimate from their neighbours (it needs {MIN_REFERENCE})"
    if not is_number(distinct):
        held = f"{rows:,} rows" if is_number(rows) else "points"
        return f"the reference holds {held}, {needs}"
    counted = (f"of the {rows:,} training rows it compares with, {distinct:,} distinct points are left"
               if is_number(rows) else f"the reference holds {distinct:,} distinct points")
    if copies:
        counted += f" once the {copies:,} rows equal to held-out points are left out"
    repeats = copies > 0 or (is_number(rows) and distinct < rows - copies)
    if not repeats:
        return f"{counted}, {needs}"
    return (f"{counted}, {needs}: the data repeat rows, and a repeated point counts once (remove the duplicates; "
            f"copies of held-out points in the training rows also leak them into training)")


def _counts(dims: Tensor) -> dict[str, int]:
    """Points per dimension, ``(B,)`` → ``{"1": 196, "2": 204}`` (string keys: the model file's JSON)."""
    values, counts = torch.unique(dims, return_counts=True)
    return {str(int(v)): int(c) for v, c in zip(values, counts, strict=True)}


def _spread(counts: dict) -> str:
    """``{"1": 196, "2": 204}`` → ``"1 (49%) or 2 (51%)"``; a single dimension alone; the 3 most common, then the
    rest's share."""
    total = sum(counts.values())
    if len(counts) == 1:
        return str(next(iter(counts)))
    top = sorted(counts.items(), key=lambda item: -item[1])[:3]
    words = [f"{dim} ({count / total:.0%})" for dim, count in sorted(top, key=lambda item: int(item[0]))]
    rest = total - sum(count for _, count in top)
    if rest:
        words.append(f"others ({rest / total:.0%})")
    return ", ".join(words[:-1]) + " or " + words[-1]


@full_precision
def neighbour_check(model: MetricModel, x: Tensor, reference: Tensor, sigmas: list[float], *, k: int = 256,
                    seed: int = 0, threshold: float = NEIGHBOUR_THRESHOLD,
                    rows: tuple[Tensor, Tensor] | None = None) -> NeighbourReport:
    """Compare a model with the centred k-NN CDC of ``reference`` at held-out points (module docstring).

    Args:
        model: a `MetricModel`.
        x: ``(B, *data_shape)`` or ``(B, D)`` held-out points.
        reference: ``(N, *data_shape)`` or ``(N, D)`` data points (e.g. the training points); its rows exactly equal
            to a row of ``x`` are left out (module docstring).
        sigmas: candidate bandwidths in data units (e.g. the model's evaluation grid); tried ascending.
        k: neighbours per query (capped at ``N``).
        seed: seeds the noise of the denoising comparison and the principal components.
        threshold: limit on the mean tangent disagreement.
        rows: ``(x_rows, reference_rows)``, ``(B,)`` and ``(N,)`` integer data rows (positions in the data's order)
            of ``x`` and ``reference``, or ``None``. Given, sequential data (nearest neighbours adjacent rows far more
            often than chance) get a Theiler window (module docstring, `neighbour_estimates.theiler_window`).

    Returns:
        `NeighbourReport`.

    Raises:
        ValueError: empty, mis-shaped or non-finite ``x`` or ``reference``, no bandwidths, or a non-positive one;
            ``rows`` not two integer tensors of ``B`` and ``N`` rows, or a row number given twice (within or
            across the two).

    A ``reference`` of fewer than `MIN_REFERENCE` distinct points (once the copies of ``x`` are left out) gives no
    verdict (not informative). The model is judged at the grid σ where the neighbours beat the linear fit most and,
    where it fails there, at the second best: distrusted only when it fails at both. Runs outside the
    caller's autocast (`learned_manifold.precision.full_precision`): under bf16 autocast the disagreement read
    0.0534 against 0.0507 without it (tester B).
    """
    for name, pts in (("x", x), ("reference", reference)):
        if not isinstance(pts, Tensor) or pts.ndim < 2 or pts.shape[0] == 0 or pts[0].numel() != model.dim:
            got = tuple(pts.shape) if isinstance(pts, Tensor) else type(pts).__name__
            raise ValueError(f"{name} must be a non-empty batch of points of shape (N, {model.dim}) or "
                             f"(N, *{tuple(model.data_shape)}), got {got}")
        # one NaN point made every σ's ratio NaN: no verdict, read as "trusted"
        check_finite_points(pts, name, "; the check needs finite points")
    if reference.shape[0] < 2:
        raise ValueError(f"reference needs at least 2 points, got {reference.shape[0]}")
    if len(sigmas) == 0:
        raise ValueError("sigmas must hold at least one bandwidth")
    sigmas = sorted(float(check_scalar(s, "sigmas")) for s in sigmas)
    check_count(k, "k")
    _check_rows(rows, x.shape[0], reference.shape[0])
    reference = reference.reshape(reference.shape[0], model.dim).to(x.device)
    reference, copies, distinct, keep = _copies_left_out(x.reshape(x.shape[0], model.dim), reference)
    x_rows, ref_rows = (None, None) if rows is None else (rows[0].to(x.device), rows[1].to(x.device)[keep])
    if distinct < MIN_REFERENCE:  # no verdict (`informative` is False)
        return NeighbourReport(None, [], threshold=threshold, copies_left_out=copies, distinct_reference=distinct)
    dtype = model.scale.dtype
    x = x.reshape(x.shape[0], model.dim).to(dtype)
    # the neighbours and the linear fit work in the model's standardised units (z = (x − μ)/s, σ/s): the same
    # CDC (Cov/σ² is unchanged by the affine map), and no overflow for data of large magnitude
    scale = float(model.scale)
    mean = getattr(model, "mean", torch.zeros(())).reshape(-1).double().to(x.device)
    z = ((x.double() - mean) / scale).to(dtype)
    z_ref = ((reference.double() - mean) / scale).to(dtype)
    k = min(k, z_ref.shape[0])
    window, adjacent = (None, None) if rows is None else theiler_window(z, z_ref, x_rows, ref_rows)
    g = torch.Generator(device=x.device).manual_seed(seed)
    linear = linear_denoiser(z_ref, seed)
    table: list[dict] = []
    ratios: list[tuple[float, float]] = []  # (neighbours / linear, σ) where the neighbours win
    with torch.no_grad():
        for sigma in sigmas:
            s_z = sigma / scale
            y = z + s_z * torch.randn(z.shape, generator=g, device=z.device, dtype=z.dtype)
            near = Neighbours(z_ref, ref_rows, k=k, sigma=s_z, window=window or 0).project(y, x_rows)
            row = {"sigma": sigma,
                   "neighbours": round(float((near - z).pow(2).sum(-1).mean()) / s_z**2, 4),
                   "linear": round(float((linear(y, s_z) - z).pow(2).sum(-1).mean()) / s_z**2, 4)}
            table.append(row)
            ratio = row["neighbours"] / max(row["linear"], 1e-12)
            if ratio <= 1:
                ratios.append((ratio, sigma))
        if not ratios:
            return NeighbourReport(None, table, threshold=threshold, copies_left_out=copies,
                                   distinct_reference=distinct, window=window, adjacent_share=adjacent)
        best = sorted(ratios)[:2]  # the two bandwidths where the neighbours beat the linear fit most
        reports = []
        for _, sigma in best:
            near = Neighbours(z_ref, ref_rows, k=k, sigma=sigma / scale, window=window or 0)
            figures = compare(model, x, z, x_rows, near, sigma)
            reports.append(NeighbourReport(sigma, table, *figures, threshold, copies_left_out=copies,
                                           distinct_reference=distinct, window=window, adjacent_share=adjacent))
            if reports[-1].trusted:
                break
    chosen = reports[-1] if reports[-1].trusted else reports[0]
    if len(reports) == 2:
        other = reports[1] if chosen is reports[0] else reports[0]
        chosen.also_judged = {key: value for key, value in other.summary().items() if key in _JUDGED}
    return chosen


_JUDGED = ("sigma", "tangent_disagreement", "dimension_agreement", "model_dimension", "neighbour_dimension",
           "model_dimensions", "neighbour_dimensions", "failed")
"""The figures of the other bandwidth judged that a report keeps (`NeighbourReport.also_judged`)."""


def _copies_left_out(x: Tensor, reference: Tensor) -> tuple[Tensor, int, int, Tensor]:
    """`_without_copies`'s three results and the ``(N,)`` mask of the ``reference`` rows kept."""
    both = torch.cat([x.double(), reference.double()])  # float64: exact for every floating input
    _, ids = torch.unique(both, dim=0, return_inverse=True)
    held, ref_ids = ids[: x.shape[0]], ids[x.shape[0]:]
    keep = ~torch.isin(ref_ids, held)
    return reference[keep], int((~keep).sum()), int(torch.unique(ref_ids[keep]).numel()), keep


def _without_copies(x: Tensor, reference: Tensor) -> tuple[Tensor, int, int]:
    """``reference`` ``(N, D)`` less its rows exactly equal to a row of ``x`` ``(B, D)`` (a held-out point's copy is
    its own nearest neighbour at distance 0: the neighbours then read dimension 1 there, tester E), the number of
    rows left out and the number of distinct rows kept. Compared in float64 (exact for every floating input)."""
    return _copies_left_out(x, reference)[:3]


def _check_rows(rows: tuple[Tensor, Tensor] | None, b: int, n: int) -> None:
    """``rows`` is ``None`` or two integer tensors of ``b`` and ``n`` entries, no row number twice (`neighbour_check`).

    Row numbers are positions in the data: a repeated one (all rows 0, or a held-out row also given as a reference
    row) made the window's adjacency count every query, and the report claim 100% adjacent rows on i.i.d. data."""
    if rows is None:
        return
    pair = isinstance(rows, tuple | list) and len(rows) == 2
    if not (pair and all(isinstance(r, Tensor) and r.dtype in _INTEGER for r in rows)
            and tuple(rows[0].shape) == (b,) and tuple(rows[1].shape) == (n,)):
        got = (", ".join(f"{r.dtype} of shape {tuple(r.shape)}" if isinstance(r, Tensor) else type(r).__name__
                         for r in rows) if pair else type(rows).__name__)
        raise ValueError(f"rows must be (x_rows, reference_rows), integer tensors of shapes ({b},) and ({n},), "
                         f"got {got}")
    x_rows, ref_rows = rows[0].long(), rows[1].long().to(rows[0].device)
    for where, numbers in (("x_rows", x_rows), ("reference_rows", ref_rows)):
        ordered = numbers.sort().values
        repeated = ordered[1:][ordered[1:] == ordered[:-1]]
        if repeated.numel():  # (numbers read before the message: torch.compile, `landing._warn_far_landed`)
            count, first = repeated.unique().numel(), int(repeated[0])
            raise ValueError(f"rows must give each data row's position at most once; {where} repeats "
                             f"{count} row number(s), e.g. {first}")
    shared = torch.isin(x_rows, ref_rows)
    if bool(shared.any()):
        count, first = int(shared.sum()), int(x_rows[shared][0])
        raise ValueError(f"rows must give each data row's position at most once; x_rows and reference_rows share "
                         f"{count} row number(s), e.g. {first}")


_INTEGER = (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8)
