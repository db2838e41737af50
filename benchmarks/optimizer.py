"""Cost of one Riemannian optimiser step on `LearnedDataManifold` against a forward+backward of the network.

A step is what a user's loop does: ``zero_grad``, the forward and backward of the user objective
``f(x) = ½‖x − x*‖²`` (cheap, so the geometry dominates), then ``opt.step()``. Steps of `RiemannianSGD` (no
momentum) and `RiemannianAdam` are timed on the manifold with ``δ > 0`` (``R^D`` with ``(G + δI)^{-1}``, no
landing) and with ``δ = 0`` (the learned tangent bundle), next to one forward+backward of the CDC network on
the same batch: with frozen weights (gradient to the input only: what an objective through the network costs)
and with weight gradients (a training step's forward+backward).

Batch and ``D`` are swept with the SPEC §4 network at paper size (untrained), plus one large-``D`` case
(``D = 256·256·3``, a small stand-in network) that shows the memory of the geometry grows as ``O(D r)``, not
``O(D²)``. Peak memory is measured on CUDA; on CPU the large case reports the growth of the peak resident set
(``getrusage``; approximate).

Run: ``python -m benchmarks.optimizer --device cpu|cuda [--quick] [--out DIR]``.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor

from learned_manifold.manifold import LearnedDataManifold
from learned_manifold.models import MetricModel
from learned_manifold.optim import RiemannianAdam, RiemannianSGD

from .common import (
    PAPER_NET,
    Table,
    environment,
    fmt_bytes,
    fmt_num,
    fmt_time,
    make_model,
    make_parser,
    max_rss_bytes,
    parse_args,
    peak_memory,
    ratio,
    time_interleaved,
    write_report,
)

__all__ = ["main", "settings_for"]

RANK, SIGMA, DELTA, LR = 16, 0.1, 1e-2, 1e-3
LARGE_D = 256 * 256 * 3
LARGE_NET = {"hidden": 64, "depth": 1, "emb_dim": 64}
STEPS = ("SGD δ>0", "SGD δ=0", "Adam δ>0", "Adam δ=0")


def settings_for(device: torch.device, quick: bool) -> dict:
    """Dimensions, batches and repeats for ``device`` (``quick``: a smoke test)."""
    if quick:
        return {"dims": [64], "batches": [64], "arch": {"hidden": 256, "depth": 2, "emb_dim": 64}, "repeats": 3,
                "budget_s": 10.0, "large_d": 3 * 64 * 64, "large_batch": 4}
    batches = [512, 8192] if device.type == "cuda" else [64, 512]
    return {"dims": [64, 3072], "batches": batches, "arch": PAPER_NET, "repeats": 5, "budget_s": 150.0,
            "large_d": LARGE_D, "large_batch": 4}


@contextlib.contextmanager
def _trainable(model: MetricModel) -> Iterator[None]:
    """Temporarily give the (frozen) model weight gradients; drops them on exit."""
    model.requires_grad_(True)
    try:
        yield
    finally:
        model.requires_grad_(False)
        model.zero_grad(set_to_none=True)


def _forward_backward(model: MetricModel, x: Tensor) -> Callable[[], None]:
    """One forward of the factor network at ``x`` and a backward of ``‖A‖²`` (to whatever requires grad)."""

    def run() -> None:
        y = x.detach().requires_grad_(True)
        model.factor(y, SIGMA).square().sum().backward()

    return run


def _optimizer_step(name: str, model: MetricModel, x0: Tensor, target: Tensor) -> Callable[[], None]:
    """One user step (objective forward+backward, then ``opt.step()``) of optimiser ``name`` from `STEPS`."""
    manifold = LearnedDataManifold(model, sigma=SIGMA, delta=DELTA if "δ>0" in name else 0.0)
    point = x0.clone().requires_grad_(True)
    cls = RiemannianSGD if name.startswith("SGD") else RiemannianAdam
    opt = cls([point], manifold=manifold, lr=LR)

    def run() -> None:
        opt.zero_grad(set_to_none=True)
        loss = 0.5 * (point - target).square().sum()
        loss.backward()
        opt.step()

    return run


def _work(model: MetricModel, batch: int, device: torch.device) -> dict[str, Callable[[], None]]:
    """The timed calls on one random batch: forward, both forward+backwards and one step per name in `STEPS`."""
    dim = model.dim
    gen = torch.Generator(device="cpu").manual_seed(batch + dim)
    x0 = torch.randn(batch, dim, generator=gen).to(device)
    target = torch.randn(batch, dim, generator=gen).to(device)
    model.requires_grad_(False)

    def forward() -> None:
        with torch.no_grad():
            model.factor(x0, SIGMA)

    input_only = _forward_backward(model, x0)

    def with_weights() -> None:
        with _trainable(model):
            input_only()

    work: dict[str, Callable[[], None]] = {"forward": forward, "fwd+bwd (input)": input_only,
                                           "fwd+bwd (weights)": with_weights}
    for name in STEPS:
        work[name] = _optimizer_step(name, model, x0, target)
    return work


def _measure(work: dict[str, Callable[[], None]], device: torch.device, repeats: int, budget_s: float) -> dict:
    """Time the calls in rounds; on CUDA also the peak memory of each."""
    timings = time_interleaved(work, device, warmup=1, repeats=repeats, budget_s=budget_s)
    return {name: {**timings[name].to_dict(), "memory": peak_memory(fn, device)} for name, fn in work.items()}


def _large_case(cfg: dict, device: torch.device) -> dict:
    """Large ``D``: factor bytes vs dense bytes, times, and CUDA peak memory or CPU peak-RSS growth.

    On CPU the peak RSS is read after building the model, after one call of everything that needs no weight
    gradients (the steps and the input-only forward+backward), and after the weight-gradient baseline, whose
    gradient buffers (as large as the weights) would otherwise hide the steps' own footprint.
    """
    dim, batch = cfg["large_d"], cfg["large_batch"]
    gc.collect()
    rss_start = max_rss_bytes()
    model = make_model(dim, RANK, LARGE_NET, device)
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    gc.collect()
    rss_model = max_rss_bytes()
    work = _work(model, batch, device)
    for name in ("forward", "fwd+bwd (input)", *STEPS):
        work[name]()
    rss_steps = max_rss_bytes()
    times = _measure(work, device, repeats=3, budget_s=cfg["budget_s"])
    rss_end = max_rss_bytes()
    del model, work
    gc.collect()
    cpu = device.type == "cpu" and rss_start is not None  # no peak RSS where `resource` is missing (Windows)
    return {
        "dim": dim,
        "batch": batch,
        "rank": RANK,
        "arch": LARGE_NET,
        "factor_bytes": batch * dim * RANK * 4,
        "dense_bytes": batch * dim * dim * 4,
        "parameter_bytes": params,
        "cpu_peak_rss_growth_model_bytes": rss_model - rss_start if cpu else None,
        "cpu_peak_rss_growth_steps_bytes": rss_steps - rss_model if cpu else None,
        "cpu_peak_rss_growth_with_weight_grads_bytes": rss_end - rss_model if cpu else None,
        "times": times,
    }


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark and write ``optimizer.json`` / ``optimizer.md``; returns the results."""
    args = parse_args(make_parser(__doc__.splitlines()[0]), argv)
    device, cfg = args.device, settings_for(args.device, args.quick)
    env = environment(device)

    # The large case first, so the CPU peak-RSS high-water mark it reads is not set by earlier work.
    large = _large_case(cfg, device)
    print(f"large D = {large['dim']:,} done", flush=True)
    sweep: list[dict] = []
    _write(args, env, cfg, sweep, large, done=False)
    for dim in cfg["dims"]:
        model = make_model(dim, RANK, cfg["arch"], device)
        for batch in cfg["batches"]:
            times = _measure(_work(model, batch, device), device, cfg["repeats"], cfg["budget_s"])
            sweep.append({"dim": dim, "batch": batch, "times": times})
            print(f"D = {dim}, batch = {batch} done", flush=True)
            _write(args, env, cfg, sweep, large, done=False)
        del model
    return _write(args, env, cfg, sweep, large, done=True)


