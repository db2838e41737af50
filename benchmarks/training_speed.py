"""The timed trainings of `benchmarks.training`: one short `train` run timed by a global optimiser-step hook
(steady and overall samples/s, or the error text of a failed or timed-out setting), and the steady rate of a plain
uncentred metric-matching step of the same factor network, against which the recipes are priced."""

from __future__ import annotations

import contextlib
import math
import signal
import time
import traceback
from collections.abc import Iterator, Sequence

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from learned_manifold.models import MetricModel, ModelConfig
from learned_manifold_training.losses import MetricMatchingLoss
from learned_manifold_training.schedule import fused_adamw
from learned_manifold_training.trainer import TrainConfig, standardisation, train

from .common import optimizer_settings, synchronize

__all__: list[str] = []  # the timed runs are private helpers of `benchmarks.training`, which imports them


class _StepClock:
    """Stamps the wall time after chosen optimiser steps (synchronising CUDA only at those steps)."""

    def __init__(self, device: torch.device, marks: Sequence[int]):
        self.device, self.marks = device, set(marks)
        self.count, self.stamps = 0, {}

    def __call__(self, optimizer, args, kwargs) -> None:
        self.count += 1
        if self.count in self.marks:
            synchronize(self.device)
            self.stamps[self.count] = time.perf_counter()


@contextlib.contextmanager
def _time_limit(seconds: int) -> Iterator[dict]:
    """Raise ``TimeoutError`` in the main thread after ``seconds`` (SIGALRM; Unix only, else no limit).

    Yields a dict whose ``"expired"`` turns ``True`` when the limit fired (libraries may re-wrap the error).
    """
    state = {"expired": False}
    if not seconds or not hasattr(signal, "SIGALRM"):
        yield state
        return

    def expire(signum, frame):
        state["expired"] = True
        raise TimeoutError(f"did not finish within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield state
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _run(data: torch.Tensor, cfg: dict, device: torch.device, precision: str, compile_: bool,
         recipe: dict | None = None) -> dict:
    """One short training (``recipe``: `TrainConfig` overrides, ``None`` for the trainer's defaults); returns
    the steady-state and overall samples/s, or the error text."""
    warm, measured = cfg["warmup_steps"], cfg["measured_steps"]
    shared = {"denoiser_warmup": 0.0, **(recipe or {})}
    if shared.get("denoiser_hidden") == "half":
        shared["denoiser_hidden"] = max(1, cfg["arch"]["hidden"] // 2)
    steps = warm + measured  # a denoiser warm-up recipe runs long enough for the factor to start after the clock
    if shared.get("freeze_denoiser"):  # one denoiser step, then the factor's phase, which the clock times
        shared["denoiser_warmup"] = 1.5 / steps
    elif shared["denoiser_warmup"]:
        steps = max(steps, math.ceil((warm + measured + 1) / shared["denoiser_warmup"]))
    config = TrainConfig(steps=steps, batch_size=cfg["batch"], rank=16, val_points=200, precision=precision,
                         compile=compile_, **shared, **cfg["arch"])
    optimizer = optimizer_settings(config)  # the report's settings line, read from the config that runs
    clock = _StepClock(device, marks=(1, warm, warm + measured))
    handle = register_optimizer_step_post_hook(clock)
    start = time.perf_counter()
    limit = cfg["compile_limit_s"] if compile_ else 0
    with _time_limit(limit) as state:
        try:
            result = train(data, config, progress=False, device=device)
        except Exception as err:  # noqa: BLE001 - a failed setting is a result, not a crash
            timed_out = state["expired"]
            return {"status": f"timed out after {limit} s" if timed_out else "failed",
                    "error": f"{type(err).__name__}: {err}", "optimizer": optimizer,
                    "traceback_tail": traceback.format_exc().splitlines()[-6:],
                    "steps_done": clock.count, "elapsed_s": time.perf_counter() - start}
        finally:
            handle.remove()
    steady = cfg["batch"] * measured / (clock.stamps[warm + measured] - clock.stamps[warm])
    return {
        "status": "ok",
        "steady_samples_per_s": steady,
        "overall_samples_per_s": result.samples_per_second,
        "first_step_s": clock.stamps[1] - start,
        "loop_seconds": result.seconds,
        "final_loss": result.history[-1]["loss"] if result.history else None,
        "precision": result.precision,
        "precision_probe": result.precision_probe,
        "model_config": {"data_shape": list(result.model.config.data_shape), "rank": result.model.config.rank,
                         "arch": result.model.config.arch, "arch_kwargs": result.model.config.arch_kwargs},
        "shared_trunk": result.model.config.shared_trunk,
        "optimizer": optimizer,
    }


def _plain_rate(data: torch.Tensor, cfg: dict, device: torch.device, network: dict) -> float:
    """Steady samples/s of a plain uncentred step of the factor network ``network`` (a `ModelConfig`'s
    data_shape/rank/arch/arch_kwargs): ``a = ε``, low-rank loss, AdamW; no denoiser, EMA, clipping or schedule."""
    scale, mean = standardisation(data)
    z_all = ((data - mean) / scale).to(device)
    config = ModelConfig(data_shape=tuple(network["data_shape"]), rank=network["rank"], arch=network["arch"],
                         arch_kwargs=dict(network["arch_kwargs"]), centred=False)
    with torch.random.fork_rng(devices=[]):  # the CPU generator alone (`torch.manual_seed` reseeds CUDA's too)
        torch.default_generator.manual_seed(0)
        model = MetricModel(config, scale=scale, mean=mean).to(device)
    loss_fn = MetricMatchingLoss("lowrank", 0.0, centred=False)
    params = list(model.parameters())  # the trainer's AdamW kernel (fused where torch has one): recipes and the
    opt = torch.optim.AdamW(params, lr=1e-3, fused=fused_adamw(params, device))  # plain step compare like for like
    g = torch.Generator(device=device).manual_seed(0)
    lo, hi = math.log(3e-3), math.log(4.0)  # the default log-uniform σ range, in units of the data scale
    batch = cfg["batch"]

    def step() -> None:
        idx = torch.randint(z_all.shape[0], (batch,), generator=g, device=device)
        sigma_z = torch.empty(batch, device=device).uniform_(lo, hi, generator=g).exp()
        eps = torch.randn(batch, *z_all.shape[1:], generator=g, device=device)
        loss = loss_fn(model, z_all[idx], sigma_z, eps).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(cfg["warmup_steps"]):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(cfg["measured_steps"]):
        step()
    synchronize(device)
    return batch * cfg["measured_steps"] / (time.perf_counter() - start)
