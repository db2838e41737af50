"""What a model file's metadata says about using it: which format versions this library reads, and the cautions
`load_model` warns about (`ModelFileWarning`) and ``learned-manifold info`` prints: a mid-run checkpoint, a
default bandwidth chosen by a σ rule that has since been replaced (SPEC §8), and a model its training checks did
not trust or could not verify (`untrusted_note`)."""

from __future__ import annotations

import math
import os
import re

from .consistency_text import is_number
from .shell_command import shell_command
from .user_warnings import warn_user

__all__ = ["EXPLODED_EIGENVALUE", "LOCAL_SIGMA", "SIGMA_RTOL", "ModelFileWarning", "exploded", "incomplete_note",
           "stale_sigma_note", "untrusted_note", "version_problem", "warn_cautions"]

LOCAL_SIGMA = 0.5
"""Today's default-σ rule keeps to ``σ ≤ LOCAL_SIGMA · s`` where the training range holds such a bandwidth
(the one value: `learned_manifold_training.validation` imports it from here, as the library does not import the
training package)."""

SIGMA_RTOL = 1e-6
"""Relative slack of every comparison of a bandwidth with a limit, so that a σ computed in another order or
precision than its limit is not judged past it: the training range (`LearnedCDC` warns outside
``[σ_min (1 − SIGMA_RTOL), σ_max (1 + SIGMA_RTOL)]``, and the trainer's validation grid, which chooses the default σ,
keeps inside that same range) and ``σ ≤ LOCAL_SIGMA · s`` (the trainer's choice, and `stale_sigma_note` here).
The one value: `LearnedCDC` and the trainer read it from here."""

_OLD_RULE = "clearest mean eigengap"  # the eigengap rule's words; from db6152c on it adds ", among σ ≤ 0.5·s"


class ModelFileWarning(UserWarning):
    """A model file that loads but is to be used with care: a checkpoint of an unfinished training run, a
    default bandwidth chosen by a σ rule since replaced, or a model its training checks did not trust or could not
    verify (`incomplete_note`, `stale_sigma_note`, `untrusted_note`).

    Example:
        >>> import os, tempfile, warnings
        >>> from learned_manifold import MetricModel, ModelConfig, ModelFileWarning, load_model, save_model
        >>> model = MetricModel(ModelConfig(data_shape=(3,), rank=2, arch_kwargs={"hidden": 16, "depth": 1}))
        >>> extra = {"complete": False, "step": 250, "total_steps": 600}  # what a running `train` writes
        >>> path = save_model(model, os.path.join(tempfile.mkdtemp(), "m.lmm"), extra=extra)
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     _ = load_model(path)
        >>> [issubclass(w.category, ModelFileWarning) and "step 250 of 600" in str(w.message) for w in caught]
        [True]
    """


def version_problem(found: object, current: str, kind: str) -> str | None:
    """``None`` where a file of format ``found`` can be read by a reader of format ``current`` (versions ``"1"``
    to ``current``), else the problem, as the rest of `ModelFileError`'s message after the file's name: a newer
    version says so (``"written by a newer version of learned-manifold (format N; this one reads up to M)"``)."""
    if not (isinstance(found, str) and re.fullmatch(r"[1-9][0-9]{0,8}", found)):  # "²".isdigit() is true
        return f"has {kind} format version {found!r:.40}; this library reads versions 1 to {current}"
    if int(found) <= int(current):
        return None
    return (f"was written by a newer version of learned-manifold ({kind} format {int(found)}; this one reads up "
            f"to {current}): upgrade learned-manifold to read it")


def incomplete_note(extra: dict) -> str | None:
    """Why a file marked ``"complete": false`` (a checkpoint written while ``train`` ran, or left by an
    interrupted run) is not a trained model; ``None`` for a finished run or a file that does not say."""
    if extra.get("complete") is not False:
        return None
    step, total = extra.get("step", "unknown"), extra.get("total_steps", "unknown")
    return (f"is a checkpoint of an unfinished training run (step {step} of {total}): a run that was interrupted "
            f"or is still writing it; its networks may be barely trained (the factor starts after the denoiser's "
            f"warm-up). Finish the run with `learned-manifold train ... --resume` (train(..., resume=True)) "
            f"before relying on its geometry")


