"""``learned-manifold info MODEL [--data DATA] [--json]``: a model file's summary, read from its metadata alone
(`learned_manifold.model_file.read_metadata`: nothing is built or run), and with ``--data`` the two checks without
ground truth (`learned_manifold.diagnostics.self_consistency`, `learned_manifold.neighbour_check`)."""

from __future__ import annotations

import argparse
import json
import os
import warnings
from pathlib import Path

import torch
from torch import Tensor

from learned_manifold.consistency_text import is_number
from learned_manifold.diagnostics import consistency_verdict, no_verdict_reason
from learned_manifold.model_file_notes import ModelFileWarning, stale_sigma_note
from learned_manifold.neighbour_check import MIN_REFERENCE, neighbour_figures

from .validation import diverged_sentence, exploded, reference_count

try:
    import fcntl
except ImportError:  # pragma: no cover (not POSIX: no run locks to see)
    fcntl = None

__all__ = ["CHECK_POINTS", "run_info"]


def _number(value, fmt: str = "{:.4g}") -> str:
    """A stored number formatted with ``fmt``; ``"unknown"`` for None; a value of another type (a file written by
    other code) shown as stored (`_raw`), never formatted as a number."""
    if value is None:
        return "unknown"
    if isinstance(value, float):
        value += 0.0  # -0.0 (a rounded tiny negative) reads "0", not "-0"
    return fmt.format(value) if is_number(value) else _raw(value)


