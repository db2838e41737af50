"""The ``learned-manifold`` command: ``train``, ``demo``, ``info``, ``show``, ``train-vae`` and ``encode``.

    learned-manifold train DATA --out MODEL [--steps N] [--rank R] [--batch-size B] [--seed S]
                           [--device DEV] [--resume | --overwrite] ...
    learned-manifold demo [--out DIR] [--dataset NAME] [--precision P] [--quick]
    learned-manifold info MODEL [--json] [--data DATA]
    learned-manifold show MODEL DATA --out DIR [--num-points N] [--pairs P]
    learned-manifold train-vae DATA --out VAE --latent-dim D [--steps N]; encode VAE DATA --out CODES.npy

DATA is a ``.npy``/``.npz``/``.pt`` array of shape ``(N, ...)``, a folder of PNG/JPEG images, an MNIST-style IDX
file or a built-in dataset name (`learned_manifold_training.data`). Under ``torchrun`` the ``train`` command
runs data-parallel (DDP); only rank 0 writes files. Every user error (bad option, data, device or output path, a
diverged run, a full disk) is one line on stderr and exit status 2; an interrupted run (Ctrl-C, SIGTERM) saves a
checkpoint, says how to resume, and exits with 130. ``info`` is `learned_manifold_training.info`'s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import torch

from learned_manifold.models import LOSSES, SAMPLER_NAMES
from learned_manifold.precision import PRECISIONS
from learned_manifold.shell_command import shell_command
from learned_manifold.unet import UNET_PRESETS

from . import cli_console, cli_demo, cli_show, vae_cli
from .cli_console import compile_cache_hint, out_of_memory, out_of_memory_advice, sigterm_as_interrupt, tolerant_stdout
from .cli_data import add_layout_arg, as_num_points, point_count, read_data
from .cli_flags import FLAGS, as_flags
from .config import BACKBONE_CHOICES, TRAIN_INPUT_SCALINGS, TrainConfig
from .info import CHECK_POINTS, run_info
from .loader_failures import DataReadingFailed
from .losses import FACTOR_TARGETS
from .outputs import OutputError, OutputLock, check_not_data, check_output
from .recipe_checks import MLP_ONLY
from .resume import saved_choices
from .runtime import TrainingInterrupted, check_training_tensor, init_distributed, resolve_device

__all__ = ["build_parser", "main"]

_DEFAULTS = {f.name: f.default for f in fields(TrainConfig)}


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Show ``(default: X)`` after every option's help, except where there is no value to show (flags, None)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return action.help or ""
        return super()._get_help_string(action)


_HELP = _Help


def _auto_or(kind: type) -> Callable[[str], object]:
    """An argparse type: ``"auto"`` or a ``kind`` (argparse names ``kind`` when neither parses)."""
    def parse(text: str) -> object:
        return "auto" if text == "auto" else kind(text)
    parse.__name__ = kind.__name__
    return parse


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="a .npy/.npz/.pt file of shape (N, ...) (images (N, H, W), (N, C, H, W) or "
                                "(N, H, W, C) as stored, e.g. uint8; a .npz/.pt entry 'labels' (integers or text) is "
                                "kept apart; a scipy.sparse.save_npz matrix is read dense), a "
                                "folder of PNG/JPEG files (class sub-folders give labels), an MNIST IDX file (.gz or "
                                "not), or a built-in name (circle, sphere, sphere8, torus, swiss_roll, union, digits, "
                                "blobs, blobs:SIDE)")
    add_layout_arg(p)
    p.add_argument("--out", required=True, help="model file to write (e.g. model.lmm); its folder must exist")
    p.add_argument("--num-points", type=point_count, default=None,
                   help="number of points of a built-in data set (default: 10000; digits: all), or a random "
                        "subset (drawn with --seed, kept in file order) of an array or IDX file or an image folder "
                        "(default: all)")
    p.add_argument("--steps", type=int, default=_DEFAULTS["steps"], help="optimisation steps")
    p.add_argument("--rank", type=int, default=None,
                   help="columns r of the factor, 1..D (default: min(D, max(16, 2d)) for the MLP, d the data's "
                        "dimension estimated by local PCA; the preset's rank capped at D for the UNet)")
    p.add_argument("--backbone", default=_DEFAULTS["backbone"], choices=BACKBONE_CHOICES,
                   help="network: auto (the UNet for image points of shape (H, W) or (C, H, W) with H, W >= 4, "
                        "else the MLP) | mlp (FiLM residual MLP: --hidden, --depth) | unet (--preset)")
    p.add_argument("--preset", default=None, choices=sorted(UNET_PRESETS),
                   help=f"UNet size: {', '.join(sorted(UNET_PRESETS))} (default: small, a CPU-sized UNet; mnist, "
                        "cifar10, celeba64, ffhq256: presets modelled on the paper's image networks, not copies of "
                        "its configs; see learned_manifold.unet.unet_preset)")
    p.add_argument("--batch-size", type=int, default=_DEFAULTS["batch_size"],
                   help="points per step (the global batch under DDP)")
    p.add_argument("--hidden", type=int, default=_DEFAULTS["hidden"], help="MLP width")
    p.add_argument("--emb-dim", type=int, default=_DEFAULTS["emb_dim"],
                   help="MLP: width of the noise-level (sigma) embedding")
    p.add_argument("--final-norm", action=argparse.BooleanOptionalAction, default=_DEFAULTS["final_norm"],
                   help="MLP: a LayerNorm before the heads (the network before the sixth session) (default: on, "
                        "off where --input-scaling resolves to gaussian)")
    p.add_argument("--norm-feature", action=argparse.BooleanOptionalAction, default=_DEFAULTS["norm_feature"],
                   help="MLP: the input's log squared norm as one more input feature (without it the denoiser of a "
                        "high-dimensional sphere, S16 in R64, never learned the radius); by default on when the "
                        "points lie near a sphere about their mean, else off (it hurts the swiss roll); "
                        "--norm-feature / --no-norm-feature force it")
    p.add_argument("--depth", type=int, default=_DEFAULTS["depth"], help="MLP residual blocks")
    p.add_argument("--landmarks", type=int, default=None,
                   help="training points stored in the model file, through which geodesics start (default: "
                        "min(4096, max(2, 2^21 / D)) of them; 0: the file holds no data points; at least 2 otherwise; "
                        "at most the training points: more stores them all, with a warning)")
    p.add_argument("--lr", type=float, default=_DEFAULTS["lr"],
                   help="AdamW learning rate (warm-up, then cosine decay to lr/10)")
    p.add_argument("--weight-decay", type=float, default=_DEFAULTS["weight_decay"], help="AdamW weight decay")
    p.add_argument("--warmup", type=float, default=_DEFAULTS["warmup"],
                   help="fraction of the steps over which the learning rate rises linearly to --lr")
    p.add_argument("--ema", type=float, default=_DEFAULTS["ema"],
                   help="decay of the exponential moving average of the weights that the model file keeps (0: off)")
    p.add_argument("--sampler", default=_DEFAULTS["sampler"], choices=SAMPLER_NAMES,
                   help="training bandwidth distribution")
    p.add_argument("--sigma-min", type=float, default=_DEFAULTS["sigma_min"],
                   help="smallest training bandwidth, in units of the data scale s")
    p.add_argument("--sigma-max", type=float, default=_DEFAULTS["sigma_max"],
                   help="largest training bandwidth, in units of the data scale s")
    p.add_argument("--uncentred", action="store_true", help="match the uncentred CDC (no denoiser)")
    p.add_argument("--shared-trunk", action=argparse.BooleanOptionalAction, default=_DEFAULTS["shared_trunk"],
                   help="centred runs: one network with a factor head and a denoiser head on a shared trunk "
                        "(default: off, two networks)")
    p.add_argument("--factor-trunk-grad", type=float, default=_DEFAULTS["factor_trunk_grad"],
                   help="with --shared-trunk: scale in [0, 1] of the factor loss's gradient into the trunk (0: the "
                        "trunk learns from the denoiser alone)")
    p.add_argument("--factor-target", default=_DEFAULTS["factor_target"], choices=FACTOR_TARGETS,
                   help="centred runs: what the factor matches: residual (one noisy sample of the centred CDC per "
                        "point, SPEC §3) or jacobian (the trained denoiser's Jacobian, one probe product per "
                        "point)")
    p.add_argument("--factor-fraction", type=float, default=_DEFAULTS["factor_fraction"],
                   help="centred runs: fraction in (0, 1] of each batch the factor's loss covers (the denoiser's "
                        "covers all of it)")
    p.add_argument("--freeze-denoiser", action=argparse.BooleanOptionalAction, default=_DEFAULTS["freeze_denoiser"],
                   help="centred runs: the denoiser stops learning when the factor starts (cheaper factor steps) "
                        "(default: off)")
    p.add_argument("--denoiser-warmup", type=_auto_or(float), default=_DEFAULTS["denoiser_warmup"], metavar="F",
                   help="centred runs: fraction in [0, 1) of the steps that train the denoiser alone before the "
                        "factor starts (default auto: 0.5, or 0.25 where the data's estimated dimension exceeds 8)")
    p.add_argument("--factor-hidden", type=_auto_or(int), default=_DEFAULTS["factor_hidden"], metavar="W",
                   help="(MLP) the factor network's hidden width (default auto: 2 x --hidden where the data's "
                        "estimated dimension exceeds 8, else --hidden)")
    p.add_argument("--denoiser-hidden", type=int, default=_DEFAULTS["denoiser_hidden"], metavar="W",
                   help="centred runs with two networks (MLP): the denoiser's hidden width (default: --hidden)")
    p.add_argument("--jacobian-probes", type=int, default=_DEFAULTS["jacobian_probes"], metavar="K",
                   help="Jacobian target: probes per point (each one more backward pass of the denoiser); more "
                        "probes, a less noisy factor loss")
    p.add_argument("--factor-refit", type=float, default=_DEFAULTS["factor_refit"], metavar="F",
                   help="centred runs with two networks: if the finished model fails its self-consistency check, "
                        "refit the factor to the frozen denoiser for F x steps more at lr/10, kept only if the "
                        "networks then agree better (0: off)")
    p.add_argument("--factor-clip", type=_auto_or(float), default=_DEFAULTS["factor_clip"], metavar="R",
                   help="cut the factor network's gradient norm to R x its running geometric mean, a guard against "
                        "its loss blowing up (0: off; default auto: 4 where the estimated dimension exceeds 8)")
    p.add_argument("--factor-ramp", type=_auto_or(float), default=_DEFAULTS["factor_ramp"], metavar="F",
                   help="ramp the factor's learning rate up over F x steps from its first step (0: off; default "
                        "auto: the run's warm-up where the estimated dimension exceeds 8)")
    p.add_argument("--factor-lr-scale", type=_auto_or(float), default=_DEFAULTS["factor_lr_scale"], metavar="S",
                   help="the factor network's learning rate as S x --lr (default auto: --hidden / --factor-hidden "
                        "where the factor network is wider, else 1)")
    p.add_argument("--input-scaling", default=_DEFAULTS["input_scaling"], choices=TRAIN_INPUT_SCALINGS,
                   help="what the networks see: none (the standardised point), unit (c_in(σ) times it), gaussian "
                        "(the data's linear denoiser applied to it, plus a linear skip for the denoiser; "
                        "benchmarks/RESULTS.md), auto (gaussian for the MLP when the data's linear span has at most "
                        "half the dimensions, else none)")
    p.add_argument("--gaussian-rank", type=int, default=_DEFAULTS["gaussian_rank"],
                   help="--input-scaling gaussian: principal directions of its Gaussian model of the data (at most "
                        "D)")
    p.add_argument("--grad-clip", type=float, default=_DEFAULTS["grad_clip"],
                   help="gradient-norm clipping (0 disables). The norm is on this library's scale: its factor "
                        "loss is 4D² times the paper code's (D the data dimension) and its factor √2 times (the "
                        "εεᵀ convention, SPEC §1), so the factor's gradients are 2√2·D² to 4D² times the paper's "
                        "(4D² = 16,384 at D = 64): the paper's clip value 1.0 does not transfer")
    p.add_argument("--tikhonov", type=float, default=_DEFAULTS["tikhonov"],
                   help="Tikhonov term λ_T in G = AAᵀ + λ_T I, in this library's units: 2 x the paper code's "
                        "tikhonov_epsilon gives the same gradients (its G is half of this one's, SPEC §1)")
    p.add_argument("--loss", default=_DEFAULTS["loss"], choices=LOSSES, help="full: rank = D, small D only")
    p.add_argument("--precision", default=_DEFAULTS["precision"], choices=PRECISIONS,
                   help="auto (bf16 autocast only where a short probe of this run's step measures it faster "
                        "than fp32 on this device: a timing, which may differ between two runs; for bit-identical "
                        "reruns set --precision fp32 or bf16) | fp32 | bf16")
    p.add_argument("--compile", action="store_true", help="torch.compile the networks")
    p.add_argument("--val-every", type=int, default=_DEFAULTS["val_every"],
                   help="validation period in steps (0: at the end); centred runs validate only once the factor "
                        "trains, after the denoiser warm-up (--denoiser-warmup)")
    p.add_argument("--val-points", type=int, default=_DEFAULTS["val_points"],
                   help="held-out points for validation and the choice of the default sigma (at most N / 5)")
    p.add_argument("--checkpoint-every", type=int, default=_DEFAULTS["checkpoint_every"],
                   help="checkpoint period in steps (0: only at the end and when interrupted)")
    p.add_argument("--seed", type=int, default=_DEFAULTS["seed"],
                   help="seeds the sample of a built-in data set or image folder, the data split, the "
                   "initialisation and every batch (under --precision auto the weights also depend on its timing "
                   "probe: for bit-identical reruns set --precision fp32 or bf16)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue an interrupted run from --out")
    mode.add_argument("--overwrite", action="store_true",
                      help="replace an existing --out (and its training state); without it an existing model "
                           "is never overwritten. The earlier model is replaced at the new run's first checkpoint "
                           "(--checkpoint-every) or interruption, not when it finishes: copy it first to keep it")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``learned-manifold`` command (every option shows its default in --help).

    No parser takes abbreviated options (``allow_abbrev=False``): ``--overw`` for ``--overwrite`` was accepted, and
    the printed ``--resume`` command, which drops ``--overwrite``, kept it and failed."""
    parser = argparse.ArgumentParser(prog="learned-manifold", description=__doc__.split("\n")[0].replace("``", ""),
                                     formatter_class=_HELP, allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train_args(sub.add_parser("train", help="train a metric-matching model", formatter_class=_HELP,
                                   allow_abbrev=False))
    cli_demo.add_subcommand(sub, _HELP)
    info = sub.add_parser("info", help="summarise a model file (complete?, data, size, training, validation)",
                          formatter_class=_HELP, allow_abbrev=False)
    info.add_argument("model", help="a model file written by `learned-manifold train`")
    info.add_argument("--json", action="store_true", help="print the file's metadata as JSON")
    info.add_argument("--data", default=None,
                      help="held-out data (a file or built-in name, as for train): check the model against itself "
                           "there (factor network against denoiser Jacobian, normal eigenvalue as sigma halves)")
    info.add_argument("--num-points", type=int, default=None,
                      help=f"points of --data used by the check (default: {CHECK_POINTS}; only with --data)")
    add_layout_arg(info)
    cli_show.add_subcommand(sub, _HELP)
    vae_cli.add_subcommands(sub, _HELP)
    return parser


_MLP_ONLY = {FLAGS[name]: name for name in MLP_ONLY}
"""The flags of the options that size the MLP only (`recipe_checks.MLP_ONLY`'s fields, in its order): given for
data the UNet trains, the command warns."""


def _config(args: argparse.Namespace) -> TrainConfig:
    try:
        return TrainConfig(
            steps=args.steps, batch_size=args.batch_size, rank=args.rank, hidden=args.hidden, depth=args.depth,
            emb_dim=args.emb_dim, gaussian_rank=args.gaussian_rank, weight_decay=args.weight_decay,
            warmup=args.warmup, ema=args.ema, val_points=args.val_points,
            final_norm=args.final_norm, norm_feature=args.norm_feature,
            backbone=args.backbone, preset=args.preset,
            lr=args.lr, sampler=args.sampler, sigma_min=args.sigma_min, sigma_max=args.sigma_max,
            centred=not args.uncentred, shared_trunk=args.shared_trunk,
            factor_trunk_grad=args.factor_trunk_grad, factor_fraction=args.factor_fraction,
            freeze_denoiser=args.freeze_denoiser, jacobian_probes=args.jacobian_probes,
            factor_refit=args.factor_refit, factor_clip=args.factor_clip, factor_ramp=args.factor_ramp,
            factor_lr_scale=args.factor_lr_scale,
            denoiser_hidden=args.denoiser_hidden, factor_hidden=args.factor_hidden,
            denoiser_warmup=args.denoiser_warmup,
            tikhonov=args.tikhonov, loss=args.loss,
            input_scaling=args.input_scaling, factor_target=args.factor_target, grad_clip=args.grad_clip,
            precision=args.precision, compile=args.compile, val_every=args.val_every,
            checkpoint_every=args.checkpoint_every, seed=args.seed, landmarks=args.landmarks,
        )
    except (TypeError, ValueError) as err:
        raise ValueError(as_flags(str(err))) from None


def _resume_command(argv: list[str]) -> str:
    """The command that continues the interrupted run of ``argv`` (its arguments after ``learned-manifold``):
    ``--overwrite`` dropped, ``--resume`` added, quoted for this platform's shell (`shell_command`)."""
    words = [w for w in argv if w != "--overwrite"]
    return shell_command(["learned-manifold", *words, *([] if "--resume" in words else ["--resume"])])


def _training_data(args: argparse.Namespace):
    """``(data, manifold, data_info)`` of DATA: images keep their stored dtype and value range."""
    try:
        got = read_data(args, args.data, n=args.num_points, seed=args.seed)
    except ValueError as err:  # the data layer's n, as --num-points
        raise ValueError(as_num_points(str(err))) from None
    return got.x, got.manifold, got.info


def _train(args: argparse.Namespace, argv: list[str]) -> int:
    from .trainer import train
    from .validation import distrust, exploded

    config = _config(args)  # every check that needs no data, before the data are read
    resolve_device(args.device, name="--device")
    out = Path(args.out)
    writes = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 writes (and locks)
    replaced = args.overwrite and out.is_file()  # an interruption's message says the earlier model is gone
    try:
        with contextlib.ExitStack() as held:
            refusal = None
            if writes:
                try:
                    check_not_data(out, args.data)  # before the lock writes its pid into OUT.lock
                    held.enter_context(OutputLock(out))
                    check_output(out, resume=args.resume, overwrite=args.overwrite, data=args.data, kind="train")
                except OutputError as err:
                    refusal = err
            if _rank0_refused(refusal, args.device):  # every rank stops on rank 0's refusal; only rank 0 says why
                if refusal is not None:
                    raise refusal
                return 2
            data, manifold, data_info = _training_data(args)
            try:
                check_training_tensor(data)  # its message names "data": here, the file or name given
            except ValueError as err:
                raise ValueError(f"DATA {args.data!r}: {err}") from None
            if args.resume:  # a setting not given ("auto") takes an older saved run's value, not today's rule's
                config = saved_choices(out, config, tuple(data.shape[1:]))
            if writes:  # how many were read (a folder's nested sub-folders are not: the reader warns)
                print(f"read {data.shape[0]:,} {'images' if data_info else 'points'} of shape {tuple(data.shape[1:])} "
                      f"from {args.data}")
            try:
                with warnings.catch_warnings():  # the MLP's sizes on images: named by their flags below
                    warnings.filterwarnings("ignore", message=r".* the MLP only and (is|are) ignored")
                    arch = config.model_spec(tuple(data.shape[1:]))[0]  # rank <= D; backbone, preset fit the data
            except ValueError as err:
                raise ValueError(as_flags(str(err))) from None
            unused = [flag for flag, name in _MLP_ONLY.items() if getattr(args, name) != _DEFAULTS[name]]
            if arch == "unet" and unused and writes:  # a config may serve both kinds of data; a command names one
                # (--backbone unet with them is refused when the config is built: `recipe_checks.check_recipe`)
                print(f"warning: {', '.join(unused)} {'sizes' if len(unused) == 1 else 'size'} the MLP, but these "
                      f"images train the UNet (--backbone auto chooses it for images): --preset sizes it; "
                      f"--backbone mlp trains the MLP", file=sys.stderr)
            result = train(data, config, manifold=manifold, out=out, resume=args.resume,
                           overwrite=args.overwrite, device=args.device, progress=not args.no_progress,
                           data_info=data_info)
    except TrainingInterrupted as stop:
        if writes:
            lost = "; --overwrite has replaced the earlier model" if replaced else ""
            print(f"interrupted at step {stop.step} of {stop.total}; the partial model is in {out} (incomplete{lost}); "
                  f"continue with: {_resume_command(argv)}", file=sys.stderr)
        return 130
    finally:
        if torch.distributed.is_initialized():  # launched by torchrun: leave the process group cleanly
            torch.distributed.destroy_process_group()
    if not writes:  # under torchrun rank 0 reports
        return 0
    if result.already_complete:
        print(f"{args.out} is already complete (step {result.stopped_at} of {args.steps}): nothing to resume; the "
              f"file is unchanged")
        return 0
    v = {k: val for k, val in result.validation.items() if k not in ("sigma_table", "periodic")}
    for entry in result.validation.get("periodic", []):  # --val-every
        figures = ", ".join(f"{k} {val:.4g}" for k, val in entry.items()
                            if k not in ("step", "sigma", "loss", "lr") and isinstance(val, (int, float)))
        print(f"validation at step {entry['step']} (sigma {entry['sigma']:.4g}): {figures}")
    if isinstance(v.get("neighbour_check"), dict):  # its denoising table stays in the file (`info --json`)
        v["neighbour_check"] = {k: val for k, val in v["neighbour_check"].items() if k != "denoising"}
    print(f"wrote {args.out} ({result.samples_per_second:,.0f} samples/s); validation: {json.dumps(v)}")
    info = shell_command(["learned-manifold", "info", args.out, "--data", args.data])
    for reason in distrust(v):
        print(f"warning: {reason}; `{info}` shows the spectra and why", file=sys.stderr)
    if exploded(v.get("self_consistency")) is not None:  # a diverged run is an error (module docstring); its file
        return 2  # stays for `info`, which says the same
    return 0


def _rank0_refused(refusal: OutputError | None, device: str) -> bool:
    """Whether rank 0 refused the output path; under torchrun its verdict reaches every rank.

    Only rank 0 locks and checks ``--out`` (the other ranks' file systems need not hold it). Without the verdict
    the other ranks would wait for rank 0 in the process group's first collective until torchrun killed them; so
    when launched by torchrun the process group starts here (`train` finds it started) and rank 0's verdict is
    broadcast before any data are read (``device``: the ``--device`` asked for, which picks the backend and
    this rank's GPU).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return refusal is not None
    init_distributed(device, name="--device")  # this rank's GPU bound before NCCL's first collective
    verdict = [refusal is not None]
    torch.distributed.broadcast_object_list(verdict, src=0)
    return bool(verdict[0])


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``learned-manifold`` console script; returns the exit status (0, 2 or 130)."""
    console = argv is None  # the console script: each warning as one line (after parsing: argparse may exit)
    argv = list(sys.argv[1:] if argv is None else argv)
    tolerant_stdout()
    args = build_parser().parse_args(argv)
    restore_warnings = cli_console.one_line_warnings() if console else None
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, sigterm_as_interrupt) if in_main_thread else None
    try:
        if args.command == "train":
            return _train(args, argv)
        if args.command == "demo":
            return cli_demo.run(args)
        if args.command == "show":
            return cli_show.run(args)
        if args.command in vae_cli.COMMANDS:
            return vae_cli.run(args)
        return run_info(args)
    except BrokenPipeError:  # the reader went away (`info --json | head`): stop quietly, as Unix tools do
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        except (OSError, ValueError):  # a stdout without a file descriptor (io.UnsupportedOperation is both)
            pass
        return 0
    except (ValueError, OSError, ImportError, DataReadingFailed) as err:  # one clear line, no traceback
        message = re.sub(r" \((resume|overwrite)=True\)", "", str(err))  # the Python names, beside the flags
        print(f"learned-manifold {args.command}: error: {message}{compile_cache_hint(err, args)}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as err:  # torch.OutOfMemoryError is a RuntimeError
        if not out_of_memory(err):
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"learned-manifold {args.command}: error: out of memory ({first[:160]}): "
              f"{out_of_memory_advice(err)}; nothing more was written", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        kept = f"--out {args.out!r} is as it was" if args.command == "demo" else "nothing more was written"
        print(f"learned-manifold {args.command}: interrupted; {kept}", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if restore_warnings is not None:
            restore_warnings()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
