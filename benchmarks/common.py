"""Shared pieces of the benchmark scripts: command line, environment record, timing, memory and reports.

Every script parses the same options (`make_parser`), times callables with `time_fn` (warm-up, CUDA
synchronisation, repeats, median), records the machine with `environment` and writes ``DIR/NAME.json`` and
``DIR/NAME.md`` with `write_report`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import geoopt
import torch
from torch import Tensor

from learned_manifold.models import MetricModel, ModelConfig

__all__ = [
    "DEFAULT_OUT",
    "PAPER_NET",
    "Table",
    "Timing",
    "environment",
    "fmt_bytes",
    "fmt_num",
    "fmt_rate",
    "fmt_time",
    "git_commit",
    "load_average",
    "make_model",
    "make_parser",
    "max_rss_bytes",
    "num_threads",
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


def make_parser(description: str) -> argparse.ArgumentParser:
    """A parser with the options every benchmark takes: ``--device``, ``--out``, ``--quick``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to run (default: cpu)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test, well under a minute on CPU")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads for the run (default: torch's default, from OMP_NUM_THREADS)")
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``argv``, turn ``--device`` into a ``torch.device`` and apply ``--threads``.

    Refuses ``--device cuda`` when CUDA is not available.
    """
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda was asked for but torch.cuda.is_available() is False")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    args.device = torch.device(args.device)
    return args


# ---------------------------------------------------------------------------------------------------------
# environment


def git_commit(start: Path | None = None) -> str | None:
    """The commit checked out in the repository holding ``start`` (read from ``.git``; no git process is run).

    Returns:
        The 40-hex commit id, or ``None`` when there is no repository or the reference cannot be resolved.
    """
    here = (start or Path(__file__)).resolve()
    for folder in (here, *here.parents):
        git = folder / ".git"
        if git.is_dir():
            break
    else:
        return None
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        if (git / ref).is_file():
            return (git / ref).read_text().strip()
        packed = git / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                if line.endswith(" " + ref):
                    return line.split()[0]
    except OSError:
        return None
    return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment(device: torch.device) -> dict:
    """What a result depends on: device, library versions, CPU, threads, date and commit."""
    env = {
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({_cpu_model()})",
        "torch": torch.__version__,
        "geoopt": geoopt.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "unset"),
        "load_average_at_start": load_average(),
        "git_commit": git_commit() or "unknown",
        "command": " ".join([Path(sys.executable).name, "-m", _module_name(), *sys.argv[1:]]),
    }
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
        env["gpu_memory_bytes"] = torch.cuda.get_device_properties(device).total_memory
    return env


def load_average() -> str:
    """The 1, 5 and 15-minute load averages (``n/a`` where unsupported): other work sharing the CPU."""
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def _module_name() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return spec.name if spec is not None else Path(sys.argv[0]).stem


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
# timing and memory


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work on ``device`` (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timing:
    """Wall times of repeated calls, in seconds.

    Attributes:
        times: each measured call.
        median: median of ``times`` (the figure reported).
        best: the fastest call.
        cold: ``True`` when a single warm-up call already exceeded the time budget and is the only figure
            (it may include one-off start-up costs).
    """

    times: list[float]
    cold: bool = False

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def best(self) -> float:
        return min(self.times)

    def to_dict(self) -> dict:
        return {"median_s": self.median, "best_s": self.best, "repeats": len(self.times), "times_s": self.times,
                "cold": self.cold}


def time_fn(
    fn: Callable[[], object],
    device: torch.device,
    *,
    warmup: int = 2,
    repeats: int = 7,
    budget_s: float = 60.0,
) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then up to ``repeats`` timed ones, each bracketed by a sync.

    Args:
        fn: the work to time; its result is dropped.
        device: the device whose queue is synchronised before and after every timed call.
        warmup: untimed calls first (allocator, kernels, lazy initialisation).
        repeats: most timed calls.
        budget_s: stop repeating once the timed calls have taken this long (at least one call is timed),
            so slow baselines do not dominate a run; a warm-up call longer than this is reported alone
            (``cold=True``) instead of being repeated.

    Returns:
        `Timing` of the timed calls; report its ``median``.
    """
    for _ in range(warmup):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        elapsed = time.perf_counter() - start
        if elapsed > budget_s:
            return Timing([elapsed], cold=True)
    times: list[float] = []
    while len(times) < max(1, repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
        if sum(times) > budget_s:
            break
    return Timing(times)


def time_interleaved(
    fns: dict[str, Callable[[], object]],
    device: torch.device,
    *,
    warmup: int = 1,
    repeats: int = 7,
    budget_s: float = 60.0,
) -> dict[str, Timing]:
    """Time several callables in rounds (each once per round, in turn) so they share the machine's state.

    On a shared, noisy machine, back-to-back rounds make the ratios between the callables more trustworthy
    than timing each one in its own block. Rounds stop after ``repeats`` or once ``budget_s`` has passed
    (at least one round is run).

    Returns:
        A `Timing` per key of ``fns``.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    spent = 0.0
    for _ in range(max(1, repeats)):
        for name, fn in fns.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            elapsed = time.perf_counter() - start
            times[name].append(elapsed)
            spent += elapsed
        if spent > budget_s:
            break
    return {name: Timing(t) for name, t in times.items()}


def peak_memory(fn: Callable[[], object], device: torch.device) -> dict | None:
    """Peak CUDA memory while ``fn()`` runs: ``{"peak_bytes", "extra_bytes"}``; ``None`` on CPU.

    ``extra_bytes`` is the peak minus what was allocated before the call (the work's own footprint).
    """
    if device.type != "cuda":
        return None
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    return {"peak_bytes": peak, "extra_bytes": peak - before}


def max_rss_bytes() -> int:
    """The process's peak resident set size so far (``getrusage``; a high-water mark, so deltas are approximate)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or ``None`` when either is missing or the denominator is zero."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator


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
    json_path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    header = [f"## {title}", "", "| | |", "|---|---|"]
    header += [f"| {key} | {value} |" for key, value in env.items()]
    header += [f"| setting: {key} | {value} |" for key, value in settings.items()]
    parts = ["\n".join(header), *(t.markdown() for t in tables)]
    if notes:
        parts.append("Notes:\n\n" + "\n".join(f"- {n}" for n in notes))
    md_path.write_text("\n\n".join(parts) + "\n")
    return json_path, md_path
