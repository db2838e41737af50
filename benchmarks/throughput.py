"""Per-query cost of the learned CDC factor against the k-NN CDC baseline, as the data set grows (SPEC §8).

For each data-set size ``N`` (S⁸ in R⁶⁴, uniform points), one run times, side by side on the same query batch:

* the learned factor: the SPEC §4 network at paper size (untrained: its cost, not its accuracy, is measured),
  in fp32 and under bf16 autocast (`LearnedCDC(precision="bf16")`; its accuracy is measured by
  ``benchmarks.training``);
* `KNNCDC.factor` with ``k = 64`` (16 with ``--quick``), exact fp32 brute-force search, at the best of a few
  chunk sizes;

each without and with the tangent-space step (`geometry.eigenpairs` of the factor), under
``torch.inference_mode()``, and reports the ratio k-NN / network per size. It also records the network's
queries per second at a larger batch, in fp32 and bf16 autocast, and with ``--compile`` also under
``torch.compile`` (fp32 and bf16; the first call, compilation included, is reported beside the rate).

Run: ``python -m benchmarks.throughput --device cpu|cuda [--quick] [--compile] [--sizes N ...] [--out DIR]``.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from learned_manifold.geometry import eigenpairs
from learned_manifold.metrics.knn import KNNCDC
from learned_manifold.metrics.learned import LearnedCDC
from learned_manifold.models import MetricModel

from .common import (
    PAPER_NET,
    Table,
    Timing,
    compile_status,
    environment,
    fmt_num,
    fmt_rate,
    fmt_time,
    make_model,
    make_parser,
    parse_args,
    ratio,
    sphere_points,
    synchronize,
    time_fn,
    time_interleaved,
    write_report,
)

__all__ = ["main", "settings_for"]

DIM, RANK, SIGMA = 64, 16, 0.1


def settings_for(device: torch.device, quick: bool) -> dict:
    """Sizes, query batches and chunk candidates for ``device`` (``quick``: a smoke test)."""
    if quick:  # k = 16 keeps the k-NN eigen step cheap where batched eigh with several threads is erratic
        return {"sizes": [4096, 16384], "queries": 128, "k": 16, "big_batch": 1024, "chunks": [4096, 16384],
                "repeats": 2, "arch": PAPER_NET}
    if device.type == "cuda":
        return {"sizes": [16_384, 131_072, 1_048_576, 2_097_152, 8_388_608], "queries": 8192,
                "k": 64, "big_batch": 65_536, "chunks": [65_536, 262_144, 1_048_576], "repeats": 5,
                "arch": PAPER_NET}
    return {"sizes": [16_384, 65_536, 262_144, 1_048_576], "queries": 1024, "k": 64, "big_batch": 4096,
            "chunks": [16_384, 65_536, 262_144], "repeats": 3, "arch": PAPER_NET}


def _with_tangent(factor: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """``x ↦ eigenpairs(factor(x)).vectors``: the factor followed by the tangent-space step."""
    return lambda x: eigenpairs(factor(x)).vectors


def _tune_chunk(data: Tensor, queries: Tensor, k: int, chunks: Sequence[int]) -> tuple[int, dict[str, dict]]:
    """Time `KNNCDC.factor` once (after one warm-up call) per chunk size; return the fastest and all times."""
    n, device = data.shape[0], queries.device
    per_chunk: dict[int, Timing] = {}
    for chunk in sorted({min(c, n) for c in chunks}):
        knn = KNNCDC(data, k=k, sigma=SIGMA, chunk_size=chunk)
        per_chunk[chunk] = time_fn(lambda knn=knn: knn.factor(queries), device, warmup=1, repeats=1)
    best = min(per_chunk, key=lambda c: per_chunk[c].median)
    return best, {str(c): t.to_dict() for c, t in per_chunk.items()}


def _time_size(model: MetricModel, data: Tensor, queries: Tensor, cfg: dict) -> dict:
    """Network and k-NN (best chunk), each without and with the tangent step, timed in rounds."""
    best, tuning = _tune_chunk(data, queries, cfg["k"], cfg["chunks"])
    knn = KNNCDC(data, k=cfg["k"], sigma=SIGMA, chunk_size=best)
    network = lambda x: model.factor(x, SIGMA)  # noqa: E731
    network_bf16 = LearnedCDC(model, SIGMA, precision="bf16").factor  # bf16 autocast, factor returned in fp32
    work = {
        "network": lambda: network(queries),
        "network_tangent": lambda: _with_tangent(network)(queries),
        "network_bf16": lambda: network_bf16(queries),
        "network_bf16_tangent": lambda: _with_tangent(network_bf16)(queries),
        "knn": lambda: knn.factor(queries),
        "knn_tangent": lambda: _with_tangent(knn.factor)(queries),
    }
    timings = time_interleaved(work, queries.device, warmup=1, repeats=cfg["repeats"], budget_s=600.0)
    return {"best_chunk": best, "chunk_tuning": tuning, "timings": {k: t.to_dict() for k, t in timings.items()}}


def _network_rates(model: MetricModel, batch: int, device: torch.device, repeats: int,
                   compile_: bool = False) -> dict[str, dict]:
    """Network queries per second at ``batch`` in fp32 and in bf16 autocast (``compile_``: also compiled)."""
    x = sphere_points(batch, device, seed=2)
    rates = {}
    fp32, bf16 = contextlib.nullcontext, lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    modes = {"fp32": (fp32, False), "bf16 autocast": (bf16, False)}
    if compile_:
        modes.update({"torch.compile fp32": (fp32, True), "torch.compile + bf16": (bf16, True)})
    for name, (ctx, compiled) in modes.items():
        factor = torch.compile(model.factor) if compiled else model.factor  # one compiled function per mode

        def run(ctx=ctx, factor=factor) -> Tensor:
            with ctx():
                return factor(x, SIGMA)
        try:
            start = time.perf_counter()
            run()  # the first call: compilation for the compiled modes
            synchronize(device)
            first = time.perf_counter() - start
            t = time_fn(run, device, warmup=1, repeats=repeats)
        except Exception as err:  # noqa: BLE001 - a failed compile is a result, not a crash
            rates[name] = {"batch": batch, "status": "failed", "error": f"{type(err).__name__}: {str(err)[:300]}",
                           "traceback_tail": traceback.format_exc().splitlines()[-4:]}
            continue
        rates[name] = {"batch": batch, "status": "ok", "first_call_s": first, **t.to_dict(),
                       "queries_per_s": batch / t.median}
    return rates


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark and write ``throughput.json`` / ``throughput.md``; returns the results."""
    parser = make_parser(__doc__.splitlines()[0])
    parser.add_argument("--compile", action="store_true", help="also time the network under torch.compile")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="data-set sizes N (default: per device)")
    args = parse_args(parser, argv)
    device, cfg = args.device, settings_for(args.device, args.quick)
    if args.sizes:
        cfg["sizes"] = sorted(args.sizes)
    env = environment(device)
    model = make_model(DIM, RANK, cfg["arch"], device)
    queries = sphere_points(cfg["queries"], device, seed=1)
    all_data = sphere_points(max(cfg["sizes"]), device, seed=0)

    per_size: list[dict] = []
    rates: dict[str, dict] = {}
    table = Table(
        f"k-NN CDC vs learned factor, {cfg['queries']} queries per call (median of {cfg['repeats']} rounds)",
        ["N", "network", "k-NN (best chunk)", "k-NN / network", "network + eigen", "k-NN + eigen",
         "ratio incl. eigen", "network bf16", "k-NN / network bf16", "ratio bf16 incl. eigen", "k-NN µs/query"],
    )

    def report():  # after the rates and after every size, so a run stopped part-way keeps what it finished
        return _write_report(args, cfg, env, table, per_size, rates)

    with torch.inference_mode():
        rates.update(_network_rates(model, cfg["big_batch"], device, cfg["repeats"], args.compile))
        md_path = report()
        for n in cfg["sizes"]:
            measured = _time_size(model, all_data[:n], queries, cfg)
            med = {k: t["median_s"] for k, t in measured["timings"].items()}
            row = {
                "n": n,
                "network_s": med["network"],
                "network_tangent_s": med["network_tangent"],
                "knn_s": med["knn"],
                "knn_tangent_s": med["knn_tangent"],
                "ratio": ratio(med["knn"], med["network"]),
                "ratio_tangent": ratio(med["knn_tangent"], med["network_tangent"]),
                "network_bf16_s": med["network_bf16"],
                "network_bf16_tangent_s": med["network_bf16_tangent"],
                "ratio_bf16": ratio(med["knn"], med["network_bf16"]),
                "ratio_bf16_tangent": ratio(med["knn_tangent"], med["network_bf16_tangent"]),
                **measured,
            }
            per_size.append(row)
            table.add(f"{n:,}", fmt_time(row["network_s"]), f"{fmt_time(row['knn_s'])} ({row['best_chunk']:,})",
                      f"{fmt_num(row['ratio'])}×", fmt_time(row["network_tangent_s"]),
                      fmt_time(row["knn_tangent_s"]), f"{fmt_num(row['ratio_tangent'])}×",
                      fmt_time(row["network_bf16_s"]), f"{fmt_num(row['ratio_bf16'])}×",
                      f"{fmt_num(row['ratio_bf16_tangent'])}×", fmt_num(row["knn_s"] / cfg["queries"] * 1e6))
            print(table.rows[-1], flush=True)
            md_path = report()
    print(md_path.read_text())
    return {"per_size": per_size, "network_rates": rates}


