"""The factor's repair (`learned_manifold_training.refit`): it leaves a model that passes its self-consistency
check alone, refits a factor that disagrees with a good denoiser until the two agree, and puts the old factor
back when refitting does not help."""

import types

import pytest
import torch

from learned_manifold.diagnostics import consistency_reasons
from learned_manifold.geometry import eigenpairs, projector_error
from learned_manifold_training import refit as refit_module
from learned_manifold_training.batches import TrainingRows
from learned_manifold_training.data import Sphere
from learned_manifold_training.refit import refit_factor
from learned_manifold_training.schedule import lr_factor
from learned_manifold_training.train_loop import _batch
from learned_manifold_training.trainer import TrainConfig, bandwidth_sampler, select_sigma, train

SPHERE = Sphere(2, 3)
DATA = SPHERE.sample(3000, generator=torch.Generator().manual_seed(0))
SMALL = dict(steps=600, batch_size=256, hidden=64, depth=2, emb_dim=32, val_points=300, precision="fp32")


@pytest.fixture(scope="module")
def trained():
    """A small S² model that passes its check, and the same run with the repair off."""
    on = train(DATA, TrainConfig(**SMALL), manifold=SPHERE, progress=False, device="cpu")
    off = train(DATA, TrainConfig(**SMALL, factor_refit=0.0), manifold=SPHERE, progress=False, device="cpu")
    return on, off


def _tangent_error(model, sigma: float) -> float:
    x = SPHERE.sample(300, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        vectors = eigenpairs(model.factor(x, sigma)).vectors[..., :2]
    return projector_error(vectors, SPHERE.tangent_basis(x)).mean().item()


def _refit(model, cfg: TrainConfig):
    rows = TrainingRows(DATA, val_points=cfg.val_points, seed=cfg.seed, batch_size=cfg.batch_size,
                        device=torch.device("cpu"))
    sampler = bandwidth_sampler(cfg, rows.scale)
    sigma = model.config.default_sigma
    cpu = torch.device("cpu")
    report, _ = refit_factor(model, rows, cfg, sigma, autocast=torch.autocast("cpu", enabled=False),
                          batch=lambda s: _batch(s, cfg, rows.n_train, rows.shape, sampler, rows.scale, cpu, 0, 1))
    return report, rows, sigma


def test_a_model_that_passes_the_check_is_not_touched(trained):
    on, off = trained
    assert on.validation["self_consistency"]["trusted"]
    assert on.validation["factor_refit"] == {"ran": False, "why": "the check passed"}
    assert off.validation["factor_refit"]["ran"] is False
    for key, value in on.model.state_dict().items():
        torch.testing.assert_close(value, off.model.state_dict()[key], rtol=0, atol=0, msg=key)


def test_an_unconverged_factor_is_refitted_to_the_denoiser():
    """The factor trains for the last 5% of the steps only (30 of 600), the denoiser for all of them: the check
    fails, and the repair (600 more factor steps at lr/10) brings the factor much closer to the denoiser and
    to the true tangent planes."""
    cfg = dict(SMALL, denoiser_warmup=0.95)
    without = train(DATA, TrainConfig(**cfg, factor_refit=0.0), manifold=SPHERE, progress=False, device="cpu")
    repaired = train(DATA, TrainConfig(**cfg, factor_refit=1.0), manifold=SPHERE, progress=False, device="cpu")
    assert not without.validation["self_consistency"]["trusted"]
    report = repaired.validation["factor_refit"]
    assert report["ran"] and report["kept"] and report["steps"] == 600
    assert report["failed"] == consistency_reasons(without.validation["self_consistency"])  # what `info` prints
    assert report["disagreement_after"] < 0.6 * report["disagreement_before"]
    assert report["disagreement_before"] == without.validation["self_consistency"]["tangent_disagreement"]
    assert repaired.validation["tangent_error"] < 0.5 * without.validation["tangent_error"]
    sigma = repaired.model.config.default_sigma
    assert _tangent_error(repaired.model, sigma) < 0.5 * _tangent_error(without.model, sigma)
    for name, value in without.model.denoiser_net.state_dict().items():  # the denoiser is left as it was
        torch.testing.assert_close(repaired.model.denoiser_net.state_dict()[name], value, rtol=0, atol=0)
    # the kept factor's own bandwidth: σ and the stored table are chosen again for it (not for the one replaced)
    val_x = TrainingRows(DATA, val_points=SMALL["val_points"], seed=0, batch_size=SMALL["batch_size"],
                         device=torch.device("cpu")).val_x
    again, _, table = select_sigma(repaired.model, val_x, SPHERE)
    stored = repaired.validation["sigma_table"]
    assert sigma == again == min(stored, key=lambda row: row["tangent_error"])["sigma"]
    assert [row["sigma"] for row in stored] == [row["sigma"] for row in table]
    assert [row["tangent_error"] for row in stored] == pytest.approx([row["tangent_error"] for row in table],
                                                                     rel=1e-6)
    assert repaired.validation["self_consistency"]["sigma"] == sigma  # the check made at that σ


def test_a_refit_that_does_not_help_is_put_back(trained, monkeypatch):
    model = trained[0].model
    model = type(model)(model.config, scale=float(model.scale), mean=model.mean)
    model.load_state_dict(trained[0].model.state_dict())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    verdicts = iter([0.3, 0.5])  # the check fails, and the refitted factor disagrees more

    def check(*args, **kwargs):
        value = next(verdicts)
        summary = {"tangent_disagreement": value, "threshold": 0.2, "factor_dimension": 2, "denoiser_dimension": 2}
        return types.SimpleNamespace(trusted=False, tangent_disagreement=torch.tensor([value]),
                                     summary=lambda: summary)

    monkeypatch.setattr(refit_module, "self_consistency", check)
    report, _, _ = _refit(model, TrainConfig(**{**SMALL, "steps": 40}))
    assert report.pop("seconds") > 0
    assert report == {"ran": True, "steps": 10, "disagreement_before": 0.3, "disagreement_after": 0.5,
                      "kept": False, "failed": ["factor and denoiser disagree on the tangent spaces: disagreement "
                                                "0.3 (limit 0.2), dimensions 2 and 2"]}
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0, msg=key)


def test_the_schedule_warms_up_then_decays_to_a_tenth():
    """`lr_factor`, the schedule of the main loop and of the repair (over its own steps)."""
    values = [lr_factor(s, 1000, 0.02) for s in range(1000)]
    assert values[0] == pytest.approx(1 / 20) and max(values) == pytest.approx(1.0)
    assert values[-1] == pytest.approx(0.1, abs=1e-3)
    assert all(a >= b for a, b in zip(values[20:], values[21:], strict=False))


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan")])
def test_the_refit_fraction_is_checked(value):
    with pytest.raises(ValueError, match="factor_refit"):
        TrainConfig(factor_refit=value)
