"""Latent spaces: the VAE pullback metric against metric matching, side by side (SPEC §11; paper §5.3, Fig. 9).

For each data set (the unit circle isometrically embedded in R¹⁰, and scikit-learn's 8×8 digits as flat 64-D
vectors in [0, 1]) one run trains, on CPU-sized budgets:

* a VAE with a 2-D latent space and the RBF decoder std of SPEC §11 (`learned_manifold_training.vae_trainer`);
* metric matching on the VAE's latent codes (posterior means; `learned-manifold encode` + `train` in the CLI);
* metric matching in data space, on the data themselves.

Then, for a few pairs of data points (circle: chord ≈ 1.7, an arc of about 116°; digits: two different classes),
it draws the paths

* ``lerp``: the latent straight line, decoded;
* ``vae_lerp_start``: the VAE pullback geodesic (`VAEPullbackMetric`, energy ``Σ Δᵀ M(z_mid) Δ``) started on the
  latent straight line (``geodesic``'s default start for a field that holds no data);
* ``vae_geodesic`` / ``vae_geodesic_decoded``: the same, and the Jacobian-free decoded energy, started on the
  shortest path through the codes' k-NN graph (`latent_graph_path`);
* ``mm_latent_geodesic`` / ``mm_latent_flow``: `geodesic` (default start: landing) and `interpolate` under
  ``g = (G + δI)^{-1}`` of the latent metric-matching model;
* ``mm_data_geodesic`` / ``mm_data_flow``: the same in data space, between the data points themselves (the latent
  paths join the decoded end points ``μ(z₀)``, ``μ(z₁)`` instead).

Latent paths are decoded with the decoder mean ``μ``. Scores per path, averaged over pairs: distance to the true
circle along the path (largest and mean), Euclidean length against the true geodesic between the path's own
ends, distance to the nearest data point (largest and mean), and for digits the confidence (largest class
probability) of a logistic-regression classifier trained on all digits, mean and lowest along the path.

Writes ``latent.json``, ``latent.md`` and ``latent_<dataset>.png``: the 2-D latent plane with each metric's log
volume element ``½ log det`` as background (VAE: ``M(z)``; metric matching: ``(G + δI)^{-1}``), the codes and
the paths drawn over it, and decoded strips (digits: images along one path per method; circle: decoded paths
in the circle's own plane).

Run: ``python -m benchmarks.latent --device cpu|cuda [--quick] [--out DIR]``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from learned_manifold import LearnedDataManifold, geodesic, interpolate  # noqa: E402
from learned_manifold.evaluation import lerp, nearest_distance, path_quality  # noqa: E402
from learned_manifold.metrics import LearnedCDC, VAEPullbackMetric  # noqa: E402
from learned_manifold.metrics.vae_pullback import latent_graph_path  # noqa: E402
from learned_manifold_training.data import Circle  # noqa: E402
from learned_manifold_training.trainer import TrainConfig, train  # noqa: E402
from learned_manifold_training.vae_trainer import VAETrainConfig, encode_data, train_vae  # noqa: E402

from .accuracy import json_ready  # noqa: E402
from .common import Table, environment, fmt_num, make_parser, parse_args, write_report  # noqa: E402

__all__ = ["DATASETS", "METHODS", "main", "pick_pairs", "settings_for"]

DATASETS = ("circle", "digits")
DELTA = 1e-2
"""Isotropic part ``δ`` of the metric-matching fields for paths (as in ``benchmarks.compare``)."""
METHODS = {
    "lerp": "latent LERP",
    "vae_lerp_start": "VAE geodesic, metric energy, LERP start",
    "vae_geodesic": "VAE geodesic, metric energy, graph start",
    "vae_geodesic_decoded": "VAE geodesic, decoded energy, graph start",
    "mm_latent_geodesic": "metric matching on codes: geodesic",
    "mm_latent_flow": "metric matching on codes: flow",
    "mm_data_geodesic": "metric matching in data space: geodesic",
    "mm_data_flow": "metric matching in data space: flow",
}
DRAWN = {"lerp": ("k", "-"), "vae_geodesic_decoded": ("tab:red", "-"), "vae_geodesic": ("tab:orange", ":"),
         "mm_latent_geodesic": ("tab:blue", "-"), "mm_latent_flow": ("tab:cyan", "--")}
"""Paths drawn in the latent panels: colour and line style."""


def settings_for(quick: bool) -> dict:
    """Sizes per data set (``quick``: a smoke test of a few seconds each)."""
    if quick:
        small = {"n": 300, "vae": {"steps": 60, "std_steps": 20, "hidden": 16, "batch_size": 64},
                 "mm": {"steps": 40, "batch_size": 64, "hidden": 16, "depth": 1, "emb_dim": 16},
                 "mm_data": {"steps": 40, "batch_size": 64, "hidden": 16, "depth": 1, "emb_dim": 16}}
        return {"datasets": {name: small for name in DATASETS}, "pairs": 2, "geo_points": 8, "geo_steps": 10,
                "flow_points": 9, "grid": 24, "strip": 5}
    mm = {"steps": 3000, "batch_size": 256, "hidden": 64, "depth": 2, "emb_dim": 64}
    return {"datasets": {
        "circle": {"n": 2000, "vae": {"steps": 3000, "std_steps": 1000, "hidden": 64, "batch_size": 256},
                   "mm": mm, "mm_data": {"steps": 3000, "batch_size": 256, "hidden": 128, "depth": 2, "emb_dim": 64}},
        "digits": {"n": 1797, "vae": {"steps": 6000, "std_steps": 1500, "hidden": 256, "batch_size": 256},
                   "mm": mm, "mm_data": {"steps": 4000, "batch_size": 256, "hidden": 256, "depth": 3, "emb_dim": 128}},
    }, "pairs": 8, "geo_points": 24, "geo_steps": 500, "flow_points": 33, "grid": 120, "strip": 10}


def _load(name: str, n: int) -> tuple[Tensor, Circle | None, np.ndarray | None]:
    if name == "circle":
        manifold = Circle(10)
        return manifold.sample(n, generator=torch.Generator().manual_seed(0)), manifold, None
    from sklearn.datasets import load_digits

    digits = load_digits()
    return torch.tensor(digits.data[:n] / 16.0, dtype=torch.float32), None, digits.target[:n]


def pick_pairs(x: Tensor, labels: np.ndarray | None, n_pairs: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Index pairs ``(i0, i1)``: chord closest to 1.7 (circle), or a partner of another class (digits)."""
    g = torch.Generator().manual_seed(seed)
    i0 = torch.randperm(x.shape[0], generator=g)[:n_pairs]
    if labels is None:
        return i0, (torch.cdist(x[i0], x) - 1.7).abs().argmin(1)
    i1 = []
    for i in i0.tolist():
        others = torch.from_numpy(np.flatnonzero(labels != labels[i]))
        i1.append(int(others[torch.randint(len(others), (1,), generator=g)]))
    return i0, torch.tensor(i1)