def stale_sigma_note(config: dict, scale: float) -> str | None:
    """Why a file's ``default_sigma`` (data units) is not the one today's rule would choose: it was chosen by the
    eigengap rule of versions before the ``σ ≤ s/2`` rule (its ``sigma_rule`` lacks the ``"σ ≤"`` words), lies
    above ``LOCAL_SIGMA · s`` (``s = scale``, SPEC §1), and the training range held a bandwidth of the
    evaluation grid ``s · 2^(i−6)`` at or below it (where it holds none, today's rule also chooses above it).
    ``None`` otherwise. (A noisy half-sphere in R¹⁰: tangent error 1.08 at an old default 2 s, 0.13 at s/8.)"""
    rule, sigma = config.get("sigma_rule"), config.get("default_sigma")
    lo, hi = config.get("sigma_min"), config.get("sigma_max")
    if not (isinstance(rule, str) and rule.startswith(_OLD_RULE) and "σ ≤" not in rule):
        return None
    if not all(isinstance(v, (int, float)) for v in (sigma, lo, hi)):
        return None
    from .evaluation import bandwidth_grid  # here: evaluation imports the metrics, which import this module

    limit, tol = LOCAL_SIGMA * scale, 1 + SIGMA_RTOL
    local = [g for g in bandwidth_grid(scale) if lo / tol <= g <= min(hi, limit) * tol]
    if sigma <= limit * tol or not local:
        return None
    return (f"has default sigma {sigma:.4g} ({sigma / scale:.3g} s, data scale s = {scale:.4g}), chosen by the "
            f"eigengap rule of versions before the sigma <= s/2 rule: today's rule would choose at most "
            f"{limit:.4g} here, and above s/2 the spectra read the data's global spread, not its tangent spaces. "
            f"Choose a bandwidth at or below it with LearnedDataManifold(path, sigma=...) or LearnedCDC(path, "
            f"sigma=...) (`learned-manifold info MODEL --data DATA` checks the model on data), or train again")


EXPLODED_EIGENVALUE = 1e6
"""A factor eigenvalue (mean over held-out points, the self-consistency check's ``factor_top_eigenvalues``) above
which the run diverged. ``Γᶜ_σ = Cov[x | y]/σ²`` (SPEC §1) is about 1 or below at data points, and even a posterior
spread over the whole data set (radius a few ``s``) gives at most ``(3s/σ)² ≈ 4·10⁴`` at the smallest grid σ,
``s/64``; a run at ``--lr 0.5`` on a circle reached 2.6·10¹² and was advised to "train longer" (tester E). The
trainer's `learned_manifold_training.validation` reads it from here, as `exploded`."""


def exploded(check: object) -> float | None:
    """The largest factor eigenvalue of a stored self-consistency summary where it exceeds `EXPLODED_EIGENVALUE`
    (a diverged run), else ``None``: the one rule the trainer's verdict (`learned_manifold_training.validation`)
    and `untrusted_note` at load apply.

    A value that is not finite (NaN or ±inf: a factor that overflowed) is a divergence too, whatever its place in
    the list: the result is then ``nan`` where any value is NaN, else ``inf`` (Python's ``max`` with a NaN depends on
    the order, and ``[nan, 2.6e12]`` was once not called diverged).
    """
    values = check.get("factor_top_eigenvalues") if isinstance(check, dict) else None
    if not isinstance(values, list) or not values or not all(is_number(v) for v in values):
        return None
    if any(math.isnan(v) for v in values):
        return math.nan
    if any(math.isinf(v) for v in values):
        return math.inf
    top = max(values)
    return float(top) if top > EXPLODED_EIGENVALUE else None


