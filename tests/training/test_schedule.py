"""The learning rates of a run (`learned_manifold_training.schedule`): the factor that starts after the denoiser's
warm-up ramps up from its first step, at its own multiple of the rate; everything else follows the run's warm-up
and cosine."""

import pytest
import torch
from torch import nn

from learned_manifold_training.config import TrainConfig
from learned_manifold_training.schedule import fused_adamw, lr_factor, optimiser, ramp_factor


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


def test_a_scaled_factor_runs_at_its_multiple_of_the_rate_with_its_ramp():
    """``factor_lr_scale`` (a wider factor network at a lower rate): the factor's group runs at ``scale ×`` the
    main rate, ramped from its first step as before; the denoiser's rate is untouched."""
    cfg = TrainConfig(steps=1000, lr=1e-3, warmup=0.02, factor_ramp=0.02, factor_lr_scale=0.5)
    seen, groups = _rates(cfg, factor_from=500)
    assert groups == 2
    for step, (main, factor) in enumerate(seen):
        assert main == pytest.approx(1e-3 * lr_factor(step, 1000, 0.02))
        expected = 0.0 if step < 500 else 0.5 * main * min(1.0, (step - 499) / 20)
        assert factor == pytest.approx(expected), step


def test_a_scale_alone_makes_the_factors_group_and_an_unresolved_auto_is_one():
    """Without a ramp the scale alone splits the groups (from the first step for a factor that starts at once);
    the factor alone (an uncentred run: every weight is the factor's) is one group at the scaled rate; ``"auto"``
    that no trainer resolved leaves one group at ``lr``."""
    cfg = TrainConfig(steps=100, lr=1e-3, factor_ramp=0.0, factor_lr_scale=0.25)
    seen, groups = _rates(cfg, factor_from=0)
    assert groups == 2
    assert [r[1] for r in seen] == pytest.approx([0.25 * r[0] for r in seen])
    factor = nn.Linear(3, 2)
    opt, rates = optimiser(list(factor.parameters()), list(factor.parameters()), cfg, 0, torch.device("cpu"))
    assert len(opt.param_groups) == 1 and len(rates) == 1 and opt.param_groups[0]["lr"] == pytest.approx(2.5e-4)
    seen, groups = _rates(TrainConfig(steps=100, lr=1e-3, factor_ramp=0.0), factor_from=0)
    assert groups == 1 and seen[50][0] == pytest.approx(1e-3 * lr_factor(50, 100, TrainConfig.warmup))
    with pytest.raises(ValueError, match="factor_lr_scale"):
        TrainConfig(factor_lr_scale=0.0)


def test_the_ramp_is_a_fraction():
    with pytest.raises(ValueError, match="factor_ramp"):
        TrainConfig(factor_ramp=1.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_the_cpu_optimiser_is_torchs_fused_adamw_and_steps_as_the_loop_does(dtype):
    """On CPU the run's AdamW is the fused kernel (it had been torch's per-tensor loop: 3.6x slower for the default
    model, with a host sync per tensor), for every floating dtype, and its steps match the loop's."""
    torch.manual_seed(0)
    net = nn.Linear(5, 4).to(dtype)
    cfg = TrainConfig(steps=10)
    opt, _ = optimiser(list(net.parameters()), [], cfg, 0, torch.device("cpu"))
    assert opt.param_groups[0]["fused"] is True
    twin = nn.Linear(5, 4).to(dtype)
    twin.load_state_dict(net.state_dict())
    loop = torch.optim.AdamW(twin.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=False)
    for _ in range(5):
        for m, o in ((net, opt), (twin, loop)):
            o.zero_grad()
            m(torch.ones(2, 5, dtype=dtype)).square().sum().backward()
            o.step()
    tol = 1e-2 if dtype == torch.bfloat16 else 1e-5
    for a, b in zip(net.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    assert fused_adamw(list(net.parameters()), torch.device("meta")) is None  # no fused kernel: torch's default
