"""Resuming a run of `train`: the same weights as an uninterrupted run, damaged states and model files, a finished
run left as it is, other settings or data refused, and what a resume may change."""

import json

import numpy as np
import pytest
import torch

from learned_manifold import load_model
from learned_manifold.model_file import read_metadata
from learned_manifold_training.data import Circle
from learned_manifold_training.trainer import TrainConfig, train
from tests.training.test_trainer import TINY


@pytest.mark.filterwarnings("ignore:.* by the checks at the end:learned_manifold.ModelFileWarning")  # a tiny run
def test_resumed_run_reaches_the_same_weights(tmp_path):
    data = Circle(2).sample(500, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(steps=40, batch_size=64, rank=2, hidden=16, depth=1, emb_dim=8, val_points=50,
                      checkpoint_every=15)
    full = train(data, cfg, out=tmp_path / "full.lmm", progress=False, device="cpu")
    half = train(data, cfg, out=tmp_path / "half.lmm", progress=False, device="cpu", stop_after=20)
    assert half.stopped_at == 20
    resumed = train(data, cfg, out=tmp_path / "half.lmm", resume=True, progress=False, device="cpu")
    a, b = full.model.state_dict(), resumed.model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    # the files agree too
    y = data[:5]
    torch.testing.assert_close(load_model(tmp_path / "full.lmm").factor(y), load_model(tmp_path / "half.lmm").factor(y))


def test_a_state_without_its_model_file_resumes_and_a_fresh_run_names_it(tmp_path):
    """The state is written before the model file, "so a run killed between the two writes still resumes": at the
    first checkpoint that leaves the state alone, which resume refused ("model file does not exist")."""
    from learned_manifold_training.outputs import OutputError, state_path

    data = Circle(2).sample(500, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(steps=40, batch_size=64, rank=2, hidden=16, depth=1, emb_dim=8, val_points=50,
                      checkpoint_every=15, precision="auto")
    full = train(data, cfg, out=tmp_path / "full.lmm", progress=False, device="cpu")
    train(data, cfg, out=tmp_path / "half.lmm", progress=False, device="cpu", stop_after=15)
    (tmp_path / "half.lmm").unlink()  # killed between the state's write and the model file's
    with pytest.raises(OutputError, match="the training state .* already exists"):
        train(data, cfg, out=tmp_path / "half.lmm", progress=False, device="cpu")
    assert state_path(tmp_path / "half.lmm").exists()
    resumed = train(data, cfg, out=tmp_path / "half.lmm", resume=True, progress=False, device="cpu")
    if resumed.precision == full.precision:  # "auto" measures again without the lost file's probe
        for k, v in full.model.state_dict().items():
            torch.testing.assert_close(v, resumed.model.state_dict()[k], rtol=0, atol=0, msg=k)
    assert (tmp_path / "half.lmm").exists()


@pytest.mark.filterwarnings("ignore:.* by the checks at the end:learned_manifold.ModelFileWarning")  # a tiny run
def test_resume_neither_goes_back_nor_redoes_a_finished_run(tmp_path):
    """Resuming a run saved at step 30 with stop_after=10 rewrote its state as step 10 with step-30 weights (the
    next resume replayed steps 10-30 on top); resuming a finished run redid its bandwidth choice and factor repair
    and rewrote a changed model."""
    data = Circle(2).sample(500, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(steps=40, batch_size=64, rank=2, hidden=16, depth=1, emb_dim=8, val_points=50)
    out = tmp_path / "m.lmm"
    train(data, cfg, out=out, progress=False, device="cpu", stop_after=30)
    state = (tmp_path / "m.lmm.train-state.pt").read_bytes()
    with pytest.raises(ValueError, match="stop_after=10: its run is already at step 30"):
        train(data, cfg, out=out, resume=True, progress=False, device="cpu", stop_after=10)
    assert (tmp_path / "m.lmm.train-state.pt").read_bytes() == state
    done = train(data, cfg, out=out, resume=True, progress=False, device="cpu")
    finished = out.read_bytes()
    again = train(data, cfg, out=out, resume=True, progress=False, device="cpu")
    assert again.already_complete and not done.already_complete and out.read_bytes() == finished
    assert again.validation == json.loads(json.dumps(done.validation))  # read back from the file
    y = data[:5]
    torch.testing.assert_close(again.model.factor(y), done.model.factor(y))


@pytest.mark.filterwarnings("ignore:.* by the checks at the end:learned_manifold.ModelFileWarning")  # a tiny run
def test_a_damaged_model_file_beside_an_intact_state_resumes_to_the_same_weights(tmp_path):
    """The resume read the model file's recorded precision probe and stopped at its `ModelFileError`, though the
    state alone resumes the run: the damaged checkpoint is rewritten, the same as an uninterrupted run's."""
    data = Circle(2).sample(300, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(steps=20, batch_size=32, rank=2, hidden=8, depth=1, emb_dim=8, val_points=30,
                      precision="fp32", checkpoint_every=10)
    train(data, cfg, out=tmp_path / "ref.lmm", progress=False, device="cpu")
    out = tmp_path / "m.lmm"
    train(data, cfg, out=out, progress=False, device="cpu", stop_after=10)
    out.write_bytes(out.read_bytes()[: out.stat().st_size // 2])
    result = train(data, cfg, out=out, resume=True, progress=False, device="cpu")
    assert result.stopped_at == 20 and not result.already_complete
    ref, got = load_model(tmp_path / "ref.lmm").state_dict(), load_model(out).state_dict()
    assert all(torch.equal(ref[k], got[k]) for k in ref)


@pytest.mark.filterwarnings("ignore:.* by the checks at the end:learned_manifold.ModelFileWarning")  # a tiny run
def test_a_damaged_training_state_is_one_line_unless_the_run_is_already_complete(tmp_path, capsys):
    """A truncated ``OUT.train-state.pt`` ended ``--resume`` in ``torch.load``'s raw traceback (exit 1), even
    when the model file already held the finished run, which needs no state: now one line naming the state file
    (exit 2), and a finished run is "already complete" before the state is read."""
    from learned_manifold_training.cli import main
    from learned_manifold_training.outputs import state_path

    data = Circle(2).sample(300, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(steps=20, batch_size=32, rank=2, hidden=8, depth=1, emb_dim=8, val_points=30,
                      precision="fp32")
    out = tmp_path / "m.lmm"
    train(data, cfg, out=out, progress=False, device="cpu", stop_after=10)
    state = state_path(out)
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    said = (r"cannot resume .*m\.lmm': its training state .*m\.lmm\.train-state\.pt' is damaged or not a training "
            r"state \(.*\); train again with --overwrite \(overwrite=True\), or restore the file")
    with pytest.raises(ValueError, match=said):
        train(data, cfg, out=out, resume=True, progress=False, device="cpu")
    torch.save({"not": "a state"}, state)
    with pytest.raises(ValueError, match=r"is damaged or not a training state \(it holds no training state\)"):
        train(data, cfg, out=out, resume=True, progress=False, device="cpu")
    torch.save(data.numpy(), state)  # a pickle weights_only refuses
    with pytest.raises(ValueError, match=r"is damaged or not a training state \(UnpicklingError: "):
        train(data, cfg, out=out, resume=True, progress=False, device="cpu")
    numbers = tmp_path / "data.npy"
    np.save(numbers, data.numpy())
    state.write_bytes(b"\x00" * 100)
    flags = ["--steps", "20", "--batch-size", "32", "--rank", "2", "--hidden", "8", "--depth", "1", "--precision",
             "fp32", "--no-progress", "--device", "cpu"]  # the state is read (or found unneeded) before its settings
    capsys.readouterr()
    assert main(["train", str(numbers), "--out", str(out), "--resume", *flags]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "m.lmm.train-state.pt' is damaged" in err
    finished = tmp_path / "done.lmm"
    train(data, cfg, out=finished, progress=False, device="cpu")
    before = finished.read_bytes()
    state_path(finished).write_bytes(b"")
    again = train(data, cfg, out=finished, resume=True, progress=False, device="cpu")
    assert again.already_complete and again.stopped_at == 20 and finished.read_bytes() == before
    finished = tmp_path / "cli.lmm"  # the file is compared with the run's settings: the CLI's own run
    assert main(["train", str(numbers), "--out", str(finished), *flags]) == 0
    state_path(finished).write_bytes(b"")
    capsys.readouterr()
    assert main(["train", str(numbers), "--out", str(finished), "--resume", *flags]) == 0
    assert "is already complete (step 20 of 20): nothing to resume" in capsys.readouterr().out


def test_resume_refuses_other_settings_or_data(tmp_path):
    data = Circle(2).sample(200, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(steps=10, batch_size=32, rank=2, hidden=8, depth=1, emb_dim=8, val_points=20)
    train(data, cfg, out=tmp_path / "m.lmm", progress=False, device="cpu", stop_after=5)
    with pytest.raises(ValueError, match=r"settings differ from the saved run: lr \(--lr\): saved 0.002, now 0.5"):
        train(data, TrainConfig(**{**cfg.__dict__, "lr": 0.5}), out=tmp_path / "m.lmm", resume=True,
              progress=False, device="cpu")
    # any change of the data, including those that keep N, D, Σx and Σx² (the rows reversed, two columns
    # swapped: both resumed before, half-training the model on other data with the first data's mean)
    for other in (data * 2, data.flip(0), data[:, [1, 0]]):
        with pytest.raises(ValueError, match="data differ"):
            train(other, cfg, out=tmp_path / "m.lmm", resume=True, progress=False, device="cpu")
    with pytest.raises(FileNotFoundError, match="training state"):
        train(data, cfg, out=tmp_path / "other.lmm", resume=True, progress=False, device="cpu")


def test_a_state_whose_sums_differ_in_the_last_digits_resumes(tmp_path):
    """The fingerprint's sums (~1e12 here) were compared rounded to 6 decimals: a state whose Σx² was summed in
    another order (earlier versions, or the streamed formula) was refused as other data. Now 1e-9 relative."""
    from learned_manifold_training.outputs import state_path

    data = Circle(2).sample(200, generator=torch.Generator().manual_seed(0)) * 1e5
    cfg = TrainConfig(steps=10, batch_size=32, rank=2, hidden=8, depth=1, emb_dim=8, val_points=20)
    out = tmp_path / "m.lmm"
    train(data, cfg, out=out, progress=False, device="cpu", stop_after=5)
    state = torch.load(state_path(out), weights_only=False)
    assert state["fingerprint"][3] > 1e12
    state["fingerprint"][3] *= 1 + 1e-13
    torch.save(state, state_path(out))
    assert train(data, cfg, out=out, resume=True, progress=False, device="cpu").stopped_at == 10
    state["fingerprint"][3] *= 1 + 1e-6
    torch.save(state, state_path(out))
    with pytest.raises(ValueError, match="data differ"):
        train(data, cfg, out=out, resume=True, progress=False, device="cpu")


def test_resume_may_change_when_it_saves_and_validates(tmp_path):
    """``checkpoint_every`` and ``val_every`` decide when a run saves and validates, not what it computes."""
    data = Circle(2).sample(200, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(steps=10, batch_size=32, rank=2, hidden=8, depth=1, emb_dim=8, val_points=20)
    full = train(data, cfg, progress=False, device="cpu")
    train(data, cfg, out=tmp_path / "m.lmm", progress=False, device="cpu", stop_after=5)
    resumed = train(data, TrainConfig(**{**cfg.__dict__, "checkpoint_every": 2, "val_every": 4}),
                    out=tmp_path / "m.lmm", resume=True, progress=False, device="cpu")
    for k, v in full.model.state_dict().items():
        torch.testing.assert_close(v, resumed.model.state_dict()[k], rtol=0, atol=0, msg=k)


def test_val_every_records_before_an_interruption_reach_the_resumed_file(tmp_path):
    """The ``val_every`` validations of an interrupted run are kept in its training state: the resumed run's file
    lists those of steps 20 and 40 too (it listed only 60), as an uninterrupted run's does."""
    data = Circle(2).sample(300, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(**{**TINY, "steps": 60, "val_every": 20, "denoiser_warmup": 0.0, "precision": "fp32"})
    full = train(data, cfg, out=tmp_path / "full.lmm", progress=False, device="cpu")
    train(data, cfg, out=tmp_path / "half.lmm", progress=False, device="cpu", stop_after=45)
    resumed = train(data, cfg, out=tmp_path / "half.lmm", resume=True, progress=False, device="cpu")
    steps = [[h["step"] for h in read_metadata(tmp_path / f"{name}.lmm")["extra"]["validation"]["periodic"]]
             for name in ("full", "half")]
    assert steps == [[20, 40, 60], [20, 40, 60]]
    assert resumed.validation["periodic"] == full.validation["periodic"]  # the same model at the same steps
    assert [h["step"] for h in resumed.history if "loss" in h] == [45, 50, 60]
