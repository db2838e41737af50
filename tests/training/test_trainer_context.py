"""`train` is independent of the caller's torch state: autocast, grad mode, inference mode, default dtype, the
accelerators' random generators; it refuses, before any work, a manifold of the wrong dimension, an output that
names no file, streamed data that float32 cannot resolve and a VAE's state to resume; and a data loader that fails
mid-run leaves a checkpoint of the last step done."""

import numpy as np
import pytest
import torch

import learned_manifold_training.trainer as trainer
from learned_manifold.model_file import read_metadata
from learned_manifold_training.cli import main
from learned_manifold_training.data import Circle, Sphere
from learned_manifold_training.data.stream import BatchStream, open_npy
from learned_manifold_training.outputs import OutputError
from learned_manifold_training.trainer import TrainConfig, train
from learned_manifold_training.vae_trainer import VAETrainConfig, train_vae

TINY = dict(steps=12, batch_size=32, rank=2, hidden=8, depth=1, emb_dim=8, val_points=20, factor_refit=0.0, seed=3)


@pytest.fixture(scope="module")
def data() -> torch.Tensor:
    return Circle(2).sample(200, generator=torch.Generator().manual_seed(0))


def weights(result) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in result.model.state_dict().items()}


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype == torch.float32 or not a[key].is_floating_point(), key
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_callers_autocast_changes_no_weight_and_stays_on(data, precision):
    """Inside a caller's bf16 autocast a run trains bit for bit as outside it (fp32 stays fp32; bf16 is the
    trainer's own autocast); the caller's autocast is on again afterwards."""
    cfg = TrainConfig(**TINY, precision=precision)
    reference = weights(train(data, cfg, progress=False, device="cpu"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = train(data, cfg, progress=False, device="cpu")
        assert torch.is_autocast_enabled("cpu")
    assert got.precision == precision
    assert_same_weights(weights(got), reference)


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
def test_training_under_no_grad_or_inference_mode_trains_as_outside(data, mode):
    """Under ``no_grad`` or ``inference_mode`` (a notebook cell that evaluated first) the run trains, to the same
    weights; the caller's mode is restored; data made inside ``inference_mode`` train too."""
    cfg = TrainConfig(**TINY, precision="fp32")
    reference = weights(train(data, cfg, progress=False, device="cpu"))
    with mode():
        got = train(data, cfg, progress=False, device="cpu")
        assert not torch.is_grad_enabled()
        assert torch.is_inference_mode_enabled() == (mode is torch.inference_mode)
        inside = train(data.clone(), cfg, progress=False, device="cpu")
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    assert_same_weights(weights(got), reference)
    assert_same_weights(weights(inside), reference)
    assert got.model.factor(data[:4], 0.1).shape == (4, 2, 2)  # usable outside the caller's mode


def test_a_float64_default_dtype_trains_in_float32_and_is_restored(data):
    """``torch.set_default_dtype(torch.float64)`` made the first step fail (float64 networks, float32 batches):
    the run builds everything in float32, reaches the weights of a run under the float32 default, and leaves
    the caller's default as it was."""
    cfg = TrainConfig(**TINY, precision="fp32")
    reference = weights(train(data, cfg, progress=False, device="cpu"))
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        got = train(data, cfg, progress=False, device="cpu")
        from_double = train(data.double(), cfg, progress=False, device="cpu")
        assert torch.get_default_dtype() == torch.float64
    finally:
        torch.set_default_dtype(previous)
    assert_same_weights(weights(got), reference)
    assert_same_weights(weights(from_double), reference)


def test_a_manifold_of_another_dimension_is_refused_before_any_work(data, monkeypatch):
    """``manifold`` in R³ for data in R² raised after every step, naming ``x``; now one error naming ``manifold``
    and both dimensions before the data are even split (a duck-typed manifold without ``ambient_dim`` too)."""

    def no_work(*args, **kwargs):
        raise AssertionError("training work started")

    monkeypatch.setattr(trainer, "TrainingRows", no_work)
    with pytest.raises(ValueError, match=r"manifold lies in R\^3 .* the data have D = 2 "):
        train(data, TrainConfig(**TINY), manifold=Sphere(2, 3), progress=False, device="cpu")

    class Custom:
        def tangent_basis(self, x):
            return Sphere(2, 3).tangent_basis(x)

        def point_dimension(self, x):
            return Sphere(2, 3).point_dimension(x)

    with pytest.raises(ValueError, match=r"manifold: its point_dimension fails on the data's points \(D = 2\)"):
        train(data, TrainConfig(**TINY), manifold=Custom(), progress=False, device="cpu")
    with pytest.raises(TypeError, match="manifold must have the methods tangent_basis and point_dimension"):
        train(data, TrainConfig(**TINY), manifold="circle", progress=False, device="cpu")


@pytest.mark.parametrize("out", [".", ""])
def test_an_output_that_names_no_file_gets_the_output_check_message(data, out, tmp_path, monkeypatch, capsys):
    """``out='.'`` got pathlib's "PosixPath('.') has an empty name"; now the output check's own words, from the
    API and the CLI."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputError, match="the output must name a file"):
        train(data, TrainConfig(**TINY), out=out, progress=False, device="cpu")
    assert main(["train", "circle", "--out", out, "--steps", "5", "--no-progress", "--device", "cpu"]) == 2
    assert "the output must name a file" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_streamed_data_float32_cannot_resolve_are_refused_as_in_memory(tmp_path):
    """A float64 unit circle at 1e6 streamed from a ``.npy`` was cast to float32 (2000 points became 128) and
    trained without a word, while the same array in memory is refused: both are refused now, before the first
    step; a large constant coordinate still trains streamed, as in memory."""
    circle = Circle(2).sample(300, generator=torch.Generator().manual_seed(0)).double()
    far = tmp_path / "far.npy"
    np.save(far, (circle + 1e6).numpy())
    with pytest.raises(ValueError, match="far from the origin .* subtract an offset"):
        train(circle + 1e6, TrainConfig(**TINY), progress=False, device="cpu")
    with pytest.raises(ValueError, match=r"data file '.*far\.npy': .*far from the origin .* subtract an offset"):
        train(open_npy(far), TrainConfig(**TINY), progress=False, device="cpu")
    padded = tmp_path / "padded.npy"
    np.save(padded, torch.cat([circle, torch.full((300, 1), 1e4, dtype=torch.float64)], 1).numpy())
    result = train(open_npy(padded), TrainConfig(**{**TINY, "steps": 3}), progress=False, device="cpu")
    assert torch.equal(result.model.mean.reshape(-1)[2], torch.tensor(1e4))


def accelerator_seeding(monkeypatch) -> list[str]:
    """Record every call that reseeds an accelerator's global generators (what `torch.manual_seed` does first)."""
    calls: list[str] = []
    for module, name in [(torch.cuda, "manual_seed_all"), (torch.cuda, "manual_seed"), (torch.mps, "manual_seed"),
                         (torch.xpu, "manual_seed_all"), (torch.xpu, "manual_seed")]:
        label = f"{module.__name__}.{name}"
        monkeypatch.setattr(module, name, lambda seed, label=label: calls.append(label))
    return calls


def test_training_on_the_cpu_reseeds_no_accelerator_generator_and_leaves_the_cpu_one(data, monkeypatch):
    """The initialisation was seeded with `torch.manual_seed` inside ``fork_rng(devices=[])``: that reseeds every
    CUDA generator and puts back the CPU's alone, so the caller's CUDA RNG was reset to the training seed. Now only
    the CPU generator is seeded, and the caller's CPU state is back afterwards."""
    calls = accelerator_seeding(monkeypatch)
    before = torch.get_rng_state()
    train(data, TrainConfig(**TINY, precision="fp32"), progress=False, device="cpu")
    assert calls == []
    assert torch.equal(torch.get_rng_state(), before)


def test_a_data_loader_that_fails_mid_run_leaves_the_last_step_done_and_resume_finishes_it(data, tmp_path,
                                                                                           monkeypatch):
    """A streamed run whose `DataLoader` worker died (kill -9, the OOM killer) ended with torch's error and no file:
    every step was lost. Now the steps done are saved first (as on SIGINT/SIGTERM), the error says where and how
    to continue, and the resumed run reaches the weights of an uninterrupted one."""
    path = tmp_path / "circle.npy"
    np.save(path, data.numpy())
    cfg = TrainConfig(**TINY, precision="fp32")
    reference = weights(train(open_npy(path), cfg, progress=False, device="cpu"))
    real = BatchStream.__getitem__

    def dies_at_step_7(self, step):
        if step == 7:
            raise RuntimeError("DataLoader worker (pid(s) 4242) exited unexpectedly")
        return real(self, step)

    monkeypatch.setattr(BatchStream, "__getitem__", dies_at_step_7)
    out = tmp_path / "m.lmm"
    with pytest.raises(RuntimeError, match=r"^reading the training data of step 8 of 12 failed \(RuntimeError: "
                                           r"DataLoader worker \(pid\(s\) 4242\) exited unexpectedly\); a checkpoint "
                                           r"of step 7 was saved to '.*m\.lmm' \(incomplete\): continue with "
                                           r"--resume \(resume=True\)$"):
        train(open_npy(path), cfg, out=out, progress=False, device="cpu")
    extra = read_metadata(out)["extra"]
    assert (extra["step"], extra["complete"]) == (7, False)
    monkeypatch.undo()
    resumed = train(open_npy(path), cfg, out=out, resume=True, progress=False, device="cpu")
    assert_same_weights(weights(resumed), reference)


def test_a_vae_state_is_refused_before_the_data_are_read(data, tmp_path, monkeypatch):
    """``train --resume`` on a VAE's output read, standardised and sized the data before refusing it; now the
    state's kind is read first (its tensors left on disk) and the refusal comes before any work."""
    out = tmp_path / "v.lvae"
    train_vae(data, VAETrainConfig(steps=4, std_steps=0, batch_size=16, hidden=8, depth=1, n_centres=4), out=out,
              device="cpu", progress=False, stop_after=2)

    def no_work(*args, **kwargs):
        raise AssertionError("training work started")

    monkeypatch.setattr(trainer, "TrainingRows", no_work)
    with pytest.raises(ValueError, match=r"its training state is a VAE's \(learned-manifold train-vae\)"):
        train(data, TrainConfig(**TINY), out=out, resume=True, progress=False, device="cpu")
