"""The VAE subcommands of ``learned-manifold`` (SPEC §11): ``train-vae`` and ``encode``.

    learned-manifold train-vae DATA --out VAE --latent-dim D [--layout L] [--steps N] [--std-steps N] [--seed S]
                               [--device DEV] [--resume | --overwrite] ...
    learned-manifold encode VAE DATA --out latents.npy [--overwrite]

``encode`` writes the posterior means of DATA as an ``(N, d)`` float32 ``.npy``, so metric matching runs on the
latent codes with the ordinary ``learned-manifold train latents.npy --out latent.lmm``. DATA is read exactly as
``train`` reads it (`cli_data.read_data`; the same ``--num-points``/``--seed`` give the same points); where
``--num-points`` encodes a random subset of an array file's rows, their indices in DATA are written beside the
codes, ``CODES.rows.npy`` (`rows_path`), so that names, labels or times can be matched to them. DATA far from the
VAE's training data (other units: `vae_std.far_data`) are encoded with a warning naming both files. `add_subcommands`
adds both parsers to the main command's subparsers; `run` executes one: every user error is one line on stderr
and exit status 2, an interrupted training saves a checkpoint, prints the ``--resume`` command and returns 130.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from learned_manifold.shell_command import shell_command

from .cli_data import add_layout_arg, as_num_points, point_count, read_data
from .outputs import OutputLock, check_not_data, check_output
from .runtime import TrainingInterrupted, resolve_device
from .validation import distrust

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["COMMANDS", "add_subcommands", "run"]

COMMANDS = ("train-vae", "encode")
"""The subcommands this module adds and runs."""


def _as_flag(message: str) -> str:
    """Name the command-line option instead of the `VAETrainConfig` field at the start of ``message``."""
    flags = {"n_centres": "--centres"}
    return re.sub(r"^(\w+)", lambda m: flags.get(m[1], "--" + m[1].replace("_", "-")), message)


def add_subcommands(subparsers: argparse._SubParsersAction,
                    fmt: type[argparse.HelpFormatter] = argparse.ArgumentDefaultsHelpFormatter) -> None:
    """Add ``train-vae`` and ``encode`` to the subparsers of the ``learned-manifold`` parser (``fmt``: its help
    formatter)."""
    from .vae_trainer import VAETrainConfig

    d = VAETrainConfig()
    p = subparsers.add_parser("train-vae", formatter_class=fmt, allow_abbrev=False,
                              help="train a VAE with an RBF decoder std (SPEC §11) for the latent comparison")
    p.add_argument("data", help="a .npy/.npz/.pt file of shape (N, ...) or a built-in dataset name, read as "
                                "train reads it")
    add_layout_arg(p)
    p.add_argument("--out", required=True, help="VAE file to write (e.g. vae.lvae); its folder must exist")
    p.add_argument("--latent-dim", type=int, required=True, help="latent dimension d")
    p.add_argument("--num-points", type=point_count, default=None,
                   help="points of a built-in data set (default: 10000; digits: all) or a random subset (drawn "
                        "with --seed, kept in file order) of a file or folder")
    p.add_argument("--steps", type=int, default=d.steps, help="ELBO steps (encoder and decoder mean)")
    p.add_argument("--std-steps", type=int, default=d.std_steps, help="steps fitting the RBF decoder precision")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="points per step")
    p.add_argument("--arch", default=d.arch, choices=("auto", "mlp", "conv"),
                   help="auto: conv for image-shaped points (H, W) or (C, H, W), else mlp")
    p.add_argument("--hidden", type=int, default=d.hidden, help="MLP width")
    p.add_argument("--depth", type=int, default=d.depth, help="MLP hidden layers, or conv stride-2 stages (1 to 8)")
    p.add_argument("--channels", type=int, default=d.channels, help="channels of the first convolution (conv)")
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate of the ELBO stage")
    p.add_argument("--std-lr", type=float, default=d.std_lr, help="Adam learning rate of the RBF decoder precision")
    p.add_argument("--kl-weight", type=float, default=d.kl_weight, help="beta, the weight of the ELBO's KL term")
    p.add_argument("--val-points", type=int, default=d.val_points, help="held-out points of the final validation")
    p.add_argument("--centres", type=int, default=d.n_centres, help="RBF centres K (k-means of the codes)")
    p.add_argument("--rbf-scale", type=float, default=d.rbf_scale, help="a in lambda_k = (a * cluster spread)^-2 / 2")
    p.add_argument("--zeta", type=float, default=d.zeta,
                   help="precision floor: far from the data the std is (data scale) / sqrt(zeta)")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="checkpoint period in steps")
    p.add_argument("--seed", type=int, default=d.seed, help="seeds the data, the split, the initialisation and batches")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue an interrupted run from --out")
    mode.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    e = subparsers.add_parser("encode", formatter_class=fmt, allow_abbrev=False,
                              help="write the VAE's posterior means of DATA as an (N, d) .npy (for `train`)")
    e.add_argument("vae", help="a VAE file written by train-vae")
    e.add_argument("data", help="a .npy/.npz/.pt file or a built-in dataset name, read as train-vae reads it")
    e.add_argument("--out", required=True, help="the .npy file to write (e.g. latents.npy)")
    e.add_argument("--num-points", type=point_count, default=None,
                   help="as for train-vae; a random subset of a file's rows also writes their indices in DATA "
                        "(0-based, in file order) to OUT's name with .rows.npy")
    e.add_argument("--seed", type=int, default=0, help="as for train-vae (sampling of built-in data sets)")
    e.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    e.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    add_layout_arg(e)


_TRAIN_OPTIONS = ("layout", "latent_dim", "num_points", "steps", "std_steps", "batch_size", "arch", "hidden",
                  "depth", "channels", "lr", "std_lr", "kl_weight", "val_points", "centres", "rbf_scale", "zeta",
                  "checkpoint_every", "seed", "device")


def _read(args: argparse.Namespace) -> Tensor:
    """The points of ``args.data`` (`cli_data.read_data` with ``--layout``, ``--num-points``, ``--seed``): errors
    name ``--num-points`` where the data layer says ``n`` (as ``learned-manifold demo`` does)."""
    try:
        return read_data(args, args.data, n=args.num_points, seed=args.seed).x
    except ValueError as err:
        raise ValueError(as_num_points(str(err))) from None


def rows_path(out: Path) -> Path:
    """Where ``encode --out CODES.npy`` writes the indices of the rows it encoded: ``CODES.rows.npy``."""
    return out.with_name(out.name[: -len(out.suffix)] + ".rows.npy")


def _encoded_rows(args: argparse.Namespace) -> tuple[Tensor, Tensor | None]:
    """The points ``encode`` encodes and, where they are a random subset of an array file's rows
    (``--num-points``), the indices ``(n,)`` of those rows in DATA (int64, 0-based, sorted: file order), the ones
    `train-vae` and `train` draw with the same ``--seed`` (`ResolvedData.rows`: only those rows are read from a
    ``.npy``); ``None`` for all rows, a built-in data set (its points are generated), a folder or an IDX file."""
    try:
        got = read_data(args, args.data, n=args.num_points, seed=args.seed)
    except ValueError as err:
        raise ValueError(as_num_points(str(err))) from None
    return got.x, got.rows


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _resume_command(args: argparse.Namespace) -> str:
    """The exact ``train-vae`` command that continues this run (every option as parsed, plus ``--resume``)."""
    words = ["train-vae", args.data, "--out", args.out]
    for dest in _TRAIN_OPTIONS:
        if getattr(args, dest) is not None:
            words += ["--" + dest.replace("_", "-"), str(getattr(args, dest))]
    words += ["--no-progress"] if args.no_progress else []
    return shell_command(["learned-manifold", *words, "--resume"])


def _train_vae(args: argparse.Namespace) -> int:
    from .vae_trainer import VAETrainConfig, train_vae

    try:
        cfg = VAETrainConfig(latent_dim=args.latent_dim, steps=args.steps, std_steps=args.std_steps,
                             batch_size=args.batch_size, arch=args.arch, hidden=args.hidden, depth=args.depth,
                             channels=args.channels, lr=args.lr, n_centres=args.centres, rbf_scale=args.rbf_scale,
                             zeta=args.zeta, checkpoint_every=args.checkpoint_every, seed=args.seed,
                             std_lr=args.std_lr, kl_weight=args.kl_weight, val_points=args.val_points)
    except (TypeError, ValueError) as err:
        raise ValueError(_as_flag(str(err))) from None
    resolve_device(args.device, name="--device")
    out = Path(args.out)
    try:
        check_not_data(out, args.data)  # before the lock writes its pid into OUT.lock
        with OutputLock(out):
            check_output(out, resume=args.resume, overwrite=args.overwrite, data=args.data, kind="train-vae")
            data = _read(args)
            try:
                result = train_vae(data, cfg, out=out, resume=args.resume, overwrite=args.overwrite,
                                   device=args.device, progress=not args.no_progress)
            except ValueError as err:  # a setting that does not fit the data ("arch 'conv' needs images") by its flag
                text = str(err)
                settings = {f.name for f in dataclasses.fields(VAETrainConfig)}
                raise ValueError(_as_flag(text) if text.split(" ", 1)[0] in settings else text) from None
    except TrainingInterrupted as stop:
        print(f"interrupted at step {stop.step} of {stop.total}; the partial VAE is in {out} (incomplete); "
              f"continue with: {_resume_command(args)}", file=sys.stderr)
        return 130
    done = (f"{args.out} is already complete (step {result.stopped_at}): nothing to resume"
            if result.already_complete else f"wrote {args.out}")
    print(f"{done}; validation: {json.dumps(result.validation)}")
    for reason in distrust(result.validation):
        print(f"warning: {reason}", file=sys.stderr)
    return 0


def _encode(args: argparse.Namespace) -> int:
    from learned_manifold.model_file import atomic_write_bytes
    from learned_manifold.vae_file import load_vae, read_vae_metadata

    from .data import as_model_points
    from .vae_std import far_data
    from .vae_trainer import encode_data

    device = resolve_device(args.device, name="--device")
    out = Path(args.out)
    if out.suffix.lower() != ".npy":
        raise ValueError(f"--out {str(out)!r} must end in .npy (the codes are written as one NumPy array)")
    vae_path = Path(args.vae)
    if out.resolve() == vae_path.resolve() or (out.exists() and vae_path.exists() and os.path.samefile(out, vae_path)):
        raise ValueError(f"--out {str(out)!r} is the VAE file itself; write the codes to another file")
    rows = rows_path(out)
    for path in (out, rows):
        check_output(path, overwrite=True, data=args.data)  # not DATA; a writable folder; no link, folder or device
        if path.exists() and not args.overwrite:
            raise ValueError(f"{str(path)!r} already exists; replace it with --overwrite")
    vae = load_vae(args.vae, map_location=device)
    recorded = read_vae_metadata(args.vae)["extra"].get("validation", {})  # train-vae's verdict, kept in the file
    data, keep = _encoded_rows(args)
    data = as_model_points(data, vae.data_shape, "DATA").float().to(device)
    far = far_data(vae, data)  # warned after the message that names the codes, with the files' names
    codes = encode_data(vae, data, check=False).cpu().numpy().astype(np.float32)
    atomic_write_bytes(out, _npy(codes))
    if keep is not None:
        atomic_write_bytes(rows, _npy(keep.numpy().astype(np.int64)))
    else:  # all rows, in order: an earlier subset's indices (replaced with --overwrite) would no longer hold
        rows.unlink(missing_ok=True)
    which = (f" of a random subset of the rows of {args.data}, whose indices (0-based, in file order) are in {rows}"
             if keep is not None else "")
    train = shell_command(["learned-manifold", "train", str(out), "--out", "latent.lmm"])
    advice = "see the warning below" if far else f"train metric matching on them with: {train}"
    print(f"wrote {args.out}: {codes.shape[0]} codes of dimension {codes.shape[1]} (posterior means){which}; "
          f"{advice}")
    if far:
        print(f"warning: the points of {args.data} lie far from the data the VAE file {args.vae} was trained on: "
              f"{far}; codes of such points are no basis for `train`", file=sys.stderr)
    for reason in distrust(recorded if isinstance(recorded, dict) else {}):  # as train-vae warned: the codes share it
        print(f"warning: the VAE file {args.vae} records that {reason}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``args.command`` (one of `COMMANDS`); returns the exit status (0, or 130 after an interrupted training)."""
    if args.command not in COMMANDS:
        raise ValueError(f"vae_cli.run handles {COMMANDS}, not {args.command!r}")
    # user errors (ValueError, OSError, ImportError) and Ctrl-C are turned into one line and an exit status by
    # `learned_manifold_training.cli.main`, which calls this
    return _train_vae(args) if args.command == "train-vae" else _encode(args)
