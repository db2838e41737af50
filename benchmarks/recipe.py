"""Training-recipe comparison on curved data (issues 12 and 14): candidates × seeds, against tuned centred k-NN.

For each data set (the Swiss roll, 2-D, isometrically in R¹⁰; the torus in R³; S² and S⁸ isometrically in R⁶⁴)
and each candidate recipe (a set of
`TrainConfig` overrides on top of that data set's base settings), trains one model per training seed with
`learned_manifold_training.trainer.train`, picks the evaluation σ on a validation split from the SPEC §8 grid
(lowest tangent error) and scores it on held-out test points: mean tangent-projector error ``‖ÛÛᵀ − P_T‖_F``,
the fraction of points whose gap-rule dimension is right, the mean ``(d+1)``-th eigenvalue (the curved normal
that the model should suppress), and the denoiser's own ``(d+1)``-th Jacobian eigenvalue (its normal shrink,
`learned_manifold.diagnostics.self_consistency`). The same training, validation and test points feed a tuned
centred k-NN CDC (`benchmarks.accuracy.tune_knn`, SPEC §8 protocol) as the baseline.

Run: ``python -m benchmarks.recipe [--data roll torus] [--seeds 0 1 2] [--candidates ...] [--n-roll N]
[--steps S] [--quick] [--out DIR]``; writes ``recipe.json`` / ``recipe.md`` (default ``benchmarks/results/cpu``;
with ``--quick``: ``benchmarks/out``).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from learned_manifold.diagnostics import self_consistency
from learned_manifold_training.config import DENOISER_WARMUP
from learned_manifold_training.data import Sphere, SwissRoll, Torus
from learned_manifold_training.trainer import TrainConfig, select_sigma, standardisation, train, validate

from .accuracy import json_ready, sigma_grid, tune_knn
from .common import Table, environment, make_parser, parse_args, write_report

__all__ = ["CANDIDATES", "DATASETS", "RESIDUAL", "main", "run_candidate", "summary_table"]

RESIDUAL: dict = {"factor_target": "residual", "input_scaling": "none", "grad_clip": 1.0, "denoiser_warmup": 0.25,
                  "final_norm": True}
"""The recipe before the sixth session (the factor matched the residual, SPEC §3): the base of the older candidates,
so that they mean what they meant when they were measured."""

CANDIDATES: dict[str, dict] = {
    "before": {**RESIDUAL, "input_scaling": "none", "steps": 3000},
    "unit-input": {**RESIDUAL, "input_scaling": "unit", "steps": 3000},
    "sigma-max-1": {**RESIDUAL, "sigma_max": 1.0, "steps": 3000},
    "warmup-0.5": {**RESIDUAL, "denoiser_warmup": 0.5, "steps": 3000},
    "steps-6000": {**RESIDUAL, "input_scaling": "none", "steps": 6000},
    "two-networks": {**RESIDUAL, "shared_trunk": False},
    "shared-trunk": {**RESIDUAL, "shared_trunk": True, "factor_trunk_grad": 0.1},
    "shared-trunk-stop": {**RESIDUAL, "shared_trunk": True, "factor_trunk_grad": 0.0},
    "shared-trunk-joint": {**RESIDUAL, "shared_trunk": True, "factor_trunk_grad": 1.0},
    "shared-trunk-9000": {**RESIDUAL, "shared_trunk": True, "factor_trunk_grad": 0.1, "steps": 9000},
    "gaussian": {**RESIDUAL, "input_scaling": "gaussian", "grad_clip": 0.0, "denoiser_warmup": 0.5},
    "gaussian-only": {**RESIDUAL, "input_scaling": "gaussian"},
    "no-clip": {**RESIDUAL, "grad_clip": 0.0},
    "jacobian": {"factor_target": "jacobian", "input_scaling": "none", "grad_clip": 0.0, "denoiser_warmup": 0.5,
                 "final_norm": True},
    "jacobian-gaussian": {"factor_target": "jacobian", "input_scaling": "gaussian", "grad_clip": 0.0,
                          "denoiser_warmup": 0.5, "final_norm": True},
    "jacobian-only": {**RESIDUAL, "factor_target": "jacobian"},
    "jacobian-auto": {"factor_target": "jacobian", "input_scaling": "auto", "grad_clip": 0.0, "denoiser_warmup": 0.5,
                      "final_norm": True},
    "default": {},  # the `learned-manifold train` default: jacobian-auto without the MLP's final LayerNorm
    "factor-half": {"factor_fraction": 0.5},
    "factor-quarter": {"factor_fraction": 0.25},
    "factor-full": {"factor_fraction": 1.0},
    "norm-feature": {"norm_feature": True},
    "no-norm-feature": {"norm_feature": False},
    "rank-32": {"rank": 32},
    "freeze-denoiser": {"freeze_denoiser": True},
    "rank-32-probes-16": {"rank": 32, "jacobian_probes": 16},
    "rank-32-probes-16-early": {"rank": 32, "jacobian_probes": 16, "denoiser_warmup": 0.25},
    "rank-32-early": {"rank": 32, "denoiser_warmup": 0.25},
    "early": {"denoiser_warmup": 0.25},
    "denoiser-128": {"denoiser_hidden": 128},
    "denoiser-64": {"denoiser_hidden": 64},
    "denoiser-32": {"denoiser_hidden": 32},  # half the torus's width 64
    "shared-trunk-jacobian": {"shared_trunk": True},  # the default's Jacobian target from a denoiser head
    "shared-trunk-jacobian-joint": {"shared_trunk": True, "factor_trunk_grad": 1.0},
}
CANDIDATES = {name: settings if name == "default" else {"denoiser_warmup": DENOISER_WARMUP, **settings}
              for name, settings in CANDIDATES.items()}
"""Candidate recipes: `TrainConfig` overrides. Every candidate but ``default`` (the `learned-manifold train`
defaults of the day) fixes the warm-up it was measured with (`DENOISER_WARMUP` unless it names one),
since ``"auto"`` now resolves it from the data. ``before`` is the recipe of issue 12 (3000 steps); ``steps-6000``
the winner, now the default; results in ``benchmarks/results/cpu/recipe.md`` (before, unit-input) and
``recipe-steps6000/recipe.md``; ``sigma-max-1`` and ``warmup-0.5`` were screened on two seeds only. Issue 14:
``two-networks`` (the default's factor and denoiser networks) against one shared trunk whose factor loss reaches
the trunk with its gradient scaled by 0.1, 0 (stopped) or 1 (joint), and the first with 9000 steps; results in
``benchmarks/results/cpu/recipe-shared-trunk/``. Fifth session: ``gaussian`` (Gaussian preconditioning,
`learned_manifold.preconditioning`, without gradient clipping and with the factor from half-way) and its parts
``gaussian-only`` and ``no-clip``; results in ``benchmarks/RESULTS.md`` (not the default: it halves the error on
the roll and S² and lets S⁸ learn, but doubles it on the torus). Sixth session: ``jacobian`` (the factor matches
the denoiser's Jacobian, `learned_manifold_training.losses`, without clipping, factor from half-way), with
Gaussian preconditioning (``jacobian-gaussian``), with it where the data's linear span is small
(``jacobian-auto``, `TrainConfig.input_scaling` ``"auto"``) and alone (``jacobian-only``); ``default``: the
defaults of `TrainConfig` (``jacobian-auto`` without the MLP's final LayerNorm, `TrainConfig.final_norm`). Eighth
session (issue 14): the factor's loss on half (``factor-half``), a quarter (``factor-quarter``) or all
(``factor-full``) of each batch (`TrainConfig.factor_fraction`), the Jacobian target read in reverse mode. Ninth
session (issue 12): the default with the input's log squared norm as a feature (``norm-feature``,
`TrainConfig.norm_feature`); results in ``benchmarks/results/cpu/norm-feature/``. Tenth session: that is the
default now, and ``no-norm-feature`` is the default without it; ``rank-32``: the default with rank 32 (on S¹⁶
rank 16 = d leaves the factor no continuous choice: the sphere's tangent bundle has no global frame, SPEC §3).
Eleventh session: ``default`` chooses the norm feature from the data (`TrainConfig.norm_feature` ``"auto"``: on for
the spheres, off for the roll and the torus); ``norm-feature`` forces it on; ``freeze-denoiser``: the denoiser
stops learning when the factor starts (`TrainConfig.freeze_denoiser`). Twelfth session: ``rank-32-probes-16``,
rank 32 with the Jacobian loss averaged over 16 probes per point (`TrainConfig.jacobian_probes`; one probe's
estimate kept a factor from fitting S¹⁶'s projector, `benchmarks.probe_fit`), and the same with the factor from a
quarter of the steps (``-early``). Fourteenth session: ``denoiser-128`` and ``denoiser-64``, the denoiser at half and
a quarter of the factor's hidden width 256 (`TrainConfig.denoiser_hidden`), a cheaper mean-centred step;
``denoiser-32``, half the torus's width 64. Fifteenth session: ``shared-trunk-jacobian`` (``-joint``), the
default's Jacobian target from the denoiser head of a shared trunk (factor gradient into the trunk × 0.1, × 1);
data ``torus-cli``, the torus in R³ with the CLI's defaults (the ``torus`` entry keeps the tests' small network)."""

DATASETS: dict[str, dict] = {
    "roll": {"make": lambda: SwissRoll(10), "n": 10_000, "base": {}},  # the `learned-manifold train` defaults
    "torus": {"make": lambda: Torus(3), "n": 6000,  # the tests' torus fixture (tests/conftest.py)
              "base": {"batch_size": 256, "rank": 3, "hidden": 64, "depth": 2, "emb_dim": 64, "sigma_min": 0.01,
                       "sigma_max": 2.0, "val_points": 400}},
    "torus-cli": {"make": lambda: Torus(3), "n": 6000, "base": {}},  # the torus with the CLI's defaults
    "sphere2": {"make": lambda: Sphere(2, 64), "n": 10_000, "base": {}},  # S² in R⁶⁴, the CLI's defaults
    # S⁸ in R⁶⁴ needs many points for the mean-centred recipe (benchmarks/RESULTS.md: 10k is decided by the seed)
    "sphere8": {"make": lambda: Sphere(8, 64), "n": 100_000, "base": {}},
    "sphere16": {"make": lambda: Sphere(16, 64), "n": 10_000, "base": {}},  # the CLI's defaults
}
"""Data sets: the manifold, the default number of training points and the base `TrainConfig` settings."""


def run_candidate(data: torch.Tensor, manifold, val: torch.Tensor, test: torch.Tensor, config: TrainConfig,
                  out: Path | None = None) -> dict:
    """Train one model on ``data`` ``(N + val_points, D)``, pick σ on ``val``, score on ``test`` (both ``(n, D)``);
    ``out``: the model file to write (``None``: none).

    Returns:
        ``{"sigma", "tangent_error", "dimension_accuracy", "normal_eigenvalue", "denoiser_normal_eigenvalue",
        "top_eigenvalues", "train_seconds", "precision"}`` (``precision``: what the trainer ran in).
    """
    start = time.perf_counter()
    config = dataclasses.replace(config, checkpoint_every=0)  # no checkpoints inside the timed run
    result = train(data, config, manifold=manifold, progress=False, device="cpu", out=out)
    seconds = time.perf_counter() - start
    model = result.model
    with torch.no_grad():
        sigma, _, _ = select_sigma(model, val, manifold)
        scores = validate(model, test, sigma, manifold)
    d = int(manifold.point_dimension(test[:1])[0])
    row = {"sigma": sigma, "tangent_error": scores["tangent_error"], "dimension_accuracy": scores["dimension_accuracy"],
           "normal_eigenvalue": _eigenvalue(scores["top_eigenvalues"], d),
           "top_eigenvalues": scores["top_eigenvalues"][: d + 2], "train_seconds": seconds,
           "precision": result.precision}
    if model.has_denoiser:
        report = self_consistency(model, test[:300], sigma).summary()
        row["denoiser_normal_eigenvalue"] = _eigenvalue(report["denoiser_top_eigenvalues"], d)
    return row


def _eigenvalue(values: list[float], i: int) -> float | None:
    """The ``i``-th eigenvalue (from 0), or ``None`` where a rank-``r ≤ i`` field has none (S¹⁶ at rank 16)."""
    return values[i] if i < len(values) else None


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _stats(rows: list[dict], key: str, worst=max) -> str:
    values = [r[key] for r in rows if r.get(key) is not None]
    return f"{statistics.fmean(values):.3f} / {worst(values):.3f}" if values else "n/a"


def summary_table(name: str, n: int, d: int, runs: dict[str, list[dict]], knn: dict) -> Table:
    """One line per candidate (mean / worst over seeds) and one for the tuned centred k-NN baseline."""
    table = Table(f"{name}, N = {n:,}: mean / worst over seeds (true d = {d})",
                  ["recipe", "seeds", "tangent error", f"dim = {d}", f"λ_{d + 1} (normal)", "denoiser λ_{d+1}",
                   "σ (val)", "train time / run"])
    for cand, rows in runs.items():
        table.add(cand, len(rows), _stats(rows, "tangent_error"), _stats(rows, "dimension_accuracy", min),
                  _stats(rows, "normal_eigenvalue"), _stats(rows, "denoiser_normal_eigenvalue"),
                  " ".join(f"{r['sigma']:.3g}" for r in rows),
                  f"{statistics.fmean(r['train_seconds'] for r in rows):.0f} s")
    t = knn["test"]
    table.add(f"k-NN centred, tuned (k = {knn['k']})", "-", f"{t['tangent_error']:.3f}",
              f"{t['dimension_accuracy']:.3f}", _number(_eigenvalue(t["top_eigenvalues"], d)), "-",
              f"{knn['sigma']:.3g}", f"{knn['seconds']:.0f} s (tuning)")
    return table


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the comparison and write ``recipe.json`` / ``recipe.md``; returns the results."""
    parser = make_parser(__doc__.splitlines()[0], results="benchmarks/results/cpu", threads=1)
    parser.add_argument("--data", nargs="+", choices=sorted(DATASETS), default=sorted(DATASETS))
    parser.add_argument("--candidates", nargs="+", choices=sorted(CANDIDATES), default=["before", "steps-6000"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--n-roll", type=int, default=None, help="training points of the roll (default 10,000)")
    parser.add_argument("--n", type=int, default=None, help="training points of every data set (default: each "
                                                             "data set's own; overrides --n-roll)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: each data set's base)")
    parser.add_argument("--save-models", type=Path, default=None, help="folder to write every trained model to")
    args = parse_args(parser, argv)
    env = environment(torch.device("cpu"))  # date and load at the start of the run
    if args.save_models is not None:
        args.save_models.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    tables = []
    for name in args.data:
        spec = DATASETS[name]
        manifold = spec["make"]()
        n = 400 if args.quick else args.n or ((args.n_roll or spec["n"]) if name == "roll" else spec["n"])
        base = dict(spec["base"])
        if args.quick:
            base.update(steps=40, batch_size=64, hidden=32, depth=1, emb_dim=32, val_points=80)
        elif args.steps:
            base["steps"] = args.steps  # candidates that fix their own steps keep them
        n_val = base.get("val_points", TrainConfig().val_points)
        data = manifold.sample(n + n_val, generator=torch.Generator().manual_seed(0))
        val = manifold.sample(200 if args.quick else 500, generator=torch.Generator().manual_seed(1))
        test = manifold.sample(200 if args.quick else 1000, generator=torch.Generator().manual_seed(2))
        d = int(manifold.point_dimension(test[:1])[0])
        runs: dict[str, list[dict]] = {}
        for cand in args.candidates:
            for seed in args.seeds:
                quick = {"steps": base["steps"]} if args.quick else {}  # a smoke test overrides every length
                config = TrainConfig(**{**base, **CANDIDATES[cand], **quick, "seed": seed})
                path = None if args.save_models is None else args.save_models / f"{name}-{cand}-seed{seed}.lmm"
                row = {"seed": seed, **run_candidate(data, manifold, val, test, config, path)}
                runs.setdefault(cand, []).append(row)
                print(f"{name} {cand} seed {seed}: error {row['tangent_error']:.3f}, "
                      f"dim {row['dimension_accuracy']:.3f}, normal {_number(row['normal_eigenvalue'])}, "
                      f"{row['train_seconds']:.0f} s", flush=True)
        knn_data = data[:n]  # the field holds as many points as the models train on
        knn = tune_knn(knn_data, val, test, manifold, ks=[8, 16, 32] if args.quick else [16, 32, 64, 128],
                       sigmas=sigma_grid(standardisation(knn_data)[0]), centred=True)
        print(f"{name} k-NN centred: error {knn['test']['tangent_error']:.3f}, k {knn['k']}", flush=True)
        results[name] = {"n": n, "base": base, "runs": runs, "knn_centred": knn}
        tables.append(summary_table(name, n, d, runs, knn))
    settings = {"candidates": {c: CANDIDATES[c] for c in args.candidates}, "seeds": args.seeds,
                "data": "training points seed 0 (the models hold out val_points of them), validation 500 (seed 1), "
                        "test 1,000 (seed 2); evaluation σ on validation, lowest tangent error (SPEC §8 grid)",
                "k-NN": "centred, k ∈ {16, 32, 64, 128} × the SPEC §8 σ grid, tuned on validation",
                "threads": torch.get_num_threads(), "quick": args.quick}
    notes = ["λ_{d+1}: mean (d+1)-th eigenvalue of G at the test points (0 for a perfect field); denoiser "
             "λ_{d+1}: the same of the denoiser's symmetrised Jacobian (its failure to shrink the curved normal, "
             "which the factor inherits through the bias term of SPEC §3)."]
    write_report(args.out, "recipe", title="Training recipe on curved data (issues 12, 14)",
                 env=env, settings=settings, tables=tables,
                 results=json_ready(results), notes=notes)
    return results


if __name__ == "__main__":
    main()
