"""UNet training speed (issue 14, item 3): memory format and ``torch.compile``, side by side, on the CPU or a GPU.

For each image size (the ``small`` preset at 8×8, as in scikit-learn's digits, and at 28×28, as in MNIST), one
training step of the trainer's own objective (`learned_manifold_training.objective.TrainingObjective`: the mean-centred
recipe, denoiser and factor every step, with the trainer's default ``shared_trunk`` and ``factor_trunk_grad``),
gradient clipping and AdamW, in four settings timed in interleaved rounds (`time_interleaved`):

- eager, contiguous (NCHW) weights and activations: what the UNet does today;
- eager, channels-last (NHWC): weights converted with ``model.to(memory_format=torch.channels_last)``, so
  every convolution (and the activations it produces) runs channels-last;
- ``torch.compile`` of the objective (as the trainer's ``compile=True`` does), NCHW and NHWC.

A compile that fails is recorded with its error instead of stopping the run; its first call (compilation) is
reported apart. Attention: `learned_manifold.unet._Attention` calls ``scaled_dot_product_attention``; below
`FUSED_ATTENTION_MIN_TOKENS` pixels (every preset) the math kernel runs, so double backward and forward-mode
derivatives work.

Run: ``python -m benchmarks.unet_speed [--device cpu|cuda] [--quick] [--eager-only] [--threads N] [--batch B]
[--repeats R] [--out DIR]`` (writes ``unet_speed.json`` / ``unet_speed.md``; ``--quick``: 8×8 only, eager only,
nothing written; ``--eager-only``: no compiled settings).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence

import torch

from learned_manifold.models import MetricModel, ModelConfig
from learned_manifold.unet import unet_preset
from learned_manifold_training.losses import MetricMatchingLoss
from learned_manifold_training.objective import TrainingObjective
from learned_manifold_training.trainer import TrainConfig

from .common import (
    Table,
    compile_status,
    environment,
    fmt_num,
    fmt_time,
    make_parser,
    parse_args,
    time_interleaved,
    write_report,
)

__all__ = ["SETTINGS", "main", "make_step"]

SETTINGS = {  # name: (channels_last, compile)
    "eager, NCHW": (False, False),
    "eager, channels-last": (True, False),
    "compile, NCHW": (False, True),
    "compile, channels-last": (True, True),
}


def make_step(shape: tuple[int, int, int], batch: int, channels_last: bool, compile_: bool,
              seed: int = 0, device: torch.device | str = "cpu") -> Callable[[], float]:
    """One training step of the small-preset UNet on images ``shape`` ``(C, H, W)``: the trainer's objective
    (fp32), backward, clipping at 1.0, AdamW, on ``device``. Returns a callable that runs one step and returns its
    loss (reading it synchronises the device)."""
    preset = unet_preset("small")
    D = shape[0] * shape[1] * shape[2]
    device = torch.device(device)
    torch.manual_seed(seed)
    config = ModelConfig(data_shape=shape, rank=min(preset["rank"], D), arch="unet",
                         arch_kwargs=preset["arch_kwargs"], shared_trunk=TrainConfig().shared_trunk)
    model = MetricModel(config).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    objective = TrainingObjective(model, MetricMatchingLoss(), TrainConfig().factor_trunk_grad)
    runner = torch.compile(objective) if compile_ else objective
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, *shape, generator=g)
    sigma = torch.exp(torch.empty(batch).uniform_(-5.0, 1.0, generator=g))
    eps = torch.randn(batch, *shape, generator=g)
    z, sigma, eps = z.to(device), sigma.to(device), eps.to(device)

    def step() -> float:
        loss = runner(z, sigma, eps, True).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.detach().item()

    return step


def _measure(shape: tuple[int, int, int], batch: int, repeats: int, names: Sequence[str],
             device: torch.device) -> dict:
    steps, first, failed = {}, {}, {}
    for name in names:
        channels_last, compile_ = SETTINGS[name]
        try:
            step = make_step(shape, batch, channels_last, compile_, device=device)
            start = time.perf_counter()
            step()  # the first call compiles
            first[name] = time.perf_counter() - start
            steps[name] = step
        except Exception as err:  # noqa: BLE001 - a failed setting is a result, not a crash
            failed[name] = {"error": f"{type(err).__name__}: {err}"[:400],
                            "traceback_tail": traceback.format_exc().splitlines()[-4:]}
            print(name, "failed:", failed[name]["error"], flush=True)
    timings = time_interleaved(steps, device, warmup=1, repeats=repeats, budget_s=240.0)
    out = {}
    for name in names:
        if name in failed:
            out[name] = {"status": "failed", **failed[name]}
            continue
        t = timings[name]
        out[name] = {"status": "ok", "median_step_s": t.median, "samples_per_s": batch / t.median,
                     "steps_timed": len(t.times), "first_call_s": first[name]}
    base = out["eager, NCHW"].get("samples_per_s")
    for r in out.values():
        if r["status"] == "ok" and base:
            r["vs_eager_nchw"] = r["samples_per_s"] / base
    return out


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the comparison and write ``unet_speed.json`` / ``unet_speed.md``; returns the results."""
    parser = make_parser(__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64, help="images per step")
    parser.add_argument("--repeats", type=int, default=10, help="interleaved rounds")
    parser.add_argument("--eager-only", action="store_true", help="skip the compiled settings")
    args = parse_args(parser, argv)
    if args.batch < 1 or args.repeats < 1:
        parser.error("--batch and --repeats must be >= 1")
    sizes = [(1, 8, 8)] if args.quick else [(1, 8, 8), (1, 28, 28)]
    batch, repeats = (8, 2) if args.quick else (args.batch, args.repeats)
    names = [n for n, (_, compile_) in SETTINGS.items()
             if not ((args.quick or args.eager_only) and compile_)]  # quick: no compiling
    env = environment(args.device)
    results, tables = {}, []
    for shape in sizes:
        key = f"{shape[1]}x{shape[2]}"
        results[key] = _measure(shape, batch, repeats, names, args.device)
        print(key, results[key], flush=True)
        table = Table(f"small preset at {shape[1]}×{shape[2]} ({shape[0]} channel), batch {batch}: one training step "
                      f"(objective + backward + clip + AdamW), {repeats} interleaved rounds",
                      ["setting", "samples/s", "vs eager NCHW", "median step", "first call (compiles)", "status"])
        for name, r in results[key].items():
            ok = r["status"] == "ok"
            table.add(name, fmt_num(r.get("samples_per_s")) if ok else "n/a",
                      f"{fmt_num(r['vs_eager_nchw'])}×" if ok else "n/a", fmt_time(r.get("median_step_s")),
                      fmt_time(r.get("first_call_s")),
                      compile_status("ok", SETTINGS[name][1]) if ok else f"failed: {r['error'][:160]}")
        tables.append(table)
        _write(args, env, batch, repeats, results, tables, done=shape == sizes[-1])
    return results


