"""The timing benchmarks that the GPU suite caps (``tangent``, ``optimizer``, ``unet_speed``) write their report
after every row, so a run stopped part-way (the suite's cap; Ctrl-C) keeps the rows it finished, marked partial.
A stand-in timer stops each run (as the cap would) after its first row."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import optimizer, tangent, unet_speed  # noqa: E402

_REAL_MEASURE = optimizer._measure

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _stop_after(calls: int, real):
    """Wrap ``real``: the call after the first ``calls`` raises KeyboardInterrupt, as the suite's cap stops a step."""
    count = [0]

    def wrapped(*args, **kwargs):
        count[0] += 1
        if count[0] > calls:
            raise KeyboardInterrupt("stopped by the suite's cap")
        return real(*args, **kwargs)

    return wrapped


def _report(folder: Path, name: str) -> dict:
    return json.loads((folder / f"{name}.json").read_text())


def test_tangent_keeps_the_rows_it_finished(tmp_path, monkeypatch):
    quick = tangent.settings_for
    monkeypatch.setattr(tangent, "settings_for", lambda device, q: {**quick(device, q), "ranks": [4, 8],
                                                                    "batch": 16, "repeats": 1})
    real_time_fn = tangent.time_fn
    monkeypatch.setattr(tangent, "time_fn", _stop_after(2, real_time_fn))  # two slow ops per row
    with pytest.raises(KeyboardInterrupt):
        tangent.main(["--quick", "--threads", "1", "--out", str(tmp_path)])
    record = _report(tmp_path, "tangent")
    assert [row["r"] for row in record["results"]["rows"]] == [4]
    assert record["settings"]["progress"].startswith("partial")
    assert len(record["tables"][0]["rows"]) == 1
    monkeypatch.setattr(tangent, "time_fn", real_time_fn)
    done = tangent.main(["--quick", "--threads", "1", "--out", str(tmp_path)])
    assert [row["r"] for row in done["rows"]] == [4, 8]
    assert _report(tmp_path, "tangent")["settings"]["progress"] == "complete"


def test_optimizer_keeps_the_large_case_and_the_rows_it_finished(tmp_path, monkeypatch):
    quick = optimizer.settings_for
    monkeypatch.setattr(optimizer, "settings_for", lambda device, q: {
        **quick(device, q), "dims": [8], "batches": [2, 4], "arch": {"hidden": 16, "depth": 1, "emb_dim": 8},
        "repeats": 1, "large_d": 48, "large_batch": 2})
    monkeypatch.setattr(optimizer, "_measure", _stop_after(2, optimizer._measure))  # the large case, one row
    with pytest.raises(KeyboardInterrupt):
        optimizer.main(["--quick", "--threads", "1", "--out", str(tmp_path)])
    record = _report(tmp_path, "optimizer")
    assert record["results"]["large"]["dim"] == 48
    assert [(r["dim"], r["batch"]) for r in record["results"]["sweep"]] == [(8, 2)]
    assert record["settings"]["progress"].startswith("partial")
    assert len(record["tables"][0]["rows"]) == 2  # the sweep's row and the large case's
    monkeypatch.setattr(optimizer, "_measure", _REAL_MEASURE)
    done = optimizer.main(["--quick", "--threads", "1", "--out", str(tmp_path)])
    assert [(r["dim"], r["batch"]) for r in done["sweep"]] == [(8, 2), (8, 4)]
    assert _report(tmp_path, "optimizer")["settings"]["progress"] == "complete"


def test_unet_speed_keeps_the_image_sizes_it_finished(tmp_path, monkeypatch):
    monkeypatch.setattr(unet_speed, "_measure", _stop_after(1, lambda shape, batch, repeats, names, device: {
        name: {"status": "ok", "median_step_s": 0.5, "samples_per_s": batch / 0.5, "steps_timed": repeats,
               "first_call_s": 1.0, "vs_eager_nchw": 1.0} for name in names}))
    with pytest.raises(KeyboardInterrupt):
        unet_speed.main(["--eager-only", "--batch", "2", "--repeats", "1", "--out", str(tmp_path)])
    record = _report(tmp_path, "unet_speed")
    assert list(record["results"]) == ["8x8"]  # 28×28 was stopped
    assert record["settings"]["progress"].startswith("partial")
    assert len(record["tables"]) == 1
