"""What the trainer decides from the data before the first step (`learned_manifold_training.input_choices`): the
norm feature under ``norm_feature="auto"``, the factor's rank when it is unset, and the reason the model file
records."""

import math
from dataclasses import replace

import pytest
import torch

from learned_manifold.model_file import read_metadata
from learned_manifold_training.batches import TrainingRows
from learned_manifold_training.config import DEFAULT_FACTOR_CLIP, NORM_SPREAD, TrainConfig
from learned_manifold_training.data import Sphere, SwissRoll, Torus
from learned_manifold_training.input_choices import (
    choose_factor_guards,
    choose_factor_width,
    choose_norm_feature,
    choose_rank,
    choose_warmup,
    estimate_dimension,
    local_pca_dimension,
)
from learned_manifold_training.outputs import state_path
from learned_manifold_training.trainer import train

SMALL = {"batch_size": 32, "hidden": 16, "depth": 1, "emb_dim": 8, "precision": "fp32"}


def _rows(data: torch.Tensor) -> TrainingRows:
    return TrainingRows(data, val_points=50, seed=0, batch_size=32, device=torch.device("cpu"))


@pytest.mark.parametrize(("manifold", "on"), [(Sphere(8, 64), True), (Sphere(2, 10), True), (Sphere(1, 2), True),
                                              (Torus(3), False), (SwissRoll(10, scale=1.0), False)])
def test_auto_turns_the_norm_feature_on_for_data_near_a_sphere_about_their_mean(manifold, on):
    """Spheres (centred anywhere, any scale) have distances from their mean that vary by about 1%; the torus and
    the swiss roll by about 23%. The spread is measured, not looked up: shifting and scaling the data changes
    nothing, and the reason names the rule and the spread."""
    data = manifold.sample(3000, generator=torch.Generator().manual_seed(0))
    chosen, why = choose_norm_feature(TrainConfig(), _rows(data), "film_mlp")
    assert chosen is on and why["chosen"] is on
    assert (why["norm_spread"] < NORM_SPREAD) is on
    moved = choose_norm_feature(TrainConfig(), _rows(data * 7.0 + 3.0), "film_mlp")[1]
    assert moved["norm_spread"] == pytest.approx(why["norm_spread"], rel=1e-4)
    assert "auto" in why["rule"]


def test_forced_settings_and_the_unet_are_not_measured():
    data = Sphere(2, 10).sample(500, generator=torch.Generator().manual_seed(0))
    rows = _rows(data)
    assert choose_norm_feature(TrainConfig(norm_feature=False), rows, "film_mlp") == (False, {
        "chosen": False, "rule": "asked for"})
    assert choose_norm_feature(TrainConfig(norm_feature=True), rows, "film_mlp")[0] is True
    assert choose_norm_feature(TrainConfig(norm_feature=True), rows, "unet")[0] is False


@pytest.mark.parametrize(("manifold", "on"), [(Sphere(2, 10), True), (Torus(3), False)])
def test_a_run_builds_the_network_it_chose_and_the_file_says_why(tmp_path, manifold, on):
    data = manifold.sample(600, generator=torch.Generator().manual_seed(0))
    out = tmp_path / "m.lmm"
    result = train(data, TrainConfig(steps=2, val_points=50, **SMALL), out=out, progress=False)
    assert result.model.config.arch_kwargs.get("norm_feature", False) is on
    assert (result.model.factor_net.norm_in is not None) is on
    assert read_metadata(out)["extra"]["norm_feature"]["chosen"] is on


def test_a_bad_value_is_refused_naming_the_field():
    for bad in ("yes", 1, None):
        with pytest.raises(TypeError, match="norm_feature must be True or False or 'auto'"):
            TrainConfig(norm_feature=bad)


@pytest.mark.parametrize(("manifold", "d"), [(Sphere(2, 64), 2), (Sphere(8, 64), 8), (Sphere(16, 64), 16),
                                             (Torus(3), 2), (SwissRoll(10, scale=1.0), 2)])
