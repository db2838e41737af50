"""The guard on the factor's gradient (`learned_manifold_training.clipping`, issue 12): what it cuts, to the bound
its running geometric mean gives, and a run it cut resumes bit for bit."""

import math

import pytest
import torch
from torch import nn

from learned_manifold.model_file import read_metadata
from learned_manifold_training.clipping import CLIP_MEMORY, RelativeClip
from learned_manifold_training.data import Circle
from learned_manifold_training.trainer import TrainConfig, train

WARM_IN = round(1 / (1 - CLIP_MEMORY))


def _step(guard: RelativeClip, p: nn.Parameter, direction: torch.Tensor, norm: float) -> float:
    p.grad = direction * norm
    guard()
    return float(p.grad.norm())


def test_steady_norms_pass_and_a_spike_is_cut_to_ratio_times_the_geometric_mean():
    p = nn.Parameter(torch.zeros(5, dtype=torch.float64))
    direction = torch.tensor([3.0, 0.0, 4.0, 0.0, 0.0], dtype=torch.float64) / 5
    guard = RelativeClip([p], 4.0, torch.device("cpu"))
    norms = torch.exp(0.3 * torch.randn(WARM_IN + 50, generator=torch.Generator().manual_seed(0))).tolist()
    log_mean = math.log(norms[0])
    for i, n in enumerate(norms):
        assert _step(guard, p, direction, n) == pytest.approx(n, rel=1e-6)  # 4x is 4.6 spreads away: never cut
        if i:
            log_mean = CLIP_MEMORY * log_mean + (1 - CLIP_MEMORY) * math.log(n)
    bound = 4.0 * math.exp(log_mean)
    assert _step(guard, p, direction, 1e6) == pytest.approx(bound, rel=1e-5)
    torch.testing.assert_close(p.grad / p.grad.norm(), direction)  # the direction is kept
    report = guard.report()
    assert report["clipped_steps"] == 1 and report["largest_ratio"] == pytest.approx(1e6 / bound, rel=1e-3)


def test_the_first_steps_are_never_cut_and_steps_without_gradients_change_nothing():
    p = nn.Parameter(torch.zeros(2))
    direction = torch.tensor([1.0, 0.0])
    guard = RelativeClip([p], 2.0, torch.device("cpu"))
    p.grad = None  # the factor during the denoiser's warm-up
    guard()
    assert all(torch.equal(v, torch.zeros_like(v)) for v in guard.state_dict().values())
    norms = [1.0] * (WARM_IN - 1) + [1e4]  # a spike inside the warm-in passes
    assert [_step(guard, p, direction, n) for n in norms][-1] == pytest.approx(1e4)
    assert guard.report()["clipped_steps"] == 0
    assert _step(guard, p, direction, 1e4) < 1e4  # after it, cut


def test_off_means_untouched():
    p = nn.Parameter(torch.zeros(2))
    guard = RelativeClip([p], 0.0, torch.device("cpu"))
    norms = [1.0] * (WARM_IN + 10) + [1e6]
    assert [_step(guard, p, torch.tensor([0.0, 1.0]), n) for n in norms] == norms
    with pytest.raises(ValueError, match="factor_clip"):
        TrainConfig(factor_clip=0.5)
    with pytest.raises(ValueError, match="factor_clip"):
        TrainConfig(factor_clip=-1.0)


def test_a_run_the_guard_cut_resumes_bit_for_bit_and_records_what_it_cut(tmp_path):
    """At ``factor_clip=1`` the guard cuts every step above the running mean (about half of them), so a resumed
    run that lost the guard's state would differ."""
    data = Circle(2).sample(500, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(steps=240, batch_size=64, rank=2, hidden=16, depth=1, emb_dim=8, val_points=50,
                      denoiser_warmup=0.1, factor_clip=1.0, checkpoint_every=50)
    full = train(data, cfg, out=tmp_path / "full.lmm", progress=False, device="cpu")
    train(data, cfg, out=tmp_path / "half.lmm", progress=False, device="cpu", stop_after=150)
    resumed = train(data, cfg, out=tmp_path / "half.lmm", resume=True, progress=False, device="cpu")
    a, b = full.model.state_dict(), resumed.model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    report = read_metadata(tmp_path / "full.lmm")["extra"]["validation"]["factor_clip"]
    assert 10 <= report["clipped_steps"] <= 240 - 24 - WARM_IN and report["ratio"] == 1.0
    assert read_metadata(tmp_path / "half.lmm")["extra"]["validation"]["factor_clip"] == report