def _chunks_timed(per_size: list[dict]) -> str:
    """The chunk sizes timed per N, in words (``"N = 1,024: 1,024"``): a candidate above N is timed as N."""
    return "; ".join(f"N = {row['n']:,}: {', '.join(f'{int(c):,}' for c in row['chunk_tuning'])}" for row in per_size)


def _chunk_table(per_size: list[dict]) -> Table:
    """The chunk-size tuning table: a column per chunk size timed at some N; ``n/a (> N)`` where that size exceeds
    the row's N (its candidate was timed as N, in the N column), ``not tried`` where it was no candidate there."""
    timed = sorted({int(c) for row in per_size for c in row["chunk_tuning"]})
    table = Table("k-NN chunk-size tuning (one call after one warm-up call; candidates above N are timed as N)",
                  ["N", *[f"chunk {c:,}" for c in timed]])
    for row in per_size:
        cells = []
        for c in timed:
            t = row["chunk_tuning"].get(str(c))
            cells.append(fmt_time(t["median_s"]) if t else "n/a (> N)" if c > row["n"] else "not tried")
        table.add(f"{row['n']:,}", *cells)
    return table


def _write_report(args, cfg: dict, env: dict, table: Table, per_size: list[dict], rates: dict) -> Path:
    """Write ``throughput.json`` / ``.md`` from what has been measured so far; returns the markdown's path."""
    chunk_table = _chunk_table(per_size)
    rate_table = Table(f"Network throughput at batch {cfg['big_batch']:,}",
                       ["precision", "median", "queries/s", "first call (incl. compilation)", "status"])
    for name, r in rates.items():  # the compiled modes run eagerly under TORCH_COMPILE_DISABLE=1: say so
        status = r["error"][:160] if r["status"] == "failed" else compile_status(r["status"], "compile" in name)
        rate_table.add(name, fmt_time(r.get("median_s")), fmt_rate(r.get("queries_per_s")),
                       fmt_time(r.get("first_call_s")), status)

    settings = {
        "data": "S⁸ in R⁶⁴ (sphere8), uniform points; N = prefixes of one draw",
        "sizes": cfg["sizes"],
        "queries": cfg["queries"],
        "network": f"FiLMResMLP {cfg['arch']}, rank {RANK}, untrained (timing only)",
        "k-NN": f"KNNCDC k={cfg['k']}, centred, exact fp32 brute force, chunk candidates {cfg['chunks']} each "
                f"clipped to N; chunk sizes timed: {_chunks_timed(per_size) or 'none yet'}",
        "tangent step": f"geometry.eigenpairs (r×r Gram eigh in float64): r={RANK} network, r={cfg['k']} k-NN",
        "sigma": SIGMA,
        "compile": args.compile,
        "quick": args.quick,
    }
    notes = [
        "Ratios are k-NN time / network time within one run: for each N the six calls (network fp32 and bf16, "
        "each + eigen, k-NN, k-NN + eigen) run in rounds, each once per round, on the same queries.",
        "The network's cost does not depend on N; it is re-timed at every N so each ratio shares the machine's "
        "state at that moment. The k-NN chunk size is the fastest of one tuning call per candidate.",
        "The network is untrained: the cost of a trained one is identical (same shapes), its output is not.",
    ]
    results = {"per_size": per_size, "network_rates": rates}
    return write_report(args.out, "throughput", title="Throughput: learned CDC vs k-NN CDC", env=env,
                        settings=settings, tables=[table, chunk_table, rate_table], results=results, notes=notes)[1]


if __name__ == "__main__":
    main()