def _write(args, env: dict, batch: int, repeats: int, results: dict, tables: list, done: bool) -> None:
    """Write ``unet_speed.json`` / ``.md`` after every image size, so a run stopped at its time cap keeps the sizes
    it finished (``done``: the last size)."""
    settings = {"model": "UNet, preset small (rank 16, channels 32, multipliers (1, 2), mid attention), fp32",
                "recipe": f"mean-centred, shared_trunk={TrainConfig().shared_trunk}, factor_trunk_grad="
                          f"{TrainConfig().factor_trunk_grad} (the trainer's defaults)",
                "batch": batch, "rounds": repeats, "threads": torch.get_num_threads(), "quick": args.quick,
                "progress": "complete" if done else "partial: written after every image size, the run is going on "
                                                    "or was stopped"}
    notes = ["samples/s = batch / median step time over interleaved rounds (each setting once per round).",
             "channels-last: the model's 4-D weights in torch.channels_last; convolutions then produce "
             "channels-last activations (PyTorch follows the weight's or the input's memory format).",
             "compile: torch.compile of the objective, as TrainConfig(compile=True) does; its first call includes "
             "the compilation."]
    write_report(args.out, "unet_speed", title="UNet training speed: memory format and compile",
                 env=env, settings=settings, tables=tables, results=results, notes=notes)


if __name__ == "__main__":
    main()