def _write(args, env: dict, cfg: dict, sweep: list[dict], large: dict, done: bool) -> dict:
    """Write ``optimizer.json`` / ``.md`` from the rows measured so far (after the large case and after every row
    of the sweep, so a run stopped at its time cap keeps what it finished; ``done``: the whole run, whose markdown
    is also printed); returns the results."""
    cuda = args.device.type == "cuda"
    cols = ["D", "batch", "forward", "fwd+bwd (input)", "fwd+bwd (weights)",
            *[f"{s} (× fwd+bwd in / w)" for s in STEPS]]
    table = Table(f"Optimiser step vs network forward+backward (median; rank {RANK}, "
                  f"network {cfg['arch']})", cols)
    for row in [*sweep, large]:
        t = {name: v["median_s"] for name, v in row["times"].items()}
        for name in STEPS:
            row.setdefault("ratios", {})[name] = {
                "over_fwd_bwd_input": ratio(t[name], t["fwd+bwd (input)"]),
                "over_fwd_bwd_weights": ratio(t[name], t["fwd+bwd (weights)"]),
            }
        cells = [f"{fmt_time(t[s])} ({fmt_num(row['ratios'][s]['over_fwd_bwd_input'])} / "
                 f"{fmt_num(row['ratios'][s]['over_fwd_bwd_weights'])})" for s in STEPS]
        table.add(f"{row['dim']:,}", row["batch"], fmt_time(t["forward"]), fmt_time(t["fwd+bwd (input)"]),
                  fmt_time(t["fwd+bwd (weights)"]), *cells)
    tables = [table]
    if cuda:
        mem = Table("CUDA peak memory (max_memory_allocated during one call; extra = peak − allocated before)",
                    ["D", "batch", *[f"{k} peak / extra" for k in ("forward", "fwd+bwd (input)", *STEPS)]])
        for row in [*sweep, large]:
            cells = []
            for k in ("forward", "fwd+bwd (input)", *STEPS):
                m = row["times"][k]["memory"]
                cells.append(f"{fmt_bytes(m['peak_bytes'])} / {fmt_bytes(m['extra_bytes'])}")
            mem.add(f"{row['dim']:,}", row["batch"], *cells)
        tables.append(mem)
    big = Table(f"Large D = {large['dim']:,} (stand-in network {LARGE_NET}, rank {RANK}, batch {large['batch']})",
                ["quantity", "value"])
    big.add("factor A, B·D·r·4 bytes", fmt_bytes(large["factor_bytes"]))
    big.add("dense G = AAᵀ, B·D²·4 bytes (never formed)", fmt_bytes(large["dense_bytes"]))
    big.add("network parameters (O(D·r·hidden), dominated by the head)", fmt_bytes(large["parameter_bytes"]))
    if cuda:
        for k in ("fwd+bwd (input)", *STEPS):
            m = large["times"][k]["memory"]
            big.add(f"CUDA peak / extra memory, {k}", f"{fmt_bytes(m['peak_bytes'])} / {fmt_bytes(m['extra_bytes'])}")
    else:
        big.add("CPU peak-RSS growth while building the model (approx.)",
                fmt_bytes(large["cpu_peak_rss_growth_model_bytes"]))
        big.add("CPU peak-RSS growth, one call of each optimiser step and fwd+bwd (input) (approx.)",
                fmt_bytes(large["cpu_peak_rss_growth_steps_bytes"]))
        big.add("CPU peak-RSS growth after the weight-gradient baseline too (gradients = weights; approx.)",
                fmt_bytes(large["cpu_peak_rss_growth_with_weight_grads_bytes"]))
    for k in ("forward", "fwd+bwd (input)", "fwd+bwd (weights)", *STEPS):
        big.add(f"time, {k}", fmt_time(large["times"][k]["median_s"]))
    tables.append(big)

    settings = {
        "objective": "f(x) = ½‖x − x*‖² summed over the batch; a step = zero_grad + f forward/backward + opt.step()",
        "optimisers": f"RiemannianSGD (lr {LR}, no momentum), RiemannianAdam (lr {LR})",
        "manifolds": f"LearnedDataManifold, σ = {SIGMA}; δ>0: δ = {DELTA}, no landing; δ=0: learned tangent bundle "
                     "(gap-rule dimension)",
        "network": f"FiLMResMLP {cfg['arch']}, rank {RANK}, untrained (timing only)",
        "dims": cfg["dims"],
        "batches": cfg["batches"],
        "rounds": f"up to {cfg['repeats']} rounds after one warm-up round, fewer once {cfg['budget_s']:g} s are spent",
        "quick": args.quick,
        "progress": "complete" if done else "partial: written after every row, the run is going on or was stopped",
    }
    notes = [
        "Step columns: median step time (step ÷ fwd+bwd with the input gradient only / step ÷ fwd+bwd with "
        "weight gradients). All seven calls run in rounds (each once per round) on the same batch in one run.",
        "Network forwards inside one step: LearnedDataManifold evaluates the factor once per point and reuses it "
        "across egrad2rgrad, component_inner and retr (a one-entry cache), so δ>0 costs 1 forward (proju and transp "
        "are the identity) and δ=0 also 1 in the steady state (at the new point, for transp; the next step starts "
        "there and finds it in the cache) plus the r×r eigen steps.",
        "CPU memory: getrusage's peak RSS is a high-water mark of the whole process, so its growth is approximate; "
        "the large case runs first so that earlier work does not hide it.",
    ]
    results = {"sweep": sweep, "large": large}
    _, md_path = write_report(args.out, "optimizer", title="Optimiser step cost on LearnedDataManifold", env=env,
                              settings=settings, tables=tables, results=results, notes=notes)
    if done:
        print(md_path.read_text())
    return results


if __name__ == "__main__":
    main()
