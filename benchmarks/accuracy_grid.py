"""Tangent accuracy over manifolds, data-set sizes and seeds: metric matching against tuned k-NN (SPEC §8).

The multi-seed extension of `benchmarks.accuracy` (the paper's Fig. 2, error against N): for every manifold,
every size ``N`` and every seed, one model trained with the library's default recipe (`TrainConfig()` apart
from the network size and steps of the configuration) against centred and uncentred k-NN CDC with ``k`` and
``σ`` tuned on a validation split (`benchmarks.accuracy.tune_knn`), all scored on the same held-out test points.
A seed draws both the training sample and the training run; validation and test points are fixed per manifold.

Reports the mean and the worst seed per (manifold, N, method), the fraction of points whose gap-rule dimension
is right, and ``accuracy_grid.png``: error against N, one panel per manifold, mean (line) and worst seed
(markers).

Manifolds (all isometrically embedded, random rotation fixed by seed 0): ``sphere2``, ``sphere4``,
``sphere8``, ``sphere16`` in R⁶⁴, ``torus`` (R = 1, r = 0.4) and ``swiss_roll`` in R¹⁰, ``union`` (a circle
and a square) in R¹⁰.

Run: ``python -m benchmarks.accuracy_grid --device cpu|cuda [--quick] [--manifolds ...] [--sizes N ...]
[--seeds S ...] [--steps S]``. Runs split over processes, cores or sessions (one seed each, say) join into
one report with ``--merge DIR [DIR ...]`` (their ``accuracy_grid.json``; nothing is trained): the runs must
share the network, training, k-NN tuning and evaluation points, and no (manifold, N, seed, method) may come
twice.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from learned_manifold_training.data import Sphere, SwissRoll, Torus, UnionManifold  # noqa: E402
from learned_manifold_training.trainer import TrainConfig, select_sigma, standardisation, train, validate  # noqa: E402

from .accuracy import json_ready, sigma_grid, tune_knn  # noqa: E402
from .common import PAPER_NET, Table, environment, make_parser, parse_args, write_report  # noqa: E402

__all__ = ["MANIFOLDS", "main", "merge_runs", "settings_for", "summarise"]

MANIFOLDS = {
    "sphere2": lambda: Sphere(2, 64),
    "sphere4": lambda: Sphere(4, 64),
    "sphere8": lambda: Sphere(8, 64),
    "sphere16": lambda: Sphere(16, 64),
    "torus": lambda: Torus(10),
    "swiss_roll": lambda: SwissRoll(10),
    "union": lambda: UnionManifold(ambient_dim=10),
}
"""Name → factory of the manifold (its embedding is fixed; seeds only draw samples and training runs)."""

METHODS = ("metric matching", "k-NN centred", "k-NN uncentred")


def settings_for(device: torch.device, quick: bool) -> dict:
    """Sizes, seeds, network and steps (``quick``: a smoke test of a few seconds)."""
    if quick:
        return {"manifolds": ["sphere2", "swiss_roll"], "sizes": [300], "seeds": [0, 1], "steps": 30,
                "batch_size": 64, "net": {"hidden": 32, "depth": 1, "emb_dim": 32}, "n_val": 100, "n_test": 100,
                "trainer_val": 60, "ks": [8, 16]}
    if device.type == "cuda":
        return {"manifolds": list(MANIFOLDS), "sizes": [1_000, 3_000, 10_000, 30_000, 100_000],
                "seeds": [0, 1, 2, 3, 4], "steps": 30_000, "batch_size": 1024, "net": dict(PAPER_NET),
                "n_val": 1000, "n_test": 1000, "trainer_val": 500, "ks": [16, 32, 64, 128]}
    # CPU: the CLI's default network and steps (what a user gets from `learned-manifold train`)
    defaults = TrainConfig()
    return {"manifolds": list(MANIFOLDS), "sizes": [1_000, 3_000, 10_000], "seeds": [0, 1, 2, 3, 4],
            "steps": defaults.steps, "batch_size": defaults.batch_size,
            "net": {"hidden": defaults.hidden, "depth": defaults.depth, "emb_dim": defaults.emb_dim},
            "n_val": 500, "n_test": 500, "trainer_val": defaults.val_points, "ks": [8, 16, 32, 64, 128]}


def _model_scores(data, manifold, val, test, cfg: dict, seed: int, device: torch.device) -> dict:
    config = TrainConfig(steps=cfg["steps"], batch_size=cfg["batch_size"], val_points=cfg["trainer_val"],
                         seed=seed, **cfg["net"])
    start = time.perf_counter()
    result = train(data, config, manifold=manifold, progress=False, device=device)
    model = result.model
    with torch.no_grad():
        sigma, _, _ = select_sigma(model, val, manifold)
        scores = validate(model, test, sigma, manifold)
    check = result.validation.get("self_consistency", {})
    refit = result.validation.get("factor_refit", {})
    return {"tangent_error": scores["tangent_error"], "dimension_accuracy": scores["dimension_accuracy"],
            "sigma": sigma, "seconds": time.perf_counter() - start, "precision": result.precision,
            "trusted": check.get("trusted"),
            "refit": "kept" if refit.get("kept") else ("not kept" if refit.get("ran") else "no")}


def summarise(runs: list[dict]) -> list[dict]:
    """Mean and worst seed of the tangent error and dimension accuracy per (manifold, N, method), in the order
    manifolds first appear, then N ascending, then `METHODS`' order."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["manifold"], run["N"], run["method"]), []).append(run)
    first = {m: i for i, m in enumerate(dict.fromkeys(run["manifold"] for run in runs))}  # order of appearance
    rank = {m: i for i, m in enumerate(METHODS)}
    out = []
    for (name, n, method), rows in sorted(groups.items(), key=lambda kv: (first[kv[0][0]], kv[0][1],
                                                                          rank.get(kv[0][2], len(METHODS)))):
        errors = [r["tangent_error"] for r in rows]
        dims = [r["dimension_accuracy"] for r in rows]
        out.append({"manifold": name, "N": n, "method": method, "seeds": len(rows),
                    "mean_error": statistics.fmean(errors), "worst_error": max(errors),
                    "mean_dimension_accuracy": statistics.fmean(dims), "worst_dimension_accuracy": min(dims),
                    "seconds": statistics.fmean(r["seconds"] for r in rows),
                    # the trainer's self-check, recorded since the sixteenth session (older runs lack it)
                    "checked": sum("trusted" in r for r in rows),
                    "untrusted": sum(r.get("trusted") is False for r in rows),
                    "repaired": sum(r.get("refit") == "kept" for r in rows)})
    return out


