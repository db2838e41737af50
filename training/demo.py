"""The main job, ``learned-manifold demo``: train on a built-in manifold, optimise and interpolate on it, report.

Stages (each printed as it runs):

1. train a mean-centred metric-matching model on a built-in dataset with known geometry, save ``model.lmm``;
2. validate: tangent-projector error and intrinsic dimension against the truth;
3. optimise the on-manifold objective ``max cᵀx`` from data points with `RiemannianSGD` (momentum),
   `RiemannianAdam` (both landing on the data) and plain ``torch.optim.SGD``;
4. interpolate pairs of data points by the gradient flow and by the discrete geodesic of the learned metric,
   against the straight line (LERP);
5. write ``report.json`` and plots (tangent frames, spectrum, paths) to the output folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from learned_manifold import (
    LearnedDataManifold,
    RiemannianAdam,
    RiemannianSGD,
    interpolate,
)
from learned_manifold.atomic_write import pid_alive
from learned_manifold.evaluation import lerp, path_quality
from learned_manifold.geodesics import geodesic
from learned_manifold.geometry import projector_error
from learned_manifold.model_file import atomic_write_bytes
from learned_manifold.plotting import plot_paths, plot_spectrum, plot_tangent_frames

from .data import get_dataset
from .outputs import irregular_entry, named_entries, nearest_existing, probe_writable
from .result import load_judged
from .show import SHOW_FILES, is_strip
from .trainer import TrainConfig, train
from .validation import distrust

__all__ = ["DEMO_FILES", "DEMO_STEPS", "check_demo_folder", "demo_files", "run_demo", "staged"]


def _say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def maximise_linear(p: torch.Tensor, opt: torch.optim.Optimizer, c: torch.Tensor, steps: int, manifold) -> dict:
    """Maximise ``cᵀp`` over the parameter ``p`` ``(B, D)`` with ``opt`` for ``steps`` steps; the mean objective,
    the worst distance to ``manifold`` (an object with ``distance``) met on the way, the final mean distance, and
    ``error``: ``None``, or the step at which landing raised (it could not bring a point back to the data; the
    figures are then those of the step before)."""
    worst, error = 0.0, None
    for step in range(steps):
        opt.zero_grad()
        (-(p @ c).sum()).backward()
        try:
            opt.step()
        except ValueError as exc:  # a landing failure is a result to report, not a crash of the whole run
            error = f"step {step + 1}: {exc}"
            break
        worst = max(worst, float(manifold.distance(p.detach()).max()))
    return {"objective_mean": float((p.detach() @ c).mean()), "max_distance_to_manifold": worst,
            "final_distance_mean": float(manifold.distance(p.detach()).mean()), "error": error}


def _random_plane_error(d: int, D: int, pairs: int = 10_000) -> float:
    """The mean `projector_error` between two independent uniformly random ``d``-planes of R^D: what a tangent error
    is compared with (about 1.11 for planes in R³; ``√(2d(1 − d/D))``, 1.15 there, is the root mean square)."""
    g = torch.Generator().manual_seed(0)
    U = torch.linalg.qr(torch.randn(pairs, D, d, generator=g)).Q
    V = torch.linalg.qr(torch.randn(pairs, D, d, generator=g)).Q
    return float(projector_error(U, V).mean())


def _optimise(make_opt, x0: torch.Tensor, c: torch.Tensor, steps: int, manifold) -> dict:
    """`maximise_linear` from ``x0`` with the optimiser ``make_opt`` builds for a fresh parameter."""
    p = torch.nn.Parameter(x0.clone())
    return maximise_linear(p, make_opt(p), c, steps, manifold)


DEFAULT_OUT = "demo-output"
"""The demo's output folder where ``--out`` is not given: a folder of that name in the current folder."""

DEMO_TAG = {"written_by": "learned-manifold demo"}
"""Stored in a demo model's ``"data"`` metadata: a later demo run into the same folder may replace that file only."""


MIN_POINTS = 10
"""The fewest points the demo trains on: the trainer's minimum (`runtime.check_training_tensor`)."""

QUICK_LIMITS = (1500, 500)
"""``quick=True`` trains on at most this many points, for at most this many steps."""

DEMO_STEPS = 2500
"""The demos' training steps (`run_demo`, `image_demo.run_image_demo`, ``learned-manifold demo --steps``); the
digits demo's recorded numbers (benchmarks/RESULTS.md) used 2,500."""


DEMO_FILES = ("model.lmm", "model.lmm.train-state.pt", "report.json", "tangent_frames.png", "spectrum.png",
              "paths.png", *SHOW_FILES)
"""The files a demo writes into its folder (the point demo, and the image demo's `show` pictures), besides the
strips ``interpolations_<i>.png`` (`show.is_strip`)."""