def _raw(value, limit: int = 60) -> str:
    """A metadata value of an unexpected type as stored (``repr``, cut to ``limit`` characters)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _at(sigma) -> str:
    return f" at sigma {sigma:.4g}" if isinstance(sigma, (int, float)) else ""


def _factor_rate(c: dict, guards: dict, warm) -> str:
    """``"; its rate ramped up over X of the steps to S x lr"``, naming only what applied (``""`` if nothing): the
    ramp where the factor started after the denoiser's warm-up with weights of its own (the file's
    ``ramp_steps``; files before it: centred, no shared trunk, a warm-up), the scale where it has its own weights."""
    ramp, scale = guards.get("factor_ramp"), guards.get("factor_lr_scale")
    if "ramp_steps" in guards:
        ramps = bool(guards["ramp_steps"])
    else:
        fraction = warm.get("denoiser_warmup") if isinstance(warm, dict) else None
        ramps = bool(c.get("centred", True) and not c.get("shared_trunk")
                     and isinstance(fraction, (int, float)) and fraction > 0)
    text = f"; its rate ramped up over {ramp:.0%} of the steps" if ramps and isinstance(ramp, float) and ramp else ""
    if guards.get("lr_scale_applies", not c.get("shared_trunk")) and isinstance(scale, float) and scale != 1:
        text += f" to {scale:g} x lr" if text else f"; its rate {scale:g} x lr"
    return text


FAR_FROM_DATA = 3.0
"""``info --data`` says its points lie far from the training data where their median distance from the training
mean, or their spread about their own mean, exceeds this many data scales ``s`` (SPEC §1: the training points'
RMS distance from their mean is ``s``, so at least half of them lie within ``√2 s``)."""


def _lock_holder(path: str) -> str | None:
    """The pid a run writing ``path`` recorded in its held ``path.lock`` (`outputs.OutputLock`; ``"unknown"`` if
    unreadable), or ``None`` where no run holds the lock (no lock file, or one left unlocked by a killed run)."""
    from .outputs import lock_path

    if fcntl is None:  # pragma: no cover
        return None
    try:
        fd = os.open(lock_path(Path(path)), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # released when the file is closed below
        return None
    except BlockingIOError:
        return os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
    except OSError:
        return None
    finally:
        os.close(fd)


def _bandwidth(c: dict, units: dict | None) -> list[str]:
    """The bandwidth line (data units, and units of the data scale ``s`` where known, as the ``--sigma-*`` flags
    take them) and, for a default σ chosen by a replaced rule, a caution (`stale_sigma_note`)."""
    s = units.get("scale") if isinstance(units, dict) else None
    sigma, lo, hi = c.get("default_sigma"), c.get("sigma_min"), c.get("sigma_max")
    numbers = isinstance(s, (int, float)) and all(isinstance(v, (int, float)) for v in (sigma, lo, hi))
    in_s = f" = {sigma / s:.3g} s" if numbers else ""
    range_s = f" (data units; {lo / s:.3g}-{hi / s:.3g} s, s = {s:.4g} the data scale)" if numbers else ""
    lines = [f"  bandwidth:   default sigma {_number(sigma)}{in_s} ({c.get('sigma_rule')}); trained on "
             f"[{_number(lo)}, {_number(hi)}]{range_s} ({c.get('sampler')})"]
    note = stale_sigma_note(c, s) if numbers else None
    if note:
        lines.append(f"  CAUTION:     the model {note}")
    return lines


def _summary(path: str, meta: dict, writer: str | None = None) -> str:
    """A readable summary of a model file's metadata (what ``info`` prints without ``--json``); ``writer``: the
    pid of a run holding the file's lock (`_lock_holder`), if any."""
    c, e = meta["config"], meta["extra"]
    step, total = e.get("step"), e.get("total_steps")
    if writer is not None:
        status = (f"{'INCOMPLETE' if e.get('complete') is False else 'being rewritten'} (step {step} of {total}): "
                  f"a training run (pid {writer}) is writing it now and holds its lock; wait for that run to "
                  f"finish (or stop it, then continue with `learned-manifold train ... --resume`)")
    elif e.get("complete") is False:
        status = f"INCOMPLETE (step {step} of {total}): continue its training with `learned-manifold train ... " \
                 f"--resume`"
    elif e.get("complete") is True:
        status = f"complete (step {step} of {total})"
    else:
        status = "unknown (written by an older version)"
    shape = tuple(c["data_shape"])
    D = 1
    for n in shape:
        D *= n
    arch = ", ".join(f"{k} {v}" for k, v in c.get("arch_kwargs", {}).items())
    own = c.get("denoiser_arch_kwargs") or {}
    denoiser = "with denoiser" + (f" ({', '.join(f'{k} {v}' for k, v in own.items())})"
                                  if isinstance(own, dict) and own else "")
    centring = "uncentred" if not c.get("centred") else (
        f"mean-centred ({'denoiser head on a shared trunk' if c.get('shared_trunk') else denoiser})")
    lines = [
        f"{path}: learned-manifold model, {status}",
        f"  data:        shape {shape} (D = {D}), {_number(e.get('num_points'), '{:,}')} training points"
        + (f" ({_number(e['num_train_points'], '{:,}')} fitted, {_number(e['num_val_points'], '{:,}')} held out)"
           if "num_train_points" in e and "num_val_points" in e else ""),
        f"  model:       rank {c['rank']}, {c.get('arch', '?')} ({arch}), "
        f"{centring}, loss {c.get('loss')}, "
        f"tikhonov {c.get('tikhonov')}",
        *_bandwidth(c, meta.get("standardisation")),
        f"  training:    {_number(step, '{:,}')} of {_number(total, '{:,}')} steps, "
        f"{_number(e.get('training_seconds'), '{:.1f}')} s, precision {_precision(e)}, "
        f"seed {e.get('seed', 'unknown')}",
        f"  library:     learned-manifold {e.get('library_version', 'unknown')}",
    ]
    units = meta.get("standardisation")
    if isinstance(units, dict):
        lines.insert(2, f"  units:       points are taken and returned in the data's own units: x = mean + "
                        f"{units['scale']:.4g} z (mean {'image' if len(shape) > 1 else 'point'} values in "
                        f"[{units['mean_min']:.4g}, {units['mean_max']:.4g}], average {units['mean_average']:.4g})")
    if c.get("landmarks"):
        many = not is_number(c["landmarks"]) or c["landmarks"] >= 2
        what = "geodesics start through them" if many else "too few for a graph: geodesics start by landing"
        lines.insert(3, f"  landmarks:   {_number(c['landmarks'], '{:,}')} training points stored ({what})")
    scaling = e.get("input_scaling")
    if isinstance(scaling, dict) and "chosen" in scaling:
        span = (f", linear span {scaling['span_dimension']} of {scaling['dim']} dimensions"
                if "span_dimension" in scaling and "dim" in scaling else "")
        lines.insert(3, f"  input:       {scaling['chosen']} ({scaling.get('rule', '')}{span})")
    norm = e.get("norm_feature")
    if isinstance(norm, dict) and "chosen" in norm:
        value = norm.get("norm_spread")
        spread = f", spread {value:.3g}" if isinstance(value, (int, float)) else ""
        lines.insert(4, f"  norm input:  {'on' if norm['chosen'] else 'off'} ({norm.get('rule', '')}{spread})")
    warm = e.get("denoiser_warmup")
    if isinstance(warm, dict) and isinstance(warm.get("denoiser_warmup"), (int, float)) and c.get("centred", True):
        lines.insert(3, f"  warm-up:     the denoiser alone for the first {warm['denoiser_warmup']:.0%} of the steps "
                        f"({warm.get('rule', '')})")
    width, guards = e.get("factor_width"), e.get("factor_guards")
    rate = _factor_rate(c, guards if isinstance(guards, dict) else {}, warm)
    estimated = isinstance(e.get("rank_choice"), dict) and "estimated_dimension" in e["rank_choice"]
    if (isinstance(width, dict) and str(width.get("rule", "")).startswith("auto") and estimated
            and isinstance(width.get("factor_hidden"), int)):  # (no estimate, D <= 16: the rule never applied)
        lines.insert(3, f"  width:       factor network {width['factor_hidden']} ({width['rule']}){rate}")
    elif rate:
        lines.insert(3, f"  factor:      {rate[2:]}")
    why_rank = e.get("rank_choice")
    if isinstance(why_rank, dict) and "estimated_dimension" in why_rank:
        lines.insert(3, f"  rank:        {why_rank.get('chosen')} (estimated data dimension "
                        f"{why_rank['estimated_dimension']}; {why_rank.get('rule', '')})")
    scalars = {k: v for k, v in e.get("validation", {}).items() if isinstance(v, (int, float))}
    if scalars:
        # (the tangent error is measured on the held-out points its sigma was chosen on: `validation.validate`)
        lines.append("  validation:  " + ", ".join(
            f"{k} {v:.4g}" + (" (on the points sigma was chosen on: slightly optimistic)" if k == "tangent_error"
                              else "") for k, v in scalars.items()))
    check = e.get("validation", {}).get("self_consistency")
    if isinstance(check, dict):
        # the stored verdict read with today's rules (outside limit, no verdict at the full dimension D)
        trusted = consistency_verdict(check, D)
        old = trusted and not is_number(check.get("outside_eigenvalue"))  # from before the outside-eigenvalue check
        verdict = ("NOT FULLY CHECKED: passed the older checks" if old else "no verdict" if trusted is None
                   else "trusted" if trusted else "NOT TRUSTED")
        after = ("; its check predates today's (no outside eigenvalue): rerun it with `info MODEL --data DATA`" if old
                 else f"; {no_verdict_reason({**check, 'data_dimension': D})}" if trusted is None
                 else "; `info MODEL --data DATA` for details")
        lines.append(f"  consistency: {verdict} on held-out points"
                     f"{_at(check.get('sigma'))} (tangent disagreement {_number(check.get('tangent_disagreement'))}, "
                     f"normal growth {_number(check.get('normal_growth'))}, outside eigenvalue "
                     f"{_number(check.get('outside_eigenvalue'))}{after})")
        top = exploded(check)
        if top is not None:
            lines.append(f"  diverged:    {diverged_sentence(top)}")
    refit = e.get("validation", {}).get("factor_refit")
    if isinstance(refit, dict) and refit.get("ran"):
        where = (f"{_at(refit['sigma'])}, the bandwidth chosen before the repair" if "sigma" in refit
                 else " at the bandwidth chosen before the repair")
        failed = refit.get("failed")  # (files before the twenty-fifth session: not stored)
        failed = f"{'; '.join(map(str, failed))}; " if isinstance(failed, list) and failed else ""
        lines.append(f"  repair:      the factor was refitted to the denoiser for {refit.get('steps')} steps after "
                     f"failing the check ({failed}tangent disagreement {_number(refit.get('disagreement_before'))} -> "
                     f"{_number(refit.get('disagreement_after'))}{where}; "
                     f"{'kept' if refit.get('kept') else 'not kept: the old factor stands'})")
    guard = e.get("validation", {}).get("factor_clip")
    if isinstance(guard, dict) and guard.get("clipped_steps"):
        lines.append(f"  guard:       the factor's gradient was cut on {guard.get('clipped_steps')} steps (to "
                     f"{_number(guard.get('ratio'))} x its running norm; largest excess "
                     f"{_number(guard.get('largest_ratio'))} x)")
    near = e.get("validation", {}).get("neighbour_check")
    if isinstance(near, dict):
        if not near.get("informative"):
            count = reference_count(near)  # distinct points where stored (files before it: none stored)
            if isinstance(count, int) and count >= MIN_REFERENCE:
                lines.append(f"  neighbours:  no verdict: this independent check could not judge the model (the "
                             f"neighbours of {count:,} training points never denoised better than a linear fit: a "
                             f"sigma range below their spacing or far above it, at the data's scale, or data with "
                             f"no structure beyond their linear span)")
            else:
                lines.append("  neighbours:  no verdict (too few training points for a neighbour estimate"
                             + (f": {count:,}, fewer than {MIN_REFERENCE}" if isinstance(count, int) else "") + ")")
        else:
            lines.append(f"  neighbours:  {'trusted' if near.get('trusted') else 'NOT TRUSTED'} at sigma "
                         f"{_number(near.get('sigma'))} ({neighbour_figures(near)})")
    return "\n".join(lines)