def test_local_pca_reads_the_true_dimension_at_most_points(manifold, d):
    """128-neighbour local PCA with the largest-gap rule on 2,000 points: the median pointwise dimension is the
    manifold's. On the spheres nearly every point reads it; on the roll, whose neighbourhoods of 128 points are
    long thin strips, a quarter of the points read 1 (the rank rule uses the median)."""
    data = manifold.sample(2000, generator=torch.Generator().manual_seed(0))
    dims = local_pca_dimension(data)
    assert dims.shape == (256,) and dims.dtype == torch.long
    assert int(dims.float().median()) == d
    assert ((dims - d).abs() <= 1).float().mean() >= 0.95
    if d > 2:
        assert (dims == d).float().mean() >= 0.9


def test_local_pca_takes_its_queries_in_blocks_that_shrink_as_d_grows(monkeypatch):
    """All 256 queries through the k-NN factor at once took 8.9 GB at D = 12,288: the queries go
    ``RANK_BLOCK_ELEMENTS // (neighbours · D)`` at a time (fewer as ``D`` grows) and the dimensions are those of
    one block."""
    from learned_manifold_training import input_choices

    seen: list[int] = []
    eigenpairs = input_choices.field_eigenpairs

    def spy(field, x):
        seen.append(x.shape[0])
        return eigenpairs(field, x)

    for dim in (64, 128):
        data = Sphere(4, dim).sample(600, generator=torch.Generator().manual_seed(0))
        whole = local_pca_dimension(data)
        monkeypatch.setattr(input_choices, "RANK_BLOCK_ELEMENTS", 128 * 64 * 10)  # 10 queries per block at D = 64
        monkeypatch.setattr(input_choices, "field_eigenpairs", spy)
        seen.clear()
        blocked = local_pca_dimension(data)
        monkeypatch.undo()
        assert torch.equal(blocked, whole) and whole.shape == (256,)
        assert sum(seen) == 256 and max(seen) == 10 * 64 // dim  # 10 at D = 64, 5 at D = 128


def test_an_unset_rank_is_twice_the_estimated_dimension_once_that_exceeds_half_the_default():
    """Rank 16 = d cannot fit S¹⁶ (SPEC §3), so S¹⁶ in R⁶⁴ gets rank 32; S⁸ keeps 16 (measured there), data
    with D ≤ 16 get D without an estimate, and a rank the user set or a UNet preset's is never changed."""
    cfg = TrainConfig()
    sphere16 = _rows(Sphere(16, 64).sample(3000, generator=torch.Generator().manual_seed(0)))
    assert estimate_dimension(cfg, sphere16, "film_mlp") == 16
    rank, why = choose_rank(cfg, sphere16, "film_mlp", 16, 16)
    assert rank == 32 and why["estimated_dimension"] == 16 and "auto" in why["rule"]
    sphere8 = _rows(Sphere(8, 64).sample(3000, generator=torch.Generator().manual_seed(0)))
    assert estimate_dimension(cfg, sphere8, "film_mlp") == 8
    assert choose_rank(cfg, sphere8, "film_mlp", 16, 8)[0] == 16
    sphere6 = _rows(Sphere(6, 8).sample(600, generator=torch.Generator().manual_seed(0)))
    assert estimate_dimension(cfg, sphere6, "film_mlp") is None  # D = 8 <= 16: nothing to decide
    assert choose_rank(cfg, sphere6, "film_mlp", 8, None) == (8, {"chosen": 8, "rule": "D <= 16: the rank is D"})
    # a rank asked for is kept, and the estimate made for the other rules is still recorded (`info` prints it)
    assert choose_rank(TrainConfig(rank=12), sphere16, "film_mlp", 12, 16) == (12, {
        "chosen": 12, "rule": "asked for", "estimated_dimension": 16})
    assert choose_rank(TrainConfig(rank=12), sphere16, "film_mlp", 12, None) == (12, {"chosen": 12,
                                                                                     "rule": "asked for"})
    assert estimate_dimension(cfg, sphere16, "unet") is None
    assert choose_rank(cfg, sphere16, "unet", 16, None)[0] == 16
    everything_set = TrainConfig(rank=32, denoiser_warmup=0.5, jacobian_probes=1, factor_hidden=None, factor_ramp=0.0,
                                 factor_clip=0.0)
    assert estimate_dimension(everything_set, sphere16, "film_mlp") is None  # no rule left to apply