def demo_files(out_dir: Path) -> list[Path]:
    """The entries of ``out_dir`` (if it is a folder) named as a demo names its files (`DEMO_FILES`, strips)."""
    return named_entries(out_dir, DEMO_FILES, is_strip)


def check_demo_folder(out_dir: Path) -> None:
    """Refuse, before any work, an ``--out`` that is not a folder (or under a file), one whose folder (or nearest
    existing parent, where it is to be made) is not writable (named as ``train`` and ``show`` name theirs), and a
    folder holding a file of a name the demo writes (`demo_files`) unless it is the demo's own earlier output: a
    folder whose ``model.lmm`` a demo wrote (`DEMO_TAG` in its metadata), which the demo replaces whole. One of
    those names that is not a regular file (a folder, a link) is refused in any folder."""
    from learned_manifold.model_file import ModelFileError, read_metadata

    folder, what = nearest_existing(out_dir)  # the folder, or the nearest of its parents that exists
    if what is not None:
        raise ValueError(f"--out {str(out_dir)!r} {what}, not a folder: choose another --out folder")
    try:
        probe_writable(folder, ".demo.")  # as `train` and `show` test theirs (a read-only working folder)
    except OSError as err:
        default = (f" (the default: {DEFAULT_OUT!r} in the current folder)"
                   if os.fspath(out_dir) == DEFAULT_OUT else "")
        raise ValueError(f"--out {str(out_dir)!r}{default}: the folder {str(folder)!r} is not writable "
                         f"({err.strerror or err}): choose a writable --out folder") from None
    present = demo_files(out_dir)
    if not present:
        return
    odd = irregular_entry(present)
    if odd is not None:
        raise ValueError(f"--out {str(out_dir)!r} holds {odd[0].name!r}, {odd[1]}, where the demo writes a file: "
                         "choose another --out folder")
    model = out_dir / "model.lmm"
    if not model.exists():
        names = ", ".join(p.name for p in present[:4]) + (", ..." if len(present) > 4 else "")
        raise ValueError(f"--out {str(out_dir)!r} holds files the demo writes ({names}) but no model.lmm of an "
                         "earlier demo; the demo would replace them: choose another --out folder")
    try:
        data = read_metadata(model)["extra"].get("data") or {}
    except (ModelFileError, OSError, ValueError):
        data = {}
    if not isinstance(data, dict) or data.get("written_by") != DEMO_TAG["written_by"]:
        raise ValueError(f"--out {str(out_dir)!r} holds a model.lmm the demo did not write; the demo would replace "
                         "it: choose another --out folder")


@contextlib.contextmanager
def staged(out_dir: Path) -> Iterator[Path]:
    """A new folder ``OUT/.demo-partial-<pid>`` in which the demo writes its files; when the block ends without an
    error they are moved into ``out_dir`` (model and training state first, ``report.json`` last), and the files of
    an earlier demo that this run did not write are removed. On an error or an interrupt (Ctrl-C during training
    included) the staging folder is removed and ``out_dir`` is left as it was: a complete earlier model is never
    replaced by a partial one; where ``out_dir`` (or parents of it) did not exist, the folders the demo made are
    removed again, if empty. A staging folder left by a demo killed with SIGKILL is removed by the next demo
    there (its pid no longer runs; `learned_manifold.atomic_write.pid_alive`, which never probes on Windows, where
    ``os.kill(pid, 0)`` would terminate the process: there such a folder is kept)."""
    made = [folder for folder in (out_dir, *out_dir.parents) if not folder.exists()]  # deepest first
    out_dir.mkdir(parents=True, exist_ok=True)
    for left in out_dir.glob(".demo-partial-*"):  # left by a demo killed with SIGKILL: its process is gone
        pid = left.name.removeprefix(".demo-partial-")
        if pid.isdigit() and not pid_alive(int(pid)) and left.is_dir() and not left.is_symlink():
            shutil.rmtree(left, ignore_errors=True)
    stage = out_dir / f".demo-partial-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        for folder in made:  # a first demo's new folders, left as they were: absent
            try:
                folder.rmdir()
            except OSError:  # not empty (something else wrote there meanwhile): kept
                break
        raise
    new = sorted((p.name for p in stage.iterdir()), key=lambda name: (name != "model.lmm", name == "report.json"))
    for name in new:
        os.replace(stage / name, out_dir / name)
    for old in demo_files(out_dir):
        if old.name not in new:
            old.unlink(missing_ok=True)
    shutil.rmtree(stage, ignore_errors=True)