def _mm(data: Tensor, sizes: dict, device: torch.device):
    cfg = TrainConfig(**sizes, val_points=200, seed=0)
    return train(data, cfg, device=device, progress=False).model


def _decode(vae, path: Tensor) -> Tensor:
    b, t, d = path.shape
    with torch.no_grad():
        return vae.decode(path.reshape(-1, d).float()).reshape(b, t, -1)


def _scores(path: Tensor, x: Tensor, manifold, clf) -> dict:
    """Per-pair scores of decoded paths ``(B, T, D)``, averaged over pairs."""
    b, t, d = path.shape
    out = {"euclidean_length": float((path[:, 1:] - path[:, :-1]).norm(dim=-1).sum(-1).mean())}
    near = nearest_distance(path.reshape(-1, d), x).reshape(b, t)
    out["nearest_max"], out["nearest_mean"] = float(near.amax(-1).mean()), float(near.mean())
    if manifold is not None:
        q = path_quality(path.double(), manifold=manifold)
        out["dist_max"], out["dist_mean"] = float(q.max_distance.mean()), float(q.mean_distance.mean())
        out["length_ratio"] = float(q.length_ratio.mean())
    if clf is not None:
        conf = clf.predict_proba(path.reshape(-1, d).numpy()).max(-1).reshape(b, t)
        out["confidence_mean"], out["confidence_min"] = float(conf.mean()), float(conf.min(-1).mean())
    return out


