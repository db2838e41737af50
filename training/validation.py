"""Validation during and after training (SPEC §8): the evaluation bandwidth grid, the geometric validation of
a model on held-out points, and the choice of the model's default evaluation σ."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from learned_manifold.consistency_text import is_number
from learned_manifold.diagnostics import consistency_reasons, consistency_verdict, no_verdict_reason
from learned_manifold.evaluation import bandwidth_grid, spectral_report
from learned_manifold.geometry import eigenpairs
from learned_manifold.model_file_notes import EXPLODED_EIGENVALUE, LOCAL_SIGMA, SIGMA_RTOL, exploded
from learned_manifold.models import MetricModel
from learned_manifold.neighbour_check import MIN_REFERENCE, neighbour_figures, reference_shortage

from .data.base import KnownManifold
from .runtime import check_point_dimension

__all__ = [
    "COLLAPSED_RECONSTRUCTION",
    "LOCAL_SIGMA",
    "EXPLODED_EIGENVALUE",
    "GAP_TIE",
    "clearest_gap",
    "distrust",
    "diverged_sentence",
    "exploded",
    "initial_sigma",
    "reference_count",
    "select_sigma",
    "sigma_grid",
    "validate",
]


def initial_sigma(scale: float, sigma_min: float, sigma_max: float) -> tuple[float, str]:
    """The default σ of a checkpoint written before the end of a run (before `select_sigma` chooses one) and its
    rule: ``s/16`` (``s`` the data scale, SPEC §1), clamped into the training range ``[sigma_min, sigma_max]``
    (data units), so that an interrupted run's file never defaults to a bandwidth it never trained at
    (``[0.5, 4]·s`` gives ``0.5·s``, ``[0.001, 0.02]·s`` gives ``0.02·s``)."""
    guess = scale * 2.0 ** -4
    sigma = min(max(guess, sigma_min), sigma_max)
    if sigma == guess:
        return sigma, "initial guess s/16"
    return sigma, "initial guess s/16, clamped into the training range"


def sigma_grid(model: MetricModel) -> list[float]:
    """Evaluation bandwidths ``s · 2^(i−6)``, ``i = 0..10`` (SPEC §8), kept inside the training range; where none
    lies inside it (a range narrower than a factor of 2 between grid values), the range's ends and geometric
    middle: a bandwidth the model never trained at is never chosen."""
    c = model.config
    grid = bandwidth_grid(float(model.scale))
    inside = [g for g in grid if c.sigma_min * (1 - SIGMA_RTOL) <= g <= c.sigma_max * (1 + SIGMA_RTOL)]
    return inside or fallback_grid(c.sigma_min, c.sigma_max)


def fallback_grid(sigma_min: float, sigma_max: float) -> list[float]:
    """The range's ends and geometric middle, for a training range that holds no value of the SPEC §8 grid."""
    return sorted({float(sigma_min), float((sigma_min * sigma_max) ** 0.5), float(sigma_max)})


@torch.no_grad()
def validate(model: MetricModel, x: Tensor, sigma: float, manifold: KnownManifold | None = None) -> dict:
    """Geometric validation at bandwidth ``sigma`` on held-out on-manifold points ``x`` ``(n, *data_shape)``.

    With a known manifold (an object with ``tangent_basis`` and ``point_dimension``): mean tangent-projector
    error ``‖ÛÛᵀ − P_T‖_F`` with the true ``d`` per point and the fraction of points whose gap-rule
    dimension is right. Always: the mean clearest normalised eigengap and the median dimension
    (`learned_manifold.evaluation.spectral_report`).

    At the end of a run ``x`` are the same held-out points on which `select_sigma` chose ``sigma`` (the σ of
    lowest ``tangent_error`` there), so the stored ``tangent_error`` is slightly optimistic: 0.0183 against
    0.0193 on fresh points of one sphere run (`info` says so beside it).
    """
    pairs = eigenpairs(model.factor(x, sigma).float())
    truth = {}
    if manifold is not None:
        flat = x.reshape(x.shape[0], -1)
        truth = {"true_basis": manifold.tangent_basis(flat), "true_dim": check_point_dimension(
            manifold.point_dimension(flat), *flat.shape).long()}  # whole floats and lists too, as before the run
    return {"sigma": float(sigma), **spectral_report(pairs, **truth)}