def test_the_auto_warmup_follows_the_estimated_dimension():
    """Above dimension 8 (where the rank rule raises the rank) the factor starts at a quarter of the steps, the
    setting that learned S¹⁶ on two seeds of three; at or below it, and without an estimate, half-way, as in every
    earlier benchmark. A value the user set is kept."""
    high, why = choose_warmup(TrainConfig(), 16)
    assert high.denoiser_warmup == 0.25 and why["denoiser_warmup"] == 0.25 and "auto" in why["rule"]
    assert high.jacobian_probes == 1  # the probes are not changed
    for estimate in (8, 2, None):
        assert choose_warmup(TrainConfig(), estimate)[0].denoiser_warmup == 0.5
    kept, why = choose_warmup(TrainConfig(denoiser_warmup=0.4), 16)
    assert kept.denoiser_warmup == 0.4 and why == {"denoiser_warmup": 0.4, "rule": "asked for"}


def test_the_auto_factor_width_doubles_above_dimension_8():
    """Where the rank rule raises the rank (estimated dimension above 8) the factor network gets twice ``hidden``
    (S¹⁶ stalled at 256 and learned at 512); at or below it, without an estimate, and for the UNet, ``hidden``
    (``None``); a width the user set is kept."""
    wide, why = choose_factor_width(TrainConfig(hidden=256), 16, "film_mlp")
    assert wide.factor_hidden == 512 and why["factor_hidden"] == 512 and "auto" in why["rule"]
    for estimate in (8, 2, None):
        same, why = choose_factor_width(TrainConfig(hidden=256), estimate, "film_mlp")
        assert same.factor_hidden is None and why["factor_hidden"] == 256
    assert choose_factor_width(TrainConfig(), 16, "unet")[0].factor_hidden is None
    kept, why = choose_factor_width(TrainConfig(factor_hidden=300), 16, "film_mlp")
    assert kept.factor_hidden == 300 and why == {"factor_hidden": 300, "rule": "asked for"}
    with pytest.raises(ValueError, match="factor_hidden"):
        TrainConfig(factor_hidden=0)


def test_the_factor_guards_are_on_above_dimension_8_and_off_below():
    """The ramp (the run's warm-up) and the gradient guard where the width rule widens the factor; below, off, so
    every run measured before them is unchanged; values the user set are kept."""
    guarded, why = choose_factor_guards(TrainConfig(warmup=0.03), 16)
    assert (guarded.factor_ramp, guarded.factor_clip) == (0.03, DEFAULT_FACTOR_CLIP)
    assert why["factor_ramp"] == 0.03 and why["factor_clip"] == DEFAULT_FACTOR_CLIP and "auto" in why["rule"]
    for estimate in (8, 2, None):
        off = choose_factor_guards(TrainConfig(), estimate)[0]
        assert (off.factor_ramp, off.factor_clip) == (0.0, 0.0)
    kept = choose_factor_guards(TrainConfig(factor_ramp=0.1, factor_clip=2.0), 2)[0]
    assert (kept.factor_ramp, kept.factor_clip) == (0.1, 2.0)


def test_the_guards_rule_says_which_of_them_was_asked_for():
    """An explicit ``factor_ramp`` with ``factor_clip`` on auto was recorded as "auto: ..." as if neither had been
    asked for: the rule names the one asked for and the rule of the other."""
    auto = "auto: on where the estimated dimension exceeds 8, else off"
    rules = [choose_factor_guards(TrainConfig(**asked), 16)[1]["rule"]
             for asked in ({"factor_ramp": 0.1}, {"factor_clip": 2.0}, {"factor_ramp": 0.1, "factor_clip": 2.0}, {})]
    assert rules == [f"factor_ramp asked for; factor_clip {auto}", f"factor_clip asked for; factor_ramp {auto}",
                     "asked for", auto]


