"""The words of a self-consistency verdict (`learned_manifold.diagnostics`): the failed limits a check names, the
verdict a stored `ConsistencyReport.summary` holds read with today's rules, and why a check gave no verdict. The
trainer's warnings (``learned_manifold_training.validation``), ``learned-manifold info`` and `load_model`'s
cautions (`learned_manifold.model_file_notes`) read stored summaries through these, so that they agree."""

from __future__ import annotations

from typing import TypeGuard

__all__ = ["consistency_reasons", "consistency_verdict", "is_number", "no_verdict_reason"]


def consistency_reasons(summary: dict) -> list[str]:
    """The failed limits of a self-consistency check, each with its figure and limit, from its `summary`
    (`ConsistencyReport.message`, and the trainer's warnings from the summary a model file stores; limits absent
    from older files: the current ones). The failed limits are the summary's ``failed`` (the unrounded figures of
    the verdict's own comparison, `ConsistencyReport.failed`), each printed with the digits that show it past its
    limit; a summary without ``failed`` (older files): its rounded figures compared with the limits. A line with
    the figures alone where none fails."""
    # (imported here: diagnostics imports this module)
    from .diagnostics import DIMENSION_AGREEMENT, GROWTH_THRESHOLD, OUTSIDE_THRESHOLD, TRUST_THRESHOLD

    threshold = summary.get("threshold", TRUST_THRESHOLD)
    growth_limit = summary.get("growth_threshold", GROWTH_THRESHOLD)
    tangent, growth = summary.get("tangent_disagreement"), summary.get("normal_growth")
    agreement, outside = summary.get("dimension_agreement"), summary.get("outside_eigenvalue")
    failed = summary.get("failed")
    if not isinstance(failed, dict):
        failed = {name: value for name, value, fails in [
            ("tangent_disagreement", tangent, is_number(tangent) and tangent > threshold),
            ("dimension_agreement", agreement, is_number(agreement) and agreement < DIMENSION_AGREEMENT),
            ("normal_growth", growth, is_number(growth) and growth > growth_limit),
            ("outside_eigenvalue", outside, is_number(outside) and outside > OUTSIDE_THRESHOLD)] if fails}
    rank = summary.get("factor_rank")
    why = []
    if is_number(value := failed.get("tangent_disagreement")):
        why.append(f"factor and denoiser disagree on the tangent spaces: disagreement {_past(value, threshold)} "
                   f"(limit {threshold:g}), dimensions {summary.get('factor_dimension')} and "
                   f"{summary.get('denoiser_dimension')}")
    if is_number(value := failed.get("dimension_agreement")):
        why.append(f"factor and denoiser read the same dimension at only "
                   f"{_past(value, DIMENSION_AGREEMENT, percent=True)} of points (limit {DIMENSION_AGREEMENT:.0%})")
    if is_number(value := failed.get("normal_growth")):
        why.append(f"a normal eigenvalue grows as sigma shrinks (growth {_past(value, growth_limit)}, limit "
                   f"{growth_limit:g}): the networks do not resolve the data at this scale, or the data are noisy "
                   "at it (off-manifold noise makes the normal eigenvalue grow as sigma falls towards the noise; "
                   "then a larger sigma shows the manifold and this check cannot tell the two apart)")
    if is_number(value := failed.get("outside_eigenvalue")):
        why.append(f"the denoiser keeps a direction outside the factor's {f'rank-{rank} ' if rank else ''}range "
                   f"(outside eigenvalue {_past(value, OUTSIDE_THRESHOLD)}, limit {OUTSIDE_THRESHOLD:g}): the rank "
                   "is too small for what the denoiser sees (train with a larger --rank), or both keep a normal "
                   "they should shrink")
    return why or [f"not trusted (tangent disagreement {tangent}, dimension agreement {agreement}, normal growth "
                   f"{growth}, outside eigenvalue {outside})"]


def consistency_verdict(summary: dict, dimension: int | None = None) -> bool | None:
    """The verdict of a stored self-consistency `ConsistencyReport.summary` read with today's rules, the one reading
    of the trainer's warnings, ``info`` and loading: ``False`` where it was not trusted or its outside eigenvalue
    exceeds today's `OUTSIDE_THRESHOLD` (files before the tenth session used 0.5); ``None`` (no verdict) where the
    check was not informative: its ``informative`` key, or in older files without it a median ``factor_dimension``
    of at least the data dimension (the summary's ``data_dimension``, else ``dimension``, else unknown: informative);
    else the stored ``trusted``."""
    from .diagnostics import OUTSIDE_THRESHOLD  # here: diagnostics imports this module

    outside, stored = summary.get("outside_eigenvalue"), summary.get("trusted")
    if stored is False or (is_number(outside) and outside > OUTSIDE_THRESHOLD):
        return False
    informative = summary.get("informative")
    if not isinstance(informative, bool):
        full, read = summary.get("data_dimension", dimension), summary.get("factor_dimension")
        informative = not (is_number(full) and is_number(read) and read >= full)
    return stored if informative else None


def no_verdict_reason(summary: dict) -> str:
    """Why a self-consistency check gave no verdict (`consistency_verdict` ``None``), from its summary."""
    full = summary.get("data_dimension") or summary.get("factor_dimension")
    return (f"the factor reads the data's full dimension {full} at most points, so the model has no normal direction "
            f"and its two networks have nothing to disagree on (normal eigenvalue, growth and outside eigenvalue are "
            f"0 by construction): an under-trained model, a sigma range off the data's spacing, or data with no "
            f"lower-dimensional structure all read so")


def is_number(value: object) -> TypeGuard[float]:
    """Whether a figure read from a stored summary or a model file's metadata (JSON) is a number: an ``int`` or a
    ``float`` (NaN and infinities included), not a ``bool`` (which Python counts as an ``int``), a string or ``None``.
    The one test of the library's and the trainer's readers of stored figures."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _past(value: float, limit: float, percent: bool = False) -> str:
    """``value`` with 3 significant digits (``percent``: as a whole percentage), more where fewer would print it
    equal to ``limit`` (0.10003 against 0.1 prints ``0.10003``, not ``0.1``); NaN prints ``nan``."""
    for digits in range(3, 18):
        text = f"{value:.{digits - 3}%}" if percent else f"{value:.{digits}g}"
        shown = float(text.rstrip("%")) / (100 if percent else 1)
        if shown != limit:
            return text
    return text