# LOCAL_SIGMA (0.5, from `learned_manifold.model_file_notes`, which flags files of the older rule): the eigengap rule
# of `select_sigma` looks at ``σ ≤ LOCAL_SIGMA · s`` (``s`` the data scale, SPEC §1) where the training range holds
# any: from σ ≈ s up the posterior spans the whole data set, and Γ reads the data's global covariance, whose gap
# measures the linear span, not a tangent space (a half-sphere in R¹⁰ with noise: gap 0.90 at 2s, tangent error
# 1.07, against 0.80 and 0.12 at s/8; twenty-fifth session).


def select_sigma(model: MetricModel, x: Tensor,
                 manifold: KnownManifold | None = None) -> tuple[float, str, list[dict]]:
    """Pick the default evaluation bandwidth on held-out points ``x`` from `sigma_grid`.

    Rule: with a known manifold, the σ of lowest tangent-projector error; otherwise the smallest σ whose spectra
    show an eigengap within `GAP_TIE` of the clearest (largest mean normalised gap ``max_k λ̃_k − λ̃_{k+1}``) among
    the local bandwidths (``σ ≤ LOCAL_SIGMA · s``, where the range holds any) whose median dimension is below
    ``min(r, D)``, where any is (`clearest_gap`). A full reading's only gap is the drop to the appended zero: below
    the noise of noisy data every direction is tangent and the spectrum is flat, with a "gap" near 1 (a circle with
    noise 0.05 in R¹⁰ read dimension 10 and tangent error 0.22 at the smallest σ, chosen so; 1 and 0.07 at s/4).

    A row whose figure is not finite (NaN: a factor that overflowed at that bandwidth) is never chosen; where no
    row's is finite, the σ is `initial_sigma`'s, with a rule that says so (the run diverged: `exploded`).

    Returns:
        ``(sigma, rule, table)`` with one validation dict per grid value.
    """
    grid = sigma_grid(model)
    table = [validate(model, x, s, manifold) for s in grid]
    where = (", of the training range's ends and middle (no value s·2^(i−6) lies inside it)"
             if grid == fallback_grid(model.config.sigma_min, model.config.sigma_max) else "")
    key = "tangent_error" if manifold is not None else "mean_gap"
    finite = [r for r in table if is_number(r[key]) and math.isfinite(r[key])]
    if not finite:
        c = model.config
        sigma, rule = initial_sigma(float(model.scale), c.sigma_min, c.sigma_max)
        return sigma, f"{rule} (no bandwidth gave a finite validation {key})", table
    if manifold is not None:
        best = min(finite, key=lambda r: r["tangent_error"])
        return best["sigma"], "lowest validation tangent error" + where, table
    rows, among = _gap_candidates(finite, float(model.scale), min(model.rank, x[0].numel()))
    sigma, rule = clearest_gap(rows)
    return sigma, rule + among + where, table


GAP_TIE = 4e-3
"""Mean eigengaps (`validate`'s ``mean_gap``) within this of the clearest are a tie, which the eigengap rule of
`select_sigma` breaks towards the smallest σ: landing and flows pay the posterior mean's offset ``dσ²/(2R)``
(SPEC §6), and the gap, the rule's own measure, does not tell the tied σ apart. Measured (s32) on the
``sigma_table`` of 29 models (circles, spheres, tori and Swiss rolls, clean and noisy, trained in fp32 and bf16;
400 held-out points for 2,000): the gap difference between two σ ≤ s/2 moves by 4.5e-4 (median) and 3.3e-3 (90th
percentile) from the held-out points to 1,000 fresh ones; the gaps of the best σ level lie within 1e-4 to 3.2e-3
of each other, with tangent errors on fresh points that differ by seed noise (S² seed 2: 0.9708 at s/16 and
0.9703 at s/8 in fp32, 0.9692 and 0.9697 in bf16, which chose s/8 and landed 4× farther off), and the next levels
lie 5e-3 to 0.35 below: the tie sits between the two."""


