"""What a model file's metadata says about using it: which format versions this library reads, and the cautions
`load_model` warns about (`ModelFileWarning`) and ``learned-manifold info`` prints: a mid-run checkpoint, and a
default bandwidth chosen by a σ rule that has since been replaced (SPEC §8)."""

from __future__ import annotations

import os
import re
import warnings

__all__ = ["LOCAL_SIGMA", "ModelFileWarning", "incomplete_note", "stale_sigma_note", "version_problem",
           "warn_cautions"]

LOCAL_SIGMA = 0.5
"""Today's default-σ rule keeps to ``σ ≤ LOCAL_SIGMA · s`` where the training range holds such a bandwidth
(the one value: `learned_manifold_training.validation` imports it from here, as the library does not import the
training package)."""

_OLD_RULE = "clearest mean eigengap"  # the eigengap rule's words; from db6152c on it adds ", among σ ≤ 0.5·s"


class ModelFileWarning(UserWarning):
    """A model file that loads but is to be used with care: a checkpoint of an unfinished training run, or a
    default bandwidth chosen by a σ rule since replaced (`incomplete_note`, `stale_sigma_note`).

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

    limit, tol = LOCAL_SIGMA * scale, 1 + 1e-6
    local = [g for g in bandwidth_grid(scale) if lo / tol <= g <= min(hi, limit) * tol]
    if sigma <= limit * tol or not local:
        return None
    return (f"has default sigma {sigma:.4g} ({sigma / scale:.3g} s, data scale s = {scale:.4g}), chosen by the "
            f"eigengap rule of versions before the sigma <= s/2 rule: today's rule would choose at most "
            f"{limit:.4g} here, and above s/2 the spectra read the data's global spread, not its tangent spaces. "
            f"Choose a bandwidth at or below it with LearnedDataManifold(path, sigma=...) or LearnedCDC(path, "
            f"sigma=...) (`learned-manifold info MODEL --data DATA` checks the model on data), or train again")


def warn_cautions(path: os.PathLike | str, config: dict, extra: dict, scale: float, *, default_sigma: bool,
                  stacklevel: int) -> None:
    """One `ModelFileWarning` per caution of the file at ``path`` (`incomplete_note`; `stale_sigma_note` only
    where the caller uses the file's default σ, ``default_sigma``), each naming the file."""
    notes = [incomplete_note(extra), stale_sigma_note(config, scale) if default_sigma else None]
    for note in notes:
        if note is not None:
            warnings.warn(f"{os.fspath(path)!r} {note}", ModelFileWarning, stacklevel=stacklevel + 1)
