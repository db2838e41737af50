"""Every geometry side by side on one task: tangent spaces, dimension, paths and cost (SPEC §7; "comparison harness").

For each built-in data set (S² in R³, S⁸ in R⁶⁴, the torus in R³) one run trains a small mean-centred model
(`learned_manifold_training.trainer.train`, CPU-sized) and compares, on held-out points of the same manifold:

* ``learned``: `LearnedCDC` at the model's default σ (picked by the trainer on its validation split);
* ``knn_centred`` / ``knn_uncentred``: `KNNCDC` on the training points, ``k`` and σ tuned by validation tangent
  error over ``k ∈ {16, 32, 64, 128}`` and the SPEC §8 grid ``s · 2^(i−6)``;
* ``score_jacobian``, ``stein``, ``tangential``: `ScoreJacobianMetric`, `SteinScoreMetric` and `TangentialMetric`
  with their SPEC §7 defaults (Stein's λ = 1000 s², Tangential's ε = 1/(σ² s²), ``s`` the model's data scale of
  SPEC §1), built on the trained model's denoiser at the model's default σ;
* ``euclidean``: `EuclideanMetric`; and LERP (the straight line) as the reference row for paths.

Reported per field:

* tangent-projector error ``‖ÛÛᵀ − P_T‖_F`` (true ``d``) and the fraction of points with the right gap-rule
  dimension. Low-rank fields use the eigenpairs of their factor (`geometry.eigenpairs`). The others build the
  dense ``G`` (``D ≤ 64`` here): `ScoreJacobianMetric` and `SteinScoreMetric` column by column from ``apply``
  (`CoMetricField.dense`); `TangentialMetric`, whose ``apply`` is a CG solve, as the inverse of its dense native
  metric ``J_sᵀJ_s + εI`` (same eigenvectors, eigenvalues inverted). The Euclidean ``G = I`` has no tangent
  information: its tangent error is n/a.
* interpolation of a few test pairs: the gradient flow `interpolate` (``δ = 10⁻²`` where the field takes one;
  for `TangentialMetric`, whose ``G ≈ P_T/ε``, the flow time is multiplied by ``ε`` so that its tangent rate
  matches) and the discrete `geodesic` (L-BFGS from the straight line): largest and mean distance of the path
  to the true manifold, Euclidean length against the true geodesic length (spheres), endpoint gap. The
  score-Jacobian metric needs ``G + δI`` positive definite for its CG solves; where ``δ = 10⁻²`` fails, the next
  ``δ`` of `SJ_DELTAS` is tried and the ``δ`` used is reported.
* time per query of ``apply`` (and ``factor`` where there is one) on a batch of 1,024 points, peak memory (CUDA).

Writes ``compare.json``, ``compare.md`` (one table per data set) and ``compare_<dataset>.png``.

Run: ``python -m benchmarks.compare --device cpu|cuda [--quick] [--out DIR]``.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from learned_manifold.evaluation import lerp, path_quality, peak_memory, time_per_query
from learned_manifold.flows import interpolate
from learned_manifold.geodesics import geodesic
from learned_manifold.geometry import (
    Eigenpairs,
    eigenpairs,
    intrinsic_dimension,
    lowrank_apply,
    lowrank_solve,
    projector_error,
    truncate_basis,
)
from learned_manifold.metrics import (
    KNNCDC,
    CoMetricField,
    EuclideanMetric,
    LearnedCDC,
    ScoreJacobianMetric,
    SteinScoreMetric,
    TangentialMetric,
)
from learned_manifold.precision import PRECISIONS
from learned_manifold.regularised import UncentredFieldWarning
from learned_manifold_training.data import get_dataset
from learned_manifold_training.trainer import TrainConfig, standardisation, train

from .accuracy import json_ready, sigma_grid, tune_knn
from .common import PAPER_NET, environment, make_parser, parse_args, write_report
from .compare_report import dataset_table, plot_dataset

__all__ = ["DATASETS", "SJ_DELTAS", "Method", "RescaledField", "field_spectrum", "main", "pick_pairs", "settings_for"]

DATASETS = ("sphere", "sphere8", "torus")
DELTA = 1e-2
"""Isotropic part ``δ`` of the fields used for flows and geodesics (where the field takes one)."""
SJ_DELTAS = (1e-2, 3e-2, 1e-1, 3e-1, 1.0)
"""``δ`` tried in turn for `ScoreJacobianMetric` paths until ``G + δI`` is positive definite along the path."""
SCALE_RANGE = (0.5, 2.0)
"""A low-rank field whose mean top eigenvalue lies outside this range is rescaled to 1 for paths."""


def settings_for(device: torch.device, quick: bool) -> dict:
    """Per-data-set model and evaluation sizes (``quick``: a smoke test of a few seconds per data set)."""
    if quick:
        small = {"n": 300, "steps": 40, "batch_size": 64, "net": {"hidden": 32, "depth": 1, "emb_dim": 32}}
        return {"datasets": {name: dict(small) for name in DATASETS}, "n_val": 48, "n_test": 32, "ks": [16, 32],
                "pairs": 2, "flow_points": 9, "geo_points": 8, "geo_steps": 10, "time_batch": 64, "repeats": 1,
                "trainer_val": 60}
    gpu = device.type == "cuda"
    low_d = {"n": 4000, "steps": 10_000 if gpu else 6000, "batch_size": 256,
             "net": {"hidden": 128, "depth": 2, "emb_dim": 64}}
    high_d = {"n": 10_000, "steps": 20_000 if gpu else 2000, "batch_size": 1024 if gpu else 512,
              "net": dict(PAPER_NET) if gpu else {"hidden": 256, "depth": 3, "emb_dim": 128}}
    return {"datasets": {"sphere": dict(low_d), "sphere8": high_d, "torus": dict(low_d)}, "n_val": 500,
            "n_test": 500, "ks": [16, 32, 64, 128], "pairs": 8, "flow_points": 33, "geo_points": 20,
            "geo_steps": 200, "time_batch": 1024, "repeats": 3, "trainer_val": 200}


@dataclass
class Method:
    """One row of the comparison.

    Attributes:
        name: key in the results; label: display name.
        field: the field whose tangent spaces and cost are measured (no isotropic part).
        path_fields: ``(δ, field)`` candidates for flows and geodesics, tried in order until one succeeds.
        time_scale: multiplies the flow time (``ε`` for `TangentialMetric`, else 1).
        setting: the field's settings, as text.
    """

    name: str
    label: str
    field: CoMetricField
    path_fields: list[tuple[float, CoMetricField]] = field(default_factory=list)
    time_scale: float = 1.0
    setting: str = ""


class RescaledField(CoMetricField):
    """``G/c + δI`` of a low-rank field (whose own ``δ`` is 0): its scale normalised before ``δ`` is added.

    ``δ`` is not scale-free: a field whose eigenvalues are ``c ≪ 1`` (e.g. k-NN CDC at a large σ, where
    ``Γ ≈ local covariance / σ²``) would otherwise be swamped by ``δ``, and its flow would barely move.

    Args:
        base: a low-rank co-metric field with ``δ = 0``.
        c: the scale to divide ``G`` by (its mean top eigenvalue on test points).
        delta: the isotropic part added after rescaling.
    """

    low_rank = True

    def __init__(self, base: CoMetricField, c: float, delta: float) -> None:
        super().__init__()
        self.base = base
        self.c = float(c)
        self.delta = float(delta)
        self.dim = base.dim
        self.centred = base.centred

    def factor(self, x: Tensor) -> Tensor:
        return self.base.factor(x) / math.sqrt(self.c)

    def apply(self, x: Tensor, w: Tensor) -> Tensor:
        return lowrank_apply(self.factor(x), w, self.delta)

    def metric(self, x: Tensor, v: Tensor) -> Tensor:
        return lowrank_solve(self.factor(x), v, self.delta)

    def project(self, x: Tensor) -> Tensor:
        return self.base.project(x)

    @property
    def can_project(self) -> bool:
        return self.base.can_project


def pick_pairs(x: Tensor, scale: float, n_pairs: int) -> tuple[Tensor, Tensor]:
    """Consecutive pairs ``(x[2i], x[2i+1])`` whose chord lies in ``[0.5 s, 1.5 s]``, the first ``n_pairs`` found.

    Far enough apart for the paths to bend, and on spheres of radius ``≈ s`` well away from antipodal pairs
    (whose geodesic is not unique).
    """
    starts, ends = x[0::2], x[1::2]
    m = min(starts.shape[0], ends.shape[0])
    chord = (starts[:m] - ends[:m]).norm(dim=-1)
    keep = ((chord >= 0.5 * scale) & (chord <= 1.5 * scale)).nonzero().flatten()[:n_pairs]
    if keep.numel() < n_pairs:  # too few: take the first pairs whatever their chord
        keep = torch.arange(min(n_pairs, m))
    return starts[keep], ends[keep]


def field_spectrum(fld: CoMetricField, x: Tensor) -> Eigenpairs:
    """Eigenpairs of ``G(x)`` (descending), ``(B, r)`` values and ``(B, D, r)`` vectors.

    Low-rank fields: `geometry.eigenpairs` of the factor (r×r Gram, or ``G`` for r > D). `TangentialMetric`: the
    dense native metric ``M`` built from ``metric`` columns, inverted (``G = M^{-1}``). Others: the dense ``G``
    from ``apply`` columns. Small D only.
    """
    if fld.low_rank:
        return eigenpairs(fld.factor(x))
    b, d = x.shape
    eye = torch.eye(d, dtype=x.dtype, device=x.device)
    if isinstance(fld, TangentialMetric):
        metric = torch.stack([fld.metric(x, eye[i].expand(b, d)) for i in range(d)], dim=-1)
        metric = 0.5 * (metric + metric.transpose(-1, -2))
        g = torch.linalg.inv(metric.double())
    else:
        g = fld.dense(x).double()
    g = 0.5 * (g + g.transpose(-1, -2))
    values, vectors = torch.linalg.eigh(g)
    return Eigenpairs(values=values.flip(-1).clamp_min(0.0).to(x.dtype), vectors=vectors.flip(-1).to(x.dtype))


def _spectral_scores(method: Method, x: Tensor, manifold) -> dict:
    """Tangent error (n/a for the Euclidean field), dimension accuracy, median dimension, mean λ₁, seconds."""
    start = time.perf_counter()
    pairs = field_spectrum(method.field, x)
    dims = intrinsic_dimension(pairs.values)
    true_dim = manifold.point_dimension(x)
    basis = manifold.tangent_basis(x).to(pairs.vectors.dtype)
    error = projector_error(truncate_basis(pairs.vectors, true_dim), basis).mean()
    return {
        "tangent_error": None if isinstance(method.field, EuclideanMetric) else float(error),
        "dimension_accuracy": float((dims == true_dim).float().mean()),
        "median_dimension": int(dims.float().median().item()),
        "mean_top_eigenvalue": float(pairs.values[:, 0].mean()),
        "seconds": time.perf_counter() - start,
    }


def _quality(path: Tensor, manifold, target: Tensor) -> dict:
    """`path_quality` means over pairs, plus per-pair max distance."""
    q = path_quality(path, manifold=manifold, target=target)
    return {**q.summary(), "max_distance_per_pair": [float(v) for v in q.max_distance]}


def _paths(method: Method, x0: Tensor, x1: Tensor, manifold, cfg: dict) -> dict:
    """Flow and geodesic of every pair with the first path field that succeeds; errors are recorded as text."""
    with warnings.catch_warnings():  # the uncentred k-NN rows are there to show SPEC §2's point: no warning per run
        warnings.simplefilter("ignore", UncentredFieldWarning)
        return _paths_of(method, x0, x1, manifold, cfg)


def _paths_of(method: Method, x0: Tensor, x1: Tensor, manifold, cfg: dict) -> dict:
    out: dict = {}
    for kind in ("flow", "geodesic"):
        failures = []
        for delta, fld in method.path_fields:
            start = time.perf_counter()
            try:
                if kind == "flow":
                    res = interpolate(fld, x0, x1, t_end=8.0 * method.time_scale, n_points=cfg["flow_points"])
                    extra = {"reached": float(res.reached.float().mean()), "n_evals": res.n_evals}
                else:
                    res = geodesic(fld, x0, x1, n_points=cfg["geo_points"], steps=cfg["geo_steps"])
                    extra = {"converged": float(res.converged.float().mean()), "steps": res.steps}
            except (ValueError, RuntimeError) as err:
                failures.append(f"δ={delta:g}: {err}")
                continue
            path = res.path.detach()
            out[kind] = {"delta": delta, **_quality(path, manifold, x1), **extra,
                         "seconds": time.perf_counter() - start, "failures": failures, "first_path": path[0]}
            break
        else:
            out[kind] = {"error": "; ".join(failures)}
    return out


def _cost(method: Method, x: Tensor, cfg: dict) -> dict:
    """Seconds per query of ``apply`` (and ``factor``) on ``x`` ``(B, D)``, and peak CUDA memory of ``apply``."""
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(3)).to(x)
    fld = method.field
    kwargs = {"repeats": cfg["repeats"], "warmup": 1 if cfg["repeats"] > 1 else 0}
    out = {"apply_s": time_per_query(lambda q: fld.apply(q, w), x, **kwargs),
           "factor_s": time_per_query(fld.factor, x, **kwargs) if fld.low_rank else None,
           "apply_peak_bytes": peak_memory(lambda q: fld.apply(q, w), x)}
    return out


def _methods(model, train_x: Tensor, knn: dict[bool, dict], dim: int) -> list[Method]:
    """The fields compared on one data set (model at its default σ; k-NN at its tuned k and σ)."""
    sigma = float(model.config.default_sigma)
    methods = [Method("learned", "LearnedCDC (metric matching)", LearnedCDC(model),
                      [(DELTA, LearnedCDC(model, delta=DELTA))], setting=f"σ = {sigma:.3g}, r = {model.rank}")]
    for centred in (True, False):
        k, s = knn[centred]["k"], knn[centred]["sigma"]
        name = "knn_centred" if centred else "knn_uncentred"
        label = f"KNNCDC {'centred' if centred else 'uncentred'} (tuned)"
        methods.append(Method(name, label, KNNCDC(train_x, k=k, sigma=s, centred=centred),
                              [(DELTA, KNNCDC(train_x, k=k, sigma=s, centred=centred, delta=DELTA))],
                              setting=f"k = {k}, σ = {s:.3g}"))
    methods.append(Method("score_jacobian", "ScoreJacobianMetric", ScoreJacobianMetric(model, sigma),
                          [(d, ScoreJacobianMetric(model, sigma, delta=d)) for d in SJ_DELTAS],
                          setting=f"σ = {sigma:.3g}"))
    stein = SteinScoreMetric(model, sigma)  # λ = 1000 s² (the paper's 1000 in units of the data's scale)
    methods.append(Method("stein", "SteinScoreMetric", stein,
                          [(DELTA, SteinScoreMetric(model, sigma, lam=stein.lam, delta=DELTA))],
                          setting=f"σ = {sigma:.3g}, λ = 1000 s² = {stein.lam:.3g}"))
    tangential = TangentialMetric(model, sigma)
    methods.append(Method("tangential", "TangentialMetric (Be Tangential)", tangential, [(0.0, tangential)],
                          time_scale=tangential.eps, setting=f"σ = {sigma:.3g}, ε = 1/(σ² s²) = {tangential.eps:.3g}"))
    methods.append(Method("euclidean", "EuclideanMetric", EuclideanMetric(dim), [(0.0, EuclideanMetric(dim))],
                          setting="G = I"))
    return methods


def run_dataset(name: str, cfg: dict, device: torch.device) -> dict:
    """Train, tune and compare every field on one data set; returns the raw results (paths kept for the plot)."""
    dcfg = cfg["datasets"][name]
    pool, manifold = get_dataset(name, dcfg["n"] + cfg["trainer_val"], seed=0)
    val = get_dataset(name, cfg["n_val"], seed=1)[0].to(device)
    test = get_dataset(name, cfg["n_test"], seed=2)[0].to(device)
    train_x = pool[: dcfg["n"]].to(device)
    scale = standardisation(train_x)[0]
    dim = train_x.shape[1]

    config = TrainConfig(steps=dcfg["steps"], batch_size=dcfg["batch_size"], val_points=cfg["trainer_val"],
                         seed=0, precision=cfg["precision"], **dcfg["net"])
    start = time.perf_counter()
    trained = train(pool, config, manifold=manifold, progress=False, device=device)
    train_seconds = time.perf_counter() - start
    model = trained.model
    print(f"[{name}] trained in {train_seconds:.0f} s, validation {trained.validation.get('tangent_error'):.3f} "
          f"at σ {trained.validation['sigma']:.3g}", flush=True)

    knn = {}
    for centred in (True, False):
        knn[centred] = tune_knn(train_x, val, test, manifold, ks=cfg["ks"], sigmas=sigma_grid(scale),
                                centred=centred)
        knn[centred].pop("validation")
    methods = _methods(model, train_x, knn, dim)

    x0, x1 = pick_pairs(test, scale, cfg["pairs"])
    time_x = get_dataset(name, cfg["time_batch"], seed=3)[0].to(device)
    rows = {}
    for method in methods:
        start = time.perf_counter()
        row = {"label": method.label, "setting": method.setting, **_spectral_scores(method, test, manifold)}
        c = row["mean_top_eigenvalue"]
        if method.field.low_rank and not SCALE_RANGE[0] <= c <= SCALE_RANGE[1]:
            method.path_fields = [(DELTA, RescaledField(method.field, c, DELTA))]
            row["path_rescale"] = c
            row["setting"] += f"; paths: G/{c:.3g}"
        row.update(_paths(method, x0, x1, manifold, cfg))
        row.update(_cost(method, time_x, cfg))
        row["total_seconds"] = time.perf_counter() - start
        rows[method.name] = row
        print(f"[{name}] {method.name}: error {row['tangent_error']}, dim acc {row['dimension_accuracy']:.2f}, "
              f"{row['total_seconds']:.1f} s", flush=True)
    line = lerp(x0, x1, cfg["geo_points"])
    lerp_q = _quality(line, manifold, x1)
    rows["lerp"] = {"label": "LERP (straight line)", "setting": "reference",
                    "flow": {**lerp_q, "first_path": line[0]}, "geodesic": {**lerp_q, "first_path": line[0]}}
    return {"dataset": name, "dim": dim, "intrinsic_dim": manifold.dim, "n_train": dcfg["n"],
            "train": {"steps": dcfg["steps"], "batch_size": dcfg["batch_size"], "net": dcfg["net"],
                      "seconds": train_seconds, "validation_tangent_error": trained.validation.get("tangent_error"),
                      "default_sigma": float(model.config.default_sigma)},
            "knn": {("centred" if c else "uncentred"): {k: v for k, v in knn[c].items()} for c in (True, False)},
            "pairs": int(x0.shape[0]), "rows": rows, "data_sample": train_x[:1500]}


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the comparison and write ``compare.json``, ``compare.md`` and one PNG per data set; returns results."""
    parser = make_parser(__doc__.splitlines()[0], results="benchmarks/results/<device>", threads=1)
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS), help="data sets to run")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="training precision (default fp32: the tables in RESULTS.md were measured in fp32)")
    args = parse_args(parser, argv)
    device = args.device
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    cfg = settings_for(device, args.quick)
    cfg["precision"] = args.precision
    env = environment(device)

    results, tables = {}, []
    for name in args.datasets:
        res = run_dataset(name, cfg, device)
        _, manifold = get_dataset(name, 1, seed=0)
        plot_path = out / f"compare_{name}.png"
        plot_dataset(res, manifold, plot_path)
        res["plot"] = plot_path.name
        tables.append(dataset_table(res))
        results[name] = json_ready(res)

    settings = {
        "models": {n: {k: cfg["datasets"][n][k] for k in ("n", "steps", "batch_size", "net")} for n in args.datasets},
        "training": "mean-centred, log-uniform σ on [3e-3, 4]·s (library defaults), lr 2e-3, denoiser alone for the "
                    "first 25% of steps; default σ picked by the trainer (lowest validation tangent error)",
        "k-NN tuning": f"k ∈ {cfg['ks']} × σ ∈ s·2^(i−6), i = 0..10, lowest tangent error on {cfg['n_val']} "
                       "validation points",
        "evaluation": f"{cfg['n_test']} test points; {cfg['pairs']} pairs with chord in [0.5 s, 1.5 s]",
        "flows": f"interpolate (dopri5, t_end 8, {cfg['flow_points']} output points), δ = {DELTA:g} where the field "
                 "takes one",
        "geodesics": f"geodesic (L-BFGS from the straight line), {cfg['geo_points']} points, ≤ {cfg['geo_steps']} "
                     f"iterations, δ = {DELTA:g} where the field takes one",
        "timing": f"apply (and factor) on {cfg['time_batch']} points, median of {cfg['repeats']} calls",
        "training precision": cfg["precision"],
        "threads": torch.get_num_threads(),
        "quick": args.quick,
    }
    notes = [
        "Tangent error: mean ‖ÛÛᵀ − P_T‖_F with the true d; dimension: gap rule of SPEC §5 (accuracy and median). "
        "Dense spectra for the non-low-rank fields (D ≤ 64): ScoreJacobian and Stein from `dense` (D apply calls); "
        "Tangential as the inverse of its dense native metric. Euclidean G = I: tangent error n/a, dimension D.",
        "mean λ₁: mean largest eigenvalue of G at the test points; it sets how much δ = 1e-2 matters for a field.",
        "Paths: 'max / mean dist' are the largest and mean distance of the path points to the true manifold "
        "(mean over pairs); 'length (÷ true)' is the Euclidean polyline length and its ratio to the true geodesic "
        "length (spheres only); 'end gap' is ‖x(T) − x₁‖ (flows need not reach x₁; geodesics have fixed ends).",
        f"ScoreJacobianMetric paths: δ is raised through {list(SJ_DELTAS)} until CG finds G + δI positive definite "
        "along the path (a learned Jacobian need not be PSD); the δ used is shown in brackets.",
        "TangentialMetric: ε = 1/(σ² s²), so G ≈ P_T/ε; its flow runs for 8ε so its tangent rate matches the "
        "CDC fields.",
        f"δ is not scale-free: a low-rank field whose mean λ₁ lies outside {list(SCALE_RANGE)} (e.g. k-NN CDC tuned to "
        "a large σ, where Γ ≈ local covariance/σ²) is divided by its mean λ₁ before δ is added, for flows and "
        "geodesics only ('paths: G/c' in the setting column).",
        "Uncentred k-NN paths are shown to illustrate SPEC §2 (uncentred fields are not meant for paths).",
        "LERP: the straight line, the initial path of every geodesic; shown in both path groups.",
        "Peak memory is measured on CUDA only (n/a on CPU).",
    ]
    if device.type == "cpu" and not args.quick:
        low, high = cfg["datasets"]["sphere"], cfg["datasets"]["sphere8"]
        notes.append(f"CPU-sized models: S² and torus hidden 128 × 2 blocks, {low['steps']:,} steps of batch "
                     f"{low['batch_size']} on {low['n']:,} points; S⁸ hidden 256 × 3 blocks, {high['steps']:,} steps "
                     f"of batch {high['batch_size']} on {high['n']:,} points; one thread. On this budget the S⁸ "
                     "model's denoiser has not learned the radial (sphere-normal) shrinkage, so its centring fails "
                     "(9 eigenvalues near 1) and the three denoiser-based fields inherit a poor denoiser; see "
                     "accuracy.md.")
    _, md_path = write_report(out, "compare", title="Every geometry side by side", env=env, settings=settings,
                              tables=tables, results=results, notes=notes)
    print(md_path.read_text())
    return results


if __name__ == "__main__":
    main()
