"""Landmarks: training points the model file stores, through which a learned field's geodesics start (issue 12).

Specified: the trainer stores a seeded subsample of the *training* rows (never the held-out ones) in data units,
``min(4096, 2²¹ / D, training points)`` by default, none with ``landmarks=0``; they survive the model file and
the resume of an older state; `LearnedCDC` exposes them (or points the user gives) as ``data_graph``, and
``geodesic`` with its defaults then starts on the shortest path through them.
"""

from __future__ import annotations

import math

import pytest
import torch

from learned_manifold import geodesic, load_model
from learned_manifold.metrics import LearnedCDC
from learned_manifold.models import MAX_LANDMARK_NUMBERS, MetricModel, ModelConfig
from learned_manifold_training.batches import TrainingRows
from learned_manifold_training.data import Circle
from learned_manifold_training.trainer import TrainConfig, train

SMALL = dict(steps=4, batch_size=32, rank=2, hidden=16, depth=1, emb_dim=8, val_points=50, precision="fp32")


def _rows_in(points: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
    """For each row of ``points``, whether it equals a row of ``data`` (to float32 rounding of the round trip)."""
    return (torch.cdist(points.double(), data.double()).min(dim=1).values < 1e-5)


@pytest.mark.filterwarnings("ignore:.* by the checks at the end:learned_manifold.ModelFileWarning")  # a tiny run
def test_training_stores_training_rows_not_held_out_ones(tmp_path):
    data = Circle(2).sample(400, generator=torch.Generator().manual_seed(0)) * 3.0 + 5.0  # not standardised
    result = train(data, TrainConfig(**SMALL, landmarks=100), out=tmp_path / "m.lmm", progress=False,
                   device="cpu")
    stored = load_model(tmp_path / "m.lmm").landmarks
    assert stored.shape == (100, 2)
    assert torch.equal(stored, result.model.landmarks)
    assert _rows_in(stored, data).all()  # data units, exact rows of the data
    held_out = TrainingRows(data, val_points=SMALL["val_points"], seed=0, batch_size=32,
                            device=torch.device("cpu")).val_x  # the trainer's split, rebuilt
    assert held_out.shape[0] == SMALL["val_points"]
    assert not _rows_in(stored, held_out).any()
    assert stored.unique(dim=0).shape[0] == 100


def test_default_count_and_none():
    assert TrainConfig().landmark_count(10_000, 10) == 4096
    assert TrainConfig().landmark_count(1_000, 10) == 1_000
    assert TrainConfig().landmark_count(100_000, 64 * 64) == 512  # 2²¹ numbers
    assert TrainConfig(landmarks=0).landmark_count(10_000, 3) == 0
    data = Circle(2).sample(200, generator=torch.Generator().manual_seed(0))
    model = train(data, TrainConfig(**SMALL, landmarks=0), progress=False, device="cpu").model
    assert model.config.landmarks == 0 and not hasattr(model, "landmarks")
    assert LearnedCDC(model, 0.1).data_graph is None


def test_too_many_landmarks_are_refused_by_name():
    with pytest.raises(ValueError, match="landmarks"):
        TrainConfig(landmarks=-1)
    with pytest.raises(TypeError, match="landmarks"):
        TrainConfig(landmarks=2.5)
    with pytest.raises(ValueError, match="landmarks.*at most 4096"):
        TrainConfig(landmarks=5000).landmark_count(10_000, 4096)
    with pytest.raises(ValueError, match="landmarks"):
        ModelConfig(data_shape=(64, 64), rank=2, landmarks=MAX_LANDMARK_NUMBERS // 4096 + 1)


def test_model_checks_the_points_it_stores():
    model = MetricModel(ModelConfig(data_shape=(3,), rank=2, landmarks=4, arch_kwargs={"hidden": 8, "depth": 1}))
    with pytest.raises(ValueError, match="shape"):
        model.set_landmarks(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="finite"):
        model.set_landmarks(torch.full((4, 3), math.nan))
    plain = MetricModel(ModelConfig(data_shape=(3,), rank=2, arch_kwargs={"hidden": 8, "depth": 1}))
    with pytest.raises(RuntimeError, match="no landmarks"):
        plain.set_landmarks(torch.zeros(4, 3))


def test_a_state_written_before_landmarks_resumes(tmp_path):
    """A training state without the landmark buffer (written before it existed) resumes to the same weights as an
    uninterrupted run; the landmarks are the same seeded subsample."""
    data = Circle(2).sample(300, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(**{**SMALL, "steps": 6, "checkpoint_every": 3})
    full = train(data, cfg, progress=False, device="cpu").model
    out = tmp_path / "m.lmm"
    train(data, cfg, out=out, progress=False, device="cpu", stop_after=3)
    from learned_manifold_training.outputs import state_path

    state = torch.load(state_path(out), weights_only=True)
    for key in ("model", "ema"):
        del state[key]["landmarks"]
    torch.save(state, state_path(out))
    resumed = train(data, cfg, out=out, resume=True, progress=False, device="cpu").model
    for name, value in full.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, rtol=0, atol=0, msg=name)


def test_learned_geodesics_start_through_the_landmarks(sphere_model, sphere):
    """The S² fixture stores its landmarks; the default start is then the graph path through them, which stays
    near the sphere before any solve (steps=0), unlike the chord."""
    assert sphere_model.config.landmarks > 0
    field = LearnedCDC(sphere_model)
    a = torch.tensor([[1.0, 0.0, 0.0]])
    b = torch.tensor([[-0.6, 0.8, 0.0]])  # 127° apart: the chord passes 0.45 from the centre
    start = geodesic(field, a, b, steps=0)
    assert start.init == "graph"
    assert (start.path.norm(dim=-1) - 1).abs().max() < 0.1
    with pytest.warns(UserWarning, match="keep the gap rule's directions"):  # the chord's midpoints lie off the data
        chord = geodesic(field, a, b, steps=0, init="linear")
    assert (chord.path.norm(dim=-1) - 1).abs().max() > 0.5
    # the user's own points serve the same way, in any floating dtype
    mine = LearnedCDC(sphere_model, data=sphere.sample(500, generator=torch.Generator().manual_seed(3)))
    start64 = geodesic(mine, a.double(), b.double(), steps=0)
    assert start64.init == "graph" and (start64.path.norm(dim=-1) - 1).abs().max() < 0.15
    with pytest.raises(ValueError, match="data"):
        LearnedCDC(sphere_model, data=torch.zeros(10, 4))



def test_more_landmarks_than_training_points_store_them_all_with_a_warning():
    """``--landmarks 500`` on 160 training points stored 160 without a word (tester B s37): the count is still cut to
    the training points (landmarks never change the training), and a warning names the setting and both counts."""
    with pytest.warns(UserWarning, match=r"^landmarks: 500 asked for, but the run has 160 training points .*: the "
                                         r"model file stores all 160 training points$"):
        assert TrainConfig(landmarks=500).landmark_count(160, 2) == 160
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert TrainConfig(landmarks=160).landmark_count(160, 2) == 160
        assert TrainConfig().landmark_count(160, 2) == 160  # the default is documented as capped
