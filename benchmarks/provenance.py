"""Where and from what a benchmark ran (the header of every report): device, library versions, CPU, threads, load,
date, the command, the git commit and whether the tracked files differ from it.

`environment` is taken before a script's first piece of work (the date and load of the start); `write_report`
adds `load_average` at the end. Nothing here fails a run: a missing git, repository or load counter reads
``unknown``/``n/a``.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import geoopt
import torch

__all__ = ["environment", "git_commit", "git_dirty", "load_average"]


def _git_folder(start: Path | None) -> Path | None:
    """The ``.git`` folder of the repository holding ``start`` (default: this file), or ``None`` outside one."""
    here = (start or Path(__file__)).resolve()
    for folder in (here, *here.parents):
        if (folder / ".git").is_dir():
            return folder / ".git"
    return None


def git_commit(start: Path | None = None) -> str | None:
    """The commit checked out in the repository holding ``start`` (read from ``.git``; no git process is run), not
    whether the tracked files differ from it (`git_dirty`).

    Returns:
        The 40-hex commit id, or ``None`` when there is no repository or the reference cannot be resolved.
    """
    git = _git_folder(start)
    if git is None:
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


def git_dirty(start: Path | None = None, *, timeout: float = 10.0, shown: int = 5) -> str:
    """Whether the tracked files of the repository holding ``start`` (default: this file) differ from its commit.

    ``git status --porcelain --untracked-files=no`` (taking no lock): staged or unstaged changes to tracked files,
    not new files. A run from uncommitted code is stamped with its parent commit (`git_commit`); this says so
    beside it. Never raises: without git or a repository (or after ``timeout`` seconds) the answer is ``unknown``.

    Returns:
        ``"no"``; ``"yes: N tracked file(s) differ from the commit (a, b, ...)"``, naming the first ``shown``;
        or ``"unknown (why)"``.
    """
    git = _git_folder(start)
    if git is None:
        return "unknown (no git repository)"
    try:
        done = subprocess.run(["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"],
                              cwd=git.parent, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError) as err:  # no git executable, or it hung
        return f"unknown (git status could not run: {type(err).__name__})"
    if done.returncode != 0:
        return f"unknown (git status exited {done.returncode})"
    files = [line[3:] for line in done.stdout.splitlines() if line.strip()]
    if not files:
        return "no"
    more = f", and {len(files) - shown} more" if len(files) > shown else ""
    return f"yes: {len(files)} tracked file(s) differ from the commit ({', '.join(files[:shown])}{more})"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment(device: torch.device) -> dict:
    """What a result depends on: device, library versions, CPU, threads, ``TORCH_COMPILE_DISABLE``, date, commit and
    whether the tracked files differ from it (``git_dirty``)."""
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
        "TORCH_COMPILE_DISABLE": os.environ.get("TORCH_COMPILE_DISABLE", "unset"),
        "load_average_at_start": load_average(),
        "git_commit": git_commit() or "unknown",
        "git_dirty": git_dirty(),
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
    except (OSError, AttributeError):  # AttributeError: Windows has no os.getloadavg
        return "n/a"


def _module_name() -> str:
    """The running script as ``python -m`` names it (``benchmarks.NAME``), or the file's stem when run as a file."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return spec.name if spec is not None else Path(sys.argv[0]).stem
