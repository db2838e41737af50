"""VAE training (SPEC §11): k-means and the RBF bandwidths in closed form, and the trainer's conventions (a resumed
run equals an uninterrupted one, outputs are never silently replaced)."""

from __future__ import annotations

import contextlib

import pytest
import torch

import learned_manifold_training.vae_trainer as vae_trainer
from learned_manifold import load_vae
from learned_manifold_training.data import Circle
from learned_manifold_training.outputs import OutputError
from learned_manifold_training.trainer import TrainConfig, train
from learned_manifold_training.vae_trainer import VAETrainConfig, kmeans, rbf_bandwidths, train_vae


def test_kmeans_finds_well_separated_clusters():
    g = torch.Generator().manual_seed(0)
    truth = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], dtype=torch.float64)
    x = (truth.repeat_interleave(50, 0) + 0.1 * torch.randn(150, 2, generator=g, dtype=torch.float64))
    centres, labels = kmeans(x, 3, generator=torch.Generator().manual_seed(1))
    order = torch.cdist(truth, centres).argmin(1)
    assert torch.allclose(centres[order], truth, atol=0.05)
    assert torch.equal(labels, order[torch.arange(3).repeat_interleave(50)])  # true cluster i -> centre order[i]


def test_rbf_bandwidths_follow_the_cluster_spread():
    """λ_k = ½ (a · mean distance to the centre)^-2; a single-point cluster takes the median spread."""
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [5.0, 3.0], [5.0, 1.0], [9.0, 9.0]])
    centres = torch.tensor([[0.0, 0.0], [5.0, 2.0], [9.0, 9.0]])
    labels = torch.tensor([0, 0, 1, 1, 2])
    lam = rbf_bandwidths(x, centres, labels, scale=2.0)
    assert torch.allclose(lam, torch.tensor([0.5 / 4.0, 0.5 / 4.0, 0.5 / 4.0]))


TINY = dict(steps=40, std_steps=20, batch_size=32, hidden=16, depth=1, n_centres=8, checkpoint_every=15)


@pytest.fixture(scope="module")
def circle_data():
    return Circle(4).sample(200, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("stop", [25, 50])  # in the ELBO stage, and in the RBF stage
def test_an_interrupted_and_resumed_run_reaches_the_same_vae(stop, circle_data, tmp_path):
    cfg = VAETrainConfig(**TINY)
    whole = train_vae(circle_data, cfg, out=tmp_path / "whole.lvae", device="cpu", progress=False)
    part = train_vae(circle_data, cfg, out=tmp_path / "part.lvae", device="cpu", progress=False, stop_after=stop)
    assert part.stopped_at == stop
    resumed = train_vae(circle_data, cfg, out=tmp_path / "part.lvae", resume=True, device="cpu", progress=False)
    a, b = load_vae(tmp_path / "whole.lvae").state_dict(), load_vae(tmp_path / "part.lvae").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.validation == whole.validation
    assert bool((a["std_weights"] > 0).any()) and bool((a["bandwidths"] > 0).all())


def test_resuming_a_finished_run_leaves_its_file_as_it_was(circle_data, tmp_path):
    """A resume of a finished VAE redid its end phase (the RBF fit, the validation) and rewrote the file: now the
    file is the result, returned with its stored validation and its bytes untouched; a different config is still
    refused by the state's settings check first."""
    cfg = VAETrainConfig(**TINY)
    out = tmp_path / "v.lvae"
    whole = train_vae(circle_data, cfg, out=out, device="cpu", progress=False)
    before, mtime = out.read_bytes(), out.stat().st_mtime_ns
    again = train_vae(circle_data, cfg, out=out, resume=True, device="cpu", progress=False)
    assert out.read_bytes() == before and out.stat().st_mtime_ns == mtime
    assert again.stopped_at == whole.stopped_at and again.validation == whole.validation and again.history == []
    assert again.already_complete and not whole.already_complete
    with pytest.raises(ValueError, match="settings differ"):
        train_vae(circle_data, VAETrainConfig(**{**TINY, "hidden": 8}), out=out, resume=True, device="cpu",
                  progress=False)


def test_outputs_are_checked_before_any_work(circle_data, tmp_path):
    cfg = VAETrainConfig(**TINY)
    out = tmp_path / "v.lvae"
    out.write_bytes(b"precious")
    with pytest.raises(OutputError, match="already exists"):
        train_vae(circle_data, cfg, out=out, device="cpu", progress=False)
    assert out.read_bytes() == b"precious"
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        train_vae(circle_data, cfg, out=out, resume=True, device="cpu", progress=False)
    with pytest.raises(ValueError, match="settings differ"):
        train_vae(circle_data, cfg, out=tmp_path / "a.lvae", device="cpu", progress=False, stop_after=5)
        train_vae(circle_data, VAETrainConfig(**{**TINY, "steps": 41}), out=tmp_path / "a.lvae", resume=True,
                  device="cpu", progress=False)
    for other in (circle_data * 2, circle_data.flip(0)):  # reordered rows kept the sums and resumed before
        with pytest.raises(ValueError, match="data differ"):
            train_vae(other, VAETrainConfig(**TINY), out=tmp_path / "a.lvae", resume=True, device="cpu",
                      progress=False)
    with pytest.raises(ValueError, match="finite"):
        train_vae(torch.full((20, 3), float("nan")), cfg, device="cpu", progress=False)


def test_a_damaged_training_state_is_one_line_naming_it(circle_data, tmp_path):
    """A truncated ``OUT.train-state.pt`` ended a resume in ``torch.load``'s raw ``RuntimeError``
    (PytorchStreamReader)."""
    from learned_manifold_training.outputs import state_path

    out = tmp_path / "v.lvae"
    train_vae(circle_data, VAETrainConfig(**TINY), out=out, device="cpu", progress=False, stop_after=15)
    state = state_path(out)
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"cannot resume .*v\.lvae': its training state .*v\.lvae\.train-state\.pt' "
                                         r"is damaged or not a training state \(.*\); train again with --overwrite"):
        train_vae(circle_data, VAETrainConfig(**TINY), out=out, resume=True, device="cpu", progress=False)