def _precision(extra: dict) -> str:
    """The training's precision as ``info`` prints it: the one used and, where the default ``"auto"`` chose it, the
    timing probe's figures (``extra["precision_probe"]``, `learned_manifold.precision.choose_precision`'s record):
    ``bf16 (auto: the probe measured bf16 1.88x / 1.71x as fast as fp32)``, its reason where it has no figures."""
    chosen = extra.get("precision", "unknown")
    chosen = chosen if isinstance(chosen, str) else _raw(chosen)
    probe = extra.get("precision_probe")
    if not isinstance(probe, dict) or probe.get("setting") != "auto":
        return chosen
    speed = probe.get("speedup")
    if isinstance(speed, list) and speed and all(is_number(v) for v in speed):
        earlier = " earlier in the training process" if probe.get("source") == "cache" else ""
        return (f"{chosen} (auto: the probe{earlier} measured bf16 {' / '.join(f'{v:.2f}x' for v in speed)} as fast "
                f"as fp32)")
    reason = probe.get("reason")
    return f"{chosen} (auto: {reason})" if isinstance(reason, str) and reason else f"{chosen} (auto)"


def _checked_summary(path: str, meta: dict, writer: str | None) -> str:
    """`_summary`, or one ValueError naming the file where its extra metadata (written by other code: `save_model`
    takes any JSON) holds a field the summary cannot show."""
    try:
        return _summary(path, meta, writer)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
        raise ValueError(f"{path!r}: its metadata holds a field of an unexpected type or shape that the summary "
                         f"cannot show ({type(err).__name__}: {err}); `learned-manifold info --json` prints the "
                         "metadata whole") from None


