"""Paths between same-class digits (issue 9): do the learned flow and geodesic stay closer to the data than LERP?

Data and model: scikit-learn's 8×8 digits (pixel values 0..16), split as the image demo splits them, and a model
trained by the demo's recipe (`training.image_demo.demo_config`) on the training part, or ``--model PATH`` (a
model trained on that same split). Pairs: distinct training images of one class, 8 of them to choose each
method's settings and ``--pairs`` others (default 20) to score.

Methods (SPEC §6; every path has 17 points, the flows resampled to equal arc length as `learned-manifold show`
does): LERP; metric matching's gradient flow and geodesic (library defaults) at the bandwidth σ, from every
second σ of the trainer's grid (`training.validation.sigma_grid`: factors of 4 inside the training range), that
gives the lowest validation score; the centred k-NN CDC's flow and geodesic (SPEC §7) with ``k`` and σ chosen the
same way. A flow that stops short scores well by staying near its start, so
flows are chosen among the settings that close `FLOW_REACH` of the gap. Score: the mean distance from a path's
interior points to the nearest training image, and a locally trained classifier's mean confidence in the pair's
class.

A second part, ``shell``, shows what the network is asked to learn. In 64 dimensions a training input
``z = x + σε`` lies about ``8σ`` from its clean image, farther than the digits are from each other (median
nearest-neighbour distance 16) once ``σ ≳ 2``. There the posterior over the training images, and so the exact
CDC of the empirical measure (`KNNCDC` with ``k = N``), collapses onto one image; the network, which generalises,
does not. The table gives the top eigenvalues of both at training inputs and at the data, and their relative
Frobenius distance ``‖AAᵀ − BBᵀ‖ / (‖AAᵀ‖ + ‖BBᵀ‖)`` (0: equal; 1: one of them is zero; from the factors'
Gram matrices, no D × D matrix).

Writes ``image_paths.json`` / ``.md`` and ``image_paths.png`` (the strips of the first three scored pairs, one row
per method). Run: ``python -m benchmarks.image_paths [--quick] [--model PATH] [--steps N] [--pairs P]``.
"""

from __future__ import annotations

import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from learned_manifold import load_model
from learned_manifold.classifier import train_classifier
from learned_manifold.image_figures import plot_interpolation_strips
from learned_manifold.metrics import KNNCDC, LearnedCDC
from learned_manifold.models import MetricModel
from learned_manifold_training.data import get_image_dataset
from learned_manifold_training.image_demo import demo_config, demo_split
from learned_manifold_training.show import interpolation_paths, interpolation_scores, same_class_pairs
from learned_manifold_training.trainer import train
from learned_manifold_training.validation import sigma_grid

from .common import Table, environment, make_parser, parse_args, write_report

__all__ = ["main", "relative_difference", "score_paths", "shell_rows"]

PATH_POINTS = 17


def settings_for(quick: bool) -> dict:
    if quick:
        return {"steps": 60, "pairs": 2, "val_pairs": 1, "sigma_every": 10, "knn_k": [16],
                "knn_sigma_factors": [0.5], "classifier_steps": 30, "shell_sigmas": [8.0], "shell_points": 20}
    return {"steps": 2500, "pairs": 20, "val_pairs": 8, "sigma_every": 2,
            "knn_k": [16, 32, 64], "knn_sigma_factors": [0.25, 0.5, 1.0], "classifier_steps": 600,
            "shell_sigmas": [1.0, 2.0, 4.0, 8.0, 16.0], "shell_points": 300}


KINDS = {"flow": "gradient flow", "geodesic": "geodesic", "lerp": "LERP"}
"""Path kinds: the keys of `score_paths`' results, the values the names `interpolation_paths` gives them."""


def score_paths(field, x0: torch.Tensor, x1: torch.Tensor, data: torch.Tensor, labels: torch.Tensor,
                classifier) -> tuple[dict[str, dict], dict[str, torch.Tensor]]:
    """Flow and geodesic of ``field`` between ``x0`` and ``x1`` ``(B, D)`` scored against ``data`` ``(N, C, H, W)``:
    ``({"flow" | "geodesic" | "lerp": {"mean_nearest", "confidence", ...}}, {kind: paths (B, T, D)})``, scores
    as means over the pairs (``labels`` ``(B,)``)."""
    shape = tuple(data.shape[1:])
    paths, closed = interpolation_paths(field, x0, x1, PATH_POINTS)
    out = {}
    for kind, name in KINDS.items():
        per_pair = [interpolation_scores({name: paths[name][b].reshape(PATH_POINTS, *shape)}, data,
                                         classifier=classifier, label=int(labels[b]))[name]
                    for b in range(x0.shape[0])]
        out[kind] = {"mean_nearest": sum(s.mean_nearest for s in per_pair) / len(per_pair),
                     "per_pair": [round(s.mean_nearest, 3) for s in per_pair],
                     "confidence": sum(s.confidence for s in per_pair) / len(per_pair)}
    out["flow"]["gap_closed"] = float(closed.mean())
    return out, {kind: paths[name] for kind, name in KINDS.items()}


