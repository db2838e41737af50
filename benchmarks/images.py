"""Images (issue 9; SPEC §9, §10): feature stability, the paper's Table 1 cost, and k-NN against D on `blobs`.

Three parts (``--parts``, all by default):

* ``stability``: feature-stability curves (SPEC §10) on ``digits`` (scikit-learn 8×8) and ``blobs``: metric
  matching against the Euclidean ("random"), Stein and score-Jacobian directions, each field's bandwidth chosen
  on a held-out split (the σ whose score at the middle ε is lowest), features from a `SmallCNN` trained here
  (digits: on the labels; blobs: on the quadrant of the blob's centre). Mean ± std over test points per ε.
* ``table1``: time (median after warm-up) and peak memory of one evaluation (one draw of ``z ~ N(0, G(x))`` at
  one point, batch 1) for metric matching (factor network), Stein (one denoiser call) and the score Jacobian
  (``m`` Lanczos steps, each a JVP and a VJP through the denoiser), with the UNet presets at MNIST, CIFAR-10,
  CelebA-64 and FFHQ-256 sizes, untrained (cost only); `benchmarks.image_cost`. A run above the memory cap
  (``--memory-cap-gb``; CPU: peak RSS growth of the first call in a fresh process, CUDA: peak allocated) or
  raising out-of-memory is reported as OOM.
* ``blobs``: the tangent error of metric matching against tuned centred k-NN (k and σ tuned on validation, SPEC
  §8) on `blobs` at D = 256, 1,024 and 4,096 (side 16, 32, 64; the same 2-D manifold, finer images), equal N.

Run: ``python -m benchmarks.images --device cpu|cuda [--quick] [--parts ...]``.
"""

from __future__ import annotations

import math
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from learned_manifold.classifier import train_classifier  # noqa: E402
from learned_manifold.evaluation import field_eigenpairs, tangent_error  # noqa: E402
from learned_manifold.feature_stability import feature_stability  # noqa: E402
from learned_manifold.geometry import intrinsic_dimension  # noqa: E402
from learned_manifold.metrics import EuclideanMetric, LearnedCDC, ScoreJacobianMetric, SteinScoreMetric  # noqa: E402
from learned_manifold.models import MetricModel  # noqa: E402
from learned_manifold_training.data import get_image_dataset  # noqa: E402
from learned_manifold_training.data.blobs import Blobs  # noqa: E402
from learned_manifold_training.trainer import TrainConfig, standardisation, train  # noqa: E402

from .accuracy import sigma_grid, tune_knn  # noqa: E402
from .common import Table, environment, make_parser, parse_args, write_report  # noqa: E402
from .image_cost import run_table1  # noqa: E402

__all__ = ["main"]

PARTS = ("stability", "table1", "blobs")
PRESETS = ("mnist", "cifar10", "celeba64", "ffhq256")


def settings_for(device: torch.device, quick: bool) -> dict:
    if quick:
        return {"steps": 40, "n_blobs": 400, "sides": [8, 12], "test_points": 16, "samples": 2, "eps": [0.5, 2.0],
                "presets": ["mnist"], "lanczos": 2, "classifier_steps": 30, "backbone": "mlp", "digits_n": 600,
                "sigma_candidates": 2}
    big = device.type == "cuda"
    return {"steps": 20000 if big else 4000, "n_blobs": 20000 if big else 4000, "sides": [16, 32, 64],
            "test_points": 200 if big else 100, "samples": 8, "eps": [0.25, 0.5, 1.0, 2.0, 4.0],
            "presets": list(PRESETS), "lanczos": 16 if big else 8, "classifier_steps": 600,
            "backbone": "auto" if big else "mlp", "digits_n": 0, "sigma_candidates": 4}


