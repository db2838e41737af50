"""What `train` refuses before any work, and how it stops: bad data and settings, ranks, devices, data float32
cannot hold, broken tangent bases, and diverging runs."""

import warnings

import pytest
import torch

from learned_manifold import load_model
from learned_manifold.model_file import read_metadata
from learned_manifold_training.data import Circle
from learned_manifold_training.runtime import resolve_device
from learned_manifold_training.trainer import TrainConfig, TrainingDiverged, train
from tests.training.test_trainer import TINY


def test_bad_data_is_refused_before_training():
    good = torch.randn(50, 3)
    bad = good.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match=r"data holds NaN or inf at 1 point\(s\) \(the first: 3\)"):
        train(bad, TrainConfig(steps=1), progress=False, device="cpu")
    with pytest.raises(ValueError, match="shape"):
        train(torch.randn(50), TrainConfig(steps=1), progress=False, device="cpu")
    with pytest.raises(ValueError, match=r"at least 10 points, got shape \(5, 3\)"):
        train(good[:5], TrainConfig(steps=1), progress=False, device="cpu")
    with pytest.raises(ValueError, match=r"floating point, got torch.uint8: convert it with data.float\(\)"):
        train((good.abs() * 50).to(torch.uint8), TrainConfig(steps=1), progress=False, device="cpu")
    with pytest.raises(ValueError, match="identical"):
        train(torch.ones(50, 3), TrainConfig(steps=1), progress=False, device="cpu")
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp8")


@pytest.mark.parametrize("field, value, error", [
    ("steps", 0, ValueError), ("steps", 2.5, TypeError), ("batch_size", -1, ValueError),
    ("rank", 0, ValueError), ("rank", -1, ValueError), ("hidden", 0, ValueError), ("depth", 0, ValueError),
    ("emb_dim", 0, ValueError), ("val_every", -1, ValueError), ("checkpoint_every", -1, ValueError),
    ("val_points", 0, ValueError), ("seed", -1, ValueError), ("seed", True, TypeError),
    ("lr", 0.0, ValueError), ("lr", float("nan"), ValueError), ("lr", float("inf"), ValueError),
    ("tikhonov", float("nan"), ValueError), ("tikhonov", -1.0, ValueError), ("weight_decay", -0.1, ValueError),
    ("grad_clip", float("inf"), ValueError), ("ema", 1.0, ValueError), ("warmup", 1.5, ValueError),
    ("denoiser_warmup", 1.0, ValueError), ("sigma_min", 0.0, ValueError), ("sigma_max", 1e-4, ValueError),
    ("sampler", "gamma", ValueError), ("loss", "l1", ValueError), ("precision", "fp8", ValueError),
    ("centred", 1, TypeError), ("compile", "yes", TypeError),
])
def test_every_setting_is_checked_when_the_config_is_built(field, value, error):
    """A bad `TrainConfig` field raises at construction, and the message names the field."""
    with pytest.raises(error, match=field):
        TrainConfig(**{field: value})


def test_rank_is_checked_against_the_data_before_any_work():
    """``rank <= D`` (and ``rank = D`` for the full loss) is checked before training; ``None`` means min(D, 16)."""
    assert TrainConfig(rank=None).check_data_dim(3) == 3 and TrainConfig().check_data_dim(40) == 16
    assert TrainConfig(loss="full").check_data_dim(5) == 5
    with pytest.raises(ValueError, match="rank must be at most the data dimension D = 3, got 100"):
        train(torch.randn(50, 3), TrainConfig(rank=100, steps=1), progress=False, device="cpu")
    with pytest.raises(ValueError, match="rank must equal D = 3"):
        TrainConfig(rank=2, loss="full").check_data_dim(3)


def test_a_diverging_run_stops_with_a_clear_error_and_writes_nothing(tmp_path):
    """A learning rate of 1e30 makes the weights non-finite: the run stops within a few steps with
    "training diverged at step k" instead of finishing, and no non-finite model is written."""
    data = Circle(2).sample(200, generator=torch.Generator().manual_seed(0))
    with pytest.raises(TrainingDiverged, match=r"training diverged at step \d+: .*try a smaller --lr"):
        train(data, TrainConfig(**{**TINY, "steps": 200, "lr": 1e30}), out=tmp_path / "m.lmm", progress=False,
              device="cpu")
    assert not (tmp_path / "m.lmm").exists()


