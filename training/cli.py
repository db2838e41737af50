"""The ``learned-manifold`` command: ``train``, ``demo`` and ``info``.

    learned-manifold train DATA --out MODEL [--steps N] [--rank R] [--batch-size B] [--seed S]
                           [--device DEV] [--resume] ...
    learned-manifold demo [--out DIR] [--dataset NAME] [--quick]
    learned-manifold info MODEL

DATA is a ``.npy``/``.npz``/``.pt`` array of shape ``(N, ...)`` or a built-in dataset name (`learned_manifold_training.data`).
Under ``torchrun`` the ``train`` command runs data-parallel (DDP); only rank 0 writes files.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields

import torch

from learned_manifold.precision import PRECISIONS

from .trainer import TrainConfig

__all__ = ["build_parser", "main"]

_DEFAULTS = {f.name: f.default for f in fields(TrainConfig)}


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="a .npy/.npz/.pt file of shape (N, ...) or a built-in dataset name "
                                "(circle, sphere, sphere8, torus, swiss_roll, union, digits)")
    p.add_argument("--out", required=True, help="model file to write (e.g. model.lmm)")
    p.add_argument("--num-points", type=int, default=None,
                   help="number of points (built-in data) or first rows (files)")
    p.add_argument("--steps", type=int, default=_DEFAULTS["steps"])
    p.add_argument("--rank", type=int, default=None, help="columns r of the factor (default min(D, 16))")
    p.add_argument("--batch-size", type=int, default=_DEFAULTS["batch_size"])
    p.add_argument("--hidden", type=int, default=_DEFAULTS["hidden"], help="network width")
    p.add_argument("--depth", type=int, default=_DEFAULTS["depth"], help="residual blocks")
    p.add_argument("--lr", type=float, default=_DEFAULTS["lr"])
    p.add_argument("--sampler", default=_DEFAULTS["sampler"], help="loguniform | lognormal | uniform")
    p.add_argument("--sigma-min", type=float, default=_DEFAULTS["sigma_min"],
                   help="smallest training bandwidth, in units of the data scale s")
    p.add_argument("--sigma-max", type=float, default=_DEFAULTS["sigma_max"],
                   help="largest training bandwidth, in units of the data scale s")
    p.add_argument("--uncentred", action="store_true", help="match the uncentred CDC (no denoiser)")
    p.add_argument("--tikhonov", type=float, default=0.0, help="Tikhonov term λ_T in G = AAᵀ + λ_T I")
    p.add_argument("--loss", default="lowrank", help="lowrank | full (full: rank = D, small D only)")
    p.add_argument("--precision", default=_DEFAULTS["precision"], choices=PRECISIONS,
                   help="auto (bf16 autocast where the device has native bf16, else fp32) | fp32 | bf16")
    p.add_argument("--compile", action="store_true", help="torch.compile the networks")
    p.add_argument("--val-every", type=int, default=0, help="validation period in steps (0: at the end)")
    p.add_argument("--checkpoint-every", type=int, default=500, help="checkpoint period in steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from --out")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="learned-manifold", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train_args(sub.add_parser("train", help="train a metric-matching model"))
    demo = sub.add_parser("demo", help="train on a built-in dataset, optimise and interpolate on it, report")
    demo.add_argument("--out", default="demo-output", help="output folder (model, report.json, plots)")
    demo.add_argument("--dataset", default="torus", help="built-in dataset with known geometry")
    demo.add_argument("--num-points", type=int, default=4000)
    demo.add_argument("--steps", type=int, default=2500)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--device", default="auto")
    demo.add_argument("--quick", action="store_true", help="a much shorter run (smoke test)")
    info = sub.add_parser("info", help="print a model file's metadata")
    info.add_argument("model")
    return parser


def _train(args: argparse.Namespace) -> int:
    from .data import resolve_data
    from .trainer import train

    data, manifold = resolve_data(args.data, n=args.num_points, seed=args.seed)
    config = TrainConfig(
        steps=args.steps, batch_size=args.batch_size, rank=args.rank, hidden=args.hidden, depth=args.depth,
        lr=args.lr, sampler=args.sampler, sigma_min=args.sigma_min, sigma_max=args.sigma_max,
        centred=not args.uncentred, tikhonov=args.tikhonov, loss=args.loss, precision=args.precision,
        compile=args.compile, val_every=args.val_every, checkpoint_every=args.checkpoint_every, seed=args.seed,
    )
    try:
        result = train(data, config, manifold=manifold, out=args.out, resume=args.resume, device=args.device,
                       progress=not args.no_progress)
    finally:
        if torch.distributed.is_initialized():  # launched by torchrun: leave the process group cleanly
            torch.distributed.destroy_process_group()
    v = {k: val for k, val in result.validation.items() if k != "sigma_table"}
    print(f"wrote {args.out} ({result.samples_per_second:,.0f} samples/s); validation: {json.dumps(v)}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from learned_manifold.model_file import read_metadata

    meta = read_metadata(args.model)
    meta["extra"].get("validation", {}).pop("sigma_table", None)
    print(json.dumps(meta, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``learned-manifold`` console script."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "demo":
            from .demo import run_demo

            run_demo(out=args.out, dataset=args.dataset, n=args.num_points, steps=args.steps, seed=args.seed,
                     device=args.device, quick=args.quick)
            return 0
        return _info(args)
    except (ValueError, FileNotFoundError, ImportError) as err:  # user errors: one clear line, no traceback
        print(f"learned-manifold {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
