"""`benchmarks.throughput`'s chunk-size tuning report names only the chunk sizes it timed (tester F, item 3: with
every candidate clipped to N, one timing of chunk N was shown under each candidate's column)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

# `benchmarks` is a folder of the repository, not part of the installed packages: import it from the root.
ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import throughput  # noqa: E402
from benchmarks.common import Table  # noqa: E402


def _timing(seconds: float) -> dict:
    return {"median_s": seconds, "repeats": 1}


def test_the_chunk_table_and_settings_show_only_the_chunk_sizes_timed(tmp_path):
    cfg = throughput.settings_for(torch.device("cuda"), False)  # candidates 65,536, 262,144 and 1,048,576
    # as _tune_chunk records them: at N = 16,384 every candidate is clipped to N, so only 16,384 is timed
    per_size = [{"n": 16_384, "chunk_tuning": {"16384": _timing(0.005)}},
                {"n": 1_048_576, "chunk_tuning": {str(c): _timing(0.2 + i / 100) for i, c in enumerate(cfg["chunks"])}}]
    args = SimpleNamespace(out=tmp_path, compile=False, quick=False)
    throughput._write_report(args, cfg, {}, Table("t", ["N"]), per_size, {})
    record = json.loads((tmp_path / "throughput.json").read_text())
    chunks = record["tables"][1]
    assert chunks["columns"] == ["N", "chunk 16,384", "chunk 65,536", "chunk 262,144", "chunk 1,048,576"]
    assert chunks["rows"] == [["16,384", "5 ms", "n/a (> N)", "n/a (> N)", "n/a (> N)"],
                              ["1,048,576", "not tried", "200 ms", "210 ms", "220 ms"]]
    assert "chunk sizes timed: N = 16,384: 16,384; N = 1,048,576: 65,536, 262,144, 1,048,576" \
        in record["settings"]["k-NN"]
    assert "chunk sizes tried" not in record["settings"]["k-NN"]
