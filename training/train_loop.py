"""The training loop of `train` (`training/trainer.py`): the model, optimiser and schedules built for the data, the
steps (AdamW, clipping, warm-up + cosine decay, EMA, loss log, periodic validation, checkpoints, stop requests), and
the end phase (`training/end_phase.py`). `train` checks everything first and calls `run` under the output lock.

Randomness is keyed by ``(seed, step)`` (`_batch`): step ``k`` always sees the same global batch, on any number of
processes and after a resume. The loss log (``history``) holds, every 50 steps and at the last step, the mean loss
of the steps since the previous entry; the EMA follows the raw weights with the decay of `ema_decay`
(``ema ← ema + (1 − decay)(θ − ema)`` after every step).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch import Tensor, nn

from learned_manifold.model_file import ModelFileError, read_metadata
from learned_manifold.models import MetricModel, ModelConfig
from learned_manifold.precision import choose_precision, workload_key

from .batches import TrainingRows, same_fingerprint
from .clipping import RelativeClip, factor_parameters
from .config import TrainConfig
from .data.base import KnownManifold
from .data.stream import ArraySource
from .end_phase import END_PHASE_NOTICE, end_phase
from .input_choices import choose_by_dimension, choose_input_scaling, choose_norm_feature
from .loader_failures import DeferredChildSignals, read_at_boundary
from .losses import MetricMatchingLoss
from .objective import TrainingObjective, workload_name
from .outputs import Checkpointer, load_state
from .progress import Progress
from .refit import refit_factor
from .result import TrainResult, finished_result
from .resume import check_resume, recorded
from .runtime import (
    _F32,
    StepAutocast,
    StopRequest,
    TrainingInterrupted,
    check_health,
    check_source_resolution,
    stop_requested,
)
from .samplers import Sampler, make_sampler
from .schedule import ema_decay, factor_ramp_steps, optimiser
from .validation import initial_sigma, validate

__all__ = ["bandwidth_sampler", "run"]

_CHECK_EVERY = 10  # steps between divergence checks (one host sync each) and, under DDP, stop-flag syncs
_LOG_EVERY = 50  # steps between loss-log entries (and the last step)


def _batch(step: int, cfg: TrainConfig, n_data: int, shape: tuple[int, ...], sampler, scale: float,
           device: torch.device, rank: int, world: int) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """The global batch of step ``step`` (indices, σ_z, ε, and the Jacobian target's probes or ``None``), keyed
    by (seed, step); this rank's slice. The probes are drawn last, so other runs' batches do not change."""
    g = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + step)
    idx = torch.randint(n_data, (cfg.batch_size,), generator=g, device=device)
    sigma_z = sampler(cfg.batch_size, generator=g, device=device) / scale
    eps = torch.randn(cfg.batch_size, *shape, generator=g, device=device)
    probe = None
    if cfg.centred and cfg.factor_target == "jacobian":
        probes = [cfg.jacobian_probes] if cfg.jacobian_probes > 1 else []  # one probe: (B, *shape), as it always was
        probe = torch.randn(cfg.batch_size, *probes, *shape, generator=g, device=device)
    lo, hi = rank * cfg.batch_size // world, (rank + 1) * cfg.batch_size // world
    return idx[lo:hi], sigma_z[lo:hi], eps[lo:hi], None if probe is None else probe[lo:hi]


def _reference_points(rows: TrainingRows) -> Tensor:
    """Training points in data units, flat, for `neighbour_check`: up to 20,000, and at most ``2²⁴`` numbers
    (``2²⁴ / D`` points for large ``D``: 4,096 images of 64 × 64), a seeded subsample."""
    dim = math.prod(rows.shape)
    return rows.sample_rows(max(2, min(20_000, 2**24 // dim)))  # read as val_x is: copies stay bit-equal


def _data_units(rows: TrainingRows, z: Tensor) -> Tensor:
    """Standardised flat rows ``(n, D)`` back in data units, float32 on the CPU."""
    return (z.double() * rows.scale + rows.mean.reshape(1, -1).double().cpu()).float()


def bandwidth_sampler(cfg: TrainConfig, scale: float) -> Sampler:
    """The training σ sampler in data units. The config's σ settings are in units of the data scale ``s``
    (SPEC §1), so the range is multiplied by ``s`` and the log-normal's centre ``P_mean = −1.2`` moves by ``log s``.
    """
    shift = {"p_mean": -1.2 + math.log(scale)} if cfg.sampler == "lognormal" else {}
    return make_sampler(cfg.sampler, cfg.sigma_min * scale, cfg.sigma_max * scale, **shift)


def _denoiser_kwargs(cfg: TrainConfig) -> dict:
    """The denoiser's backbone arguments that differ from the factor's (`ModelConfig.denoiser_arch_kwargs`): its
    width, ``denoiser_hidden`` or ``hidden``, where the factor's (``factor_hidden``, resolved) differs. The MLP's
    only: `TrainConfig.model_spec` refuses both widths for the UNet."""
    if not cfg.centred or cfg.shared_trunk:  # no separate denoiser
        return {}
    width = cfg.denoiser_hidden or cfg.hidden
    return {} if width == (cfg.factor_hidden or cfg.hidden) else {"hidden": width}



def _previous_probe(out: Path) -> dict | None:
    """The precision probe recorded in the model file of a resumed run, or ``None`` where there is none: a run
    killed between the state's write and the model file's at its first checkpoint left the state only, and a
    damaged model file is rewritten from the state at the next checkpoint; either resumes all the same."""
    try:
        return read_metadata(out)["extra"].get("precision_probe") if Path(out).exists() else None
    except ModelFileError:
        return None



def run(rows: TrainingRows, data: Tensor | ArraySource, cfg: TrainConfig, manifold: KnownManifold | None,
        out: Path | None, resume: bool, device: torch.device, progress: bool, stop_after: int | None, rank_id: int,
        world: int, data_info: dict | None = None, refit: Callable = refit_factor) -> TrainResult:
    """The body of `train`, after every check and under the output lock: train on ``rows`` (``data`` split and
    standardised, `TrainingRows`) and return the `TrainResult`. ``refit`` is the end phase's factor repair
    (`refit_factor`; `train` passes its own name for it, so that a test can slow it)."""
    shape, scale, mean, val_x = rows.shape, rows.scale, rows.mean, rows.val_x
    # every source, on the statistics of all its training rows: a tensor's quick check saw only 4,096 of its rows
    check_source_resolution(data.label if isinstance(data, ArraySource) else "data", mean, scale,
                            rows.standardised_sample(4096))
    if not scale * cfg.sigma_max <= _F32.max or not scale * cfg.sigma_min >= _F32.tiny:
        raise ValueError(f"the bandwidth range [{cfg.sigma_min:g}, {cfg.sigma_max:g}] x data scale {scale:.3g} "
                         f"leaves float32's range: choose sigma_min and sigma_max within it, or rescale the data")
    arch, arch_kwargs, rank = cfg.model_spec(shape)  # under backbone "auto": the UNet for images, else the MLP
    # rank, warm-up, factor width and guards from the data's estimated dimension; the run and its state use them
    cfg, rank, why = choose_by_dimension(cfg, rows, arch, rank)
    if cfg.factor_hidden is not None:
        arch_kwargs = {**arch_kwargs, "hidden": cfg.factor_hidden}
    input_scaling, gaussian, span = choose_input_scaling(cfg, rows, arch)
    if arch == "film_mlp" and "final_norm" not in arch_kwargs:  # `TrainConfig.final_norm` None: by the input
        arch_kwargs = {**arch_kwargs, "final_norm": input_scaling != "gaussian"}
    norm_feature, norm_why = choose_norm_feature(cfg, rows, arch)
    if norm_feature:  # stored only when on: a file without it builds the network without it
        arch_kwargs = {**arch_kwargs, "norm_feature": True}
    default_sigma, sigma_rule = initial_sigma(scale, cfg.sigma_min * scale, cfg.sigma_max * scale)
    mcfg = ModelConfig(
        data_shape=shape, rank=rank, centred=cfg.centred, loss=cfg.loss, tikhonov=cfg.tikhonov,
        arch=arch, arch_kwargs=arch_kwargs,
        sampler=cfg.sampler, sigma_min=cfg.sigma_min * scale, sigma_max=cfg.sigma_max * scale,
        default_sigma=default_sigma, sigma_rule=sigma_rule, input_scaling=input_scaling,
        shared_trunk=cfg.shared_trunk and cfg.centred,
        gaussian_rank=gaussian[0].shape[1] if gaussian is not None else 0,
        landmarks=cfg.landmark_count(rows.n_train, math.prod(shape)),
        denoiser_arch_kwargs=_denoiser_kwargs(cfg),
    )
    # seeded initialisation (built on the CPU) without touching the caller's RNG: the CPU generator alone, as
    # `torch.manual_seed` would also reseed every CUDA generator, which `fork_rng(devices=[])` does not put back
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(cfg.seed)
        model = MetricModel(mcfg, scale=scale, mean=mean).to(device)
        ema = MetricModel(mcfg, scale=scale, mean=mean).to(device)
    if gaussian is not None:  # the data's Gaussian model (SPEC §4), before the first step
        model.set_gaussian_model(*gaussian)
    if mcfg.landmarks:
        model.set_landmarks(_data_units(rows, rows.standardised_sample(mcfg.landmarks)))
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    objective = TrainingObjective(model, MetricMatchingLoss(cfg.loss, cfg.tikhonov, cfg.centred),
                                  cfg.factor_trunk_grad, cfg.factor_target, cfg.factor_fraction,
                                  cfg.freeze_denoiser, cfg.jacobian_probes)
    params = [p for p in model.parameters() if p.requires_grad]
    factor_params = factor_parameters(model)  # the factor network's (a shared trunk's: all)
    guard = RelativeClip(factor_params, cfg.factor_clip, device)  # issue 12: the factor's blow-ups
    factor_from = int(cfg.denoiser_warmup * cfg.steps) if cfg.centred else 0
    opt, rates = optimiser(params, factor_params if model.trunk is None else [], cfg, factor_from, device)
    # what of the factor's guards applied (`info` prints it): its ramp only where it starts late with its own weights
    why["factor_guards"] = {**why["factor_guards"], "lr_scale_applies": model.trunk is None,
                            "ramp_steps": factor_ramp_steps(cfg, factor_from, model.trunk is None)}
    sched = torch.optim.lr_scheduler.LambdaLR(opt, rates)
    fingerprint = rows.fingerprint

    start, seconds_before, history = 0, 0.0, []
    if resume:
        try:
            state = load_state(out, device)  # one line for a missing or damaged state
        except ValueError:  # damaged, beside a finished model file: the file is the result, nothing to resume
            finished = finished_result(out, cfg, device, expect=(mcfg, rows.n))  # checked against the file
            if finished is None:
                raise
            return finished
        check_resume(out, state, cfg, shape)  # settings (legacy ones read as they ran), recipe version
        if (state.get("data_digest", rows.digest) != rows.digest  # states before the digest: the sums only
                or not same_fingerprint(state["fingerprint"], fingerprint)):
            raise ValueError(f"cannot resume {str(out)!r}: the data differ from the data it was trained on")
        for key in ("model", "ema"):  # a state written before landmarks existed: they are the same points
            if mcfg.landmarks:
                state[key].setdefault("landmarks", model.landmarks)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        if "factor_clip" in state:  # (states written before the guard ran without it: factor_clip 0)
            guard.load_state_dict(state["factor_clip"])
        start, seconds_before = int(state["step"]), float(state.get("seconds", 0.0))
        if stop_after is not None and stop_after < start:  # (the state was rewritten as step stop_after before)
            raise ValueError(f"cannot resume {str(out)!r} to stop_after={stop_after}: its run is already at step "
                             f"{start}")
        history = json.loads(state.get("history", "[]"))  # its loss log and `val_every` validations so far
        finished = finished_result(out, cfg, device) if start >= cfg.steps else None
        if finished is not None:  # the file is the result; its end phase is not redone
            return finished
        sched = torch.optim.lr_scheduler.LambdaLR(opt, rates, last_epoch=start - 1)

    sampler = bandwidth_sampler(cfg, scale)
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    first = _batch(start, cfg, rows.n_train, shape, sampler, scale, device, rank_id, world)  # "auto" probes it
    # read here, not through a loader: the run's own loader is opened once, at its first step (`step_rows`)
    first_z = rows.step_rows(start, first[0]) if cfg.precision == "auto" else None
    # "auto": a full step (denoiser + factor) timed in fp32 and bf16, eager, on rank 0 alone (the others take its
    # choice), before any DDP wrapping: a backward there would fire DDP's gradient hooks on one rank only
    precision, probe = choose_precision(
        cfg.precision, device, lambda: objective(first_z, *first[1:3], True, first[3]), backward=True,
        key=workload_key(workload_name(cfg), model.config, first[0].shape[0]), distributed=world > 1,
        previous=_previous_probe(out) if resume and rank_id == 0 else None)
    objective.zero_grad(set_to_none=True)  # the probe's gradients: step 0 starts from none, as on every rank
    runner: nn.Module = objective
    if world > 1:
        runner = nn.parallel.DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=cfg.centred and cfg.denoiser_warmup > 0)
    if cfg.compile:
        runner = torch.compile(runner)

    autocast = StepAutocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    ema_params = list(ema.parameters())
    model_params = list(model.parameters())
    is_main = rank_id == 0
    ckpt = None
    if is_main and out is not None:
        ckpt = Checkpointer(out, model, ema, opt, recorded(cfg), fingerprint, guard, digest=rows.digest,
                            saved_step=start if resume else None, history=history, info={
            "num_points": rows.n, "num_train_points": rows.n_train, "num_val_points": val_x.shape[0],
            "precision": precision, "precision_probe": probe, "input_scaling": span, "norm_feature": norm_why,
            **why,
            **({"data": data_info} if data_info else {})})
    bar = Progress(cfg.steps, start, progress and is_main, "train")  # plain lines where stderr is no terminal
    t0 = time.perf_counter()
    running, logged = torch.zeros((), device=device), start
    stop = StopRequest()
    children = DeferredChildSignals()  # a loader's SIGCHLD error at step boundaries only (`loader_failures.py`)
    def keep_done(done: int) -> None:  # the steps done, saved before a failed read's error (`read_at_boundary`)
        check_health(done, running, model_params)
        ckpt.save(done, seconds_before + time.perf_counter() - t0, complete=False)
    with stop, contextlib.closing(bar), children:
        for step in range(start, end):
            idx, sigma_z, eps, jac_probe = _batch(step, cfg, rows.n_train, shape, sampler, scale, device, rank_id,
                                                  world)
            z = read_at_boundary(partial(rows.rows, step, idx, end), children, step, cfg.steps, ckpt, keep_done)
            if cfg.freeze_denoiser and step == factor_from:  # freeze the denoiser at its average, not its last step
                with torch.no_grad():
                    torch._foreach_copy_(list(model.denoiser_net.parameters()), list(ema.denoiser_net.parameters()))
            with autocast:
                loss = runner(z, sigma_z, eps, step >= factor_from, jac_probe).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            guard()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            with torch.no_grad():
                torch._foreach_lerp_(ema_params, model_params, 1.0 - ema_decay(step, cfg.ema))
            running += loss.detach()
            done = step + 1
            checkpoint = ckpt is not None and cfg.checkpoint_every and done % cfg.checkpoint_every == 0
            if done % _CHECK_EVERY == 0 or done == end or checkpoint:
                check_health(done, running, model_params)  # never save, log or go on from non-finite weights
            if done % _LOG_EVERY == 0 or done == end:
                mean_loss = float(running) / (done - logged)  # the steps since the last entry
                running.zero_()
                logged = done
                rate = (done - start) * cfg.batch_size / (time.perf_counter() - t0)
                history.append({"step": done, "loss": mean_loss, "lr": sched.get_last_lr()[0]})
                bar.set_postfix(loss=f"{mean_loss:.4g}", samples_s=f"{rate:,.0f}")
            bar.update(1)
            if is_main and cfg.val_every and done % cfg.val_every == 0 and done > factor_from:
                if not history or history[-1]["step"] != done:  # the loss is logged every `_LOG_EVERY` steps only
                    history.append({"step": done})
                history[-1].update(validate(ema, val_x, ema.config.default_sigma, manifold))
            if stop_requested(stop, done, world, device, _CHECK_EVERY):
                check_health(done, running, model_params)
                if ckpt is not None:
                    ckpt.save(done, seconds_before + time.perf_counter() - t0, complete=False)
                raise TrainingInterrupted(done, cfg.steps, out)
            if checkpoint and done < end:
                ckpt.save(done, seconds_before + time.perf_counter() - t0, complete=False)
        children.release()
        seconds = time.perf_counter() - t0
        rate = (end - start) * cfg.batch_size / max(seconds, 1e-9)

        result = TrainResult(model=ema, path=out, validation={}, history=history, seconds=seconds,
                             samples_per_second=rate, stopped_at=end, precision=precision,
                             precision_probe=probe)
        if end < cfg.steps:  # interrupted on purpose: checkpoint and leave
            if ckpt is not None:
                ckpt.save(end, seconds_before + seconds, complete=False)
            return result
        # the end phase (bandwidth choice, factor repair, checks: minutes) starts from a saved, resumable state of
        # the last step; a first signal is acknowledged and the phase goes on, a second stops it (`end_phase.py`)
        if ckpt is not None and ckpt.saved_step != end:
            ckpt.save(end, seconds_before + seconds, complete=False)
        stop.finishing(END_PHASE_NOTICE, lambda: TrainingInterrupted(end, cfg.steps, out))
        result.validation = end_phase(ema, rows, cfg, manifold, guard, _reference_points(rows), autocast,
                                      batch=lambda s: _batch(s, cfg, rows.n_train, shape, sampler, scale, device,
                                                             rank_id, world),
                                      refit=refit)
        periodic = [h for h in history if "mean_gap" in h]  # `val_every`: kept in the file, printed by the CLI
        if periodic:
            result.validation["periodic"] = periodic
        if ckpt is not None:
            ckpt.save(end, seconds_before + seconds, complete=True, validation=result.validation)
    result.model = ema.eval()
    return result