def test_divergence_after_a_checkpoint_keeps_the_last_good_one(tmp_path, monkeypatch):
    """The loss turns NaN at step 13 (injected): the run stops at the next check, step 20, before the
    checkpoint of step 20, and the checkpoint of step 10 stays on disk, finite and loadable."""
    from learned_manifold_training.losses import MetricMatchingLoss
    data = Circle(2).sample(200, generator=torch.Generator().manual_seed(0))
    real, calls = MetricMatchingLoss.__call__, []

    def poisoned(self, *args):
        calls.append(1)
        loss = real(self, *args)
        return loss * float("nan") if len(calls) >= 13 else loss

    monkeypatch.setattr(MetricMatchingLoss, "__call__", poisoned)
    # fp32: under "auto" the precision probe would call the loss too, and shift the count
    cfg = TrainConfig(**{**TINY, "steps": 40, "checkpoint_every": 10, "centred": False, "precision": "fp32"})
    with pytest.raises(TrainingDiverged, match="training diverged at step 20: loss is nan"):
        train(data, cfg, out=tmp_path / "m.lmm", progress=False, device="cpu")
    assert read_metadata(tmp_path / "m.lmm")["extra"]["step"] == 10
    with pytest.warns(UserWarning, match=r"unfinished training run \(step 10 of 40\)"):
        kept = load_model(tmp_path / "m.lmm")
    assert all(torch.isfinite(p).all() for p in kept.parameters())


@pytest.mark.parametrize("data, message", [
    (torch.randn(50, 3, dtype=torch.float64) * 1e300, "overflow float32"),
    (torch.randn(50, 3, dtype=torch.float64) * 1e-300, "underflow float32"),
    (torch.where(torch.randn(50, 3) > 0, 3e38, -3e38), "RMS spread about their mean of 5.*e\\+38, outside"),
])
def test_data_beyond_float32_are_refused_with_the_right_reason(data, message):
    """Data of order 1e300 (float64) are refused before training as overflowing float32, not reported as "all
    identical"; tiny data as underflowing; ±3e38 (float32, whose squares overflow) for their spread, 5e38
    (`SPREAD_LIMITS`)."""
    with pytest.raises(ValueError, match=message):
        train(data, TrainConfig(**TINY), progress=False, device="cpu")


def test_large_but_representable_data_train_to_finite_weights():
    """Data near 3e18 with a spread float32 resolves (its spacing there, 3.6e11, is 4e-4 of it) and squares (9e14,
    inside `SPREAD_LIMITS`) standardise in float64 and train."""
    data = 3e18 + Circle(2).sample(200, generator=torch.Generator().manual_seed(0)).double() * 9e14
    result = train(data.float(), TrainConfig(**{**TINY, "steps": 5}), progress=False, device="cpu")
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


@pytest.mark.parametrize("device, message", [
    ("bogus", "unknown device 'bogus'"), ("cuda:0" if not torch.cuda.is_available() else "cuda:999", "cuda"),
    (3.5, "device must be a string"),
])
def test_devices_are_checked_before_work(device, message):
    """An unknown device name, CUDA on a build or machine without it, or a non-device is one clear error."""
    with pytest.raises((ValueError, TypeError), match=message):
        resolve_device(device)
    if not torch.cuda.is_available() and torch.version.cuda is None:
        with pytest.raises(ValueError, match="this torch build has no CUDA"):
            resolve_device("cuda")


def test_data_whose_offset_float32_cannot_resolve_are_refused():
    """A unit circle at 1e7 in float64 (GPS or timestamp-like data) became 8 distinct float32 points out of 300 and
    trained without a word; it is refused with the remedy. The same circle at 1e3 trains."""
    circle = Circle(2).sample(300, generator=torch.Generator().manual_seed(0)).double()
    with pytest.raises(ValueError, match="far from the origin .* subtract an offset"):
        train(circle + 1e7, TrainConfig(**TINY), progress=False, device="cpu")
    result = train(circle + 1e3, TrainConfig(**{**TINY, "steps": 5}), progress=False, device="cpu")
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
    # a constant coordinate, however large, merges nothing: the mean removes it exactly (it had been refused)
    padded = torch.cat([circle.float(), torch.full((300, 1), 1e4)], 1)
    result = train(padded, TrainConfig(**{**TINY, "steps": 5}), progress=False, device="cpu")
    assert torch.equal(result.model.mean.reshape(-1)[2], torch.tensor(1e4))


class _TransposedBasis(Circle):
    """A circle whose ``tangent_basis`` answers ``(n, d, D)`` instead of ``(n, D, d)``."""

    def tangent_basis(self, x):
        return super().tangent_basis(x).transpose(1, 2)