CHECK_POINTS = 500
"""``info --data`` checks the model on up to this many points of ``--data`` where ``--num-points`` is not given."""


def _checked_options(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with ``num_points`` resolved (`CHECK_POINTS` where not given); before any file is read, a
    `ValueError` naming the flag for ``--num-points`` below 1, or ``--num-points`` or ``--layout`` (but its default,
    ``auto``) without ``--data``, on whose points alone they act."""
    if args.num_points is not None and args.num_points < 1:
        raise ValueError(f"--num-points must be >= 1, got {args.num_points}")
    if args.data is None:
        given = [flag for flag, on in (("--num-points", args.num_points is not None),
                                       ("--layout", args.layout != "auto")) if on]
        if given:
            raise ValueError(f"{' and '.join(given)} {'acts' if len(given) == 1 else 'act'} on the points of --data "
                             f"only (the checks of the model there), and no --data was given: add --data DATA, or "
                             f"leave {'it' if len(given) == 1 else 'them'} out")
    num_points = CHECK_POINTS if args.num_points is None else args.num_points
    return argparse.Namespace(**{**vars(args), "num_points": num_points})


def run_info(args: argparse.Namespace) -> int:
    """The ``info`` command: print the summary (or the metadata as JSON with ``--json``); returns 0. Its options
    are checked first (`_checked_options`)."""
    from learned_manifold.model_file import read_metadata

    args = _checked_options(args)
    meta = read_metadata(args.model)  # refuses (ModelFileError, a ValueError) every file load_model refuses
    meta["extra"].get("validation", {}).pop("sigma_table", None)
    report = near = placement = None
    writer = _lock_holder(args.model)
    if writer is not None:
        meta["writer_pid"] = writer
    seen = False
    if args.data is not None:
        seed, seen = _held_out_seed(args, meta["extra"].get("seed"))
        report, near, placement = _consistency(args, seed)
        meta["data_placement"] = placement
        if seen:
            meta["data_placement"]["training_points"] = True
        if report is not None:
            meta["self_consistency"] = report.summary()
        meta["neighbour_check"] = near.summary()
    print(json.dumps(meta, indent=2) if args.json else _checked_summary(args.model, meta, writer))
    if placement is not None and placement["far"] and not args.json:
        print(_far_message(args.data, placement))
    if seen and not args.json:
        print(f"NOTE: --data {args.data} is the built-in set the model was trained on, and it is the same points "
              f"for every seed: the checks below run on training points, not held-out ones")
    if near is not None and not args.json:
        if report is not None:
            s = report.summary()
            print(f"  spectra:     factor {s['factor_top_eigenvalues']}\n"
                  f"               denoiser {s['denoiser_top_eigenvalues']}")
            print(report.message())
            top = exploded(s)
            if top is not None:
                print(f"WARNING: {diverged_sentence(top)}")
        print(near.message())
        for line in _stored_verdicts(meta["extra"].get("validation", {}), report, near, args.model):
            print(line)
    return 0


def _stored_verdicts(validation: dict, report, near, path: str) -> list[str]:
    """What ``info --data`` adds where its own rerun of a check gives no verdict but the check at the end of
    training gave one (stored in the file's ``validation``): that verdict, so that a failure seen there is not
    hidden by a rerun on too few points (a swiss-roll model the neighbour check distrusted on 2,500 training
    points printed only "no verdict" on 300 held-out ones, tester D, s31)."""
    lines = []
    stored = validation.get("self_consistency") if isinstance(validation, dict) else None
    if report is not None and report.trusted is None and isinstance(stored, dict):
        verdict = consistency_verdict(stored, report.dimension)
        if verdict is not None:
            lines.append(f"  at training: self-consistency {'trusted' if verdict else 'NOT TRUSTED'} on the held-out "
                         f"points{_at(stored.get('sigma'))} (`learned-manifold info {path}`)")
    stored = validation.get("neighbour_check") if isinstance(validation, dict) else None
    if not near.informative and isinstance(stored, dict) and stored.get("informative"):
        count = stored.get("reference_points")
        on = f" against {count:,} training points" if isinstance(count, int) else ""
        lines.append(f"  at training: neighbour check {'trusted' if stored.get('trusted') else 'NOT TRUSTED'}{on} "
                     f"at sigma {_number(stored.get('sigma'))} ({neighbour_figures(stored)})")
    return lines


def _held_out_seed(args: argparse.Namespace, trained_seed) -> tuple[int, bool]:
    """``(seed, training_points)``: the seed ``--data`` is drawn with, and whether its points are the training set.

    A file is read whole (the seed draws nothing: 1). A built-in name is drawn with the model's training seed + 1
    (``trained_seed``, the file's ``extra["seed"]``; 0 where unknown), so that ``train circle --seed 1`` is not
    checked on its own training points; ``training_points`` is True where that draw is the training seed's all
    the same (``digits``: all 1,797 images for every seed)."""
    from .cli_data import read_data

    if Path(args.data).exists():
        return 1, False
    own = trained_seed if isinstance(trained_seed, int) and not isinstance(trained_seed, bool) else 0
    seed = own + 1
    return seed, bool(torch.equal(read_data(args, args.data, seed=seed).x, read_data(args, args.data, seed=own).x))


def _checked_rows(args: argparse.Namespace, data_shape: tuple[int, ...], dim: int,
                  seed: int = 1) -> tuple[Tensor, Tensor]:
    """``(x, reference)``: the points checked, float32 ``(n, *data_shape)`` with ``n = min(--num-points, N // 2)``,
    and up to ``min(20,000, 2²⁴ / D)`` (at least 2) others, float32 ``(m, *data_shape)``, all drawn from one seeded
    permutation of the N rows of ``--data`` (a built-in name drawn with ``seed``, `_held_out_seed`).

    A ``.npy`` file is memory-mapped and only those rows are read (`open_npy`): memory stays near the subset's
    size, not ~3x the file's (a float32 copy and a finiteness mask of every row), and the rows are the same.
    Only the rows read are checked for NaN/inf. Any other source is read whole (`read_data`)."""
    from .cli_data import mapped_npy, read_data
    from .data import as_model_points

    source = mapped_npy(args)
    if source is None:
        data = as_model_points(read_data(args, args.data, seed=seed).x, data_shape, "--data")
        n = data.shape[0]
    else:
        as_model_points(torch.empty(0, *source.shape[1:]), data_shape, "--data")  # the shape, before any read
        n = len(source)
    if n < 3:
        raise ValueError(f"--data needs at least 3 points (held-out points and neighbours), got {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    n_check = min(args.num_points, n // 2)
    keep, rest = order[:n_check], order[n_check:]
    rest = rest[: max(2, min(20_000, 2**24 // dim))]
    if source is None:
        return data[keep].float(), data[rest].float()
    picked = torch.cat([keep, rest])
    rows = source.rows(picked)  # float32, read in file order
    bad = ~torch.isfinite(rows.reshape(rows.shape[0], -1)).all(-1)
    if bool(bad.any()):
        first = int(picked[bad].min())
        raise ValueError(f"{source.label}: contains non-finite values (NaN or inf) in {int(bad.sum())} of the "
                         f"{rows.shape[0]} rows read for the check; the first bad row is index {first}")
    rows = as_model_points(rows, data_shape, "--data")
    return rows[:n_check], rows[n_check:]


def _consistency(args: argparse.Namespace, seed: int = 1):
    """The checks of ``args.model`` on up to ``--num-points`` of ``--data`` (a built-in drawn with ``seed``):
    `self_consistency` (``None`` for an uncentred model, which has no denoiser) and `neighbour_check` against the
    rest of the data (`_checked_rows`)."""
    from learned_manifold import load_model
    from learned_manifold.diagnostics import self_consistency
    from learned_manifold.neighbour_check import neighbour_check

    from .trainer import sigma_grid

    with warnings.catch_warnings():  # the summary states the file's cautions already
        warnings.simplefilter("ignore", ModelFileWarning)
        model = load_model(args.model)
    x, reference = _checked_rows(args, tuple(model.data_shape), model.dim, seed)
    placement = _placement(model, torch.cat([x, reference]))
    report = self_consistency(model, x) if model.has_denoiser else None
    return report, neighbour_check(model, x, reference, sigma_grid(model)), placement


def _placement(model, rows: Tensor) -> dict:
    """Where the ``--data`` rows ``(n, *data_shape)`` lie against the training data the model recorded (its mean
    ``μ`` and scale ``s``, SPEC §1): their median distance from ``μ`` and their RMS spread about their own mean,
    both in units of ``s``, and ``far`` where either exceeds `FAR_FROM_DATA`."""
    flat = rows.reshape(rows.shape[0], -1).double()
    s = float(model.scale)
    distance = float((flat - model.mean.reshape(1, -1).double()).norm(dim=1).median()) / s
    spread = float((flat - flat.mean(0)).pow(2).sum(1).mean().sqrt()) / s
    return {"median_distance_in_s": distance, "spread_in_s": spread, "scale": s,
            "far": distance > FAR_FROM_DATA or spread > FAR_FROM_DATA}


def _far_message(source: str, placement: dict) -> str:
    """What ``info --data`` says, before the checks, of points far from the training data (`_placement`)."""
    distance, spread = placement["median_distance_in_s"], placement["spread_in_s"]
    return (f"WARNING: --data {source}: its points lie far from the data the model was trained on: median distance "
            f"{distance:.3g} s from the training mean and spread {spread:.3g} s (s = {placement['scale']:.4g}, the "
            f"training data's scale; its own points lie about 1 s from their mean). "
            f"Are they in other units, or another data set? The checks below judge the model where it never saw "
            f"data: their verdicts and advice say nothing about its training")