def test_a_wider_factor_network_runs_at_the_rate_per_unit_width_of_hidden():
    """``factor_lr_scale="auto"`` is ``hidden / factor_hidden`` for a factor network wider than ``hidden`` (0.5
    at the width rule's doubling: S¹⁶'s wide factor at the full rate jumped mid-run), 1 at ``hidden`` or
    narrower; a value the user set is kept."""
    wide, _ = choose_factor_width(TrainConfig(hidden=256), 16, "film_mlp")
    scaled, why = choose_factor_guards(wide, 16)
    assert scaled.factor_lr_scale == 0.5 and why["factor_lr_scale"] == 0.5 and "hidden / factor_hidden" in \
        why["rate_rule"]
    assert choose_factor_guards(TrainConfig(hidden=256, factor_hidden=1024), 2)[0].factor_lr_scale == 0.25
    for cfg in (TrainConfig(hidden=256, factor_hidden=None), TrainConfig(hidden=256, factor_hidden=128),
                choose_factor_width(TrainConfig(hidden=256), 8, "film_mlp")[0]):
        assert choose_factor_guards(cfg, 8)[0].factor_lr_scale == 1.0
    kept, why = choose_factor_guards(replace(wide, factor_lr_scale=0.8), 16)
    assert kept.factor_lr_scale == 0.8 and why["rate_rule"] == "asked for"


def test_a_run_on_high_dimensional_data_builds_the_rank_it_chose_and_the_file_says_why(tmp_path, capsys):
    """S¹⁶ in R⁶⁴ with the defaults: a rank-32 factor, the estimate and the resolved warm-up in the file, and
    ``info`` prints both and why."""
    from learned_manifold_training.cli import main

    data = Sphere(16, 64).sample(1500, generator=torch.Generator().manual_seed(0))
    out = tmp_path / "m.lmm"
    result = train(data, TrainConfig(steps=2, val_points=100, **SMALL), out=out, progress=False)
    assert result.model.config.rank == 32
    assert result.model.factor(data[:4]).shape == (4, 64, 32)
    # the factor network twice as wide as the denoiser (hidden 16)
    config = result.model.config
    assert config.arch_kwargs["hidden"] == 32 and config.denoiser_arch_kwargs == {"hidden": 16}
    assert result.model.factor_net.blocks[0].fc1.weight.shape == (32, 32)
    assert result.model.denoiser_net.blocks[0].fc1.weight.shape == (16, 16)
    extra = read_metadata(out)["extra"]
    assert extra["rank_choice"]["estimated_dimension"] == 16
    assert extra["denoiser_warmup"]["denoiser_warmup"] == 0.25
    assert extra["factor_guards"]["factor_ramp"] == TrainConfig.warmup
    assert extra["factor_guards"]["factor_clip"] == DEFAULT_FACTOR_CLIP
    assert extra["factor_guards"]["factor_lr_scale"] == 0.5
    groups = torch.load(state_path(out), weights_only=True)["optimizer"]["param_groups"]
    assert [g["initial_lr"] for g in groups] == [TrainConfig.lr, TrainConfig.lr / 2]  # the denoiser's, the factor's
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "rank:        32 (estimated data dimension 16;" in text
    assert "warm-up:     the denoiser alone for the first 25% of the steps (auto:" in text
    assert "width:       factor network 32 (auto: 2 x hidden" in text
    # 2 steps: a ramp of 2% is round(0.04) = 0 steps, none applied, so none is claimed; the halved rate is
    assert "ramped up" not in text and "width:       factor network 32 (auto: 2 x hidden" in text
    assert "its rate 0.5 x lr" in text


def test_an_uncentred_run_has_no_denoiser_warmup():
    """``info`` described "the denoiser alone for the first 50% of the steps" for runs without a denoiser."""
    cfg, why = choose_warmup(TrainConfig(centred=False), None)
    assert cfg.denoiser_warmup == 0.0 and why == {"denoiser_warmup": 0.0, "rule": "uncentred: no denoiser"}
    with pytest.raises(ValueError, match="denoiser_warmup acts on centred runs only"):
        TrainConfig(centred=False, denoiser_warmup=0.3)
    assert TrainConfig(centred=False, denoiser_warmup=0.0).denoiser_warmup == 0.0