def untrusted_note(path: os.PathLike | str, extra: dict, dimension: int | None = None) -> str | None:
    """Why the checks at the end of the model's training did not trust it, in a few words (the first of the reasons
    `learned_manifold_training.validation.distrust` gives from the same stored ``extra["validation"]``, and the
    verdict ``learned-manifold info`` prints), pointing to ``learned-manifold info`` for the figures; ``None`` for
    a model the checks trusted or a file that holds no verdict (written by `save_model` without one, or before the
    checks). The reasons, in `distrust`'s order: the self-consistency check failed
    (`diagnostics.consistency_verdict` false: ``trusted`` false, or an ``outside_eigenvalue`` above today's limit,
    as ``info`` re-reads older files), the factor's eigenvalues exploded (above `EXPLODED_EIGENVALUE`, or not finite
    at any place: training diverged), the neighbour check distrusted the model (``trusted`` false).

    Where neither check gave a verdict (self-consistency not informative: the factor reads the data's full
    ``dimension`` ``D``, from the model's config, at most points; neighbour check ``informative`` false), nothing
    verified the model, and the note says so: a S² model trained at a σ range below the points' spacing read
    dimension 3 (tangent error 1.1), stored "trusted", loaded silently and gave geodesics through the sphere,
    reported converged (tester B, s31). A neighbour check without a verdict beside a self-consistency verdict is no
    distrust: the trainer said so when it ran, and loading stays silent on it. A spiral model the neighbour check
    distrusted gave a geodesic straight across the gap between two turns, reported converged (tester C, s30)."""
    from .diagnostics import consistency_verdict  # here: diagnostics imports the metrics, which import this module

    validation = extra.get("validation")
    if not isinstance(validation, dict):
        return None
    reasons = []
    check = validation.get("self_consistency")
    verdict = consistency_verdict(check, dimension) if isinstance(check, dict) else True
    if verdict is False:
        reasons.append("its factor and denoiser disagree (self-consistency check)")
    if isinstance(check, dict):
        worst = exploded(check)
        if worst is not None:
            reasons.append(f"training diverged (factor eigenvalues up to {worst:.3g})" if math.isfinite(worst)
                           else f"training diverged (factor eigenvalues not finite: {worst})")
    near = validation.get("neighbour_check")
    if isinstance(near, dict) and near.get("informative") is not False and near.get("trusted") is False:
        reasons.append("it disagrees with an estimate from the training points' neighbours (neighbour check)")
    hint = shell_command(["learned-manifold", "info", os.fspath(path)])
    if not reasons and verdict is None and isinstance(near, dict) and near.get("informative") is False:
        full = check.get("data_dimension") or dimension or "?"
        return (f"could not be verified by the checks at the end of its training: neither gave a verdict, so "
                f"nothing verified it (its factor reads the data's full dimension {full}, leaving the "
                f"self-consistency check nothing to compare, and the neighbour check could not judge it); its "
                f"tangent spaces, dimensions and geodesics may be wrong (an under-trained model, or a sigma range off "
                f"the data's spacing), or the data have no lower-dimensional structure. `{hint}` says more")
    if not reasons:
        return None
    more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
    return (f"was not trusted by the checks at the end of its training: {reasons[0]}{more}; its tangent spaces, "
            f"dimensions and geodesics may be wrong. `{hint}` says why")


def warn_cautions(path: os.PathLike | str, config: dict, extra: dict, scale: float, *, default_sigma: bool) -> None:
    """One `ModelFileWarning` per caution of the file at ``path`` (`incomplete_note`; `stale_sigma_note` only
    where the caller uses the file's default σ, ``default_sigma``; `untrusted_note`), each naming the file and
    pointing at the user's line (`user_warnings.warn_user`)."""
    shape = config.get("data_shape")
    dimension = math.prod(shape) if isinstance(shape, (list, tuple)) and all(is_number(n) for n in shape) else None
    notes = [incomplete_note(extra), stale_sigma_note(config, scale) if default_sigma else None,
             untrusted_note(path, extra, dimension)]
    for note in notes:
        if note is not None:
            warn_user(f"{os.fspath(path)!r} {note}", ModelFileWarning)