def clearest_gap(rows: list[dict]) -> tuple[float, str]:
    """The eigengap rule's choice among ``rows`` (validation dicts with ``sigma`` and a finite ``mean_gap``; not
    empty): the smallest σ whose mean gap is within `GAP_TIE` of the largest, and the words that say so, with the
    clearest gap and, where a smaller σ won the tie, its own gap and the clearest's σ."""
    best = max(rows, key=lambda r: r["mean_gap"])
    chosen = min((r for r in rows if r["mean_gap"] >= best["mean_gap"] - GAP_TIE), key=lambda r: r["sigma"])
    if chosen is best:
        return best["sigma"], f"clearest mean eigengap on held-out points ({best['mean_gap']:.4f})"
    return chosen["sigma"], (f"smallest bandwidth whose mean eigengap on held-out points is within {GAP_TIE:g} of "
                             f"the clearest ({chosen['mean_gap']:.4f} against {best['mean_gap']:.4f} at sigma="
                             f"{best['sigma']:.4g})")


def _gap_candidates(table: list[dict], scale: float, full: int) -> tuple[list[dict], str]:
    """The rows the eigengap rule compares (`select_sigma`) and the words that say which."""
    local = [r for r in table if r["sigma"] <= LOCAL_SIGMA * scale * (1 + SIGMA_RTOL)]
    rows, words = (local, [f"σ ≤ {LOCAL_SIGMA:g}·s"]) if local else (table, [])
    structured = [r for r in rows if r["median_dimension"] < full]
    if structured and len(structured) < len(rows):
        rows, words = structured, [*words, f"reading below the full dimension {full}"]
    return rows, (", among " + " and ".join(words) if words else "")


COLLAPSED_RECONSTRUCTION = 0.9
"""A VAE whose held-out reconstruction error is this fraction of the data's RMS radius or more decodes about the
data mean: its encoder collapsed (measured: 0.996 and 1.000 on the built-in circle and sphere, 0.007 on the same
circle in R¹⁰)."""


def distrust(validation: dict) -> list[str]:
    """Why a trained model's tangent spaces are not to be trusted, one sentence per failed check, from a training
    result's ``validation`` (the self-consistency check and the neighbour check; for a VAE, a reconstruction no
    better than the mean; empty when all pass or did not run). The ``train`` and ``train-vae`` commands and the
    demos print these as warnings and the demos' reports keep them.

    The self-consistency sentence names the limits it fails (`learned_manifold.diagnostics.consistency_reasons`,
    as ``ConsistencyReport.message`` does); a factor whose eigenvalues exploded (`exploded`) is a diverged run.
    A neighbour check without a verdict is a sentence too: the independent check could not judge the model, and
    says why (fewer than `MIN_REFERENCE` training points: 30 points of a sphere trained a useless model that passed
    its self-consistency check; or neighbours that never denoised better than a linear fit: a σ range far below the
    points' spacing trained a circle's linear span that passed it, tester E). A self-consistency check without a
    verdict (`consistency_verdict` ``None``: the factor reads the data's full dimension) is no sentence of its own:
    the neighbour check then judges the model, and where it gives no verdict either, its sentence says that nothing
    verified the model."""
    reasons = []
    check = validation.get("self_consistency")
    if isinstance(check, dict) and check.get("trusted", True) is not None and not check.get("trusted", True):
        reasons.append(f"the model does not agree with itself on its held-out points at sigma="
                       f"{_figure(check.get('sigma'))} ({'; '.join(consistency_reasons(check))}): its tangent "
                       f"spaces are not to be trusted")
    top = exploded(check)
    if top is not None:
        reasons.append(diverged_sentence(top))
    near = validation.get("neighbour_check")
    if isinstance(near, dict) and near.get("informative") is False:
        reasons.append(_no_verdict(near, check if isinstance(check, dict) else None))
    elif isinstance(near, dict) and near.get("trusted") is False:
        reasons.append(f"the model disagrees with an estimate from the training points' neighbours at sigma="
                       f"{_figure(near.get('sigma'))} ({neighbour_figures(near)}): its tangent spaces are "
                       f"not to be trusted")
    rel = validation.get("relative_reconstruction_error")  # a VAE's (`vae_trainer._validate`)
    if isinstance(rel, float) and rel >= COLLAPSED_RECONSTRUCTION:
        reasons.append(f"the VAE reconstructs held-out points barely better than the data mean (error {rel:.3g} of "
                       f"the data's RMS radius): its encoder has collapsed to the prior and its latent geometry "
                       f"means nothing; more steps, a wider network or a smaller latent dimension may help")
    return reasons


