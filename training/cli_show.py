"""The ``show`` subcommand of ``learned-manifold``: pictures of a model's geometry of images (`show.run_show`).

    learned-manifold show MODEL DATA --out DIR [--overwrite] [--num-points N] [--pairs P] [--path-points K]
                          [--classifier-steps S] [--seed S] [--layout L]

`add_subcommand` adds its parser to the main command's subparsers; `run` executes it. A model whose points are
not images is refused before the data are read, and so is an ``--out`` that cannot be written or that holds an
earlier run's files (without ``--overwrite``); an image folder's class names label the figures and show.json.
User errors are raised as ValueError for `learned_manifold_training.cli.main` to print as one line.
"""

from __future__ import annotations

import argparse

from .cli_data import add_layout_arg, mapped_npy, read_data

__all__ = ["add_subcommand", "run"]


def add_subcommand(subparsers: argparse._SubParsersAction,
                   fmt: type[argparse.HelpFormatter] = argparse.ArgumentDefaultsHelpFormatter) -> None:
    """Add ``show`` to the subparsers of the ``learned-manifold`` parser (``fmt``: its help formatter)."""
    show = subparsers.add_parser("show", help="pictures of a model's geometry of images: eigenvector images, "
                                              "eigenvalue curves per class, interpolations, dimension histogram",
                                 formatter_class=fmt, allow_abbrev=False)
    show.add_argument("model", help="a model file written by `learned-manifold train` on images (H, W) or (C, H, W)")
    show.add_argument("data", help="the data (as for train): its images, and labels where the source has them")
    show.add_argument("--out", required=True, help="folder for the PNG files and show.json (created if missing); "
                                                    "one that holds an earlier run's files is refused")
    show.add_argument("--overwrite", action="store_true",
                      help="replace an earlier run's files in --out (eigenvectors.png, eigenvalues.png, dimension.png, "
                           "interpolations_*.png, show.json); they are replaced only when the new ones are ready, "
                           "and the earlier strips this run does not draw are then removed")
    show.add_argument("--num-points", type=int, default=256, help="points for the spectra and the histogram")
    show.add_argument("--pairs", type=int, default=3, help="interpolation pairs (same class where labels exist)")
    show.add_argument("--path-points", type=int, default=17, help="images per interpolation path, both ends counted")
    show.add_argument("--classifier-steps", type=int, default=400,
                      help="training steps of the classifier that scores the interpolations (data with labels)")
    show.add_argument("--seed", type=int, default=0, help="seeds the choice of points and pairs")
    add_layout_arg(show)


def run(args: argparse.Namespace) -> int:
    """Run ``show`` with the parsed ``args``; returns the exit status 0 (errors are raised as ValueError)."""
    from learned_manifold import load_model

    from .data import as_model_points
    from .show import check_image_model, check_show_folder, run_show

    for name, low in (("num_points", 1), ("pairs", 1), ("path_points", 2), ("classifier_steps", 1)):
        if getattr(args, name) < low:
            raise ValueError(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(args, name)}")
    if not args.out.strip():
        raise ValueError("--out is empty: give a folder for the pictures")
    check_show_folder(args.out, args.data, overwrite=args.overwrite)  # before the model and the data are read
    model = load_model(args.model)
    check_image_model(tuple(model.data_shape), f"MODEL {args.model!r}")  # before the data are read
    data, labels, names = mapped_npy(args), None, None  # a .npy: memory-mapped, only the rows drawn are read
    if data is None:
        got = read_data(args, args.data)
        data, labels = as_model_points(got.x, model.data_shape, "DATA"), got.labels
        names = got.class_names if labels is not None else None  # a folder's class folders, a text "labels" entry
    report = run_show(model, data, args.out, labels=labels, n_points=args.num_points, n_pairs=args.pairs,
                      path_points=args.path_points, classifier_steps=args.classifier_steps, seed=args.seed,
                      data_source=args.data, class_names=names, overwrite=args.overwrite)
    print(f"wrote the pictures and show.json to {args.out}; median dimension {report['median_dimension']:g}")
    return 0
