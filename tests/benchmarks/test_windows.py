"""The benchmarks on a platform without Unix's ``resource``/``fcntl`` modules and the ``forkserver`` start method
(Windows): every benchmark module imports, peak RSS and the load average read as unknown, and `image_cost` spawns
its fresh process."""

from __future__ import annotations

import multiprocessing
import pkgutil
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import image_cost, provenance  # noqa: E402

_WITHOUT_UNIX_MODULES = """
import importlib, sys
sys.modules["resource"] = None  # as on Windows: importing them raises ImportError
sys.modules["fcntl"] = None
for name in {names!r}:
    importlib.import_module("benchmarks." + name)
from benchmarks.timing import max_rss_bytes
print("rss", max_rss_bytes())
"""


def test_every_benchmark_module_imports_without_unix_modules_and_peak_rss_reads_unknown():
    names = sorted(m.name for m in pkgutil.iter_modules([str(ROOT / "benchmarks")]))
    assert {"common", "timing", "throughput", "image_cost", "optimizer"} <= set(names)
    run = subprocess.run([sys.executable, "-c", _WITHOUT_UNIX_MODULES.format(names=names)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["rss", "None"]


def test_peak_rss_is_a_positive_byte_count_where_resource_exists():
    from benchmarks.timing import max_rss_bytes

    rss = max_rss_bytes()
    assert isinstance(rss, int) and rss > 2**20  # this process holds torch: more than a MiB


def test_the_cpu_memory_process_is_spawned_where_there_is_no_forkserver(monkeypatch):
    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])  # Windows' list
    assert image_cost.start_method() == "spawn"
    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["fork", "spawn", "forkserver"])
    assert image_cost.start_method() == "forkserver"


def test_the_load_average_reads_n_a_where_os_has_no_getloadavg(monkeypatch):
    monkeypatch.delattr("os.getloadavg")  # Windows' os module
    assert provenance.load_average() == "n/a"
    assert provenance.environment(torch.device("cpu"))["load_average_at_start"] == "n/a"