@pytest.mark.parametrize("arch", ["conv", "auto"])  # "auto" picks conv for image-shaped points
@pytest.mark.parametrize("depth", [0, 9])
def test_a_conv_depth_out_of_range_is_refused_not_clamped(arch, depth, tmp_path):
    """The conv backbone has 1 to 8 stride-2 stages: ``depth`` outside that is one ValueError naming ``depth`` and
    the range, before anything is written (it was clamped to 1 or 8 and trained a VAE the user did not ask for)."""
    images = torch.rand(20, 8, 8, generator=torch.Generator().manual_seed(0))
    out = tmp_path / "v.lvae"
    with pytest.raises(ValueError, match=rf"depth must be in \[1, 8\] for the conv architecture.*got {depth}"):
        cfg = VAETrainConfig(**{**TINY, "arch": arch, "depth": depth})
        train_vae(images, cfg, out=out, device="cpu", progress=False)
    assert list(tmp_path.iterdir()) == []
    flat = VAETrainConfig(**{**TINY, "arch": "auto", "depth": 0}).vae_config((4,), 100)  # an MLP may have depth 0
    assert flat.arch == "mlp" and flat.depth == 0


@contextlib.contextmanager
def _default_float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode, _default_float64,
                                     lambda: torch.autocast("cpu", dtype=torch.bfloat16)],
                         ids=["no_grad", "inference_mode", "default_float64", "caller_autocast"])
def test_the_callers_torch_settings_do_not_change_the_vae(context, circle_data):
    """Under no_grad/inference_mode the first step failed with autograd's "does not require grad", under a float64
    default dtype with "mat1 and mat2 must have the same dtype", and a caller's autocast trained in bf16 (tester C
    #5, #6, #3): now each trains the float32 VAE of a plain run, bit for bit, and leaves the setting as it was."""
    cfg = VAETrainConfig(**{**TINY, "steps": 20, "std_steps": 5})
    plain = train_vae(circle_data, cfg, device="cpu", progress=False)
    with context():
        dtype, grad = torch.get_default_dtype(), torch.is_grad_enabled()
        got = train_vae(circle_data, cfg, device="cpu", progress=False)
        assert torch.get_default_dtype() == dtype and torch.is_grad_enabled() == grad
    a, b = plain.vae.state_dict(), got.vae.state_dict()
    assert all(b[k].dtype == torch.float32 and torch.equal(a[k], b[k]) for k in a if k != "_extra_state")
    assert torch.equal(a["_extra_state"], b["_extra_state"])  # the recorded input_spread_max, float64 (vae_spread)
    assert got.validation == plain.validation