def test_a_sigma_range_far_below_the_points_spacing_is_warned_of_before_training():
    """A circle in R¹⁰ (2,000 points, spacing about 4·10⁻³ s) trained with σ in [10⁻⁶, 10⁻⁵] s learned its linear
    span, which passed every check (tester E). The warning names the spacing; the default range never warns."""
    import warnings

    from learned_manifold_training.data import Circle
    from learned_manifold_training.input_choices import SPACING_FACTOR, check_sigma_range

    circle = Circle(10).sample(2000, generator=torch.Generator().manual_seed(0))
    rows = _rows(circle)
    with pytest.warns(UserWarning, match=r"sigma_max 1e-05 \(in units of the data scale s\) lies far below the "
                                         r"training points' spacing \(median nearest-neighbour distance 0\.00"):
        spacing = check_sigma_range(TrainConfig(sigma_min=1e-6, sigma_max=1e-5), rows)
    ring = float(circle.norm(dim=1).mean()) / float(rows.scale)  # the circle's radius in units of s
    # uniform points on a circle of length L: the gaps are exponential of mean L/n, a point's nearest neighbour is
    # the smaller of its two gaps (mean L/2n), and its median is ln 2 · L/2n
    expected = math.log(2) * 2 * math.pi * ring / (2 * rows.n_train)
    assert 0.7 * expected < spacing < 1.4 * expected
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_sigma_range(TrainConfig(), rows)  # the default sigma_max, 4
        check_sigma_range(TrainConfig(sigma_min=1e-6, sigma_max=spacing / SPACING_FACTOR * 1.01), rows)


def test_the_rank_rule_names_the_neighbours_it_used():
    """On 10 points the rule said "128 neighbours" while the local PCA used the 8 training points (tester E)."""
    from learned_manifold_training.data import Sphere

    tiny = _rows(Sphere(2, 40).sample(10, generator=torch.Generator().manual_seed(0)))
    _, why = choose_rank(TrainConfig(), tiny, "film_mlp", 16, 1)
    assert tiny.n_train == 8 and "local-PCA dimension of 8 neighbours (every training point: a global PCA)" in \
        why["rule"]
    many = _rows(Sphere(2, 40).sample(400, generator=torch.Generator().manual_seed(0)))
    assert "local-PCA dimension of 128 neighbours))" in choose_rank(TrainConfig(), many, "film_mlp", 16, 2)[1]["rule"]


