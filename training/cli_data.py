"""What the commands read as DATA (`learned-manifold train`, ``show``, ``info --data``, ``vae-train``,
``encode``): the ``--layout`` option and one reader, `training.data.resolve_source`, for all of them."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from .data import ResolvedData, resolve_source
from .data.stream import ArraySource, open_npy

__all__ = ["add_layout_arg", "as_num_points", "mapped_npy", "point_count", "read_data"]


def point_count(text: str) -> int:
    """An argparse type for ``--num-points``: an integer ``≥ 2`` (0 or a negative number had meant "all rows")."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if n < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2 (leave it out for the default), got {n}")
    return n


def add_layout_arg(p: argparse.ArgumentParser) -> None:
    """``--layout auto|NCHW|NHWC``: the axis order of a 4-axis image array file."""
    p.add_argument("--layout", default="auto", choices=("auto", "NCHW", "NHWC"),
                   help="axis order of a 4-axis image array file: auto reads (N, C, H, W) with C <= 4 and "
                        "channels-last (N, H, W, C) with C in 1, 3, 4 (turned channels-first), and asks where both "
                        "fit")


def read_data(args: argparse.Namespace, source: str, *, n: int | None = None, seed: int = 0) -> ResolvedData:
    """``source`` read by `resolve_source` with ``args.layout`` (layout errors name ``--layout``)."""
    layout = getattr(args, "layout", "auto")
    try:
        return resolve_source(source, n=n, seed=seed, layout=None if layout == "auto" else layout)
    except ValueError as err:
        raise ValueError(str(err).replace("layout='NCHW' or layout='NHWC'", "--layout NCHW or --layout NHWC")
                         .replace("layout applies", "--layout applies")) from None


def as_num_points(message: str) -> str:
    """A data-layer error ``message`` as the command line says it: its ``n`` named ``--num-points``, and its "(use
    n <= 0 for all)" (an option value `point_count` refuses) as "(leave --num-points out for all)"."""
    message = message.replace(" (use n <= 0 for all)", " (leave --num-points out for all)")
    return re.sub(r"\bn(=| must)", r"--num-points\1", message)


def mapped_npy(args: argparse.Namespace) -> ArraySource | None:
    """``--data`` as a memory-mapped `ArraySource` (nothing read but the header) when it is a ``.npy`` file that can
    be streamed; ``None`` otherwise (then it is read whole, and the full reader gives any error)."""
    path = Path(args.data)
    if path.suffix.lower() != ".npy" or not path.is_file():
        return None
    layout = getattr(args, "layout", "auto")
    try:
        return open_npy(path, layout=None if layout == "auto" else layout)
    except ValueError:
        return None