def test_only_one_copy_of_the_data_lives_through_the_vae_loop(monkeypatch):
    """The loop kept the data's float64 fingerprint copy and ``train_x`` beside the standardised rows (tester N #3):
    now the standardised float32 rows are the one new tensor of the data's size while the steps run."""
    import gc

    from learned_manifold_training import vae_trainer

    data = torch.randn(2000, 8, generator=torch.Generator().manual_seed(0))
    alive = [t for t in gc.get_objects() if issubclass(type(t), torch.Tensor)]  # held: their ids stay theirs
    old = {id(t) for t in alive}
    big = 1600 * 8 * 4  # bytes of the 1600 training rows in float32
    seen: list[list[tuple[torch.dtype, int]]] = []
    loss = vae_trainer._Run.loss

    def looking(self, x, eps, stage2):
        if not seen:
            storages = {}
            for t in gc.get_objects():
                if issubclass(type(t), torch.Tensor) and id(t) not in old and t.untyped_storage().nbytes() >= big:
                    storages[t.untyped_storage().data_ptr()] = (t.dtype, t.untyped_storage().nbytes())
            storages.pop(data.untyped_storage().data_ptr(), None)
            seen.append(sorted(storages.values(), key=str))
        return loss(self, x, eps, stage2)

    monkeypatch.setattr(vae_trainer._Run, "loss", looking)
    train_vae(data, VAETrainConfig(**{**TINY, "steps": 5, "std_steps": 0, "val_points": 400}), device="cpu",
              progress=False)
    assert seen == [[(torch.float32, big)]]  # x_std


def test_a_state_whose_sums_differ_in_the_last_digits_resumes(tmp_path):
    """Earlier versions summed the fingerprint over all rows at once, this one chunk by chunk: for data with sums
    of ~1e12 the two differ in digits that the check's rounding to 6 decimals saw, and the run did not resume.
    A relative 1e-9 tolerance; the digest still tells different data apart."""
    from learned_manifold_training.outputs import state_path

    data = Circle(4).sample(200, generator=torch.Generator().manual_seed(0)) * 1e5
    cfg = VAETrainConfig(**TINY)
    out = tmp_path / "v.lvae"
    train_vae(data, cfg, out=out, device="cpu", progress=False, stop_after=15)
    state = torch.load(state_path(out), weights_only=False)
    assert state["fingerprint"][3] > 1e12
    state["fingerprint"][3] *= 1 + 1e-13
    torch.save(state, state_path(out))
    assert train_vae(data, cfg, out=out, resume=True, device="cpu", progress=False).stopped_at == 60
    state["fingerprint"][3] *= 1 + 1e-6
    state["step"] = 15
    torch.save(state, state_path(out))
    with pytest.raises(ValueError, match="data differ"):
        train_vae(data, cfg, out=out, resume=True, device="cpu", progress=False)


