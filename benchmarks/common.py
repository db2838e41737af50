"""Shared pieces of the benchmark scripts: command line, environment record, models, data and reports.

Every script parses the same options (`make_parser`), times callables with `time_fn` (warm-up, CUDA
synchronisation, repeats, median; `benchmarks.timing`, re-exported here), records the machine with `environment`
(`benchmarks.provenance`, re-exported here) and writes ``DIR/NAME.json`` and ``DIR/NAME.md`` with `write_report`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from learned_manifold.models import MetricModel, ModelConfig
from learned_manifold_training.config import TrainConfig

from .provenance import environment, git_commit, git_dirty, load_average
from .timing import Timing, max_rss_bytes, peak_memory, ratio, synchronize, time_fn, time_interleaved

__all__ = [
    "COMPILE_DISABLED",
    "DEFAULT_OUT",
    "PAPER_NET",
    "Table",
    "Timing",
    "compile_disabled",
    "compile_status",
    "environment",
    "fmt_bytes",
    "fmt_num",
    "fmt_rate",
    "fmt_time",
    "git_commit",
    "git_dirty",
    "load_average",
    "make_model",
    "make_parser",
    "max_rss_bytes",
    "num_threads",
    "optimizer_settings",
    "output_folder",
    "output_problem",
    "parse_args",
    "peak_memory",
    "ratio",
    "sphere_points",
    "synchronize",
    "time_fn",
    "time_interleaved",
    "write_report",
]

DEFAULT_OUT = Path("benchmarks/out")
"""Default output folder (git-ignored); committed results live in ``benchmarks/results/<device>/``."""

PAPER_NET = {"hidden": 1024, "depth": 4, "emb_dim": 256}
"""The SPEC §4 network (paper, appendix E): width 1024, 4 FiLM residual blocks, σ embedding of width 256."""


# ---------------------------------------------------------------------------------------------------------
# command line


def make_parser(
    description: str, *, results: str | None = None, threads: int | None = None
) -> argparse.ArgumentParser:
    """A parser with the options every benchmark takes: ``--device``, ``--out``, ``--quick``, ``--threads``.

    The help text states the script's own defaults, and `parse_args` resolves ``--out`` by `output_folder`.

    Args:
        results: where a full run writes without ``--out``, ``<device>`` standing for ``cpu`` or ``cuda``
            (``"benchmarks/results/<device>"``: committed results); ``None``: `DEFAULT_OUT`. A ``--quick`` run
            without ``--out`` always writes to `DEFAULT_OUT`, never over committed results.
        threads: the default of ``--threads`` (``None``: torch's default, from ``OMP_NUM_THREADS``).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to run (default: cpu)")
    out_default = f"{results}; with --quick: {DEFAULT_OUT}" if results is not None else str(DEFAULT_OUT)
    parser.add_argument("--out", type=Path, default=None, help=f"output folder (default: {out_default})")
    parser.add_argument("--quick", action="store_true",
                        help=f"tiny sizes: a smoke test, well under a minute on CPU (report in {DEFAULT_OUT} "
                             "unless --out is given)")
    threads_default = "torch's default, from OMP_NUM_THREADS" if threads is None else str(threads)
    parser.add_argument("--threads", type=int, default=threads,
                        help=f"torch.set_num_threads for the run (default: {threads_default})")
    parser.set_defaults(results_folder=results)
    return parser


def output_folder(out: Path | None, *, quick: bool, device: str, results: str | None) -> Path:
    """The folder a benchmark writes to (see `make_parser`).

    Args:
        out: ``--out`` as given (``None`` when not given): used as it is.
        quick: ``--quick``: without ``--out`` the report goes to `DEFAULT_OUT`.
        device: ``"cpu"`` or ``"cuda"``, put in place of ``<device>`` in ``results``.
        results: the script's folder for full runs (``None``: `DEFAULT_OUT`).
    """
    if out is not None:
        return out
    if quick or results is None:
        return DEFAULT_OUT
    return Path(results.replace("<device>", device))


def output_problem(out: Path) -> str | None:
    """Why the report folder ``out`` cannot be written (one line naming ``--out``), or ``None`` where it can.

    ``out``, or the nearest of its parents that exists (``write_report`` creates the rest), must be a folder in
    which a file can be created (tested with a probe file: permissions, read-only mounts).
    """
    for folder in (out, *out.parents):
        if folder.exists() or folder.is_symlink():
            break
    if not folder.is_dir():
        where = "is a file, not a folder" if folder == out else f"is under {str(folder)!r}, a file"
        return f"--out {str(out)!r} {where}: give a folder for the report"
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".benchmark-", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        return f"--out {str(out)!r}: the folder {str(folder)!r} is not writable ({err.strerror or err})"
    return None


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``argv``, turn ``--device`` into a ``torch.device``, resolve ``--out`` and apply ``--threads``.

    Refuses ``--device cuda`` when CUDA is not available, and an ``--out`` that cannot be written
    (`output_problem`) before anything is measured. ``args.out`` is always a `Path` (`output_folder`).
    """
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda was asked for but torch.cuda.is_available() is False")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    results = vars(args).pop("results_folder", None)
    args.out = output_folder(args.out, quick=args.quick, device=args.device, results=results)
    problem = output_problem(args.out)
    if problem is not None:  # before any measurement: a run of minutes must not fail at its report
        parser.error(problem)
    args.device = torch.device(args.device)
    return args


# ---------------------------------------------------------------------------------------------------------
# run settings


COMPILE_DISABLED = "compile disabled (eager)"
"""The status of a ``torch.compile`` setting that ran eagerly because ``TORCH_COMPILE_DISABLE=1``."""


def compile_disabled() -> bool:
    """``True`` when ``TORCH_COMPILE_DISABLE=1`` (torch's own test): every ``torch.compile`` then runs eagerly."""
    return os.environ.get("TORCH_COMPILE_DISABLE", "0") == "1"


def compile_status(status: str, compiled: bool) -> str:
    """The status a report shows for a timed setting.

    Args:
        status: the setting's own status (``"ok"``, ``"failed"``, ...).
        compiled: whether the setting asks for ``torch.compile``.

    Returns:
        `COMPILE_DISABLED` for a compiled setting that succeeded while `compile_disabled` (its timings are eager
        ones), else ``status``.
    """
    if compiled and status == "ok" and compile_disabled():
        return COMPILE_DISABLED
    return status


@contextlib.contextmanager
def num_threads(n: int | None) -> Iterator[int]:
    """Run the block with ``torch.set_num_threads(n)`` (``None``: unchanged); yields the thread count in use."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------------------
# models and data


def make_model(dim: int, rank: int, arch_kwargs: dict, device: torch.device, *, seed: int = 0) -> MetricModel:
    """An untrained factor-only `MetricModel` (no denoiser) on ``device``: the cost of a trained one, not its output.

    Args:
        dim: ``D``, points are flat ``(B, D)``.
        rank: ``r``, columns of the factor.
        arch_kwargs: `FiLMResMLP` keywords (for instance `PAPER_NET`).
        device: where the weights live.
        seed: seeds the random initialisation.
    """
    torch.manual_seed(seed)
    config = ModelConfig(data_shape=(dim,), rank=rank, arch_kwargs=dict(arch_kwargs), centred=False,
                         default_sigma=0.1)
    return MetricModel(config).to(device).eval()


def sphere_points(n: int, device: torch.device, *, seed: int = 0) -> Tensor:
    """``n`` uniform points of S⁸ isometrically embedded in R⁶⁴ (the built-in ``sphere8``), float32 on ``device``."""
    from learned_manifold_training.data import get_dataset

    return get_dataset("sphere8", n, seed=seed)[0].to(device)


# ---------------------------------------------------------------------------------------------------------
# formatting and reports


def fmt_time(seconds: float | None) -> str:
    """``1.23 s``, ``45.6 ms``, ``789 µs``; ``n/a`` for ``None``."""
    if seconds is None or not math.isfinite(seconds):
        return "n/a"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def fmt_num(value: float | None, digits: int = 3) -> str:
    """A number to ``digits`` significant digits (thousands separated when large); ``n/a`` for ``None``."""
    if value is None or not math.isfinite(value):
        return "n/a"
    if abs(value) >= 10 ** digits:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def fmt_rate(per_second: float | None) -> str:
    """``12.3 k/s``, ``4.56 M/s``; ``n/a`` for ``None``."""
    if per_second is None:
        return "n/a"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if per_second >= scale:
            return f"{per_second / scale:.3g} {unit}/s"
    return f"{per_second:.3g} /s"


def fmt_bytes(n: float | None) -> str:
    """Bytes in binary units (``12.0 MiB``); ``n/a`` for ``None``."""
    if n is None:
        return "n/a"
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} B"


@dataclass
class Table:
    """A titled table of display strings, written as markdown and kept in the JSON beside the raw results."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        """Append a row; cells are turned into strings (``None`` becomes ``n/a``)."""
        if len(cells) != len(self.columns):
            raise ValueError(f"row has {len(cells)} cells, table {self.title!r} has {len(self.columns)} columns")
        self.rows.append(["n/a" if c is None else str(c) for c in cells])

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |",
                 "|" + "|".join("---" for _ in self.columns) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


def write_report(
    out: Path,
    name: str,
    *,
    title: str,
    env: dict,
    settings: dict,
    tables: Sequence[Table],
    results: dict,
    notes: Sequence[str] = (),
) -> tuple[Path, Path]:
    """Write ``out/name.json`` (environment, settings, raw results, tables, notes) and ``out/name.md``.

    The markdown starts with a header block (device, versions, date, settings), then the tables and notes.

    Returns:
        The paths of the JSON and markdown files.
    """
    out.mkdir(parents=True, exist_ok=True)
    env = {**env, "load_average_at_end": load_average()}
    record = {
        "benchmark": name,
        "title": title,
        "environment": env,
        "settings": settings,
        "results": results,
        "tables": [{"title": t.title, "columns": t.columns, "rows": t.rows} for t in tables],
        "notes": list(notes),
    }
    json_path, md_path = out / f"{name}.json", out / f"{name}.md"
    _replace_text(json_path, json.dumps(record, indent=2, default=str) + "\n")
    header = [f"## {title}", "", "| | |", "|---|---|"]
    header += [f"| {key} | {value} |" for key, value in env.items()]
    header += [f"| setting: {key} | {value} |" for key, value in settings.items()]
    parts = ["\n".join(header), *(t.markdown() for t in tables)]
    if notes:
        parts.append("Notes:\n\n" + "\n".join(f"- {n}" for n in notes))
    _replace_text(md_path, "\n\n".join(parts) + "\n")
    return json_path, md_path


def optimizer_settings(config: TrainConfig) -> str:
    """The optimiser, schedule, EMA and clipping of ``config`` in words, read from its fields (a report's settings
    line that cannot drift from what ran)."""
    clip = (f"gradient clipping at norm {config.grad_clip:g}" if config.grad_clip
            else "no gradient clipping (grad_clip=0)")
    return (f"AdamW lr {config.lr:g}, weight decay {config.weight_decay:g}, linear warm-up over {config.warmup:.0%} "
            f"of the steps then cosine decay, EMA {config.ema:g}, {clip}, factor gradient guard "
            f"factor_clip={config.factor_clip!r}")


def _replace_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it and ``os.replace``: a step the GPU suite cuts
    mid-write leaves the previous report whole, never a truncated one (reports are rewritten after every row)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
