"""``learned-manifold demo --dataset digits`` (or ``blobs``): the image demo (issue 9, item 7).

Trains a mean-centred model on built-in images, then writes the pictures of `training.show` (eigenvector images,
eigenvalue curves per class, interpolation strips by LERP, gradient flow and geodesic, the dimension histogram)
and ``report.json``: the training summary, the figures' numbers and, for ``blobs``, the tangent error and
dimension against the closed-form tangent spaces. On a CPU it uses the MLP backbone (a few minutes); on a GPU the
UNet that ``--backbone auto`` picks for images.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from learned_manifold.evaluation import field_eigenpairs, tangent_error
from learned_manifold.geometry import intrinsic_dimension
from learned_manifold.metrics import LearnedCDC
from learned_manifold.model_file import atomic_write_bytes

from .data import get_image_dataset
from .demo import DEFAULT_OUT, DEMO_STEPS, DEMO_TAG, QUICK_LIMITS, check_demo_folder, staged
from .result import load_judged
from .runtime import resolve_device
from .show import run_show
from .trainer import TrainConfig, train
from .validation import distrust

__all__ = ["IMAGE_DEMOS", "demo_config", "demo_split", "run_image_demo"]

IMAGE_DEMOS = ("digits", "blobs")
QUICK_STEPS = 300
"""``quick=True`` trains for at most this many steps (and on at most ``demo.QUICK_LIMITS[0]`` images, as the
other demos)."""


def demo_split(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The demo's split of ``n`` images: ``(fit, held)`` index tensors, one eighth (at least 200) held out."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    held = perm[: max(200, n // 8)]
    return perm[held.numel():], held


def demo_config(steps: int, seed: int, backbone: str = "mlp", precision: str = "auto") -> TrainConfig:
    """The demo's recipe: rank 16, a 256 × 3 network (the UNet where ``backbone`` picks it), no intermediate
    checkpoints (the final state is written beside the model, as by every run), ``precision`` as given."""
    return TrainConfig(steps=steps, rank=16, backbone=backbone, hidden=256, depth=3, seed=seed, checkpoint_every=0,
                       precision=precision)


def _say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def run_image_demo(*, out: str = DEFAULT_OUT, dataset: str = "digits", steps: int = DEMO_STEPS, seed: int = 0,
                   device: str = "auto", quick: bool = False, n: int | None = None, precision: str = "auto") -> dict:
    """Train on ``dataset`` (``"digits"`` or ``"blobs"``), draw the pictures into ``out``, return the report.
    ``n``: images (``None``: all 1,797 digits, 4,000 blobs). ``quick``: at most ``demo.QUICK_LIMITS[0]`` images (a
    seeded subset) and `QUICK_STEPS` steps (a note says so where they cut). ``precision``: the training's
    (`TrainConfig.precision`; ``"auto"`` times a probe: for bit-identical reruns set ``"fp32"`` or ``"bf16"``).
    ``out`` is checked before any work
    (`demo.check_demo_folder`) and changes only when the run has finished (`demo.staged`)."""
    if dataset not in IMAGE_DEMOS:
        raise ValueError(f"the image demo runs on {IMAGE_DEMOS}, got {dataset!r}")
    out_dir = Path(out)
    dev = resolve_device(device)
    start = time.perf_counter()
    images, manifold = get_image_dataset(dataset, n if n is not None or dataset == "digits" else 4000, seed=seed)
    limits = (QUICK_LIMITS[0], QUICK_STEPS)
    cut = [f"{limit} {what} (not {asked})" for what, asked, limit in zip(("images", "steps"),
                                                                          (images.x.shape[0], steps), limits,
                                                                          strict=True) if asked > limit]
    if quick and cut:  # only what was cut is named, as by the other demos (`demo.run_demo`)
        _say(f"--quick caps the run at {limits[0]} images and {limits[1]} steps: {' and '.join(cut)}")
        steps = min(steps, QUICK_STEPS)
        if images.x.shape[0] > limits[0]:  # a seeded subset, as --num-points draws it
            images, manifold = get_image_dataset(dataset, limits[0], seed=seed)
    if images.x.shape[0] < 400:
        raise ValueError(f"the image demo needs at least 400 images (200 are held out), got n={images.x.shape[0]}")
    fit, held = demo_split(images.x.shape[0], seed)
    config = demo_config(steps, seed, "auto" if dev.type == "cuda" else "mlp", precision)  # checks before writing
    check_demo_folder(out_dir)
    with staged(out_dir) as stage:  # the folder changes only when every file is ready (an earlier demo's too)
        report = _train_and_draw(stage, out_dir, images, manifold, fit, held, config, dev, dataset=dataset,
                                 quick=quick)
        report["seconds"] = round(time.perf_counter() - start, 1)
        atomic_write_bytes(stage / "report.json", (json.dumps(report, indent=2) + "\n").encode())
    _say(f"done in {report['seconds']:.0f} s: {out_dir / 'report.json'}, eigenvectors.png, eigenvalues.png, "
         "interpolations_*.png, dimension.png")
    return report


def _train_and_draw(stage: Path, out_dir: Path, images, manifold, fit: torch.Tensor, held: torch.Tensor,
                    config: TrainConfig, dev: torch.device, *, dataset: str, quick: bool) -> dict:
    """`run_image_demo`'s training and pictures of ``images`` (`get_image_dataset`), written into the staging
    folder ``stage`` (`staged`, which moves them into ``out_dir``); returns the report without its seconds."""
    steps, seed = config.steps, config.seed
    _say(f"{dataset}: {images.x.shape[0]} images of shape {tuple(images.x.shape[1:])}, values "
         f"{images.value_range[0]:g}..{images.value_range[1]:g}; {fit.numel()} for training, {held.numel()} held out")
    backbone = config.backbone
    model_path = stage / "model.lmm"  # a new model: an earlier demo's model.lmm stays until this run has finished
    _say(f"training a mean-centred model ({steps} steps, {backbone} backbone) -> {out_dir / 'model.lmm'}")
    result = train(images.x[fit], config, manifold=manifold, out=model_path, device=dev,
                   data_info={**images.metadata(), **DEMO_TAG})
    model = load_judged(model_path)  # its verdict is printed below, not warned about a second time
    warnings = distrust(result.validation)
    report: dict = {"dataset": dataset, "images": int(images.x.shape[0]), "steps": steps,
                    "train_seconds": round(result.seconds, 1), "backbone": model.config.arch,
                    "sigma": model.config.default_sigma, "trusted": not warnings, "warnings": warnings}
    for reason in warnings:
        _say(f"warning: {reason}; the pictures show what it learned all the same")
    if manifold is not None:
        x = images.x[held].reshape(held.numel(), -1)
        field = LearnedCDC(model)
        err = tangent_error(field, x, manifold.tangent_basis(x))
        dims = intrinsic_dimension(field_eigenpairs(field, x).values)
        report.update(tangent_error=float(err.mean()), dimension_right=float((dims == manifold.dim).float().mean()))
        _say(f"tangent error {report['tangent_error']:.3f} against the closed form, dimension {manifold.dim} at "
             f"{100 * report['dimension_right']:.0f}% of held-out images")
    _say(f"drawing the pictures into {out_dir}")
    # the training images: "distance to the nearest training image" must not count the held-out ones
    fit_labels = None if images.labels is None else images.labels[fit]
    report["show"] = run_show(model, images.x[fit], stage, labels=fit_labels, n_points=256, n_pairs=3,
                              classifier_steps=300 if quick else 600, seed=seed)
    return report
