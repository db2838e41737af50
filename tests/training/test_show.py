"""`training.show`: how interpolation paths are scored (the numbers of `learned-manifold show` and of
`benchmarks/image_paths.py`)."""

import pytest
import torch

from learned_manifold_training.show import interpolation_scores


def test_paths_are_scored_by_their_interior_points_distance_to_the_data():
    data = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]]).reshape(3, 1, 1, 2)
    through = data.clone()  # interior point (1, 0) is a data point: distance 0
    above = torch.tensor([[0.0, 0.0], [0.5, 0.3], [1.0, 0.4], [2.0, 0.0]]).reshape(4, 1, 1, 2)
    scores = interpolation_scores({"through": through, "above": above}, data)
    assert scores["through"].mean_nearest == 0.0
    want = [(0.5**2 + 0.3**2) ** 0.5, 0.4]  # nearest: (0, 0) or (1, 0), then (1, 0)
    assert scores["above"].mean_nearest == pytest.approx(sum(want) / 2)
    assert scores["above"].max_nearest == pytest.approx(max(want))


def test_a_path_without_interior_points_is_refused():
    data = torch.zeros(3, 1, 2, 2)
    with pytest.raises(ValueError, match=r"path 'LERP' must have shape \(T >= 3, \*\(1, 2, 2\)\)"):
        interpolation_scores({"LERP": torch.zeros(2, 1, 2, 2)}, data)  # was a reshape error


@pytest.mark.filterwarnings("ignore:geodesic.*do not resolve the metric")  # an untrained model, 5-point paths
def test_show_reports_what_it_draws_and_leaves_no_stale_strips(tmp_path):
    """The median the histogram marks is the report's (torch.median took the lower middle value); a rerun with
    fewer pairs removes the earlier strips show.json no longer describes; the flow's row says how much of its gap it
    closed (a flow that stopped early scored best while ending near its start)."""
    import json

    import matplotlib
    import torch

    from learned_manifold.models import MetricModel, ModelConfig
    from learned_manifold_training.show import run_show

    matplotlib.use("Agg")
    torch.manual_seed(0)
    model = MetricModel(ModelConfig(data_shape=(1, 4, 4), rank=2, arch_kwargs={"hidden": 8, "depth": 1}))
    data = torch.rand(40, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    out = tmp_path / "pictures"
    run_show(model, data, out, n_points=8, n_pairs=3, path_points=5)
    assert sorted(p.name for p in out.glob("interpolations_*.png")) == [f"interpolations_{i}.png" for i in range(3)]
    report = run_show(model, data, out, n_points=8, n_pairs=1, path_points=5)
    assert sorted(p.name for p in out.glob("interpolations_*.png")) == ["interpolations_0.png"]
    assert json.loads((out / "show.json").read_text())["data_points"] == 40
    counts = report["dimension_counts"]
    dims = torch.tensor([d for d, c in counts.items() for _ in range(c)], dtype=torch.float64)
    assert report["median_dimension"] == float(dims.quantile(0.5))
    assert 0 <= report["interpolations"][0]["gradient flow"]["gap_closed"] <= 1


@pytest.mark.filterwarnings("ignore:geodesic.*do not resolve the metric")  # an untrained model, 5-point paths
def test_show_on_a_mapped_file_reads_only_the_rows_it_draws_and_reports_the_same(tmp_path, monkeypatch):
    """`show` held a float32 copy of the whole file (plus the mapped pages and a finiteness mask: 924 MB at 1e6
    rows of 32) although it draws 256 points and 3 pairs; a mapped .npy (`open_npy`) gives the same report with
    only those rows read, and the value range and nearest-image distances taken chunk by chunk (three chunks here).
    """
    import json

    import matplotlib
    import numpy as np

    from learned_manifold.models import MetricModel, ModelConfig
    from learned_manifold_training import show
    from learned_manifold_training.data import stream
    from learned_manifold_training.data.stream import open_npy
    from learned_manifold_training.show import run_show

    matplotlib.use("Agg")
    torch.manual_seed(0)
    model = MetricModel(ModelConfig(data_shape=(1, 4, 4), rank=2, arch_kwargs={"hidden": 8, "depth": 1}))
    data = torch.rand(40, 4, 4, generator=torch.Generator().manual_seed(2)) * 3 - 1  # (N, H, W): no channel axis
    np.save(tmp_path / "x.npy", data.numpy())
    whole = run_show(model, data, tmp_path / "whole", n_points=8, n_pairs=1, path_points=5)
    source = open_npy(tmp_path / "x.npy")
    asked = []
    rows = source.rows
    source.rows = lambda idx: asked.append(idx.numel()) or rows(idx)
    monkeypatch.setattr(stream, "CHUNK_ROWS", 16)
    monkeypatch.setattr(show, "CHUNK_ROWS", 16)
    mapped = run_show(model, source, tmp_path / "mapped", n_points=8, n_pairs=1, path_points=5)
    assert json.dumps(mapped) == json.dumps(whole)
    assert sorted(asked) == [1, 1, 8, 8, 8, 16, 16, 16, 16]  # each pair end, the 8 points drawn, 2 passes by chunks


@pytest.mark.filterwarnings("ignore:geodesic.*do not resolve the metric")  # an untrained model, 5-point paths
def test_the_show_command_maps_a_npy_file_instead_of_reading_it_whole(tmp_path, monkeypatch, capsys):
    """``learned-manifold show MODEL x.npy`` read the whole file (a float32 copy and a finiteness mask) before
    `run_show`, which can read a mapped file's drawn rows only: the command now maps a .npy, with the report of
    the same data read whole (a .pt file)."""
    import json

    import matplotlib
    import numpy as np

    from learned_manifold.model_file import save_model
    from learned_manifold.models import MetricModel, ModelConfig
    from learned_manifold_training import cli

    matplotlib.use("Agg")
    torch.manual_seed(0)
    model = MetricModel(ModelConfig(data_shape=(3,), rank=2, arch_kwargs={"hidden": 8, "depth": 1}))
    path = save_model(model, tmp_path / "m.lmm")
    data = torch.randn(60, 3, generator=torch.Generator().manual_seed(1))
    np.save(tmp_path / "x.npy", data.numpy())
    torch.save(data, tmp_path / "x.pt")
    args = ["--num-points", "8", "--pairs", "1"]
    assert cli.main(["show", str(path), str(tmp_path / "x.pt"), "--out", str(tmp_path / "whole"), *args]) == 0

    def read_everything(*a, **k):
        raise AssertionError("the whole file was read")

    monkeypatch.setattr(cli, "read_data", read_everything)
    assert cli.main(["show", str(path), str(tmp_path / "x.npy"), "--out", str(tmp_path / "mapped"), *args]) == 0
    capsys.readouterr()
    whole, mapped = (json.loads((tmp_path / name / "show.json").read_text()) for name in ("whole", "mapped"))
    assert mapped == whole and mapped["median_dimension"] >= 1
