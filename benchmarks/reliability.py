"""Reliability table: the fuzz suite's case generators with a larger budget, every case classified.

    python -m benchmarks.reliability [--examples N] [--cli-examples M] [--out DIR]

Runs every family of `benchmarks.reliability_runtime` and `benchmarks.reliability_cli` (the same generators
``tests/test_fuzz_runtime.py`` and ``tests/test_fuzz_cli.py`` run with a small budget) under hypothesis with
``derandomize=True`` (reproducible), and writes ``DIR/reliability.json`` and ``DIR/reliability.md``: per family
the cases tried and how many were clean errors, silent bad outputs, crashes from valid input, hangs and data
lost (`benchmarks.reliability_cases.CATEGORIES`), plus the details of every case in the last four.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .common import Table, environment, make_parser, parse_args, write_report
from .reliability_cases import CATEGORIES, Context, Outcome

__all__ = ["build_context", "main", "run_family"]

BAD = ("silent_bad_output", "crash", "hang", "data_lost")


def build_context(folder: Path) -> Context:
    """Train the small S² model the test suite's ``sphere_model`` fixture trains (a few seconds on CPU)."""
    from learned_manifold import load_model
    from learned_manifold_training.data import Sphere
    from learned_manifold_training.trainer import TrainConfig, train

    sphere = Sphere(2, 3)
    data = sphere.sample(4000, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(steps=1000, batch_size=256, rank=3, hidden=64, depth=2, emb_dim=64, sigma_min=0.01,
                      sigma_max=2.0, val_points=400, checkpoint_every=0)
    path = folder / "sphere.lmm"
    train(data, cfg, manifold=sphere, out=path, progress=False, device="cpu")
    return Context(load_model(path), data[:400], path.read_bytes())


def run_family(family: Callable, ctx: Context, examples: int) -> list[Outcome]:
    """Run ``family`` on ``examples`` derandomised hypothesis cases; returns every outcome."""
    outcomes: list[Outcome] = []

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def run(data):
        outcomes.append(family(data.draw, ctx))

    run()
    return outcomes


def main(argv: Sequence[str] | None = None) -> dict:
    parser = make_parser(__doc__.splitlines()[0], results="benchmarks/results/cpu")
    parser.add_argument("--examples", type=int, default=150, help="cases per runtime family")
    parser.add_argument("--cli-examples", type=int, default=30, help="cases of the CLI family")
    args = parse_args(parser, argv)
    env = environment(args.device)  # date and load at the start of the run
    if args.quick:
        args.examples, args.cli_examples = 10, 3
    from .reliability_cli import cli
    from .reliability_runtime import FAMILIES

    families = {**FAMILIES, "CLI (train, info)": cli}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        ctx = build_context(Path(folder))
        results: dict = {}
        for name, family in families.items():
            t0 = time.perf_counter()
            outcomes = run_family(family, ctx, args.cli_examples if family is cli else args.examples)
            counts = Counter(o.category for o in outcomes)
            results[name] = {"tried": len(outcomes), **{c: counts.get(c, 0) for c in CATEGORIES},
                             "seconds": round(time.perf_counter() - t0, 1),
                             "findings": [f"{o.category}: {o.detail}" for o in outcomes if o.category in BAD]}
            print(f"{name}: {dict(counts)}", file=sys.stderr)
    table = Table("Hostile cases by entry point (hypothesis, derandomised)",
                  ["entry points", "cases tried", "valid → right result", "clean errors", "silent bad outputs",
                   "crashes", "hangs", "data lost"])
    total = Counter()
    for name, r in results.items():
        table.add(name, r["tried"], r["ok"], r["clean_error"], *(r[c] for c in BAD))
        total.update({k: r[k] for k in ("tried", *CATEGORIES)})
    table.add("**total**", total["tried"], total["ok"], total["clean_error"], *(total[c] for c in BAD))
    findings = [f"{name}: {f}" for name, r in results.items() for f in r["findings"]]
    notes = ["Categories: see benchmarks/RELIABILITY.md. A case is classified once; the last four columns "
             "should be zero.", f"Wall time {time.perf_counter() - start:.0f} s (including training the model)."]
    notes += [f"finding: {f[:400]}" for f in findings] or ["No findings."]
    write_report(args.out, "reliability", title="Reliability: the fuzz suite with a larger budget",
                 env=env, settings={"examples per family": args.examples,
                                                         "CLI examples": args.cli_examples},
                 tables=[table], results={"families": results, "total": dict(total)}, notes=notes)
    return results


if __name__ == "__main__":  # pragma: no cover
    main()