def test_std_growth_reads_the_codes_in_chunks_with_the_same_result(monkeypatch):
    """`std_growth` ran the decoder on every training code at once (8× the data's memory at a million points):
    chunks of `STD_CHUNK` codes give the same medians."""
    from learned_manifold.vae import VAE, VAEConfig
    from learned_manifold_training import vae_std

    vae = VAE(VAEConfig(data_shape=(10,), latent_dim=2, hidden=16)).double()
    codes = torch.randn(101, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    whole = vae_std.std_growth(vae, codes)
    calls = []
    decoder_std = vae.decoder_std
    monkeypatch.setattr(vae, "decoder_std", lambda z: calls.append(len(z)) or decoder_std(z))
    monkeypatch.setattr(vae_std, "STD_CHUNK", 16)
    chunked = vae_std.std_growth(vae, codes)
    assert max(calls) == 16 and sum(calls) == 101 + 64
    assert chunked == pytest.approx(whole, rel=1e-12)


def test_training_on_the_cpu_reseeds_no_accelerator_generator_and_leaves_the_cpu_one(monkeypatch):
    """`torch.manual_seed` inside ``fork_rng(devices=[])`` reset the caller's CUDA generators to the run's seed:
    only the CPU generator is seeded now, and put back."""
    calls: list[str] = []
    for module, name in [(torch.cuda, "manual_seed_all"), (torch.cuda, "manual_seed"), (torch.mps, "manual_seed"),
                         (torch.xpu, "manual_seed_all")]:
        monkeypatch.setattr(module, name, lambda seed, label=f"{module.__name__}.{name}": calls.append(label))
    data = Circle(2).sample(100, generator=torch.Generator().manual_seed(0))
    before = torch.get_rng_state()
    train_vae(data, VAETrainConfig(steps=3, std_steps=2, batch_size=16, n_centres=4), device="cpu", progress=False)
    assert calls == []
    assert torch.equal(torch.get_rng_state(), before)


def test_a_metric_matching_state_is_refused_before_the_data_are_read(tmp_path, monkeypatch):
    """``train-vae --resume`` on a metric-matching run's output standardised the data and built the VAE before
    refusing it; now the state's kind is read first and the refusal comes before any work."""
    data = Circle(2).sample(100, generator=torch.Generator().manual_seed(0))
    out = tmp_path / "m.lmm"
    train(data, TrainConfig(steps=4, batch_size=16, rank=2, hidden=8, depth=1, emb_dim=8, val_points=20),
          out=out, device="cpu", progress=False, stop_after=2)

    def no_work(*args, **kwargs):
        raise AssertionError("training work started")

    monkeypatch.setattr(vae_trainer, "split_rows", no_work)
    with pytest.raises(ValueError, match=r"its training state is a metric-matching run's \(learned-manifold train\)"):
        train_vae(data, VAETrainConfig(steps=4, std_steps=0), out=out, resume=True, device="cpu", progress=False)


def test_the_seed_and_batch_limits_are_trains():
    """``train --seed 2000000000000`` ran and ``train-vae`` refused it (its limit was 2**40), though DATA is read
    with the same seeds; batch sizes stopped at 2**24 against train's 2**31 (tester F, s32)."""
    from learned_manifold_training.config import MAX_BATCH, MAX_SEED

    assert VAETrainConfig(latent_dim=2, seed=2_000_000_000_000).seed == 2_000_000_000_000
    assert VAETrainConfig(latent_dim=2, seed=MAX_SEED, batch_size=MAX_BATCH).batch_size == MAX_BATCH
    TrainConfig(seed=MAX_SEED, batch_size=MAX_BATCH)
    with pytest.raises(ValueError, match=rf"seed must be in \[0, {MAX_SEED}\], got {MAX_SEED + 1}"):
        VAETrainConfig(latent_dim=2, seed=MAX_SEED + 1)
    with pytest.raises(ValueError, match=rf"seed must be in \[0, {MAX_SEED}\], got {MAX_SEED + 1}"):
        TrainConfig(seed=MAX_SEED + 1)


def test_the_relative_reconstruction_error_does_not_depend_on_the_datas_units(circle_data):
    """``relative_reconstruction_error`` is relative to the data's RMS radius: the same run on the same data in
    units 1000 times smaller gives the same number (its RMSE 1000 times larger), so the collapse check that reads
    it (`validation.distrust`) judges a VAE alike in any units (tester A s35 5: every test had data of scale ≈ 1,
    so the RMSE taken for the relative error passed)."""
    cfg = VAETrainConfig(**{**TINY, "steps": 20, "std_steps": 10, "checkpoint_every": 0})
    small = train_vae(circle_data, cfg, device="cpu", progress=False).validation
    large = train_vae(1000 * circle_data, cfg, device="cpu", progress=False).validation
    assert large["relative_reconstruction_error"] == pytest.approx(small["relative_reconstruction_error"], rel=1e-3)
    assert large["reconstruction_rmse"] == pytest.approx(1000 * small["reconstruction_rmse"], rel=1e-3)
    assert 0 < small["relative_reconstruction_error"] < 10 and small["reconstruction_rmse"] > 0


def test_one_outlier_training_row_does_not_switch_the_far_input_check_off():
    """`train_vae` records the largest training spread after dropping the top `SPREAD_DROP` (tester s36/N,
    problem 4): one row at 200 among 2,000 had raised the recorded largest 28-fold, and the same kind of data in
    other units (x 100) then encoded silently."""
    from learned_manifold.vae import training_spread_limit
    from learned_manifold_training.vae_std import encode_data

    g = torch.Generator().manual_seed(0)
    t = 3 * torch.rand(2000, 1, generator=g)
    x = torch.cat([t.cos(), t.sin(), 0.1 * torch.randn(2000, 3, generator=g)], 1)
    x[7] = 200.0  # a unit slip or a doublet
    vae = train_vae(x, VAETrainConfig(**{**TINY, "steps": 2, "std_steps": 1, "val_points": 100}), device="cpu",
                    progress=False).vae
    spread = vae.input_spread(x)
    assert vae.input_spread_max < 0.01 * float(spread.max())  # the outlier (and a validation row or two) dropped
    assert vae.input_spread_max >= training_spread_limit(spread[torch.arange(2000) != 7])  # the rest all kept
    with pytest.warns(UserWarning, match="far from the data the VAE was trained on"):
        encode_data(vae, 100 * x[1000:1500])
