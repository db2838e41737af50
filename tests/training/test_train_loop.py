"""The training loop (`learned_manifold_training.train_loop`): its loss log is the mean loss of the steps each entry
covers, a partial last chunk included; the EMA it saves is the EMA of the raw weights' trajectory; and a streamed
run opens its data loader once, its precision probe included."""

import pytest
import torch

from learned_manifold_training import train_loop
from learned_manifold_training.batches import TrainingRows
from learned_manifold_training.data import Circle
from learned_manifold_training.data.stream import ArraySource
from learned_manifold_training.objective import TrainingObjective
from learned_manifold_training.schedule import ema_decay
from learned_manifold_training.trainer import TrainConfig, train

TINY = dict(batch_size=32, rank=2, hidden=8, depth=1, emb_dim=8, val_points=20, precision="fp32", factor_refit=0.0)
DATA = Circle(2).sample(200, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def steps(monkeypatch):
    """Each step's mean loss and the raw weights it started from (by name), as the loop's objective saw them."""
    log = []

    class Recording(TrainingObjective):
        def forward(self, *args, **kwargs):
            weights = {name: p.detach().clone() for name, p in self.model.named_parameters()}
            losses = super().forward(*args, **kwargs)
            log.append((losses.detach().mean().item(), weights))
            return losses

    monkeypatch.setattr(train_loop, "TrainingObjective", Recording)
    return log


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def test_each_loss_log_entry_is_the_mean_of_the_steps_it_covers(steps, tmp_path):
    """70 steps log at 50 and 70: the last entry is the mean of steps 50-69 (20 steps, not a 50th of their sum);
    a run stopped at 30 and resumed logs 30 (steps 0-29), then 50 (steps 30-49) and 70 (steps 50-69)."""
    cfg = TrainConfig(steps=70, **TINY)
    history = train(DATA, cfg, progress=False, device="cpu").history
    losses = [loss for loss, _ in steps]
    assert len(losses) == 70
    assert [h["step"] for h in history] == [50, 70]
    assert history[0]["loss"] == pytest.approx(_mean(losses[:50]), rel=1e-5)
    assert history[1]["loss"] == pytest.approx(_mean(losses[50:]), rel=1e-5)

    steps.clear()
    out = tmp_path / "m.lmm"
    train(DATA, cfg, out=out, progress=False, device="cpu", stop_after=30)
    history = train(DATA, cfg, out=out, resume=True, progress=False, device="cpu").history
    resumed = [loss for loss, _ in steps]
    assert len(resumed) == 70  # the batches are keyed by step: the same losses as the whole run's
    assert [h["step"] for h in history] == [30, 50, 70]
    for entry, (lo, hi) in zip(history, [(0, 30), (30, 50), (50, 70)], strict=True):
        assert entry["loss"] == pytest.approx(_mean(resumed[lo:hi]), rel=1e-5)


def test_the_saved_ema_is_the_ema_of_the_raw_weights(steps, tmp_path):
    """``ema ← ema + (1 − d_k)(θ_{k+1} − ema)`` after step ``k`` with ``d_k = ema_decay(k)``, from ``ema = θ_0``:
    recomputed from the weights every step started from (and the last raw weights, from the training state), it
    is the EMA the state and the model file hold. With ``1 − d_k`` and ``d_k`` swapped, the "EMA" is within 1e-5
    of the last raw weights."""
    cfg = TrainConfig(steps=30, **TINY)
    out = tmp_path / "m.lmm"
    train(DATA, cfg, out=out, progress=False, device="cpu")
    state = torch.load(out.with_name(out.name + ".train-state.pt"), weights_only=True)
    trajectory = [weights for _, weights in steps] + [{name: state["model"][name] for name in steps[0][1]}]
    assert len(trajectory) == 31
    ema = {name: w.clone() for name, w in trajectory[0].items()}
    for k in range(30):
        for name in ema:
            ema[name] = torch.lerp(ema[name], trajectory[k + 1][name], 1.0 - ema_decay(k, cfg.ema))
    apart = max((state["ema"][name] - trajectory[-1][name]).abs().max().item() for name in ema)
    assert apart > 5e-4  # the average lags the raw weights: this run can tell the two apart
    for name, value in ema.items():
        torch.testing.assert_close(state["ema"][name], value, rtol=1e-5, atol=1e-6, msg=name)


def test_a_streamed_run_opens_its_loader_once(monkeypatch):
    """``precision="auto"`` reads the probe's batch in this process: the run opens one loader, over its steps (a
    loader opened for the probe's one step started the workers twice, costly under spawn), and the probe's rows
    are the first step's."""
    opened, probed = [], []
    real_open, real_step_rows = TrainingRows._open, TrainingRows.step_rows

    def counted(self, start, end):
        opened.append((start, end))
        return real_open(self, start, end)

    def step_rows(self, step, idx):
        probed.append((step, real_step_rows(self, step, idx)))
        return probed[-1][1]

    monkeypatch.setattr(TrainingRows, "_open", counted)
    monkeypatch.setattr(TrainingRows, "step_rows", step_rows)
    source = ArraySource(DATA)
    monkeypatch.setattr(ArraySource, "in_memory", property(lambda self: False))  # streamed, as a mapped file is
    cfg = TrainConfig(**{**TINY, "steps": 12, "precision": "auto"})
    train(source, cfg, progress=False, device="cpu")
    assert opened == [(0, 12)]
    assert [step for step, _ in probed] == [0]
    rows = TrainingRows(source, val_points=cfg.val_points, seed=cfg.seed, batch_size=cfg.batch_size,
                        device=torch.device("cpu"))
    assert rows.streamed
    assert torch.equal(probed[0][1], rows.rows(0, torch.arange(32), 12))  # what the loader gives at step 0
