"""Cost of the tangent-space (eigen) step against the network forward and the naive decompositions (SPEC §5).

For ``r ∈ {8, 16, 32}``, ``D = 64`` and one batch of factors ``A (B, D, r)`` from the SPEC §4 network at paper
size (untrained), one run times:

* the network forward that produces ``A``, in fp32 and under bf16 autocast (`LearnedCDC(precision="bf16")`);
* the library's eigen step `geometry.eigenpairs` (``r × r`` Gram, eigh in float64, ``U = A V Λ^{-1/2}``);
* the Gram eigh alone in float32 and float64, and the Gram matmul ``AᵀA`` (a flop-for-flop reference);
* the naive routes SPEC §5 warns about: batched ``torch.linalg.svd(A)`` ``(B, D, r)`` and
  ``torch.linalg.eigh(AAᵀ)`` ``(B, D, D)``.

On CPU everything runs at the default thread count and again with one thread (batched ``eigh`` on CPU is known
to be erratic with more than one thread).

Run: ``python -m benchmarks.tangent --device cpu|cuda [--quick] [--out DIR]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from learned_manifold.geometry import eigenpairs, gram
from learned_manifold.metrics.learned import LearnedCDC

from .common import (
    PAPER_NET,
    Table,
    environment,
    fmt_num,
    fmt_time,
    make_model,
    make_parser,
    num_threads,
    parse_args,
    ratio,
    sphere_points,
    time_fn,
    time_interleaved,
    write_report,
)

__all__ = ["main", "settings_for"]

DIM, SIGMA = 64, 0.1
OPS = ("forward", "forward_bf16", "eigenpairs", "gram", "gram_eigh_fp64", "gram_eigh_fp32", "svd_A", "eigh_AAt")
SLOW_OPS = ("svd_A", "eigh_AAt")


def settings_for(device: torch.device, quick: bool) -> dict:
    """Ranks, batch, repeats and thread counts for ``device`` (``quick``: a smoke test)."""
    default = torch.get_num_threads()
    threads = [default] if device.type == "cuda" or default == 1 else [default, 1]
    if quick:
        return {"ranks": [8], "batch": 128, "repeats": 3, "threads": threads, "slow_budget_s": 2.0}
    if device.type == "cuda":  # the naive routes take seconds per call there: one call each (slow_budget_s)
        return {"ranks": [8, 16, 32], "batch": 8192, "repeats": 10, "threads": threads, "slow_budget_s": 2.0}
    return {"ranks": [8, 16, 32], "batch": 1024, "repeats": 7, "threads": threads, "slow_budget_s": 20.0}


def _operations(model: torch.nn.Module, x: Tensor, A: Tensor) -> dict[str, Callable[[], object]]:
    """The timed callables, keyed as in `OPS`."""
    bf16_field = LearnedCDC(model, SIGMA, precision="bf16")  # built once: only its forward is timed
    return {
        "forward": lambda: model.factor(x, SIGMA),
        "forward_bf16": lambda: bf16_field.factor(x),
        "eigenpairs": lambda: eigenpairs(A),
        "gram": lambda: gram(A),
        "gram_eigh_fp64": lambda: torch.linalg.eigh(gram(A.double())),
        "gram_eigh_fp32": lambda: torch.linalg.eigh(gram(A)),
        "svd_A": lambda: torch.linalg.svd(A, full_matrices=False),
        "eigh_AAt": lambda: torch.linalg.eigh(A @ A.transpose(-1, -2)),
    }


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark and write ``tangent.json`` / ``tangent.md``; returns the results."""
    args = parse_args(make_parser(__doc__.splitlines()[0]), argv)
    device, cfg = args.device, settings_for(args.device, args.quick)
    env = environment(device)
    x = sphere_points(cfg["batch"], device, seed=1)

    rows = []
    main_table = Table(
        f"Eigen step vs forward vs naive decompositions, batch {cfg['batch']:,}, D = {DIM} (median)",
        ["threads", "r", "forward", "eigenpairs", "eigenpairs / forward", "forward bf16", "eigenpairs / bf16 forward",
         "svd(A) (B,D,r)", "svd / forward", "eigh(AAᵀ) (B,D,D)", "eigh(AAᵀ) / forward"],
    )
    gram_table = Table(
        "Gram eigh: float64 vs float32, and against the Gram matmul (median; µs per matrix in brackets)",
        ["threads", "r", "AᵀA matmul", "eigh fp64 (incl. cast)", "eigh fp32", "fp64 / fp32", "eigh fp64 / matmul"],
    )
    with torch.inference_mode():
        for r in cfg["ranks"]:
            model = make_model(DIM, r, PAPER_NET, device)
            A = model.factor(x, SIGMA)
            ops = _operations(model, x, A)
            for threads in cfg["threads"]:
                with num_threads(threads if device.type == "cpu" else None) as used:
                    fast = {name: fn for name, fn in ops.items() if name not in SLOW_OPS}
                    timed = time_interleaved(fast, device, warmup=2, repeats=cfg["repeats"], budget_s=60.0)
                    for name in SLOW_OPS:
                        timed[name] = time_fn(ops[name], device, warmup=1, repeats=3, budget_s=cfg["slow_budget_s"])
                    times = {name: timed[name].to_dict() for name in OPS}
                med = {name: t["median_s"] for name, t in times.items()}
                row = {"r": r, "threads": used, "batch": cfg["batch"], "times": times,
                       "eigenpairs_over_forward": ratio(med["eigenpairs"], med["forward"]),
                       "eigenpairs_over_forward_bf16": ratio(med["eigenpairs"], med["forward_bf16"]),
                       "svd_over_forward": ratio(med["svd_A"], med["forward"]),
                       "eigh_AAt_over_forward": ratio(med["eigh_AAt"], med["forward"]),
                       "fp64_over_fp32": ratio(med["gram_eigh_fp64"], med["gram_eigh_fp32"]),
                       "eigh_over_gram_matmul": ratio(med["gram_eigh_fp64"], med["gram"])}
                rows.append(row)
                per = lambda s: f"{fmt_time(s)} ({fmt_num(s / cfg['batch'] * 1e6)} µs)"  # noqa: E731
                main_table.add(used, r, fmt_time(med["forward"]), fmt_time(med["eigenpairs"]),
                               f"{fmt_num(row['eigenpairs_over_forward'])}×", fmt_time(med["forward_bf16"]),
                               f"{fmt_num(row['eigenpairs_over_forward_bf16'])}×", fmt_time(med["svd_A"]),
                               f"{fmt_num(row['svd_over_forward'])}×", fmt_time(med["eigh_AAt"]),
                               f"{fmt_num(row['eigh_AAt_over_forward'])}×")
                gram_table.add(used, r, fmt_time(med["gram"]), per(med["gram_eigh_fp64"]),
                               per(med["gram_eigh_fp32"]), f"{fmt_num(row['fp64_over_fp32'])}×",
                               f"{fmt_num(row['eigh_over_gram_matmul'])}×")
                print(main_table.rows[-1], flush=True)
                _write(args, env, cfg, rows, main_table, gram_table, done=False)
    return _write(args, env, cfg, rows, main_table, gram_table, done=True)


