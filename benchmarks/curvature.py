"""Curvature read from the learned geometry against the closed forms and the k-NN CDC (SPEC §12).

For each data set (the unit sphere S² in R³, S² embedded in R¹⁰, S⁴ in R¹⁰, the torus of radii 1 and 0.4 in R³) a
model is trained with the library's default recipe on 6,000 points and `learned_manifold.curvature` is evaluated
on 500 fresh points: the scalar curvature ``R`` against the truth (``d(d − 1)`` on a unit ``d``-sphere;
``2 cos φ / (r (R + r cos φ))`` on the torus), the mean-curvature vector ``H`` against ``−x`` (spheres), the
tangent error of the basis used, and the time per point. The same function on the centred k-NN CDC of the same
training points, with ``k`` and ``σ`` chosen on 500 validation points by the curvature error itself (the best
the baseline can do; the learned model's σ is its own default, chosen without the truth), is the comparison.

Run: ``python -m benchmarks.curvature [--quick] [--out DIR]`` (about 10 minutes on one CPU thread).
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from learned_manifold import curvature, load_model
from learned_manifold.evaluation import tangent_error
from learned_manifold.metrics import KNNCDC, LearnedCDC
from learned_manifold_training.config import TrainConfig
from learned_manifold_training.data import Sphere, Torus
from learned_manifold_training.trainer import train

from .accuracy import json_ready
from .common import Table, environment, make_parser, parse_args, write_report

__all__ = ["DATASETS", "main", "true_curvature"]

DATASETS = {
    "S² in R³": lambda: Sphere(2, 3),
    "S² in R¹⁰": lambda: Sphere(2, 10),
    "S⁴ in R¹⁰": lambda: Sphere(4, 10),
    "torus in R³": lambda: Torus(3),
}


KS = (16, 32, 64, 128, 256, 512)
SIGMAS = (0.025, 0.05, 0.1, 0.2)
"""The k-NN grid: up to k = 512, where the kernel is no longer truncated at σ ≤ 0.1 (`KNNCDC.cutoff_weight`)."""


def true_curvature(manifold, x: torch.Tensor) -> torch.Tensor:
    """The scalar curvature at on-manifold points ``x`` ``(B, D)``: ``(B,)`` (unit spheres and the torus)."""
    if isinstance(manifold, Torus):
        u = manifold.coordinates(x.double())
        phi = torch.atan2(u[:, 2], u[:, :2].norm(dim=-1) - manifold.major)
        return 2 * phi.cos() / (manifold.minor * (manifold.major + manifold.minor * phi.cos()))
    d = manifold.dim
    return torch.full((x.shape[0],), float(d * (d - 1)) / manifold.radius**2, dtype=torch.float64)


def score(field, x: torch.Tensor, manifold) -> dict:
    """Curvature error of ``field`` at ``x`` against the truth; the tangent error of its basis; seconds per point."""
    start = time.perf_counter()
    c, said = _curvature(field, x, manifold.dim)
    seconds = (time.perf_counter() - start) / x.shape[0]
    truth = true_curvature(manifold, x)
    ok = torch.isfinite(c.scalar)  # rows without an eigengap are NaN (counted)
    err = (c.scalar.double() - truth).abs()[ok]
    out = {"R_median": float(c.scalar[ok].median()), "R_true_median": float(truth.median()),
           "R_error_median": float(err.median()), "R_error_relative": float(err.median() / truth.abs().median()),
           "asymmetry_median": float(c.asymmetry[ok].median()), "seconds_per_point": seconds,
           "nan_points": int((~ok).sum()), "warnings": said,
           "tangent_error": float(tangent_error(field, x, manifold.tangent_basis(x)).mean())}
    if isinstance(manifold, Torus):
        out["R_correlation"] = float(torch.corrcoef(torch.stack([c.scalar.double()[ok], truth[ok]]))[0, 1])
    else:
        radius = x.double().norm(dim=-1, keepdim=True)
        out["H_error_median"] = float((c.mean.double() + x.double() / radius**2).norm(dim=-1)[ok].median())
    return out


def _curvature(field, x: torch.Tensor, d: int):
    """`curvature` with its warnings (a truncated k-NN kernel, missing eigengaps) kept as strings, not raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        c = curvature(field, x, d)
    return c, sorted({str(w.message)[:120] for w in caught})