def test_a_flat_local_spectrum_is_warned_of():
    """Gaussian noise in R⁶⁴ read as dimension 2 by local PCA (rank 16), and a model trained on it read 2 and passed
    its checks (tester E): no eigengap stands out there (mean largest gap 0.08), and the estimate now says so.
    S¹⁶ in R⁶⁴, whose gap is the smallest of the manifolds measured above it (0.18), reads 16 without a warning."""
    import warnings

    from learned_manifold_training.input_choices import FLAT_SPECTRUM_GAP

    noise = _rows(torch.randn(1500, 64, generator=torch.Generator().manual_seed(0)))
    with pytest.warns(UserWarning, match=r"no clear local dimension: the local PCA of 128 neighbours has a flat "
                                         r"spectrum \(mean largest normalised eigengap 0\.0[5-9]\d"):
        assert estimate_dimension(TrainConfig(), noise, "film_mlp") == 2
    sphere16 = _rows(Sphere(16, 64).sample(1500, generator=torch.Generator().manual_seed(0)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert estimate_dimension(TrainConfig(), sphere16, "film_mlp") == 16
    assert FLAT_SPECTRUM_GAP == 0.1


def test_coordinates_in_different_units_are_warned_of_before_training():
    """S² with ``z`` in units ×100 has principal variances 1e-4 of the largest in x and y: its span was read as 1
    and a trained model read dimension 1 everywhere (tangent error 0.90), trusted by both checks (tester E). The
    warning names the factor, the small coordinates and the remedy; data in one unit (spheres, a torus, a swiss
    roll, zero-padded coordinates, ``z`` ×10, which keeps its span) are not warned of."""
    import warnings

    from learned_manifold_training.input_choices import choose_input_scaling

    g = torch.Generator().manual_seed(0)
    sphere = Sphere(2, 3).sample(1000, generator=g)
    with pytest.warns(UserWarning, match=r"spreads differ by a factor of 9\d\.\d or more: 2 of the 3 coordinates "
                                         r"that vary \(0, 1\) .* has dimension 1 where the coordinates, each "
                                         r"standardised, give 3.* Put every coordinate in the same units"):
        chosen, _, why = choose_input_scaling(TrainConfig(), _rows(sphere * torch.tensor([1.0, 1.0, 100.0])),
                                              "film_mlp")
    assert why["span_dimension"] == 1
    ordinary = [sphere, sphere * torch.tensor([1.0, 1.0, 10.0]), torch.cat([sphere, torch.zeros(1000, 47)], 1),
                Sphere(8, 64).sample(1000, generator=g), Torus(3).sample(1000, generator=g),
                SwissRoll(10, scale=1.0).sample(1000, generator=g)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for data in ordinary:
            choose_input_scaling(TrainConfig(), _rows(data), "film_mlp")


def test_gaussian_scaling_forced_on_data_that_fill_the_space_is_warned_of_naming_the_option():
    """``--input-scaling gaussian`` on a circle in R² (span 2 of 2, which ``"auto"`` leaves unpreconditioned) trained
    to 20× the default's tangent error and read dimension 2 everywhere, without a word (tester B s37). Forced there,
    the choice warns once, naming the option and why ``auto`` does not choose it; forced where the span is a small
    part of R^D, or left to ``auto``, it does not."""
    import warnings

    from learned_manifold_training.input_choices import choose_input_scaling

    g = torch.Generator().manual_seed(0)
    circle, torus = Sphere(1, 2).sample(300, generator=g), Torus(3).sample(300, generator=g)
    forced = TrainConfig(input_scaling="gaussian")
    for data, span in ((circle, 2), (torus, 3)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            chosen, components, why = choose_input_scaling(forced, _rows(data), "film_mlp")
        assert chosen == "gaussian" and components is not None  # forced: still applied, as asked
        assert (why["span_dimension"], why["dim"]) == (span, span)
        messages = [str(w.message) for w in caught]
        assert len(messages) == 1, messages
        assert messages[0].startswith(f"input_scaling 'gaussian' (--input-scaling gaussian) is forced on data whose "
                                      f"linear span has {span} of their {span} dimensions: input_scaling 'auto' ")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert choose_input_scaling(TrainConfig(), _rows(circle), "film_mlp")[0] == "none"  # auto: none, silent
        sphere = Sphere(2, 10).sample(300, generator=g)  # span 3 of 10: what the preconditioning is for
        assert choose_input_scaling(forced, _rows(sphere), "film_mlp")[0] == "gaussian"


def test_gaussian_scaling_forced_on_the_unet_is_warned_of_with_what_is_true_of_the_unet():
    """``auto`` never preconditions the UNet, whatever the span, and the UNet was never trained or measured with
    Gaussian preconditioning: forced there, the warning says so, for full-span noise images and for images of a
    small span alike, and quotes neither ``auto``'s span rule nor the MLP's measurements (which it did, untrue for
    the UNet: reviewer s37 finding 6). The MLP keeps its own text, on the same points flattened."""
    import warnings

    from learned_manifold_training.input_choices import choose_input_scaling

    g = torch.Generator().manual_seed(0)
    noise = torch.randn(300, 1, 4, 4, generator=g)  # span 16 of 16
    small = Sphere(2, 16).sample(300, generator=g).reshape(300, 1, 4, 4)  # span 3 of 16: "auto" would on the MLP
    forced = TrainConfig(input_scaling="gaussian")

    def forced_warnings(data: torch.Tensor, arch: str) -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            assert choose_input_scaling(forced, _rows(data), arch)[0] == "gaussian"  # still applied, as asked
        return [str(w.message) for w in caught]

    for data, span in ((noise, 16), (small, 3)):
        (message,) = forced_warnings(data, "unet")
        assert message.startswith(f"input_scaling 'gaussian' (--input-scaling gaussian) is forced on the UNet (data "
                                  f"whose linear span has {span} of their 16 dimensions): the UNet was never trained "
                                  "or measured with Gaussian preconditioning, and input_scaling 'auto' (the default) "
                                  "leaves the UNet unpreconditioned whatever the span."), message
        assert "preconditions only where" not in message and "torus" not in message and "0.085" not in message
    (mlp,) = forced_warnings(noise.flatten(1), "film_mlp")
    assert mlp.startswith("input_scaling 'gaussian' (--input-scaling gaussian) is forced on data whose linear span "
                          "has 16 of their 16 dimensions: input_scaling 'auto' (the default) preconditions only where "
                          "the span has at most 0.5 D dimensions") and "0.085 against 0.029" in mlp
    assert "UNet" not in mlp and forced_warnings(small.flatten(1), "film_mlp") == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for data in (noise, small):  # auto: the UNet unpreconditioned, silent
            assert choose_input_scaling(TrainConfig(), _rows(data), "unet")[:2] == ("none", None)
