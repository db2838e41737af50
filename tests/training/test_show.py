"""`training.show`: how interpolation paths are scored (the numbers of `learned-manifold show` and of
`benchmarks/image_paths.py`)."""

import numpy as np
import pytest
import torch

from learned_manifold_training.show import interpolation_scores, same_class_pairs


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


def _check_pairs(pairs, labels, n_pairs):
    """``(n_pairs, 2)`` distinct unordered pairs of distinct points of one label."""
    assert pairs.shape == (n_pairs, 2) and pairs.dtype == torch.int64
    assert bool((pairs[:, 0] != pairs[:, 1]).all()) and bool((labels[pairs[:, 0]] == labels[pairs[:, 1]]).all())
    assert len({tuple(sorted(p)) for p in pairs.tolist()}) == n_pairs


def test_same_class_pairs_finds_a_lone_pair_and_warns_when_fewer_exist_than_asked():
    """A rejection sampler of 100·n_pairs random draws missed the one pair among 1000 labels ("no two distinct
    points share a label") and gave 11 of 20 pairs, silently, from 100 classes of 2 points."""
    labels = torch.arange(1000)
    labels[1] = 0
    with pytest.warns(UserWarning, match=r"only 1 distinct pairs of points share a label, fewer than the 5 asked"):
        assert same_class_pairs(labels, 5).tolist() == [[0, 1]]
    assert same_class_pairs(labels, 1).tolist() == [[0, 1]]
    labels = torch.arange(200) // 2  # 100 pairs in all: 20 listed and picked
    _check_pairs(same_class_pairs(labels, 20), labels, 20)
    with pytest.warns(UserWarning, match=r"only 100 distinct pairs .* the 150 asked; returning all 100"):
        _check_pairs(same_class_pairs(labels, 150), labels, 100)


def test_same_class_pairs_are_seeded_distinct_and_of_one_class():
    labels = torch.arange(300) % 3  # 14850 pairs: drawn (class by its pairs, two members), not listed
    pairs = same_class_pairs(labels, 40, seed=3)
    _check_pairs(pairs, labels, 40)
    assert torch.equal(same_class_pairs(labels, 40, seed=3), pairs)
    assert not torch.equal(same_class_pairs(labels, 40, seed=4), pairs)
    assert set(labels[pairs[:, 0]].tolist()) == {0, 1, 2}
    unlabelled = same_class_pairs(None, 6, n=4, seed=np.int64(1))  # all 6 pairs of 4 points
    _check_pairs(unlabelled, torch.zeros(4), 6)