class _ScaledBasis(Circle):
    """A circle whose tangent vectors have length 2."""

    def tangent_basis(self, x):
        return 2 * super().tangent_basis(x)


class _PaddedBasis(Circle):
    """A circle whose ``tangent_basis`` pads a second, nonzero column (a plane) where ``point_dimension`` says 1."""

    def tangent_basis(self, x):
        return torch.eye(2).expand(x.shape[0], 2, 2)


class _NaNBasis(Circle):
    def tangent_basis(self, x):
        return torch.full((x.shape[0], 2, 1), float("nan"))


@pytest.mark.parametrize(("manifold", "message"), [
    (_TransposedBasis(), r"must return orthonormal bases of shape \(n, D, k\) = \(2, 2, k\), k <= 2, got \(2, 1, 2\)"),
    (_ScaledBasis(), r"must return orthonormal \(or zero\) columns; at point 0 \|VᵀV − I\| reaches 3"),
    (_PaddedBasis(), r"returned 2 nonzero columns at point 0, but manifold.point_dimension gives 1 there"),
    (_NaNBasis(), r"returned non-finite values \(NaN or inf\)"),
])
def test_a_broken_tangent_basis_is_refused_before_the_first_step(tmp_path, monkeypatch, manifold, message):
    """``train(manifold=M)`` checked only ``M.point_dimension`` up front: a ``tangent_basis`` of the wrong shape
    (or not orthonormal) ran every step, then failed in the final validation naming ``true_basis``, an argument of
    `tangent_error`; with ``out=None`` the model was lost. It is now called on the data's first points before any
    work, and the message names the method."""
    import learned_manifold_training.trainer as trainer

    def no_work(*args, **kwargs):
        pytest.fail("the run started before the manifold was checked")

    monkeypatch.setattr(trainer, "TrainingRows", no_work)
    data = Circle(2).sample(100, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"^manifold.tangent_basis on 2 points of dimension D = 2 " + message):
        train(data, TrainConfig(**TINY), manifold=manifold, out=tmp_path / "m.lmm", progress=False, device="cpu")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.filterwarnings("ignore:hidden, depth, emb_dim size the MLP only")  # C = 4 reads as a UNet image
@pytest.mark.filterwarnings("ignore:the data show no clear local dimension")  # uniform noise: its gap reads ~0.1
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_channels_last_images_are_named_before_any_work(channels, monkeypatch):
    """``(N, H, W, C)`` with C in 1, 3, 4 trained an MLP on points of shape (H, W, C), or (C = 4) a UNet on an
    H-channel image, without a word (the CLI turns such arrays channels-first): one warning naming the layout and
    both ways on, before the data are split. A warning, not an error: points can have that shape too."""
    import learned_manifold_training.trainer as trainer
    from learned_manifold_training.data.stream import ArraySource

    images = torch.rand(40, 8, 8, channels, generator=torch.Generator().manual_seed(channels))
    real = trainer.TrainingRows

    def no_work(*args, **kwargs):
        raise AssertionError("training work started")

    monkeypatch.setattr(trainer, "TrainingRows", no_work)
    read = "a 8-channel image" if channels == 4 else "points, with an MLP"
    message = (rf"^data: points of shape \(8, 8, {channels}\) look like channels-last images \(N, H, W, C\), but "
               rf"train reads images channels-first, \(N, C, H, W\), as PyTorch does: these train as {read}\. If "
               r"they are images, pass x.permute\(0, 3, 1, 2\); if not, flatten them to \(N, D\) to silence this$")
    for data in (images, ArraySource(images)):
        with pytest.warns(UserWarning, match=message), pytest.raises(AssertionError, match="training work started"):
            train(data, TrainConfig(**TINY), progress=False, device="cpu")
    monkeypatch.setattr(trainer, "TrainingRows", real)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # flattened, the same numbers train as points, silently
        flat = train(images.reshape(len(images), -1), TrainConfig(**TINY), progress=False, device="cpu")
    assert flat.model.config.data_shape == (64 * channels,) and flat.model.config.arch == "film_mlp"


def test_shapes_that_read_as_images_or_points_are_not_taken_for_channels_last():
    """(C, H, W) images, small arrays (H or W below 4) and a last axis of other sizes pass the layout check."""
    from learned_manifold_training.trainer import _check_layout

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for shape in [(3, 8, 8), (1, 8, 8), (4, 8, 4), (3, 2, 3), (2, 8, 3), (8, 8, 2), (8, 8), (8, 8, 8, 3)]:
            _check_layout(shape, "data")