def run_demo(*, out: str = DEFAULT_OUT, dataset: str = "torus", n: int = 4000, steps: int = DEMO_STEPS,
             seed: int = 0, device: str = "auto", quick: bool = False, precision: str = "auto") -> dict:
    """Run the demo and return the report (also written to ``OUT/report.json``). ``quick``: at most
    `QUICK_LIMITS` points and steps (a note says so where they cut ``n`` or ``steps``). ``precision``: the
    training's (`TrainConfig.precision`; ``"auto"`` times a probe, so for bit-identical reruns of one ``seed`` set
    ``"fp32"`` or ``"bf16"``).

    The files are written into a staging folder and moved into ``out`` when the run has finished (`staged`): an
    interrupted or failed run leaves ``out`` as it was.

    Raises:
        ValueError: ``n`` below `MIN_POINTS`, ``out`` not a writable folder or holding files of the demo's names
            that the demo did not write (`check_demo_folder`), a dataset without known geometry, or a setting
            `TrainConfig` refuses: before anything is written.
    """
    out_dir = Path(out)
    if n < MIN_POINTS:  # before the folder is made (the trainer would refuse them after it)
        raise ValueError(f"n must be at least {MIN_POINTS} for the demo to train on, got {n}")
    check_demo_folder(out_dir)
    cut = [f"{limit} {what} (not {asked})" for what, asked, limit in zip(("points", "steps"), (n, steps),
                                                                          QUICK_LIMITS, strict=True) if asked > limit]
    if quick and cut:  # only what was cut is named: the other value runs as given
        _say(f"--quick caps the run at {QUICK_LIMITS[0]} points and {QUICK_LIMITS[1]} steps: {' and '.join(cut)}")
        n, steps = min(n, QUICK_LIMITS[0]), min(steps, QUICK_LIMITS[1])
    t_start = time.perf_counter()
    data, manifold = get_dataset(dataset, n, seed=seed)
    if manifold is None:
        raise ValueError(f"the demo needs a dataset with known geometry; {dataset!r} has none")
    D = data.reshape(n, -1).shape[1]
    config = TrainConfig(steps=steps, batch_size=512, rank=min(D, 16), hidden=128, depth=3, emb_dim=64, seed=seed,
                         val_points=400, precision=precision, checkpoint_every=0)  # checks before anything is written
    with staged(out_dir) as stage:  # the folder changes only when every file is ready
        report = _train_and_report(stage, out_dir, data, manifold, config, dataset=dataset, quick=quick,
                                   device=device, t_start=t_start)
    _say(f"done in {report['seconds']} s; report and plots in {out_dir}/")
    return report


