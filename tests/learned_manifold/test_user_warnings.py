"""Warnings name the user's line, however deep the library raises them, and repeat only as Python's filter says
(`learned_manifold.user_warnings`, tester E s33 3–7). This file stands for a user's script: it lies outside the
library, so a warning attributed to the user has ``filename == __file__``."""

import json
import warnings

import pytest
import torch

from learned_manifold import LearnedDataManifold, MetricModel, ModelConfig, RiemannianAdam, RiemannianSGD, geodesic
from learned_manifold.metrics import KNNCDC, ScoreJacobianMetric
from learned_manifold.user_warnings import warn_user
from learned_manifold_training.data import Circle
from learned_manifold_training.outputs import state_path
from learned_manifold_training.trainer import TrainConfig, train

GAP_RULE = "keep the gap rule's directions"
TINY = dict(steps=20, batch_size=32, rank=2, hidden=8, depth=1, emb_dim=8, val_points=30, precision="fp32",
            factor_refit=0.0)


def _library_warning(text: str) -> None:
    """A library function two frames below the user (what `warn_user` is called from)."""
    warn_user(text)


def test_warn_user_names_the_first_frame_outside_the_library():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_user("a caution")  # this file is no library module: its own line
    assert caught[0].filename == __file__ and caught[0].category is UserWarning


def test_under_the_default_filter_one_line_warns_once_whatever_its_numbers():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for step in range(5):
            warn_user(f"{step} of 20 points up to {0.3 + step / 100:.3g}")
        warn_user("another caution")  # other words: a warning of its own
    assert [str(w.message) for w in caught] == ["0 of 20 points up to 0.3", "another caution"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # "always" is Python's own: every call
        for step in range(3):
            warn_user(f"{step} points")
    assert len(caught) == 3


def test_an_error_filter_raises_at_every_call():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(2):
            with pytest.raises(UserWarning, match="a caution"):
                warn_user("a caution")


@pytest.fixture(scope="module")
def filled_r3():
    """A k-NN field on data that fill R³: the gap rule drops real directions, so the manifold warns."""
    torch.manual_seed(0)
    data = torch.randn(400, 3)
    return data, LearnedDataManifold(KNNCDC(data, k=32, sigma=0.5))


@pytest.mark.parametrize("optimiser", [RiemannianSGD, RiemannianAdam])
def test_a_gap_rule_warning_inside_an_optimiser_step_names_the_step_once(filled_r3, optimiser):
    """SGD's warned at ``optim.py`` 8 times in 200 steps (its text changes), Adam's at ``manifold.py``
    (``retr`` through ``proju``)."""
    data, M = filled_r3
    M._cache, M._decompositions = None, 0  # (a fresh manifold's checks: 1st, 2nd, 4th, ... decomposition)
    p = torch.nn.Parameter(data[:20].clone())
    opt = optimiser([p], manifold=M, lr=0.01)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(200):
            opt.zero_grad()
            p.sum().backward()
            opt.step()
    dropping = [w for w in caught if GAP_RULE in str(w.message)]
    assert len(dropping) == 1 and dropping[0].filename == __file__


def test_the_sigma_range_warning_through_the_manifold_names_the_users_line():
    model = MetricModel(ModelConfig(data_shape=(3,), rank=2, arch_kwargs={"hidden": 16, "depth": 1}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        LearnedDataManifold(model, sigma=1e6)
    ranged = [w for w in caught if "training range" in str(w.message)]
    assert ranged and all(w.filename == __file__ for w in ranged)


def test_a_train_recipe_warning_names_the_train_call():
    """It pointed at ``training/input_choices.py``, 3–5 frames below ``train``."""
    data = Circle(2).sample(300, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(data, TrainConfig(**{**TINY, "steps": 2}, sigma_min=0.8), progress=False, device="cpu")
    recipe = [w for w in caught if "sigma_min 0.8" in str(w.message)]
    assert len(recipe) == 1 and recipe[0].filename == __file__


def test_the_resume_older_version_warning_names_the_train_call(tmp_path):
    data, out = Circle(2).sample(300, generator=torch.Generator().manual_seed(0)), tmp_path / "m.lmm"
    train(data, TrainConfig(**TINY), out=out, progress=False, device="cpu", stop_after=10)
    state = torch.load(state_path(out), weights_only=True)
    config = json.loads(state["config"])
    config["state_version"] -= 1
    state["config"] = json.dumps(config)
    torch.save(state, state_path(out))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(data, TrainConfig(**TINY), out=out, resume=True, progress=False, device="cpu")
    older = [w for w in caught if "older version" in str(w.message)]
    assert len(older) == 1 and older[0].filename == __file__


@pytest.fixture(scope="module")
def starved_cg():
    """A score-Jacobian field whose conjugate gradients cannot converge in 3 iterations."""
    a = torch.diag(torch.tensor([1.0, 1e-3, 1e-5, 1.0, 0.5]))
    torch.manual_seed(0)
    return ScoreJacobianMetric(lambda y, sigma: y @ a, sigma=0.1, delta=1e-6, cg_iters=3), torch.randn(4, 5)


def test_the_conjugate_gradients_warning_names_a_direct_metric_call(starved_cg):
    """It pointed at ``precision.py``, the `full_precision` wrapper of ``ScoreJacobianMetric.metric``."""
    field, x = starved_cg
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        field.metric(x, torch.ones_like(x))
    assert len(caught) == 1 and caught[0].filename == __file__ and caught[0].category is RuntimeWarning


def test_the_conjugate_gradients_warning_comes_once_per_geodesic_under_the_default_filter(starved_cg):
    """Its point count and residual change at every solver iteration: 7 copies in one geodesic before."""
    field, x = starved_cg
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        geodesic(LearnedDataManifold(field, data_shape=(5,)), x[:2], x[2:4], n_points=8, steps=100)
    cg = [w for w in caught if "conjugate gradients" in str(w.message)]
    assert len(cg) == 1 and cg[0].filename == __file__