def _plot(summary: list[dict], path: Path) -> None:
    names = list(dict.fromkeys(s["manifold"] for s in summary))
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for method, colour in zip(METHODS, ("C0", "C1", "C2"), strict=True):
            rows = sorted((s for s in summary if s["manifold"] == name and s["method"] == method), key=lambda s: s["N"])
            if not rows:
                continue
            ns = [r["N"] for r in rows]
            ax.plot(ns, [r["mean_error"] for r in rows], "-o", color=colour, label=f"{method} (mean)")
            ax.plot(ns, [r["worst_error"] for r in rows], "x", color=colour, markersize=8,
                    label=f"{method} (worst seed)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("data points N")
        ax.set_ylabel("tangent-projector error (test)")
        ax.set_title(name)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Tangent error against N: mean over seeds (lines) and worst seed (crosses)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the grid and write ``accuracy_grid.json`` / ``.md`` / ``.png``; returns the results."""
    parser = make_parser(__doc__.splitlines()[0], results="benchmarks/results/<device>", threads=1)
    parser.add_argument("--manifolds", nargs="+", choices=sorted(MANIFOLDS), default=None)
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="data-set sizes N")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (sample and training)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per model")
    parser.add_argument("--merge", type=Path, nargs="+", default=None, metavar="DIR",
                        help="join the accuracy_grid.json of these folders into one report (no training)")
    args = parse_args(parser, argv)
    device = args.device
    out = args.out
    if args.merge:
        try:
            runs, settings = merge_runs(args.merge)
        except (OSError, ValueError) as err:
            parser.error(f"--merge: {err}")
        return _report(runs, settings, out, environment(device))
    cfg = settings_for(device, args.quick)
    for key in ("manifolds", "sizes", "seeds", "steps"):
        if getattr(args, key):
            cfg[key] = getattr(args, key)
    env = environment(device)
    runs: list[dict] = []
    for name in cfg["manifolds"]:
        manifold = MANIFOLDS[name]()
        val = manifold.sample(cfg["n_val"], generator=torch.Generator().manual_seed(10_001)).to(device)
        test = manifold.sample(cfg["n_test"], generator=torch.Generator().manual_seed(10_002)).to(device)
        for n in cfg["sizes"]:
            for seed in cfg["seeds"]:
                pool = manifold.sample(n + cfg["trainer_val"], generator=torch.Generator().manual_seed(seed))
                knn_data = pool[:n].to(device)
                results = {"metric matching": _model_scores(pool, manifold, val, test, cfg, seed, device)}
                for centred in (True, False):
                    tuned = tune_knn(knn_data, val, test, manifold, ks=cfg["ks"],
                                     sigmas=sigma_grid(standardisation(knn_data)[0]), centred=centred)
                    results[f"k-NN {'centred' if centred else 'uncentred'}"] = {
                        **{k: tuned["test"][k] for k in ("tangent_error", "dimension_accuracy")},
                        "sigma": tuned["sigma"], "k": tuned["k"], "seconds": tuned["seconds"]}
                for method, r in results.items():
                    runs.append({"manifold": name, "N": n, "seed": seed, "method": method, **r})
                print(f"{name} N={n} seed={seed}: " + ", ".join(
                    f"{m} {r['tangent_error']:.3f}" for m, r in results.items()), flush=True)
    settings = {"manifolds": cfg["manifolds"], "sizes": cfg["sizes"], "seeds": cfg["seeds"],
                "network": cfg["net"], "training": f"{cfg['steps']} steps of batch {cfg['batch_size']}, the "
                "library's default recipe otherwise", "evaluation σ": "picked on the validation split from the "
                "SPEC §8 grid (lowest tangent error)", "k-NN tuning": f"k ∈ {cfg['ks']} × the same σ grid",
                "validation / test points": f"{cfg['n_val']} / {cfg['n_test']} (fixed per manifold)",
                "threads": torch.get_num_threads(), "quick": args.quick}
    return _report(runs, settings, out, env)


_SHARED_SETTINGS = ("network", "training", "evaluation σ", "k-NN tuning", "validation / test points", "quick")
"""Settings that runs joined by ``--merge`` must share."""


def merge_runs(folders: Sequence[Path]) -> tuple[list[dict], dict]:
    """The runs of several grid reports (``folder/accuracy_grid.json``) as one list, and their joint settings.

    Raises:
        ValueError: a report that is not a grid report, settings that differ between reports, or a (manifold,
            N, seed, method) found in two reports (each message names the folders).
    """
    runs: list[dict] = []
    seen: dict[tuple, Path] = {}
    first: dict | None = None
    sources = []
    for folder in folders:
        path = Path(folder) / "accuracy_grid.json"
        record = json.loads(path.read_text())
        if record.get("benchmark") != "accuracy_grid":
            raise ValueError(f"{path} is not an accuracy_grid report")
        settings = record["settings"]
        if first is None:
            first = settings
        for key in _SHARED_SETTINGS:
            if settings.get(key) != first.get(key):
                raise ValueError(f"{path}: setting {key!r} is {settings.get(key)!r}, but {folders[0]} has "
                                 f"{first.get(key)!r}")
        for run in record["results"]["runs"]:
            key = (run["manifold"], run["N"], run["seed"], run["method"])
            if key in seen:
                raise ValueError(f"{key} is in both {seen[key]} and {folder}")
            seen[key] = Path(folder)
            runs.append(run)
        env = record["environment"]
        sources.append(f"{folder} (commit {env.get('git_commit')}, tree modified: "
                       f"{env.get('git_dirty', 'not recorded')}, {env.get('date_utc')})")
    assert first is not None  # argparse's nargs="+" gives at least one folder
    merged = {key: first.get(key) for key in _SHARED_SETTINGS}
    merged.update(manifolds=sorted({r["manifold"] for r in runs}), sizes=sorted({r["N"] for r in runs}),
                  seeds=sorted({r["seed"] for r in runs}), threads=first.get("threads"), merged_from=sources)
    return runs, merged


def _report(runs: list[dict], settings: dict, out: Path, env: dict) -> dict:
    """Summarise ``runs``, write ``accuracy_grid.json`` / ``.md`` / ``.png`` into ``out``; returns the results."""
    summary = summarise(runs)
    table = Table("Tangent-projector error on held-out points: mean / worst over seeds; dimension right (mean / "
                  "worst)", ["manifold", "N", "method", "seeds", "error mean", "error worst", "dim right mean",
                             "dim right worst", "repaired / still untrusted (of runs recorded)", "time / run"])
    for s in summary:
        check = f"{s['repaired']} / {s['untrusted']} (of {s['checked']})" if s.get("checked") else "–"
        table.add(s["manifold"], f"{s['N']:,}", s["method"], s["seeds"], f"{s['mean_error']:.3f}",
                  f"{s['worst_error']:.3f}", f"{100 * s['mean_dimension_accuracy']:.0f}%",
                  f"{100 * s['worst_dimension_accuracy']:.0f}%", check, f"{s['seconds']:.0f} s")
    out.mkdir(parents=True, exist_ok=True)
    _plot(summary, out / "accuracy_grid.png")
    notes = ["A random d-plane in R^D scores about sqrt(2d(1 − d/D)); the union mixes d = 1 and 2 (each point "
             "is scored with its own d).", "Plot: accuracy_grid.png beside this file.",
             "Repaired / still untrusted: runs whose factor the trainer refitted after its self-consistency check "
             "failed (`TrainConfig.factor_refit`), and runs the check still calls untrusted at the end; counted "
             "over the runs that recorded it (runs before the sixteenth session did not: –)."]
    worst = [s for s in summary if s["method"] == "metric matching"]
    for s in worst:
        knn = next((k for k in summary if (k["manifold"], k["N"], k["method"]) ==
                    (s["manifold"], s["N"], "k-NN centred")), None)
        if knn is not None and s["worst_error"] > knn["mean_error"] and math.isfinite(s["worst_error"]):
            notes.append(f"{s['manifold']}, N = {s['N']:,}: the worst metric-matching seed ({s['worst_error']:.3f}) "
                         f"is worse than tuned centred k-NN ({knn['mean_error']:.3f}).")
    results = json_ready({"runs": runs, "summary": summary})
    _, md_path = write_report(out, "accuracy_grid", title="Accuracy over manifolds, N and seeds", env=env,
                              settings=settings, tables=[table], results=results, notes=notes)
    print(md_path.read_text())
    return results


if __name__ == "__main__":
    main()