FLOW_REACH = 0.9
"""A flow is an interpolation only if it closes this fraction of the gap: one that stays at its start scores well."""


def _choose(candidates: dict, x0, x1, data, labels, classifier) -> dict:
    """For each path kind, the candidate (name → field) with the lowest validation score; flows only among those
    closing `FLOW_REACH` of the gap on average (where none does, the one closing the most)."""
    scores = {name: score_paths(field, x0, x1, data, labels, classifier)[0] for name, field in candidates.items()}
    reaching = [n for n in scores if scores[n]["flow"]["gap_closed"] >= FLOW_REACH]
    flows = reaching or [max(scores, key=lambda n: scores[n]["flow"]["gap_closed"])]
    return {"flow": min(flows, key=lambda n: scores[n]["flow"]["mean_nearest"]),
            "geodesic": min(scores, key=lambda n: scores[n]["geodesic"]["mean_nearest"])}


def _small_gram(a: torch.Tensor) -> torch.Tensor:
    """``AᵀA`` or ``AAᵀ``, whichever is smaller (the same nonzero eigenvalues and Frobenius norm)."""
    return a.mT @ a if a.shape[-1] <= a.shape[-2] else a @ a.mT


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``‖AAᵀ − BBᵀ‖ / (‖AAᵀ‖ + ‖BBᵀ‖)`` (Frobenius) per point for factors ``(n, D, r)`` and ``(n, D, s)``: 0 when
    the co-metrics agree, 1 when one is zero; computed from Gram matrices of side ``min(D, r)``, ``min(D, s)``."""
    norm_a, norm_b = _small_gram(a).square().sum((1, 2)), _small_gram(b).square().sum((1, 2))  # ‖AAᵀ‖², ‖BBᵀ‖²
    diff = (norm_a - 2 * (a.mT @ b).square().sum((1, 2)) + norm_b).clamp_min(0).sqrt()
    return diff / (norm_a.sqrt() + norm_b.sqrt()).clamp_min(torch.finfo(a.dtype).tiny)


def shell_rows(model: MetricModel, fit: torch.Tensor, sigmas: list[float], n_points: int, seed: int = 0) -> list:
    """The learned co-metric against the empirical measure's exact CDC at the data and at training inputs."""
    gen = torch.Generator().manual_seed(seed)
    x = fit[torch.randperm(fit.shape[0], generator=gen)[:n_points]]
    rows = []
    for sigma in sigmas:
        learned, exact = LearnedCDC(model, sigma), KNNCDC(fit, k=fit.shape[0], sigma=sigma)
        for where, pts in (("data", x), ("training inputs", x + sigma * torch.randn(x.shape, generator=gen))):
            a, b = learned.factor(pts).double(), exact.factor(pts).double()  # (n, D, r), (n, D, N)
            rel = relative_difference(a, b)
            top = [torch.linalg.eigvalsh(_small_gram(f)).flip(-1)[:, :3].median(0).values.tolist() for f in (a, b)]
            rows.append({"sigma": sigma, "where": where, "input_distance": float(sigma * fit.shape[1] ** 0.5)
                         if where != "data" else 0.0, "learned_top3": top[0], "exact_top3": top[1],
                         "relative_difference": float(rel.median())})
    return rows


def draw_pairs(drawn: dict, methods: dict, *, test_labels: torch.Tensor, shape: tuple, value_range: tuple,
               path, n_pairs: int = 3) -> None:
    """Strips of the first ``n_pairs`` scored pairs, one row per method, its distance to the data under its name."""
    order = ["LERP", *[n for n in drawn if n != "LERP"]]
    figs = []
    for b in range(min(n_pairs, test_labels.shape[0])):
        fig = plot_interpolation_strips(
            {name: drawn[name][b] for name in order}, shape, value_range=value_range,
            scores={name: f"{methods[name]['setting']}\nnear {methods[name]['per_pair'][b]:.3g}".strip()
                    for name in order},
            title=f"Digits, pair {b} (class {int(test_labels[b])}): near = mean distance to the nearest training "
                  "image")
        figs.append(fig)
    images = [_figure_array(f) for f in figs]
    for f in figs:
        plt.close(f)
    if images:
        plt.imsave(path, np.concatenate(images, axis=0))