def _no_verdict(near: dict, check: dict | None = None) -> str:
    """The sentence of `distrust` for a neighbour check without a verdict (``informative`` False): too few reference
    points (`_too_few`), or neighbours that never denoised better than a linear fit; and what the self-consistency
    check (its summary ``check``, ``None`` where none ran) said: a verdict of its own, or none either (nothing
    verified the model)."""
    count = reference_count(near)
    verdict = consistency_verdict(check) if check is not None else False
    if check is None:
        also = "and no other check ran on it"
    elif verdict is None:
        also = f"and the self-consistency check gave none either ({no_verdict_reason(check)}): nothing verified it"
    elif verdict:
        also = "so only the model's agreement with itself vouches for it"
    else:
        also = "and the model does not agree with itself either"
    if _too_few(near):
        return (f"the neighbour check gave no verdict: {reference_shortage(near)}; so it could not judge the model, "
                f"{also}; with so few points its tangent spaces may mean little: train on more distinct points")
    points = f"{count:,} " if is_number(count) else ""
    return (f"the independent neighbour check could not judge the model (no verdict): the neighbours of the "
            f"{points}training points never denoised better than a linear fit at the model's bandwidths, {also}. "
            f"Either the sigma range lies below the points' spacing (the model then learns the data's linear span) "
            f"or far above it, at the data's scale and beyond (every bandwidth then averages over the whole data "
            f"set), or the points are not enough for the data's dimension (2,000 points of S⁸ in R⁶⁴ are), or the "
            f"data have no structure beyond their linear span (Gaussian-like data, where this note is expected)")


def diverged_sentence(top: float) -> str:
    """What `distrust` and ``info`` say of a run whose factor eigenvalues exploded (`exploded`; ``top`` may be
    ``nan`` or ``inf``)."""
    reach = f"reach {top:.3g}" if math.isfinite(top) else f"are not finite ({top})"
    return (f"training diverged: the factor's eigenvalues {reach} on held-out points, where those of a CDC "
            f"are about 1 (never above {EXPLODED_EIGENVALUE:.0e} at the trainer's bandwidths); the model is "
            f"meaningless: train again with a smaller --lr")


def reference_count(near: dict) -> object:
    """The reference points a stored neighbour check judged with: its distinct points where recorded (copies of the
    held-out points left out, ``distinct_reference_points``), else the trainer's ``reference_points`` (rows; older
    files), else ``None``. 30 distinct points repeated 100 times are 30 points, not 3,000 (tester E, s31)."""
    distinct = near.get("distinct_reference_points")
    return distinct if is_number(distinct) else near.get("reference_points")


def _too_few(near: dict) -> bool:
    """Whether a neighbour check without a verdict had too few reference points (`MIN_REFERENCE`): its stored
    `reference_count` (the trainer's record), else an empty denoising table (no bandwidth was tried)."""
    count = reference_count(near)
    if is_number(count):
        return count < MIN_REFERENCE
    return near.get("denoising") == []


def _figure(value) -> str:
    return f"{value:.4g}" if is_number(value) else "unknown"