def tune_knn(data: torch.Tensor, val: torch.Tensor, manifold, ks: Sequence[int], sigmas: Sequence[float]) -> dict:
    """The centred k-NN CDC's ``(k, σ)`` with the smallest median curvature error on ``val``."""
    best = None
    for k in ks:
        for sigma in sigmas:
            c, _ = _curvature(KNNCDC(data, k=k, sigma=sigma), val, manifold.dim)
            err = float((c.scalar.double() - true_curvature(manifold, val)).abs().nanmedian())
            if best is None or err < best["validation_error"]:
                best = {"k": k, "sigma": sigma, "validation_error": err}
    return best


def main(argv: Sequence[str] | None = None) -> dict:
    """Run every data set and write ``curvature.json`` / ``curvature.md``; returns the results."""
    parser = make_parser(__doc__.splitlines()[0], results="benchmarks/results/cpu/curvature", threads=1)
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the recipe's, 6,000)")
    args = parse_args(parser, argv)
    env = environment(torch.device("cpu"))  # date and load at the start of the run
    n_train, n_eval = (1000, 100) if args.quick else (6000, 500)
    steps = args.steps or (150 if args.quick else None)
    names = ["S² in R³"] if args.quick else list(DATASETS)
    results: dict = {}
    for name in names:
        manifold = DATASETS[name]()
        data = manifold.sample(n_train, generator=torch.Generator().manual_seed(0))
        val = manifold.sample(n_eval, generator=torch.Generator().manual_seed(1))
        test = manifold.sample(n_eval, generator=torch.Generator().manual_seed(2))
        cfg = TrainConfig(**({} if steps is None else {"steps": steps}), seed=0, checkpoint_every=0)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            train(data, cfg, manifold=manifold, out=Path(tmp) / "m.lmm", progress=False, device="cpu")
            seconds = time.perf_counter() - start
            model = load_model(Path(tmp) / "m.lmm")
        knn = tune_knn(data, val, manifold, ks=KS, sigmas=SIGMAS)
        results[name] = {"train_seconds": seconds, "sigma": model.config.default_sigma,
                         "learned": score(LearnedCDC(model), test, manifold),
                         "knn": {**knn, **score(KNNCDC(data, k=knn["k"], sigma=knn["sigma"]), test, manifold)}}
    tables = [_table(results, n_eval)]
    settings = {"data": f"{n_train:,} training points (seed 0), {n_eval} validation (seed 1) and test (seed 2)",
                "train": "learned_manifold_training.trainer.train with TrainConfig's defaults"
                         + (f", steps {steps}" if steps else ""),
                "k-NN": f"centred KNNCDC of the training points, k in {KS} and σ in {SIGMAS} chosen on the "
                        "validation points by the median curvature error", "threads": torch.get_num_threads(),
                "quick": args.quick}
    write_report(args.out, "curvature", title="Curvature from the learned geometry (SPEC §12)",
                 env=env, settings=settings, tables=tables,
                 results=json_ready(results), notes=[])
    return results


def _table(results: dict, n_test: int) -> Table:
    """The scalar-curvature table of ``results`` (`main`'s), scored on ``n_test`` test points per data set."""
    t = Table(f"Scalar curvature R on {n_test} test points (median absolute error; relative to the median |R|)",
              ["data", "true R", "learned: error (relative)", "k-NN tuned: error (relative)",
               "learned: H error (torus: R correlation)", "k-NN: the same", "tangent error learned / k-NN",
               "ms per point learned / k-NN"])
    for name, r in results.items():
        lr, kr = r["learned"], r["knn"]
        if "R_correlation" in lr:  # the torus: R varies, from −8.3 to 3.6
            truth = "2 cos φ / (r (R + r cos φ))"
            h = (f"correlation {lr['R_correlation']:.3f}", f"correlation {kr['R_correlation']:.3f}")
        else:
            truth = f"{lr['R_true_median']:g}"
            h = (f"{lr['H_error_median']:.3f}", f"{kr['H_error_median']:.3f}")
        t.add(name, truth, f"{lr['R_error_median']:.3g} ({lr['R_error_relative']:.1%})",
              f"{kr['R_error_median']:.3g} ({kr['R_error_relative']:.1%}; k = {kr['k']}, σ = {kr['sigma']:g})",
              h[0], h[1], f"{lr['tangent_error']:.3f} / {kr['tangent_error']:.3f}",
              f"{1e3 * lr['seconds_per_point']:.2f} / {1e3 * kr['seconds_per_point']:.2f}")
    return t


if __name__ == "__main__":
    main()