def _figure_array(fig) -> np.ndarray:
    """The figure's pixels ``(H, W, 4)``, so that several figures stack into one image file."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba()).copy()


def main(argv=None) -> int:
    parser = make_parser(__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="a model trained on the demo's split (default: train one)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default 2,500, the demo's)")
    parser.add_argument("--pairs", type=int, default=None, help="scored pairs (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the split, the training and the pairs")
    args = parse_args(parser, argv)
    env = environment(args.device)  # date and load at the start of the run
    cfg = settings_for(args.quick)
    for key, value in (("steps", args.steps), ("pairs", args.pairs)):
        if value is not None:
            cfg[key] = value
    args.out.mkdir(parents=True, exist_ok=True)
    images = get_image_dataset("digits", None, seed=args.seed)[0]
    fit_idx, _ = demo_split(images.x.shape[0], args.seed)
    data, labels = images.x[fit_idx].float(), images.labels[fit_idx]
    flat = data.reshape(data.shape[0], -1)
    start = time.perf_counter()
    if args.model is None:
        model = train(data, demo_config(cfg["steps"], args.seed), progress=False, device=args.device).model.cpu()
        cfg["model"] = f"trained here, {cfg['steps']} steps"
    else:
        model = load_model(args.model)
        cfg["model"] = str(args.model)
    train_seconds = time.perf_counter() - start
    classifier = train_classifier(data, labels, steps=cfg["classifier_steps"], seed=args.seed)
    pairs = same_class_pairs(labels, cfg["val_pairs"] + cfg["pairs"], seed=args.seed)
    val, test = pairs[: cfg["val_pairs"]], pairs[cfg["val_pairs"]:]
    v0, v1, t0, t1 = flat[val[:, 0]], flat[val[:, 1]], flat[test[:, 0]], flat[test[:, 1]]
    spacing = float(torch.cdist(flat, flat).fill_diagonal_(float("inf")).min(1).values.median())

    s0 = model.config.default_sigma
    learned = {f"σ={s:.3g}": LearnedCDC(model, s) for s in sigma_grid(model)[:: cfg["sigma_every"]]}
    knn = {f"k={k}, σ={spacing * f:.3g}": KNNCDC(flat, k=k, sigma=spacing * f)
           for k in cfg["knn_k"] for f in cfg["knn_sigma_factors"]}
    drawn: dict[str, torch.Tensor] = {}  # method → (B, T, D) test paths, for the picture
    rows, results = [], {"spacing": spacing, "train_seconds": train_seconds, "default_sigma": s0, "methods": {}}
    for family, candidates in (("metric matching", learned), ("k-NN centred", knn)):
        chosen = _choose(candidates, v0, v1, data, labels[val[:, 0]], classifier)
        tested = {name: score_paths(candidates[name], t0, t1, data, labels[test[:, 0]], classifier)
                  for name in set(chosen.values())}
        for kind in ("flow", "geodesic"):
            results["methods"][f"{family} {kind}"] = {"setting": chosen[kind], **tested[chosen[kind]][0][kind]}
            drawn[f"{family} {kind}"] = tested[chosen[kind]][1][kind]
        results["methods"]["LERP"] = {"setting": "", **tested[chosen["flow"]][0]["lerp"]}
        drawn["LERP"] = tested[chosen["flow"]][1]["lerp"]
    for name in ["LERP", *[n for n in results["methods"] if n != "LERP"]]:
        r = results["methods"][name]
        closer = sum(a < b for a, b in zip(r["per_pair"], results["methods"]["LERP"]["per_pair"], strict=True))
        rows.append([name, r["setting"], f"{r['mean_nearest']:.2f}", f"{closer} / {len(r['per_pair'])}",
                     f"{r['confidence']:.2f}", f"{r['gap_closed']:.2f}" if "gap_closed" in r else ""])
    results["shell"] = shell_rows(model, flat, cfg["shell_sigmas"], cfg["shell_points"], seed=args.seed)
    shell = [[f"{r['sigma']:g}", r["where"], f"{r['input_distance']:.3g}",
              " / ".join(f"{v:.3g}" for v in r["learned_top3"]), " / ".join(f"{v:.3g}" for v in r["exact_top3"]),
              f"{r['relative_difference']:.3g}"] for r in results["shell"]]
    tables = [
        Table(f"Digits: paths between {len(test)} same-class pairs of training images (17 points; pixel units "
              f"0..16; median nearest-neighbour distance {spacing:.3g}; lower is closer to the data)",
              ["path", "setting (chosen on validation pairs)", "mean distance to nearest training image",
               "pairs closer than LERP", "classifier confidence", "flow: gap closed"], rows),
        Table("What the network is asked to learn: the learned co-metric against the exact CDC of the training "
              "images (KNNCDC, k = N), medians over points",
              ["σ", "at", "distance from the data", "learned: top 3 eigenvalues", "exact: top 3 eigenvalues",
               "‖G − Ĝ‖ / (‖G‖ + ‖Ĝ‖)"], shell),
    ]
    draw_pairs(drawn, results["methods"], test_labels=labels[test[:, 0]], shape=tuple(data.shape[1:]),
               value_range=(float(data.min()), float(data.max())), path=args.out / "image_paths.png")
    write_report(args.out, "image_paths", title="Paths between same-class digits", env=env,
                 settings=cfg, tables=tables, results=results,
                 notes=[f"Model: {cfg['model']}; default σ {s0:.3g}; {data.shape[0]} training images."])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
