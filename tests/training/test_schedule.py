"""The learning rates of a run (`learned_manifold_training.schedule`): the factor that starts after the denoiser's
warm-up ramps up from its first step; everything else follows the run's warm-up and cosine."""

import pytest
import torch
from torch import nn

from learned_manifold_training.config import TrainConfig
from learned_manifold_training.schedule import lr_factor, optimiser, ramp_factor


def _rates(cfg: TrainConfig, factor_from: int) -> tuple[list[list[float]], int]:
    denoiser, factor = nn.Linear(3, 3), nn.Linear(3, 2)
    params = [*denoiser.parameters(), *factor.parameters()]
    opt, rates = optimiser(params, list(factor.parameters()), cfg, factor_from, torch.device("cpu"))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, rates)
    seen = []
    for _ in range(cfg.steps):
        seen.append([g["lr"] for g in opt.param_groups])  # the rates of this step
        opt.step()
        sched.step()
    return seen, len(opt.param_groups)


def test_the_factor_ramps_up_from_its_first_step_and_the_rest_is_untouched():
    cfg = TrainConfig(steps=1000, lr=1e-3, warmup=0.02, factor_ramp=0.02)
    seen, groups = _rates(cfg, factor_from=500)
    assert groups == 2
    ramp = 20
    for step, (main, factor) in enumerate(seen):
        assert main == pytest.approx(1e-3 * lr_factor(step, 1000, 0.02))
        expected = 0.0 if step < 500 else main * min(1.0, (step - 499) / ramp)
        assert factor == pytest.approx(expected), step
    assert seen[500][1] == pytest.approx(seen[500][0] / ramp) and seen[519][1] == pytest.approx(seen[519][0])
    assert ramp_factor(7, 3, 0) == 1.0


@pytest.mark.parametrize(("factor_from", "ramp"), [(0, 0.02), (500, 0.0)])
def test_without_a_late_start_or_a_ramp_there_is_one_group_on_the_runs_schedule(factor_from, ramp):
    cfg = TrainConfig(steps=1000, lr=1e-3, factor_ramp=ramp)
    seen, groups = _rates(cfg, factor_from)
    assert groups == 1
    assert [r[0] for r in seen] == pytest.approx([1e-3 * lr_factor(s, 1000, cfg.warmup) for s in range(1000)])


def test_the_ramp_is_a_fraction():
    with pytest.raises(ValueError, match="factor_ramp"):
        TrainConfig(factor_ramp=1.0)