def _train_and_report(stage: Path, out_dir: Path, data: torch.Tensor, manifold, config: TrainConfig, *,
                      dataset: str, quick: bool, device: str, t_start: float) -> dict:
    """`run_demo`'s stages 1-5 on ``data`` ``(n, D)``, its files written into the staging folder ``stage``
    (`staged`, which moves them into ``out_dir``); returns the report."""
    n, D, steps, seed = data.shape[0], data.reshape(data.shape[0], -1).shape[1], config.steps, config.seed
    _say(f"dataset {dataset}: {n} points in R^{D}, intrinsic dimension {manifold.dim}")

    # 1. train ------------------------------------------------------------------------------------------------
    model_path = stage / "model.lmm"
    _say(f"training a mean-centred metric-matching model ({steps} steps) -> {out_dir / 'model.lmm'}")
    # a new model in the staging folder: an earlier demo's model.lmm stays until this run has finished
    result = train(data, config, manifold=manifold, out=model_path, device=device,
                   data_info={"name": dataset, **DEMO_TAG})
    model = load_judged(model_path)
    v = result.validation
    random_error = _random_plane_error(manifold.dim, D)
    _say(f"validation at sigma={v['sigma']:.3g}: tangent error {v['tangent_error']:.3f} "
         f"(random subspaces ~{random_error:.2f} on average), "
         f"dimension correct at {100 * v['dimension_accuracy']:.0f}% of points")
    warnings = distrust(v)
    for reason in warnings:
        _say(f"warning: {reason}")

    # 2. geometry on fresh points -------------------------------------------------------------------------------
    test_x, _ = get_dataset(dataset, 600, seed=seed + 1)
    M = LearnedDataManifold(model)
    values, vectors = M.tangent_space(test_x)
    dims = M.intrinsic_dimension(test_x)

    # 3. optimisation on the manifold --------------------------------------------------------------------------
    g = torch.Generator().manual_seed(seed)
    c = torch.nn.functional.normalize(torch.randn(D, generator=g), dim=0)
    x0 = test_x[torch.randperm(test_x.shape[0], generator=g)[:16]]
    # Landing's normal space at the model's own typical dimension (the median gap-rule dimension of the fresh
    # points, no ground truth): where a point's own gap rule reads one dimension fewer (a weakly learned second
    # tangent direction), landing along that direction never settles, and an optimiser step there failed.
    typical = int(dims.median())
    M_land = LearnedDataManifold(model, landing=True, tangent_dim=typical)
    opt_steps = 60 if quick else 200
    best = float((test_x @ c).max())
    _say(f"maximising c.x on the manifold from 16 points ({opt_steps} steps; best data value {best:.3f}; landing "
         f"in the model's typical dimension, {typical})")
    optimisation = {
        "RiemannianSGD(momentum=0.9, landing)": _optimise(
            lambda p: RiemannianSGD([p], manifold=M_land, lr=0.05, momentum=0.9), x0, c, opt_steps, manifold),
        "RiemannianAdam(landing)": _optimise(
            lambda p: RiemannianAdam([p], manifold=M_land, lr=0.05), x0, c, opt_steps, manifold),
        "torch.optim.SGD(momentum=0.9) (Euclidean)": _optimise(
            lambda p: torch.optim.SGD([p], lr=0.05, momentum=0.9), x0, c, opt_steps, manifold),
    }
    optimisation["best_data_value"] = best
    optimisation["landing_tangent_dim"] = typical

    # 4. interpolation -------------------------------------------------------------------------------------------
    n_pairs = 8
    idx = torch.randperm(test_x.shape[0], generator=g)[: 2 * n_pairs]
    a, b = test_x[idx[:n_pairs]], test_x[idx[n_pairs:]]
    M_flow = LearnedDataManifold(model, delta=1e-2)
    _say(f"interpolating {n_pairs} pairs: gradient flow, geodesic and LERP")
    flow = interpolate(M_flow, a, b)
    geo = geodesic(M_flow, a, b, n_points=24, steps=150 if quick else 400)
    line = lerp(a, b, 24)
    interpolation = {
        "gradient flow (delta=0.01)": path_quality(flow.path, manifold=manifold, target=b).summary(),
        "geodesic (delta=0.01)": path_quality(geo.path, manifold=manifold, target=b).summary(),
        "LERP": path_quality(line, manifold=manifold, target=b).summary(),
    }

    # 5. plots and report ----------------------------------------------------------------------------------------
    sub = torch.arange(0, test_x.shape[0], max(1, test_x.shape[0] // 60))
    plot_tangent_frames(data, test_x[sub], vectors[sub], values[sub], path=stage / "tangent_frames.png",
                        title=f"{dataset}: learned tangent frames at sigma={M.field.sigma:.3g}",
                        caption=f"tangent error against the true tangent planes {v['tangent_error']:.3f} "
                                f"(0 = exact, random planes ~{random_error:.2f}); trained {steps} steps on {n} "
                                f"points")
    plot_spectrum(values, true_dim=manifold.dim, path=stage / "spectrum.png",
                  title=f"{dataset}: eigen-spectrum of G at sigma={M.field.sigma:.3g}",
                  caption=f"{test_x.shape[0]} held-out points; a manifold of dimension d shows d eigenvalues near "
                          f"1 and the rest near 0")
    shown = 4  # of the n_pairs (all of them are in report.json): more tangle the picture
    plot_paths(data, {"gradient flow": flow.path[:shown], "geodesic": geo.path[:shown], "LERP": line[:shown]},
               manifold=manifold, path=stage / "paths.png",
               title=f"{dataset}: interpolation of {shown} of the {n_pairs} pairs (delta=0.01)",
               caption=f"all {n_pairs} pairs (report.json), mean of each pair's largest distance to the manifold: "
                       + ", ".join(f"{name.split(' (')[0]} {row['max_distance']:.3f}"
                                   for name, row in interpolation.items()))
    report = {
        "dataset": dataset, "n": n, "ambient_dim": D, "intrinsic_dim": manifold.dim,
        "train": {"steps": steps, "seconds": round(result.seconds, 2),
                  "samples_per_second": round(result.samples_per_second), "device": str(next(
                      result.model.parameters()).device)},
        "validation": {k: v[k] for k in ("sigma", "tangent_error", "dimension_accuracy", "top_eigenvalues")},
        "test_dimension_accuracy": float((dims == manifold.dim).float().mean()),
        "trusted": not warnings, "warnings": warnings,
        "optimisation": optimisation,
        "interpolation": interpolation,
        "files": ["model.lmm", "model.lmm.train-state.pt", "report.json", "tangent_frames.png", "spectrum.png",
                  "paths.png"],
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    atomic_write_bytes(stage / "report.json", json.dumps(report, indent=2).encode())
    for name, row in interpolation.items():
        _say(f"  {name:28s} max distance to manifold {row['max_distance']:.3f}, "
             f"end gap {row['endpoint_gap']:.3f}, length {row['length']:.3f}")
    for name, row in optimisation.items():
        if isinstance(row, dict):
            _say(f"  {name:42s} c.x = {row['objective_mean']:.3f}, "
                 f"max distance to manifold {row['max_distance_to_manifold']:.3f}"
                 + (f" (stopped at {row['error']})" if row.get("error") else ""))
    return report
