"""The ``demo`` subcommand of ``learned-manifold``: train on a built-in dataset, optimise, interpolate, report.

    learned-manifold demo [--out DIR] [--dataset NAME] [--num-points N] [--steps N] [--seed S] [--precision P]
                          [--device DEV] [--quick]

`add_subcommand` adds its parser to the main command's subparsers; `run` executes it (`demo.run_demo` for the
manifolds, `image_demo.run_image_demo` for ``digits`` and ``blobs``). Its defaults are those of the Python
functions (`demo.DEMO_STEPS`). User errors are raised as ValueError, naming flags, for `cli.main` to print.
"""

from __future__ import annotations

import argparse

from learned_manifold.precision import PRECISIONS

from .cli_data import as_num_points, point_count
from .cli_flags import as_flags
from .demo import DEFAULT_OUT, DEMO_STEPS, QUICK_LIMITS
from .image_demo import QUICK_STEPS

__all__ = ["add_subcommand", "run"]


def add_subcommand(subparsers: argparse._SubParsersAction,
                   fmt: type[argparse.HelpFormatter] = argparse.ArgumentDefaultsHelpFormatter) -> None:
    """Add ``demo`` to the subparsers of the ``learned-manifold`` parser (``fmt``: its help formatter)."""
    demo = subparsers.add_parser("demo", help="train on a built-in dataset, optimise and interpolate on it, report",
                                 formatter_class=fmt, allow_abbrev=False)
    demo.add_argument("--out", default=DEFAULT_OUT,
                      help="output folder (model.lmm, report.json, plots, and model.lmm.train-state.pt, the final "
                           "training state, a few times the model's size). A folder holding files of those names is "
                           "refused unless it is an earlier demo's (its model.lmm written by the demo), whose files "
                           "are replaced, all together, only when the new run finishes: an interrupted demo leaves "
                           "the folder as it was")
    demo.add_argument("--dataset", default="torus",
                      help="built-in dataset with known geometry (torus, sphere, circle, swiss_roll, union, sphere8), "
                           "or images: digits or blobs (pictures of the learned geometry of images)")
    demo.add_argument("--num-points", type=point_count, default=None,
                      help="number of points (default: 4000; digits: all 1,797 images)")
    demo.add_argument("--steps", type=int, default=DEMO_STEPS, help="training steps")
    demo.add_argument("--seed", type=int, default=0,
                      help="seeds the data and the training (under --precision auto the weights also depend on its "
                           "timing probe: for bit-identical reruns set --precision fp32 or bf16)")
    demo.add_argument("--precision", default="auto", choices=PRECISIONS,
                      help="training arithmetic, as for train: auto (bf16 autocast only where a short probe "
                           "measures it faster than fp32 on this device: a timing, which may differ between two "
                           "runs) | fp32 | bf16")
    demo.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    demo.add_argument("--quick", action="store_true",
                      help=f"a much shorter run (smoke test): at most {QUICK_LIMITS[0]} points and "
                           f"{QUICK_LIMITS[1]} steps (image data sets: {QUICK_LIMITS[0]} images, a seeded subset, "
                           f"and {QUICK_STEPS} steps)")


def run(args: argparse.Namespace) -> int:
    """Run ``demo`` with the parsed ``args``; returns the exit status 0 (errors are raised as ValueError)."""
    from .demo import run_demo
    from .image_demo import IMAGE_DEMOS, run_image_demo
    from .runtime import resolve_device

    resolve_device(args.device, name="--device")
    try:
        if args.dataset in IMAGE_DEMOS:
            run_image_demo(out=args.out, dataset=args.dataset, steps=args.steps, seed=args.seed, device=args.device,
                           quick=args.quick, n=args.num_points, precision=args.precision)
            return 0
        run_demo(out=args.out, dataset=args.dataset, n=4000 if args.num_points is None else args.num_points,
                 steps=args.steps, seed=args.seed, device=args.device, quick=args.quick, precision=args.precision)
    except ValueError as err:  # the settings' own names, as flags
        raise ValueError(as_num_points(as_flags(str(err)))) from None
    return 0