def run_dataset(name: str, cfg: dict, device: torch.device) -> dict:
    """Train the three models, draw every path, score them and plot; returns JSON-ready results."""
    size = cfg["datasets"][name]
    x, manifold, labels = _load(name, size["n"])
    t0 = time.perf_counter()
    vres = train_vae(x, VAETrainConfig(latent_dim=2, **size["vae"]), device=device, progress=False)
    vae = vres.vae.cpu()
    codes = encode_data(vae, x)
    timing = {"vae_train_s": time.perf_counter() - t0}
    t0 = time.perf_counter()
    mm_latent = _mm(codes, size["mm"], device).cpu()
    timing["mm_latent_train_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    mm_data = _mm(x, size["mm_data"], device).cpu()
    timing["mm_data_train_s"] = time.perf_counter() - t0
    clf = None
    if labels is not None:
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(max_iter=3000).fit(x.numpy(), labels)

    i0, i1 = pick_pairs(x, labels, cfg["pairs"])
    z0, z1 = codes[i0].double(), codes[i1].double()
    n, steps = cfg["geo_points"], cfg["geo_steps"]
    start = latent_graph_path(codes.double(), z0, z1, n)
    latent_mm = LearnedDataManifold(mm_latent, delta=DELTA)
    data_mm = LearnedDataManifold(mm_data, delta=DELTA)
    runs = {
        "lerp": lambda: (lerp(z0, z1, n), None),
        "vae_lerp_start": lambda: geodesic(VAEPullbackMetric(vae), z0, z1, n_points=n, steps=steps),
        "vae_geodesic": lambda: geodesic(VAEPullbackMetric(vae), z0, z1, init=start, steps=steps),
        "vae_geodesic_decoded": lambda: geodesic(VAEPullbackMetric(vae, energy="decoded"), z0, z1, init=start,
                                                 steps=steps),
        "mm_latent_geodesic": lambda: geodesic(latent_mm, z0.float(), z1.float(), n_points=n, steps=steps),
        "mm_latent_flow": lambda: interpolate(latent_mm, z0.float(), z1.float(), n_points=cfg["flow_points"]),
        "mm_data_geodesic": lambda: geodesic(data_mm, x[i0], x[i1], n_points=n, steps=steps),
        "mm_data_flow": lambda: interpolate(data_mm, x[i0], x[i1], n_points=cfg["flow_points"]),
    }
    rows, latent_paths, decoded = {}, {}, {}
    for method, fn in runs.items():
        t0 = time.perf_counter()
        res = fn()
        seconds = time.perf_counter() - t0
        path = res[0] if isinstance(res, tuple) else res.path.detach()
        conv = getattr(res, "converged", None)
        reached = getattr(res, "reached", None)
        if method.startswith("mm_data"):
            decoded[method] = path.float().reshape(path.shape[0], path.shape[1], -1)
        else:
            latent_paths[method] = path.float()
            decoded[method] = _decode(vae, path)
        rows[method] = {"label": METHODS[method], "seconds": seconds, **_scores(decoded[method], x, manifold, clf),
                        "converged": None if conv is None else float(conv.float().mean()),
                        "reached": None if reached is None else float(reached.float().mean())}
        print(f"{name} {method}: {json_ready({k: v for k, v in rows[method].items() if k != 'label'})}", flush=True)
    result = {"rows": rows, "timing": timing, "vae_validation": vres.validation, "pairs": [i0.tolist(), i1.tolist()],
              "latent_model": {"sigma": mm_latent.config.default_sigma, "rank": mm_latent.config.rank},
              "data_model": {"sigma": mm_data.config.default_sigma, "rank": mm_data.config.rank}}
    if clf is not None:
        result["classifier_train_accuracy"] = float(clf.score(x.numpy(), labels))
    result["figure"] = _plot(name, vae, mm_latent, codes, latent_paths, decoded, manifold, x, cfg)
    return result


def _extent(codes: Tensor, paths: dict) -> tuple[Tensor, Tensor]:
    """The latent window: the codes' 1st-99th percentiles and the drawn paths, padded by 15%."""
    pts = torch.cat([codes.quantile(torch.tensor([0.01, 0.99]), dim=0),
                     *(p.reshape(-1, 2) for m, p in paths.items() if m in DRAWN)])
    lo, hi = pts.min(0).values, pts.max(0).values
    return lo - 0.15 * (hi - lo), hi + 0.15 * (hi - lo)


def _plot(name: str, vae, mm_latent, codes: Tensor, latent_paths: dict, decoded: dict, manifold, x: Tensor,
          cfg: dict) -> dict:
    """Paper Fig. 9: two latent panels (log volume backgrounds, codes, paths) and decoded strips below."""
    lo, hi = _extent(codes, latent_paths)
    g = cfg["grid"]
    ax_u, ax_v = (torch.linspace(float(lo[i]), float(hi[i]), g) for i in range(2))
    grid = torch.stack(torch.meshgrid(ax_u, ax_v, indexing="xy"), -1).reshape(-1, 2)
    with torch.no_grad():
        vae_vol = torch.cat([VAEPullbackMetric(vae).log_volume(c) for c in grid.split(4096)])
        A = torch.cat([LearnedCDC(mm_latent).factor(c) for c in grid.split(4096)])
        G = A @ A.mT + (mm_latent.config.tikhonov + DELTA) * torch.eye(2)
        mm_vol = -0.5 * torch.logdet(G)
    fig = plt.figure(figsize=(13, 12.5))
    outer = fig.add_gridspec(3, 1, height_ratios=[1.0, 0.12, 0.8], hspace=0.15)
    top = outer[0].subgridspec(1, 2, wspace=0.25)
    shown = min(3, next(iter(latent_paths.values())).shape[0])
    extent = (float(ax_u[0]), float(ax_u[-1]), float(ax_v[0]), float(ax_v[-1]))
    for k, (title, vol) in enumerate((("VAE pullback metric M(z) = J_μᵀJ_μ + J_σᵀJ_σ", vae_vol),
                                      (f"metric matching on the codes, (G + {DELTA:g} I)⁻¹", mm_vol))):
        ax = fig.add_subplot(top[k])
        img = ax.imshow(vol.reshape(g, g).numpy(), origin="lower", cmap="viridis", aspect="auto", extent=extent)
        fig.colorbar(img, ax=ax, label="½ log det of the metric (log volume element)")
        ax.scatter(codes[:, 0], codes[:, 1], s=1.5, c="white", alpha=0.35, label="latent codes")
        for method, (colour, style) in DRAWN.items():
            for j in range(shown):
                p = latent_paths[method][j]
                ax.plot(p[:, 0], p[:, 1], color=colour, ls=style, lw=1.5, label=METHODS[method] if j == 0 else None)
        ax.set(title=title, xlabel="latent z₁", ylabel="latent z₂", xlim=extent[:2], ylim=extent[2:])
    handles, labels = fig.axes[0].get_legend_handles_labels()
    key = fig.add_subplot(outer[1])
    key.axis("off")
    key.legend(handles, labels, loc="center", ncol=3, fontsize=8, markerscale=4, facecolor="0.8")
    if manifold is None:  # digits: the first pair, images along each path
        strips = ["lerp", "vae_geodesic_decoded", "vae_geodesic", "mm_latent_geodesic", "mm_latent_flow",
                  "mm_data_geodesic"]
        k = cfg["strip"]
        caption = fig.add_subplot(outer[2])
        caption.axis("off")
        caption.set_title("decoded strips of the first pair (data-space MM: the path itself)", pad=14)
        cells = outer[2].subgridspec(len(strips), k, wspace=0.04, hspace=0.08)
        for r, method in enumerate(strips):
            path = decoded[method][0]
            for c, i in enumerate(torch.linspace(0, path.shape[0] - 1, k).round().long().tolist()):
                ax = fig.add_subplot(cells[r, c])
                ax.imshow(path[i].reshape(8, 8).clamp(0, 1).numpy(), cmap="gray_r", vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                if c == 0:
                    ax.set_ylabel(METHODS[method].replace("metric matching", "MM"), fontsize=7, rotation=0,
                                  ha="right", va="center")
    else:  # the circle: decoded paths in the circle's own plane
        ax = fig.add_subplot(outer[2])
        u = manifold.coordinates(x.double())
        ax.scatter(u[:, 0], u[:, 1], s=1, c="0.7", label="data")
        for method, (colour, style) in {**DRAWN, "mm_data_geodesic": ("tab:green", "-")}.items():
            for j in range(shown):
                q = manifold.coordinates(decoded[method][j].double())
                ax.plot(q[:, 0], q[:, 1], color=colour, ls=style, lw=1.4, label=METHODS[method] if j == 0 else None)
        ax.set(title="decoded paths in the circle's plane", xlabel="u₁", ylabel="u₂", aspect="equal")
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(f"{name}: 2-D VAE latent space, log volume element of each metric, paths of {shown} pairs", y=0.92)
    path = Path(cfg["out"]) / f"latent_{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return {"file": path.name, "vae_log_volume_range": [float(vae_vol.min()), float(vae_vol.max())],
            "mm_log_volume_range": [float(mm_vol.min()), float(mm_vol.max())]}


def _table(name: str, res: dict) -> Table:
    circle = name == "circle"
    cols = ["method", "dist. to circle max / mean", "length ÷ true geodesic"] if circle else [
        "method", "classifier confidence mean / min"]
    table = Table(f"{name}: decoded paths, mean over {len(res['pairs'][0])} pairs",
                  [*cols, "nearest-data dist. max / mean", "Euclidean length", "converged / reached", "time"])
    for row in res["rows"].values():
        first = ([f"{fmt_num(row['dist_max'])} / {fmt_num(row['dist_mean'])}", fmt_num(row["length_ratio"])]
                 if circle else [f"{fmt_num(row['confidence_mean'])} / {fmt_num(row['confidence_min'])}"])
        status = row["converged"] if row["converged"] is not None else row["reached"]
        table.add(row["label"], *first, f"{fmt_num(row['nearest_max'])} / {fmt_num(row['nearest_mean'])}",
                  fmt_num(row["euclidean_length"]), "n/a" if status is None else f"{100 * status:.0f}%",
                  f"{row['seconds']:.1f} s")
    return table


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the comparison and write ``latent.json``, ``latent.md`` and the figures; returns the results."""
    parser = make_parser(__doc__.splitlines()[0], results="benchmarks/results/<device>", threads=1)
    args = parse_args(parser, argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    cfg = {**settings_for(args.quick), "out": str(out)}
    env = environment(args.device)
    results, tables = {}, []
    for name in DATASETS:
        results[name] = run_dataset(name, cfg, args.device)
        tables.append(_table(name, results[name]))
    settings = {
        "data": "circle: unit circle isometrically embedded in R^10 (seed-0 isometry), N points (seed 0); digits: "
                "scikit-learn 8x8 digits / 16, flat 64-D",
        "sizes": cfg["datasets"],
        "VAE": "latent 2, MLP encoder/decoder (SiLU), RBF precision: K = 32 k-means centres, a = 1, zeta = 1 "
               "(far std = data RMS radius)",
        "paths": f"{cfg['pairs']} pairs; geodesics {cfg['geo_points']} points, <= {cfg['geo_steps']} L-BFGS "
                 f"iterations; flows interpolate (dopri5, t_end 8, {cfg['flow_points']} points); delta = {DELTA}",
        "quick": args.quick,
    }
    notes = [
        "Latent paths are decoded with the decoder mean; their ends are the decoded codes mu(z0), mu(z1), while the "
        "data-space rows join the data points themselves.",
        "'converged' is geodesic's verified-minimum flag; 'reached' is the flow's (flows need not reach x1).",
        "Figures: " + ", ".join(r["figure"]["file"] for r in results.values()),
    ]
    _, md = write_report(out, "latent", title="Latent spaces: VAE pullback metric vs metric matching (SPEC §11)",
                         env=env, settings=settings, tables=tables, results=json_ready(results), notes=notes)
    print(f"wrote {md}")
    return results


if __name__ == "__main__":  # pragma: no cover
    main()
