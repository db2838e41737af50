"""Training speed: steady-state samples per second of `training.trainer.train` per precision/compile setting.

Each setting runs a short training on S⁸ in R⁶⁴ (10,000 points, mean-centred recipe: denoiser and factor
network both trained at every step). A global optimiser-step hook stamps the time after the warm-up steps
and after the measured steps, so the steady-state rate excludes start-up and ``torch.compile`` warm-up; the
trainer's own overall rate (which includes them) is reported beside it.

Settings: fp32; bf16 autocast (CUDA only: the trainer enables autocast on CUDA alone, so CPU is n/a);
``torch.compile`` (fp32, and with bf16 on CUDA). A compile that fails, or does not finish within a time limit,
is recorded with its error text instead of stopping the run. On CUDA the trainer already uses fused AdamW.

Run: ``python -m benchmarks.training --device cpu|cuda [--quick] [--out DIR]``.
"""

from __future__ import annotations

import contextlib
import signal
import time
import traceback
from collections.abc import Iterator, Sequence

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from training.trainer import TrainConfig, train

from .common import (
    PAPER_NET,
    Table,
    environment,
    fmt_num,
    fmt_time,
    make_parser,
    parse_args,
    sphere_points,
    synchronize,
    write_report,
)

__all__ = ["main", "settings_for"]

N_POINTS = 10_000


def settings_for(device: torch.device, quick: bool) -> dict:
    """Network, batch, step counts and the compile time limit for ``device`` (``quick``: a smoke test)."""
    if quick:
        return {"arch": {"hidden": 64, "depth": 1, "emb_dim": 32}, "batch": 128, "warmup_steps": 3,
                "measured_steps": 10, "compile_limit_s": 20}
    if device.type == "cuda":
        return {"arch": PAPER_NET, "batch": 1024, "warmup_steps": 20, "measured_steps": 200,
                "compile_limit_s": 600}
    return {"arch": {"hidden": 256, "depth": 3, "emb_dim": 128}, "batch": 512, "warmup_steps": 10,
            "measured_steps": 60, "compile_limit_s": 360}


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


def _run(data: torch.Tensor, cfg: dict, device: torch.device, precision: str, compile_: bool) -> dict:
    """One short training; returns the steady-state and overall samples/s, or the error text."""
    warm, measured = cfg["warmup_steps"], cfg["measured_steps"]
    config = TrainConfig(steps=warm + measured, batch_size=cfg["batch"], rank=16, denoiser_warmup=0.0,
                         val_points=200, precision=precision, compile=compile_, **cfg["arch"])
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
                    "error": f"{type(err).__name__}: {err}",
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
    }


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark and write ``training.json`` / ``training.md``; returns the results."""
    args = parse_args(make_parser(__doc__.splitlines()[0]), argv)
    device, cfg = args.device, settings_for(args.device, args.quick)
    env = environment(device)
    cuda = device.type == "cuda"
    data = sphere_points(N_POINTS, torch.device("cpu"), seed=0)

    plan = [("fp32", "fp32", False), ("bf16 autocast", "bf16", False), ("torch.compile fp32", "fp32", True)]
    if cuda:
        plan.append(("torch.compile + bf16", "bf16", True))
    results = {}
    for name, precision, compile_ in plan:
        if precision == "bf16" and not cuda:
            results[name] = {"status": "n/a", "error": "bf16 autocast is CUDA-only in the trainer"}
        else:
            results[name] = _run(data, cfg, device, precision, compile_)
        print(name, results[name], flush=True)

    base = results["fp32"].get("steady_samples_per_s")
    table = Table(f"Training samples/s, batch {cfg['batch']}, {cfg['measured_steps']} measured steps after "
                  f"{cfg['warmup_steps']} warm-up steps", ["setting", "steady samples/s", "vs fp32",
                                                         "overall samples/s (incl. warm-up)", "first step", "status"])
    for name, r in results.items():
        steady = r.get("steady_samples_per_s")
        speedup = f"{fmt_num(steady / base)}×" if steady and base else "n/a"
        status = r["status"] if r["status"] == "ok" else f"{r['status']}: {r['error'][:160]}"
        table.add(name, fmt_num(steady), speedup, fmt_num(r.get("overall_samples_per_s")),
                  fmt_time(r.get("first_step_s")), status)
    settings = {
        "data": f"S⁸ in R⁶⁴ (sphere8), {N_POINTS:,} points",
        "network": f"FiLMResMLP {cfg['arch']}, rank 16, mean-centred (denoiser + factor every step)",
        "batch": cfg["batch"],
        "steps": f"{cfg['warmup_steps']} warm-up + {cfg['measured_steps']} measured",
        "optimizer": "AdamW (fused on CUDA), grad clip 1.0, EMA 0.999 (the trainer's defaults)",
        "compile time limit": f"{cfg['compile_limit_s']} s",
        "quick": args.quick,
    }
    notes = [
        "Steady samples/s = batch × measured steps / wall time between the optimiser steps that close the warm-up "
        "and the measured steps (stamped by a global optimiser-step hook, CUDA synchronised at the stamps).",
        "Overall samples/s is TrainResult.samples_per_second: the whole loop, warm-up and compilation included.",
        "Settings run one after another, not interleaved: on a shared machine compare them with care.",
    ]
    _, md_path = write_report(args.out, "training", title="Training throughput (training.trainer.train)", env=env,
                              settings=settings, tables=[table], results=results, notes=notes)
    print(md_path.read_text())
    return results


if __name__ == "__main__":
    main()