def _train(x: torch.Tensor, cfg: dict, device: torch.device, *, rank: int, manifold=None):
    config = TrainConfig(steps=cfg["steps"], rank=rank, backbone=cfg["backbone"], checkpoint_every=0,
                         val_points=min(500, x.shape[0] // 5))
    start = time.perf_counter()
    result = train(x, config, manifold=manifold, progress=False, device=device)
    return result.model, time.perf_counter() - start


# ---------------------------------------------------------------------------------------------------------
# feature stability


def _fields(model: MetricModel, sigma: float) -> dict:
    return {"metric matching": LearnedCDC(model, sigma), "Stein": SteinScoreMetric(model, sigma),
            "score Jacobian": ScoreJacobianMetric(model, sigma)}


def _stability_on(name: str, images: torch.Tensor, labels: torch.Tensor, cfg: dict, device: torch.device) -> dict:
    gen = torch.Generator().manual_seed(0)
    perm = torch.randperm(images.shape[0], generator=gen)
    n_test = cfg["test_points"]
    test, val, fit = perm[:n_test], perm[n_test:2 * n_test], perm[2 * n_test:]
    model, seconds = _train(images[fit], cfg, device, rank=min(16, images[0].numel()))
    clf = train_classifier(images[fit], labels[fit], steps=cfg["classifier_steps"])
    flat = images.reshape(images.shape[0], -1)
    shape = tuple(images.shape[1:])
    eps_mid = cfg["eps"][len(cfg["eps"]) // 2]
    grid = [model.config.default_sigma * 2.0**k for k in range(-1, cfg["sigma_candidates"] - 1)]
    curves, chosen = {}, {}
    kwargs = dict(samples=cfg["samples"], lanczos_steps=cfg["lanczos"], data_shape=shape)
    for method in ("metric matching", "Stein", "score Jacobian"):
        scores = {s: feature_stability(_fields(model, s)[method], flat[val], clf.features, [eps_mid],
                                       **kwargs).mean[0] for s in grid}
        chosen[method] = min(scores, key=scores.get)
        field = _fields(model, chosen[method])[method]
        curves[method] = feature_stability(field, flat[test], clf.features, cfg["eps"], **kwargs)
    curves["Euclidean (random)"] = feature_stability(EuclideanMetric(flat.shape[1]), flat[test], clf.features,
                                                     cfg["eps"], **kwargs)
    return {"data": name, "train_seconds": seconds, "sigma": chosen,
            "classifier_accuracy": float((clf(images[test]).argmax(-1) == labels[test]).float().mean()),
            "curves": {m: {"eps": c.eps, "mean": c.mean, "std": c.std, "zero_samples": c.zero_samples,
                           "draws": c.per_point.shape[1] * cfg["samples"]} for m, c in curves.items()}}


def _blob_quadrants(blobs: Blobs, x: torch.Tensor) -> torch.Tensor:
    centre = blobs.chart_of(x)[:, :2]
    mid = centre.mean(0)
    return ((centre[:, 0] > mid[0]).long() * 2 + (centre[:, 1] > mid[1]).long())


def run_stability(cfg: dict, device: torch.device) -> list[dict]:
    digits = get_image_dataset("digits", n=cfg["digits_n"], seed=0)[0]
    out = [_stability_on("digits", digits.x, digits.labels, cfg, device)]
    blobs = Blobs(cfg["sides"][0])
    x = blobs.sample(cfg["n_blobs"], generator=torch.Generator().manual_seed(1))
    images = x.reshape(-1, 1, cfg["sides"][0], cfg["sides"][0])
    out.append(_stability_on(f"blobs {cfg['sides'][0]}x{cfg['sides'][0]}", images, _blob_quadrants(blobs, x),
                             cfg, device))
    return out


def plot_stability(results: list[dict], path) -> None:
    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4), squeeze=False)
    for ax, res in zip(axes[0], results, strict=True):
        for method, c in res["curves"].items():
            ax.errorbar(c["eps"], c["mean"], yerr=c["std"], marker="o", capsize=3, label=method)
        ax.set_xscale("log")
        eps = next(iter(res["curves"].values()))["eps"]
        ax.set_xticks(eps, [f"{e:g}" for e in eps])
        ax.minorticks_off()
        ax.set_xlabel("perturbation size ε (data units)")
        ax.set_ylabel("mean feature change ‖φ(x+δ) − φ(x)‖")
        ax.set_title(f"{res['data']}: feature stability (lower = more along the data)\n"
                     "error bars: std over test points", fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------------
# k-NN against D on blobs


def run_blobs(cfg: dict, device: torch.device, on_row=None) -> list[dict]:
    """One row per side; ``on_row(rows)`` after each (so a stopped run keeps the sides it finished)."""
    rows = []
    for side in cfg["sides"]:
        blobs = Blobs(side)
        gen = torch.Generator().manual_seed(2)
        data = blobs.sample(cfg["n_blobs"], generator=gen)
        val, test = blobs.sample(200, generator=gen), blobs.sample(200, generator=gen)
        model, seconds = _train(data.reshape(-1, 1, side, side), cfg, device, rank=4, manifold=blobs)
        field = LearnedCDC(model)
        truth = blobs.tangent_basis(test)
        err = float(tangent_error(field, test.to(device), truth.to(device)).mean())
        dim_ok = float((intrinsic_dimension(field_eigenpairs(field, test.to(device)).values) == 2).float().mean())
        knn = tune_knn(data, val, test, blobs, ks=[8, 16, 32, 64], sigmas=sigma_grid(standardisation(data)[0]),
                       centred=True)
        rows.append({"side": side, "D": side * side, "N": cfg["n_blobs"], "mm_tangent_error": err,
                     "mm_dimension_right": dim_ok, "mm_train_seconds": seconds,
                     "knn_tangent_error": knn["test"]["tangent_error"],
                     "knn_dimension_right": knn["test"].get("dimension_accuracy"), "knn_k": knn["k"],
                     "knn_sigma": knn["sigma"]})
        if on_row is not None:
            on_row(rows)
    return rows


def plot_blobs(rows: list[dict], path) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ds = [r["D"] for r in rows]
    ax.plot(ds, [r["mm_tangent_error"] for r in rows], marker="o", label="metric matching")
    ax.plot(ds, [r["knn_tangent_error"] for r in rows], marker="s", label="k-NN centred (k, σ tuned)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ds, [str(d) for d in ds])
    ax.set_xlabel("ambient dimension D (blob image side²)")
    ax.set_ylabel("mean tangent-projector error")
    ax.set_title(f"blobs, same 2-D manifold, N = {rows[0]['N']:,}", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = make_parser(__doc__.split("\n")[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--memory-cap-gb", type=float, default=16.0, help="memory cap for Table 1 (GiB)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: by device)")
    parser.add_argument("--points", type=int, default=None, help="blob images per data set (default: by device)")
    parser.add_argument("--sides", type=int, nargs="+", default=None, help="blob image sides (default 16 32 64)")
    parser.add_argument("--presets", nargs="+", choices=PRESETS, default=None, help="Table 1 presets")
    parser.add_argument("--lanczos", type=int, default=None,
                        help="Lanczos steps of the score-Jacobian draws, >= 2 (default: 2 with --quick, 8 on CPU, "
                             "16 on CUDA)")
    args = parse_args(parser, argv)
    if args.lanczos is not None and args.lanczos < 2:
        parser.error(f"--lanczos must be >= 2, got {args.lanczos}: one Lanczos step gives the Euclidean direction")
    cfg = settings_for(args.device, args.quick)
    for key, value in (("steps", args.steps), ("n_blobs", args.points), ("sides", args.sides),
                       ("presets", args.presets), ("lanczos", args.lanczos)):
        if value is not None:
            cfg[key] = value
    cap = int(args.memory_cap_gb * 2**30)
    args.out.mkdir(parents=True, exist_ok=True)
    env = environment(args.device)  # date and load at the start of the run
    results, tables, notes = {}, [], []

    def report() -> None:  # after every part, so a run stopped part-way keeps what it finished
        write_report(args.out, "images", title="Images: feature stability, Table 1, k-NN against D",
                     env=env, settings=cfg, tables=tables, results=results, notes=notes)

    if "table1" in args.parts:
        repeats = 3 if args.quick else 5

        def table1(rows: list[dict]) -> Table:
            cells = [[r["preset"], str(r["D"]), r["method"], "OOM" if r["oom"] else f"{r['seconds']:.3g} s",
                      "OOM" if r["oom"] else f"{(r['memory_bytes'] or 0) / 2**20:.0f} MiB"] for r in rows]
            return Table(f"Table 1: one evaluation at batch 1 (untrained presets; Lanczos steps {cfg['lanczos']}; "
                         f"memory cap {args.memory_cap_gb:g} GiB)", ["preset", "D", "method", "time (median)",
                                                                     "memory"], cells)

        def partial(rows: list[dict]) -> None:  # after every row: a run stopped part-way keeps the rows it finished
            results["table1"] = list(rows)
            write_report(args.out, "images", title="Images: feature stability, Table 1, k-NN against D", env=env,
                         settings={**cfg, "partial": "Table 1 stopped part-way"}, tables=[*tables, table1(rows)],
                         results=results, notes=notes)

        results["table1"] = run_table1(cfg, args.device, cap, repeats=repeats, on_row=partial)
        tables.append(table1(results["table1"]))
        notes.append(f"Time: the median of up to {repeats} calls after untimed warm-up (CPU: the memory call; "
                     "CUDA: two calls). CPU memory: each "
                     "(preset, method) in a fresh process, the peak growth of its resident set during its first "
                     "call over the resident set after building the network and input (sampled every 5 ms, exact "
                     "when the process's high-water mark rises); CUDA memory: torch.cuda.max_memory_allocated "
                     "during a warm call minus what was allocated before.")
        report()
    if "blobs" in args.parts:
        results["blobs"] = run_blobs(cfg, args.device, on_row=lambda rows: (results.update(blobs=rows), report()))
        plot_blobs(results["blobs"], args.out / "images_blobs.png")
        tables.append(Table("Tangent error on blobs against D (same manifold, equal N)",
                            ["D", "N", "metric matching", "dim right", "k-NN centred", "dim right", "k, σ"],
                            [[str(r["D"]), str(r["N"]), f"{r['mm_tangent_error']:.3f}",
                              f"{r['mm_dimension_right']:.2f}",
                              f"{r['knn_tangent_error']:.3f}", f"{r['knn_dimension_right'] or math.nan:.2f}",
                              f"{r['knn_k']}, {r['knn_sigma']:.3g}"] for r in results["blobs"]]))
        report()
    if "stability" in args.parts:
        results["stability"] = run_stability(cfg, args.device)
        plot_stability(results["stability"], args.out / "images_stability.png")
        for res in results["stability"]:
            cols = ["method", "σ"] + [f"ε={e:g}" for e in cfg["eps"]] + ["zero draws (left out)"]
            rows = [[m, f"{res['sigma'].get(m, float('nan')):.3g}"] +
                    [f"{mu:.3g} ± {sd:.2g}" for mu, sd in zip(c["mean"], c["std"], strict=True)] +
                    [f"{c['zero_samples']} of {c['draws']}"] for m, c in res["curves"].items()]
            tables.append(Table(f"Feature stability on {res['data']} (classifier accuracy "
                                f"{res['classifier_accuracy']:.2f}; lower is better)", cols, rows))
        report()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
