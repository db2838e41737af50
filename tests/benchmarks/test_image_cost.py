"""``benchmarks/image_cost.py`` (Table 1): on CPU, the memory of a method is its own working memory, measured in a
fresh process, so it does not depend on which method ran before it, and the time is a median of warm calls."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks.image_cost import _is_oom, _measure_cuda, run_table1  # noqa: E402


def test_cpu_memory_of_a_method_does_not_depend_on_the_method_before_it():
    # Measured in one process, a method run after another reads about 0 MiB (the first one's freed memory is
    # reused): Stein read 0-1 MiB after metric matching where it reads about 20 MiB alone (tester F, item 2).
    rows = run_table1({"presets": ["mnist"], "lanczos": 2}, torch.device("cpu"), 2**40,
                      methods=("Stein", "metric matching", "Stein"), repeats=2, budget_s=5.0)
    assert [r["method"] for r in rows] == ["Stein", "metric matching", "Stein"]
    assert all(r["D"] == 784 and not r["oom"] for r in rows)
    first, after = rows[0]["memory_bytes"], rows[2]["memory_bytes"]
    assert first > 4 * 2**20 and rows[1]["memory_bytes"] > 4 * 2**20  # a UNet call's activations, not ~0
    assert abs(after - first) < 0.25 * first, (first, after)
    for r in rows:  # an untimed warm-up (the memory call), then the median of the timed ones
        assert r["timing"]["repeats"] >= 1 and r["seconds"] == r["timing"]["median_s"] > 0


@pytest.mark.parametrize("err, oom", [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
    (MemoryError(), True),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried to "
                  "allocate 1152921504606846976 bytes. Error code 12 (Cannot allocate memory)"), True),
    (RuntimeError("CUDA error: an illegal memory access was encountered"), False),
    (RuntimeError("unsupported memory format option: Preserve"), False),
])
def test_only_an_allocation_failure_reads_as_oom(err, oom):
    # any text with "memory" read as OOM, and a broken CUDA context went on to the next method (tester F, item 6)
    assert _is_oom(err) is oom


def test_an_error_that_is_not_oom_is_raised_not_written_as_an_oom_row():
    def crash():
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    def oom():
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(RuntimeError, match="illegal memory access"):
        _measure_cuda(crash, torch.device("cpu"), repeats=1, budget_s=1.0)
    assert _measure_cuda(oom, torch.device("cpu"), repeats=1, budget_s=1.0) == {
        "seconds": None, "memory_bytes": None, "oom": True}


def test_table1_reports_every_row_as_it_is_measured_and_images_keeps_them_when_stopped(tmp_path, monkeypatch):
    """The GPU suite stops a step at its cap; Table 1 had been written only at the end of ``benchmarks.images``, so
    a stopped run kept nothing (s31). `run_table1` now hands the rows so far to ``on_row`` after every row, and
    ``images`` rewrites its report there: a run stopped after two rows leaves a report holding those two."""
    import json

    import benchmarks.image_cost as image_cost
    import benchmarks.images as images

    def fake_measure(preset, method, **kwargs):
        return {"seconds": 0.5, "timing": {}, "memory_bytes": 2**20, "oom": False}

    monkeypatch.setattr(image_cost, "measure_cpu", fake_measure)
    seen = []
    rows = run_table1({"presets": ["mnist", "cifar10"], "lanczos": 2}, torch.device("cpu"), 2**40,
                      methods=("metric matching", "Stein"), on_row=lambda r: seen.append(len(r)))
    assert seen == [1, 2, 3, 4] and len(rows) == 4

    def stopped(cfg, device, cap, *, repeats, on_row):  # two rows, then the suite's cap
        done = []
        for method in ("metric matching", "Stein"):
            done.append({"preset": "mnist", "D": 784, "method": method, **fake_measure("mnist", method)})
            on_row(done)
        raise KeyboardInterrupt

    monkeypatch.setattr(images, "run_table1", stopped)
    with pytest.raises(KeyboardInterrupt):
        images.main(["--quick", "--parts", "table1", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "images.json").read_text())
    assert [r["method"] for r in report["results"]["table1"]] == ["metric matching", "Stein"]
    assert report["settings"]["partial"] == "Table 1 stopped part-way"
    assert len(report["tables"][0]["rows"]) == 2
