"""VAE training (SPEC §11): k-means and the RBF bandwidths in closed form, and the trainer's conventions (a resumed
run equals an uninterrupted one, outputs are never silently replaced)."""

from __future__ import annotations

import pytest
import torch

from learned_manifold import load_vae
from learned_manifold_training.data import Circle
from learned_manifold_training.outputs import OutputError
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