@pytest.mark.parametrize("args, kwargs, error, match", [
    ((None, 3), {}, ValueError, r"n \(the number of points\) is needed when labels is None"),
    ((None, 3), {"n": 1}, ValueError, r"n must lie in >= 2, got 1"),
    ((torch.arange(4), 1), {}, ValueError, r"no two distinct points share a label among the 4 labels"),
    ((torch.zeros(4, dtype=torch.long), 0), {}, ValueError, r"n_pairs must lie in >= 1, got 0"),
    ((torch.zeros(4, dtype=torch.long), 2.0), {}, TypeError, r"n_pairs must be an integer, got float"),
    ((torch.zeros(4), 1), {}, ValueError, r"labels must be a 1-D tensor of integers, got shape \(4,\)"),
    (([0, 0], 1), {}, TypeError, r"labels must be a tensor of integer labels or None, got list"),
    ((torch.zeros(4, dtype=torch.long), 1), {"n": 3}, ValueError, r"n = 3 differs from the 4 labels"),
    ((None, 1), {"n": 4, "seed": 0.5}, TypeError, r"seed must be an integer, got float"),
])
def test_same_class_pairs_refuses_bad_arguments_naming_them(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        same_class_pairs(*args, **kwargs)


@pytest.mark.filterwarnings("ignore:geodesic.*do not resolve the metric")  # an untrained model, 5-point paths
@pytest.mark.filterwarnings("ignore:.*keep the gap rule's directions")  # (untrained: shares 0.39-0.50)
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
    report = run_show(model, data, out, n_points=8, n_pairs=1, path_points=5, overwrite=True)
    assert sorted(p.name for p in out.glob("interpolations_*.png")) == ["interpolations_0.png"]
    assert json.loads((out / "show.json").read_text())["data_points"] == 40
    counts = report["dimension_counts"]
    dims = torch.tensor([d for d, c in counts.items() for _ in range(c)], dtype=torch.float64)
    assert report["median_dimension"] == dims.sort().values[(dims.numel() - 1) // 2]  # the lower median
    assert 0 <= report["interpolations"][0]["gradient flow"]["gap_closed"] <= 1


@pytest.mark.filterwarnings("ignore:geodesic.*do not resolve the metric")  # an untrained model, 5-point paths
@pytest.mark.filterwarnings("ignore:.*keep the gap rule's directions")  # (untrained: shares 0.39-0.50)
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
@pytest.mark.filterwarnings("ignore:.*keep the gap rule's directions")  # (untrained: shares 0.39-0.50)
def test_the_show_command_maps_a_npy_file_instead_of_reading_it_whole(tmp_path, monkeypatch, capsys):
    """``learned-manifold show MODEL x.npy`` read the whole file (a float32 copy and a finiteness mask) before
    `run_show`, which can read a mapped file's drawn rows only: the command now maps a .npy, with the report of
    the same data read whole (a .pt file)."""
    import json

    import matplotlib
    import numpy as np

    from learned_manifold.model_file import save_model
    from learned_manifold.models import MetricModel, ModelConfig
    from learned_manifold_training import cli, cli_show

    matplotlib.use("Agg")
    torch.manual_seed(0)
    model = MetricModel(ModelConfig(data_shape=(1, 3, 3), rank=2, arch_kwargs={"hidden": 8, "depth": 1}))
    path = save_model(model, tmp_path / "m.lmm")
    data = torch.randn(60, 3, 3, generator=torch.Generator().manual_seed(1))
    np.save(tmp_path / "x.npy", data.numpy())
    torch.save(data, tmp_path / "x.pt")
    args = ["--num-points", "8", "--pairs", "1"]
    assert cli.main(["show", str(path), str(tmp_path / "x.pt"), "--out", str(tmp_path / "whole"), *args]) == 0

    def read_everything(*a, **k):
        raise AssertionError("the whole file was read")

    monkeypatch.setattr(cli_show, "read_data", read_everything)
    assert cli.main(["show", str(path), str(tmp_path / "x.npy"), "--out", str(tmp_path / "mapped"), *args]) == 0
    capsys.readouterr()
    whole, mapped = (json.loads((tmp_path / name / "show.json").read_text()) for name in ("whole", "mapped"))
    assert mapped == whole and mapped["median_dimension"] >= 1


def _tiny_image_model():
    from learned_manifold.models import MetricModel, ModelConfig

    torch.manual_seed(0)
    return MetricModel(ModelConfig(data_shape=(1, 4, 4), rank=2, arch_kwargs={"hidden": 8, "depth": 1}))


@pytest.mark.filterwarnings("ignore:geodesic.*do not resolve the metric")  # an untrained model, 5-point paths
@pytest.mark.filterwarnings("ignore:.*keep the gap rule's directions")  # (untrained: shares 0.39-0.50)
def test_show_reports_the_lower_median_and_names_classes_by_their_folders(tmp_path, monkeypatch):
    """SPEC §5's global dimension is the lower median ({9, 9, 10, 10}: 9, where quantile(0.5) gave 9.5); class
    folders 2, 9, 10 are labels 0, 1, 2 of the sorted names '10', '2', '9': show.json and the titles said the
    label ("class 2" was folder 9), now each pair also gives its class's name."""
    import json

    import matplotlib

    from learned_manifold_training import show

    matplotlib.use("Agg")
    monkeypatch.setattr(show, "intrinsic_dimension", lambda values: torch.tensor([9, 10, 10, 9]))
    titles = []
    strips = show.plot_interpolation_strips
    monkeypatch.setattr(show, "plot_interpolation_strips", lambda *a, **k: titles.append(k["title"]) or strips(*a, **k))
    data = torch.rand(30, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(30) % 3
    report = show.run_show(_tiny_image_model(), data, tmp_path / "out", labels=labels, n_points=4, n_pairs=2,
                           path_points=5, classifier_steps=2, class_names=("10", "2", "9"))
    assert report["median_dimension"] == 9
    written = json.loads((tmp_path / "out" / "show.json").read_text())
    assert written["median_dimension"] == 9 and written["interpolations"] == report["interpolations"]
    for pair, title in zip(report["interpolations"], titles, strict=True):
        assert pair["class"] == ("10", "2", "9")[pair["label"]] and f"(class {pair['class']})" in title


def test_show_refuses_a_model_of_points_that_are_not_images_and_an_empty_out(tmp_path, capsys):
    """A circle's model (points (2,)) was drawn as 1×2-pixel pictures, exit 0; ``--out ""`` wrote into the current
    folder. Both are refused before any work, with one line naming the problem."""
    from learned_manifold.model_file import save_model
    from learned_manifold.models import MetricModel, ModelConfig
    from learned_manifold_training.cli import main
    from learned_manifold_training.show import run_show

    circle = MetricModel(ModelConfig(data_shape=(2,), rank=2, arch_kwargs={"hidden": 8, "depth": 1}))
    with pytest.raises(ValueError, match=r"model has points of shape \(2,\), not images: .*\(H, W\) or \(C, H, W\)"):
        run_show(circle, torch.rand(10, 2), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    path = save_model(circle, tmp_path / "c.lmm")
    assert main(["show", str(path), "circle", "--out", str(tmp_path / "pics")]) == 2
    assert f"MODEL {str(path)!r} has points of shape (2,), not images" in capsys.readouterr().err
    assert not (tmp_path / "pics").exists()
    with pytest.raises(ValueError, match=r"out \(--out\) is empty"):
        run_show(_tiny_image_model(), torch.rand(10, 1, 4, 4), "")
    image_model = save_model(_tiny_image_model(), tmp_path / "i.lmm")
    assert main(["show", str(image_model), "blobs", "--out", ""]) == 2
    assert "error: --out is empty: give a folder for the pictures" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:geodesic.*do not resolve the metric")  # an untrained model, 5-point paths
@pytest.mark.filterwarnings("ignore:.*keep the gap rule's directions")  # (untrained: shares 0.39-0.50)
def test_show_refuses_an_earlier_runs_folder_and_a_stopped_overwrite_leaves_it_as_it_was(tmp_path, monkeypatch,
                                                                                          capsys):
    """``show --out DIR`` replaced an earlier run's pictures unasked, and deleted its strips before any work: a run
    stopped in the classifier left no strips and the old show.json. Now refused before any work without
    --overwrite; with it, nothing is replaced until every new file is ready."""
    import matplotlib

    from learned_manifold.model_file import save_model
    from learned_manifold_training import show
    from learned_manifold_training.cli import main

    matplotlib.use("Agg")
    data = torch.rand(30, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    out = tmp_path / "pics"
    show.run_show(_tiny_image_model(), data, out, n_points=4, n_pairs=2, path_points=5)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(before) == ["dimension.png", "eigenvalues.png", "eigenvectors.png", "interpolations_0.png",
                              "interpolations_1.png", "show.json"]
    with pytest.raises(ValueError, match=r"out \(--out\) '.*pics' holds an earlier show's files \(dimension.png, "
                                         r"eigenvalues.png, eigenvectors.png, interpolations_0.png, ...\); replace "
                                         r"them with --overwrite"):
        show.run_show(_tiny_image_model(), data, out, n_points=4, n_pairs=1, path_points=5)
    model = save_model(_tiny_image_model(), tmp_path / "m.lmm")
    assert main(["show", str(tmp_path / "missing.lmm"), "blobs", "--out", str(out)]) == 2  # before the model
    assert "holds an earlier show's files" in capsys.readouterr().err

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(show, "interpolation_paths", stop)  # after the first three figures are drawn
    with pytest.raises(KeyboardInterrupt):
        show.run_show(model, data, out, n_points=4, n_pairs=1, path_points=5, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.filterwarnings("ignore:geodesic.*do not resolve the metric")  # an untrained model, 5-point paths
@pytest.mark.filterwarnings("ignore:.*keep the gap rule's directions")  # (untrained: shares 0.39-0.50)
def test_show_checks_its_folder_before_any_work_and_names_the_file_a_write_failed_on(tmp_path, monkeypatch):
    """A show.json that is a folder failed at the very end, a read-only folder at the first figure, and a full disk
    said only "[Errno 28] No space left on device"."""
    import errno

    import matplotlib

    from learned_manifold_training import show

    matplotlib.use("Agg")
    data = torch.rand(30, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    out = tmp_path / "pics"
    (out / "show.json").mkdir(parents=True)
    for overwrite in (False, True):
        with pytest.raises(ValueError, match=r"out \(--out\): '.*show.json' is not a regular file; show writes a file "
                                             "of that name"):
            show.check_show_folder(out, overwrite=overwrite)
    (out / "show.json").rmdir()

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    with monkeypatch.context() as patch:
        patch.setattr("tempfile.mkstemp", read_only)  # `outputs.probe_writable`'s probe
        with pytest.raises(ValueError, match=r"out \(--out\) '.*new': the folder '.*pics' is not writable "
                                             r"\(Read-only file system\)"):
            show.run_show(_tiny_image_model(), data, out / "new", n_points=4, n_pairs=1, path_points=5)
    assert not (out / "new").exists()
    write = show.atomic_write_bytes

    def full_disk(path, payload):
        if path.name == "dimension.png":
            raise OSError(errno.ENOSPC, "No space left on device")
        write(path, payload)

    monkeypatch.setattr(show, "atomic_write_bytes", full_disk)
    with pytest.raises(ValueError, match=r"could not write '.*pics/dimension.png': No space left on device \(out "
                                         r"\(--out\) '.*pics'\); eigenvectors.png, eigenvalues.png were written"):
        show.run_show(_tiny_image_model(), data, out, n_points=4, n_pairs=1, path_points=5)


def test_show_warns_that_the_pictures_are_of_a_model_its_checks_did_not_trust(tmp_path, monkeypatch):
    """``show`` drew an untrusted model's pictures without a word (tester C, s30, item 3): loading it warns
    (`ModelFileWarning`, naming the file and ``learned-manifold info``); the drawing is stubbed here."""
    from learned_manifold import ModelFileWarning
    from learned_manifold.model_file import save_model
    from learned_manifold_training import show
    from learned_manifold_training.cli import main

    drawn = []
    monkeypatch.setattr(show, "run_show", lambda model, *args, **kwargs: drawn.append(model) or {
        "median_dimension": 1})
    verdict = {"validation": {"self_consistency": {"trusted": False}}}
    model = save_model(_tiny_image_model(), tmp_path / "m.lmm", extra=verdict)
    np.save(tmp_path / "images.npy", np.random.default_rng(0).random((10, 1, 4, 4), dtype=np.float32))
    with pytest.warns(ModelFileWarning, match=r"m\.lmm' was not trusted by the checks at the end of its training: "
                                              r"its factor and denoiser disagree .*`learned-manifold info "):
        assert main(["show", str(model), str(tmp_path / "images.npy"), "--out", str(tmp_path / "pics"), "--layout",
                     "NCHW"]) == 0
    assert len(drawn) == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"n_points": -5}, "n_points must lie in >= 1, got -5"), ({"n_points": 0}, "n_points must lie in >= 1, got 0"),
    ({"path_points": 1}, r"path_points \(both ends counted\) must lie in >= 2, got 1"),
    ({"classifier_steps": 0}, "classifier_steps must lie in >= 1, got 0")])
def test_run_show_refuses_counts_below_their_minimum_naming_them(tmp_path, kwargs, message):
    """``run_show(n_points=-5)`` drew N - 5 points (``randperm(n)[:-5]``) and ``n_points=0`` failed deep inside
    with a reshape error (tester F, s32); refused first, as the command refuses ``--num-points -5``."""
    from learned_manifold_training.show import run_show

    with pytest.raises(ValueError, match=message):
        run_show(tmp_path / "no-model.lmm", torch.zeros(10, 4, 4), tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_the_show_command_passes_path_points_and_classifier_steps(tmp_path, monkeypatch):
    """``--path-points`` and ``--classifier-steps`` (`run_show`'s settings that had no option) reach `run_show`."""
    from learned_manifold.model_file import save_model
    from learned_manifold_training import show
    from learned_manifold_training.cli import main

    seen = {}

    def spy(model, data, out, **kwargs):
        seen.update(kwargs)
        return {"median_dimension": 1}

    model = _tiny_image_model()
    path = save_model(model, tmp_path / "m.lmm")
    np.save(tmp_path / "x.npy", np.zeros((20, 4, 4), np.float32))
    monkeypatch.setattr(show, "run_show", spy)
    assert main(["show", str(path), str(tmp_path / "x.npy"), "--out", str(tmp_path / "o"), "--path-points", "9",
                 "--classifier-steps", "50"]) == 0
    assert (seen["path_points"], seen["classifier_steps"]) == (9, 50)


def test_the_show_commands_defaults_are_run_shows():
    """The command's counts and seed are written in `cli_show` (which does not import the plotting module) and in
    `run_show`'s signature: they must agree (reviewer R, s32: `train` and `demo` read theirs from one place)."""
    import inspect

    from learned_manifold_training.cli import build_parser
    from learned_manifold_training.show import run_show

    args = build_parser().parse_args(["show", "m.lmm", "data.npy", "--out", "pictures"])
    defaults = inspect.signature(run_show).parameters
    for flag, name in (("num_points", "n_points"), ("pairs", "n_pairs"), ("path_points", "path_points"),
                       ("classifier_steps", "classifier_steps"), ("seed", "seed")):
        assert getattr(args, flag) == defaults[name].default, flag


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_drawn_paths_start_at_x0_and_the_flows_points_are_equally_spaced_in_arc_length():
    """Every path of a strip starts at its start image; LERP runs x0 → x1 and the flow's drawn points are equally
    spaced along it, not in time (tester A, item 11: a flow sampled in time, its points bunched at the end, and a
    LERP drawn backwards both passed). The Euclidean field's flow is the straight segment, approached ever slower."""
    from learned_manifold.metrics import EuclideanMetric
    from learned_manifold_training.show import interpolation_paths

    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.rand(2, 1, 2, 2, generator=g, dtype=torch.float64), torch.rand(2, 1, 2, 2, generator=g,
                                                                                 dtype=torch.float64)
    paths, gap_closed = interpolation_paths(EuclideanMetric(4), x0, x1, 9)
    assert set(paths) == {"LERP", "gradient flow", "geodesic"} and gap_closed.shape == (2,)
    for name, path in paths.items():
        assert path.shape == (2, 9, 1, 2, 2), name
        torch.testing.assert_close(path[:, 0], x0, msg=name)
    torch.testing.assert_close(paths["LERP"][:, -1], x1)
    for name in ("LERP", "gradient flow"):
        steps = (paths[name][:, 1:] - paths[name][:, :-1]).reshape(2, 8, 4).norm(dim=-1)  # (B, T − 1)
        torch.testing.assert_close(steps, steps[:, :1].expand(2, 8), rtol=1e-3, atol=0.0, msg=name)
    end = paths["gradient flow"][:, -1].reshape(2, 4)
    assert bool(((end - x0.reshape(2, 4)).norm(dim=-1) > 0.5 * (x1 - x0).reshape(2, 4).norm(dim=-1)).all())


@pytest.mark.filterwarnings("ignore:.*keep the gap rule's directions")  # an untrained model
def test_each_strips_gap_closed_text_is_its_own_pairs_as_in_show_json(tmp_path, monkeypatch):
    """The flow row of pair ``p``'s strip says how much of pair ``p``'s gap its flow closed, the number show.json
    gives that pair (tester A, item 10: every strip saying pair 0's passed). An untrained model's flows all close
    0%, so the paths are stood in for by straight segments whose flows closed 25% and 50% (no solver: fast)."""
    import matplotlib

    from learned_manifold_training import show

    matplotlib.use("Agg")

    def segments(manifold, x0, x1, n_points):
        t = torch.linspace(0, 1, n_points).reshape(1, -1, 1, 1, 1)
        path = x0.unsqueeze(1) + t * (x1 - x0).unsqueeze(1)  # (B, T, 1, 4, 4)
        return {name: path for name in ("LERP", "gradient flow", "geodesic")}, torch.tensor([0.25, 0.5])

    monkeypatch.setattr(show, "interpolation_paths", segments)
    texts = []
    strips = show.plot_interpolation_strips
    monkeypatch.setattr(show, "plot_interpolation_strips",
                        lambda *a, **k: texts.append(k["scores"]["gradient flow"]) or strips(*a, **k))
    data = torch.rand(30, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    report = show.run_show(_tiny_image_model(), data, tmp_path / "out", n_points=4, n_pairs=2, path_points=3)
    gaps = [pair["gradient flow"]["gap_closed"] for pair in report["interpolations"]]
    assert gaps == [0.25, 0.5]
    assert [text.splitlines()[-1] for text in texts] == ["gap closed 25%", "gap closed 50%"]