def _write(args, env: dict, cfg: dict, rows: list[dict], main_table: Table, gram_table: Table, done: bool) -> dict:
    """Write ``tangent.json`` / ``.md`` from the rows measured so far (after every row, so a run stopped at its
    time cap keeps what it finished; ``done``: the whole run, whose markdown is also printed)."""
    verdicts = _verdicts(rows, cfg["threads"])
    settings = {
        "network": f"FiLMResMLP {PAPER_NET}, untrained (timing only), D = {DIM}",
        "ranks": cfg["ranks"],
        "batch": cfg["batch"],
        "threads": cfg["threads"],
        "eigen step": "learned_manifold.geometry.eigenpairs: r×r Gram AᵀA, eigh in float64, U = A V Λ^-1/2",
        "inference": "torch.inference_mode()",
        "quick": args.quick,
        "progress": "complete" if done else "partial: written after every row, the run is going on or was stopped",
    }
    notes = [*verdicts,
             "The fast operations (forward in fp32 and under bf16 autocast, eigenpairs, Gram, Gram eighs) run in "
             "rounds, each once per round, so "
             "their ratios share the machine's state; all ratios are within one run and one thread count.",
             "svd and eigh(AAᵀ) are the naive routes (SPEC §5); they are timed with fewer repeats, and a single "
             f"call longer than {cfg['slow_budget_s']:g} s is reported alone (see 'cold' in the JSON)."]
    results = {"rows": rows, "verdicts": verdicts}
    _, md_path = write_report(args.out, "tangent", title="Tangent step: eigenpairs vs forward vs svd/eigh", env=env,
                              settings=settings, tables=[main_table, gram_table], results=results, notes=notes)
    if done:
        print(md_path.read_text())
    return results


def _verdicts(rows: list[dict], threads: list[int]) -> list[str]:
    """Plain-language answers: is the eigen step ≤ the forward, and is batched eigh slow with threads?"""
    out = []
    for t in threads:
        sel = [r for r in rows if r["threads"] == t]
        if not sel:
            continue
        for key, name in (("eigenpairs_over_forward", "forward"), ("eigenpairs_over_forward_bf16", "bf16 forward")):
            worst = max(sel, key=lambda r: r[key])
            ok = all(r[key] <= 1.0 for r in sel)
            out.append(f"{t} thread(s): eigen step ≤ {name} for every r tried: {'yes' if ok else 'no'} "
                       f"(worst eigenpairs/{name} {worst[key]:.3g}× at r = {worst['r']}).")
    if len(threads) > 1:
        many, one = threads[0], threads[-1]
        for r in sorted({row["r"] for row in rows}):
            a = next((row for row in rows if row["r"] == r and row["threads"] == many), None)
            b = next((row for row in rows if row["r"] == r and row["threads"] == one), None)
            if a is None or b is None:  # a partial report: this rank's second thread count is not measured yet
                continue
            speed = ratio(a["times"]["gram_eigh_fp64"]["median_s"], b["times"]["gram_eigh_fp64"]["median_s"])
            out.append(f"r = {r}: batched Gram eigh (fp64) with {many} threads takes {speed:.3g}× its 1-thread time"
                       f" ({'slower' if speed > 1 else 'faster'} with more threads).")
    return out


if __name__ == "__main__":
    main()
