"""What the trainer decides from the data before the first step: the MLP's input scaling (Gaussian
preconditioning, SPEC §4) and its norm feature. Each choice comes back with the reason the model file records."""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor

from learned_manifold.evaluation import field_eigenpairs
from learned_manifold.geometry import intrinsic_dimension
from learned_manifold.metrics import KNNCDC
from learned_manifold.models import MAX_WIDTH
from learned_manifold.preconditioning import principal_components
from learned_manifold.user_warnings import warn_user

from .batches import TrainingRows
from .config import (
    DEFAULT_FACTOR_CLIP,
    DEFAULT_RANK,
    DENOISER_WARMUP,
    HIGH_DIMENSION_WARMUP,
    NORM_SPREAD,
    SPAN_FRACTION,
    TrainConfig,
)
from .raw_angles import raw_angle_note
from .recipe_checks import warn_sigma_above_scale

__all__ = ["NORM_SAMPLE", "RANK_BLOCK_ELEMENTS", "RANK_NEIGHBOURS", "RANK_QUERIES", "RANK_REFERENCE", "UNIT_GAP",
           "FLAT_SPECTRUM_GAP", "SPACING_FACTOR", "SPACING_QUERIES", "check_sigma_range", "choose_by_dimension",
           "choose_factor_guards", "choose_factor_width", "choose_input_scaling", "choose_norm_feature", "choose_rank",
           "choose_warmup", "estimate_dimension", "local_pca_dimension", "local_pca_readings", "mixed_units"]

NORM_SAMPLE = 4096
"""Points whose distances from the mean decide ``norm_feature="auto"``."""

RANK_NEIGHBOURS = 128
"""Neighbours per local PCA in `local_pca_dimension`."""
RANK_QUERIES = 256
"""Training points at which `local_pca_dimension` reads the dimension."""
RANK_REFERENCE = 20_000
"""At most this many training points are searched for neighbours."""
FLAT_SPECTRUM_GAP = 0.1
"""`estimate_dimension` warns where the mean largest normalised eigengap of its local PCA (`local_pca_readings`) is
below this: no dimension stands out. Measured (1k and 10k points, 128 neighbours, seed 0): isotropic Gaussian noise
in R⁶⁴ and R¹²⁸ 0.065–0.084, read as dimension 2 (a trained model then read 2 and passed its checks, tester E);
in R³² 0.135 (read 32, right); S²⁴, S¹⁶, S⁸ in R⁶⁴ 0.126–0.134, 0.18–0.23, 0.38–0.43; torus, swiss roll 0.66."""
UNIT_GAP = 10.0
"""`mixed_units` looks further where two neighbours of the coordinates' sorted spreads are this factor or more apart.
Measured (1k points, largest ratio of neighbouring spreads): S⁸ in R⁶⁴ 1.15, torus 2.8, union 2.4, the flat blob
images 2.1 (their overall range 261), digits 1.9 (277); S² with ``z`` ×10 10 (span 3 either way: no warning), ×100
100 (span 1, 3 per coordinate)."""
SPACING_FACTOR = 10.0
"""`check_sigma_range` warns where ``sigma_max`` is more than this factor below the points' median nearest-neighbour
distance (there the nearest neighbour's posterior weight is below ``e⁻⁵⁰`` at every training σ)."""
SPACING_QUERIES = 256
"""Training points whose nearest-neighbour distances `check_sigma_range` takes the median of."""
RANK_BLOCK_ELEMENTS = 2**24
"""Entries of one ``(queries, neighbours, D)`` block of `local_pca_dimension`: ``max(1, RANK_BLOCK_ELEMENTS //
(neighbours · D))`` queries at a time (the k-NN factor and its eigenpairs hold a few such blocks; all 256 queries
at once took 8.9 GB at D = 12,288)."""


def _resolved(cfg: TrainConfig, **values: object) -> TrainConfig:
    """A copy of ``cfg`` with ``"auto"`` settings replaced by what a rule chose. Not `dataclasses.replace`: its
    ``__post_init__`` would judge the rule's choice as a request (`recipe_checks.check_recipe` refuses an explicit
    ``factor_ramp`` on a shared trunk, but ``"auto"`` resolves there all the same, to a value that does not apply
    and that the model file records beside what applied)."""
    cfg = copy.copy(cfg)
    for name, value in values.items():
        setattr(cfg, name, value)
    return cfg


def choose_input_scaling(cfg: TrainConfig, rows: TrainingRows,
                         arch: str) -> tuple[str, tuple[Tensor, Tensor, Tensor] | None, dict]:
    """The model's input scaling, its Gaussian model (``None`` unless ``"gaussian"``) and why, for the file.

    ``"auto"``: Gaussian preconditioning for the MLP when the standardised data's linear span (principal variances
    above 10⁻³ of the largest, among the first ``gaussian_rank``) has at most ``SPAN_FRACTION · D`` dimensions;
    else ``"none"``. Measured (``benchmarks/RESULTS.md``): it lets the denoiser learn S⁸'s radius in R⁶⁴ (span 9
    of 64), helps the swiss roll in R¹⁰ (3 of 10) and S² in R⁶⁴ (3 of 64), and hurts the torus in R³ (3 of 3).
    The UNet is never preconditioned by ``"auto"`` (untrained with it). Warns (before training) where coordinates
    in different units leave directions of the data outside that span (`mixed_units`), and where ``"gaussian"`` is
    forced on the MLP for data whose span has more than ``SPAN_FRACTION · D`` dimensions, or on the UNet whatever
    the span (`_forced_gaussian_warning`)."""
    dim = math.prod(rows.shape)
    if cfg.input_scaling not in ("auto", "gaussian"):
        return cfg.input_scaling, None, {"chosen": cfg.input_scaling, "rule": "asked for"}
    if cfg.input_scaling == "auto" and arch != "film_mlp":
        return "none", None, {"chosen": "none", "rule": "auto: the UNet is not preconditioned"}
    sample = rows.standardised_sample(20_000)
    components = principal_components(sample, min(cfg.gaussian_rank, dim), seed=cfg.seed)
    var = components[1]
    span = int((var > 1e-3 * var[0]).sum())
    if (units := mixed_units(sample, span, cfg.gaussian_rank, seed=cfg.seed)) is not None:
        warn_user(units)
    why = {"span_dimension": span, "dim": dim}
    if cfg.input_scaling == "gaussian":
        if (note := _forced_gaussian_warning(arch, span, dim)) is not None:  # what "auto" rules out (tester B s37)
            warn_user(note)
        return "gaussian", components, {"chosen": "gaussian", "rule": "asked for", **why}
    chosen = "gaussian" if span <= SPAN_FRACTION * dim else "none"
    rule = f"auto: gaussian when the linear span has at most {SPAN_FRACTION:g} D dimensions"
    return chosen, components if chosen == "gaussian" else None, {"chosen": chosen, "rule": rule, **why}


def _forced_gaussian_warning(arch: str, span: int, dim: int) -> str | None:
    """The warning for ``input_scaling="gaussian"`` forced on the network ``arch`` for data whose linear span has
    ``span`` of the ``dim`` dimensions, where ``"auto"`` would not precondition; else ``None``.

    The UNet (any ``arch`` but ``"film_mlp"``): whatever the span, since ``"auto"`` never preconditions it and it was
    never trained or measured with it (the MLP's text, which quoted ``"auto"``'s span rule and MLP measurements, was
    untrue there: reviewer s37 finding 6). The MLP: where the span has more than ``SPAN_FRACTION · dim`` dimensions.
    Measured there: the torus in R³ (span 3 of 3, `benchmarks/RESULTS.md`, fifth session) tangent error 0.085
    against 0.029; a circle in R² (2 of 2; 1,000 points, 400 steps, tester B s37) 0.65 against 0.033, dimension 2
    read at every validation point."""
    if arch != "film_mlp":
        return (f"input_scaling 'gaussian' (--input-scaling gaussian) is forced on the UNet (data whose linear span "
                f"has {span} of their {dim} dimensions): the UNet was never trained or measured with Gaussian "
                "preconditioning, and input_scaling 'auto' (the default) leaves the UNet unpreconditioned whatever "
                "the span. Leave input_scaling at 'auto' (or 'none') for the UNet, or compare the trained model with "
                "an unpreconditioned run")
    if span <= SPAN_FRACTION * dim:
        return None
    return (f"input_scaling 'gaussian' (--input-scaling gaussian) is forced on data whose linear span has {span} of "
            f"their {dim} dimensions: input_scaling 'auto' (the default) preconditions only where the span has at "
            f"most {SPAN_FRACTION:g} D dimensions (the data's Gaussian model then shows the networks the few "
            "directions the data take); on data that fill the space it hurt the trained model (tangent error 0.085 "
            "against 0.029 on the torus in R^3, 0.65 against 0.033 on a circle in R^2, which read dimension 2 "
            "everywhere). Leave input_scaling at 'auto' (or 'none') for such data")


def mixed_units(sample: Tensor, span: int, rank: int, *, seed: int = 0) -> str | None:
    """The warning for coordinates in different units, else ``None``: ``sample`` ``(n, D)`` standardised training
    points, ``span`` the dimension of their linear span (principal variances above 10⁻³ of the largest, among the
    first ``rank``).

    Where the spreads (standard deviations) of the coordinates that vary, sorted, have two neighbours `UNIT_GAP`
    or more apart, the points are standardised coordinate by coordinate; if the span then has more dimensions,
    the small coordinates hold directions of the data that the span, and the Gaussian preconditioning, drop: S²
    with ``z`` in units ×100 has span 1 (3 per coordinate), and the trained model read dimension 1 at every point,
    with tangent error 0.90, and both its checks trusted it (tester E). One more PCA, only past the gap."""
    std = sample.double().std(0) if sample.shape[0] > 1 else sample.new_zeros(sample.shape[1]).double()
    live = (std > 0).nonzero().squeeze(-1)  # (zero-padded coordinates hold no direction)
    spreads, order = std[live].sort(descending=True)
    if live.numel() < 2:
        return None
    ratios = spreads[:-1] / spreads[1:]
    cut = int(ratios.argmax())
    if float(ratios[cut]) < UNIT_GAP:
        return None
    even = (sample[:, live].double() / std[live]).float()
    var = principal_components(even, min(rank, live.numel()), seed=seed)[1]
    even_span = int((var > 1e-3 * var[0]).sum())
    if even_span <= span:
        return None
    small = live[order[cut + 1:]].sort().values.tolist()
    shown = ", ".join(str(i) for i in small[:5]) + (", ..." if len(small) > 5 else "")
    return (f"the coordinates' spreads differ by a factor of {float(ratios[cut]):.3g} or more: {len(small)} of the "
            f"{live.numel()} coordinates that vary ({shown}) are that much smaller than the rest, so the data's "
            f"linear span that the model is fitted in has dimension {span} where the coordinates, each "
            f"standardised, give {even_span}: the model may not learn the data's structure in the small "
            "coordinates, and its checks may not see it (S^2 with z in units x100 was read as dimension 1). Put "
            "every coordinate in the same units, or standardise each coordinate ((x - mean) / std, column by "
            "column) before training; if the small coordinates are noise, this does not apply")


def choose_norm_feature(cfg: TrainConfig, rows: TrainingRows, arch: str) -> tuple[bool, dict]:
    """Whether the MLP gets the norm feature (`TrainConfig.norm_feature`), and why, for the file.

    ``"auto"``: on when the relative standard deviation of ``‖z‖`` over up to `NORM_SAMPLE` standardised (mean-
    subtracted) training points is below `NORM_SPREAD`, i.e. the data lie near a sphere about their mean, where the
    feature lets the denoiser learn the radius; off elsewhere (it cost the swiss roll about 20%). The UNet has no
    such feature."""
    if arch != "film_mlp":
        return False, {"chosen": False, "rule": "the UNet has no norm feature"}
    if cfg.norm_feature != "auto":
        return bool(cfg.norm_feature), {"chosen": bool(cfg.norm_feature), "rule": "asked for"}
    radius = rows.standardised_sample(NORM_SAMPLE).double().norm(dim=1)  # (n,) from (n, D) flat rows
    mean = float(radius.mean())
    spread = float(radius.std()) / mean if radius.numel() > 1 and mean > 0 else math.inf  # no spread to measure
    chosen = spread < NORM_SPREAD
    return chosen, {"chosen": chosen, "norm_spread": spread,
                    "rule": f"auto: on when the points' distances from their mean vary by less than {NORM_SPREAD:g} "
                            "(relative standard deviation)"}


def local_pca_dimension(points: Tensor, *, neighbours: int = RANK_NEIGHBOURS, queries: int = RANK_QUERIES,
                        seed: int = 0) -> Tensor:
    """Pointwise intrinsic dimension by local PCA: ``points`` ``(N, D)`` → ``(min(queries, N),)`` integers.

    At a seeded subsample of the points, the eigenvalues of the centred covariance of the ``neighbours`` nearest
    points (the centred k-NN CDC, SPEC §7, at a bandwidth so wide that every neighbour weighs the same), read by
    the largest-gap rule (SPEC §5). Measured on 1k and 10k points (seed 0, 256 queries): the median is the true
    d on S², S⁴, S⁸ and S¹⁶ in R⁶⁴, the torus in R³ and the swiss roll in R¹⁰ with 128 neighbours; with 32 or 64
    it reads S⁸ and S¹⁶ as 2 (too few neighbours for the spread of a 16-D sample covariance). The queries go
    `RANK_BLOCK_ELEMENTS` ``/ (neighbours · D)`` at a time, so memory does not grow with ``D`` beyond the data's.
    `local_pca_readings` gives each reading's gap too."""
    return local_pca_readings(points, neighbours=neighbours, queries=queries, seed=seed)[0]


def local_pca_readings(points: Tensor, *, neighbours: int = RANK_NEIGHBOURS, queries: int = RANK_QUERIES,
                       seed: int = 0) -> tuple[Tensor, Tensor]:
    """`local_pca_dimension`'s ``(q,)`` dimensions and the ``(q,)`` normalised eigengaps they were read from
    (``max_k λ̃_k − λ̃_{k+1}``, SPEC §5, with the appended zero), ``q = min(queries, N)``."""
    n = points.shape[0]
    points = points.reshape(n, -1).float()
    spread = float((points - points.mean(0)).pow(2).sum(1).mean().sqrt())
    field = KNNCDC(points, k=min(neighbours, n), sigma=max(spread, 1e-12) * 1e3, centred=True)
    pick = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:queries]
    per_block = max(1, RANK_BLOCK_ELEMENTS // (field.k * points.shape[1]))  # memory O(RANK_BLOCK_ELEMENTS), any D
    dims, gaps = [], []
    with torch.no_grad():
        for rows in pick.split(per_block):
            values = field_eigenpairs(field, points[rows]).values
            dims.append(intrinsic_dimension(values))
            v = values.sort(dim=-1, descending=True).values
            v = torch.cat([v / v[:, :1].clamp_min(torch.finfo(v.dtype).tiny), torch.zeros_like(v[:, :1])], dim=-1)
            gaps.append((v[:, :-1] - v[:, 1:]).max(-1).values)
    return torch.cat(dims), torch.cat(gaps)


def check_sigma_range(cfg: TrainConfig, rows: TrainingRows) -> float:
    """Warn (before any training) where ``cfg.sigma_min`` lies above the data's scale
    (`recipe_checks.warn_sigma_above_scale`) or ``cfg.sigma_max`` more than `SPACING_FACTOR` times below the median
    nearest-neighbour distance of the standardised training points (both in units of ``s``, SPEC §1); returns that
    distance. Measured on up to `RANK_REFERENCE` points and ``2²⁴`` numbers (a sample's spacing is wider than
    all the points', so the warning leans towards silence), from `SPACING_QUERIES` of them.

    Why: at every training σ a noisy point's posterior then weighs its nearest other data point ``Δ`` away by
    about ``exp(−Δ²/2σ²) ≤ e⁻⁵⁰`` against its own: each point is alone, ``Γᶜ_σ`` of the data is 0 and nothing in
    the objective shows a tangent. A circle in R¹⁰ (spacing 4·10⁻³ s) with ``sigma_max = 10⁻⁵`` trained its
    linear span (tangent error 1.2) that passed the self-consistency check (tester E). The default ``sigma_max``
    (4) never warns: the median nearest-neighbour distance of standardised data is at most ``1 + √2`` (a point's
    distance to the innermost point is at most its radius plus 1, and the median radius at most √2)."""
    warn_sigma_above_scale(cfg)  # the range's other end: every bandwidth at the data's own scale or above
    dim = math.prod(rows.shape)
    if rows.n_train < 2:
        return math.inf
    sample = rows.standardised_sample(max(2, min(RANK_REFERENCE, 2**24 // dim))).double()
    pick = torch.randperm(sample.shape[0], generator=torch.Generator().manual_seed(cfg.seed))[:SPACING_QUERIES]
    distances = torch.cdist(sample[pick], sample)  # (q, m)
    distances[torch.arange(pick.numel()), pick] = math.inf  # not a point's own distance
    spacing = float(distances.min(1).values.median())
    if cfg.sigma_max * SPACING_FACTOR < spacing:
        warn_user(f"sigma_max {cfg.sigma_max:g} (in units of the data scale s) lies far below the training "
                  f"points' spacing (median nearest-neighbour distance {spacing:.3g} s): at every training "
                  f"bandwidth each point is alone, and the model learns at most the data's linear span, "
                  f"which its checks may not see; choose sigma_max above {spacing / SPACING_FACTOR:.3g} (the "
                  f"default is {type(cfg).sigma_max:g})")
    return spacing


def estimate_dimension(cfg: TrainConfig, rows: TrainingRows, arch: str) -> int | None:
    """The data's intrinsic dimension for the rules of `choose_by_dimension`: the median of `local_pca_dimension`
    on up to `RANK_REFERENCE` standardised training points; ``None`` where no rule needs it (the UNet, ``D ≤
    DEFAULT_RANK``, or the rank, warm-up, factor width, ramp and guard all set by the user). On data dominated by
    one direction the largest-gap rule reads a low dimension (scikit-learn's digits: 1), which leaves the
    defaults as they were."""
    dim = math.prod(rows.shape)
    if arch != "film_mlp" or dim <= DEFAULT_RANK:
        return None
    if cfg.rank is not None and "auto" not in (cfg.denoiser_warmup, cfg.factor_hidden, cfg.factor_ramp,
                                               cfg.factor_clip):
        return None
    sample = rows.standardised_sample(RANK_REFERENCE)
    dims, gaps = local_pca_readings(sample, seed=cfg.seed)
    estimate = int(dims.float().median().round())
    gap = float(gaps.mean())
    if gap < FLAT_SPECTRUM_GAP:
        warn_user(f"the data show no clear local dimension: the local PCA of {min(RANK_NEIGHBOURS, len(sample))} "
                  f"neighbours has a flat spectrum (mean largest normalised eigengap {gap:.3f}, below "
                  f"{FLAT_SPECTRUM_GAP:g}; Gaussian noise in R^64 reads 0.08), so the estimated dimension "
                  f"{estimate} means little and the data may have no low-dimensional structure at this sample "
                  f"size; a rank set from it may be too small for the model to show the data's dimension: "
                  f"set the rank (--rank) to D = {dim} to let it")
    return estimate


def choose_by_dimension(cfg: TrainConfig, rows: TrainingRows, arch: str, rank: int) -> tuple[TrainConfig, int, dict]:
    """The choices made from the data's estimated dimension (`estimate_dimension`): ``cfg`` with
    ``denoiser_warmup``, ``factor_hidden``, ``factor_ramp``, ``factor_clip`` and ``factor_lr_scale`` resolved,
    the rank (``rank``: `TrainConfig.model_spec`'s), and why, for the model file (``rank_choice``,
    ``denoiser_warmup``, ``factor_width``, ``factor_guards``). First it warns of a σ range far below the points'
    spacing (`check_sigma_range`) and, for the MLP (points, not images), notes columns that look like raw angles
    (`raw_angles.raw_angle_note`): the data checks before the first step that the trainer makes through here."""
    check_sigma_range(cfg, rows)
    if arch == "film_mlp":  # points, not images; at most 2²⁴ numbers read
        if (note := raw_angle_note(rows.sample_rows(max(2, min(RANK_REFERENCE, 2**24 // math.prod(rows.shape)))))):
            warn_user(note)
    estimate = estimate_dimension(cfg, rows, arch)
    rank, rank_why = choose_rank(cfg, rows, arch, rank, estimate)
    cfg, warmup_why = choose_warmup(cfg, estimate)
    cfg, width_why = choose_factor_width(cfg, estimate, arch)
    cfg, guards_why = choose_factor_guards(cfg, estimate)
    return cfg, rank, {"rank_choice": rank_why, "denoiser_warmup": warmup_why, "factor_width": width_why,
                       "factor_guards": guards_why}


def _high_dimension(estimate: int | None) -> bool:
    """The threshold every dimension rule shares: an estimate above ``DEFAULT_RANK / 2``, where the rank rule
    raises the rank (`choose_rank`: ``2 d̂ > DEFAULT_RANK``)."""
    return estimate is not None and estimate > DEFAULT_RANK // 2


def choose_rank(cfg: TrainConfig, rows: TrainingRows, arch: str, rank: int,
                estimate: int | None) -> tuple[int, dict]:
    """The factor's rank (`TrainConfig.rank`) and why, for the file; ``rank``: `TrainConfig.model_spec`'s,
    ``estimate``: `estimate_dimension`'s.

    Unset for the MLP with the low-rank loss: ``min(D, max(DEFAULT_RANK, 2 d̂))``. A rank ``r ≤ d`` cannot fit a
    sphere ``S^d`` (SPEC §3: its tangent bundle has no continuous frame), and on S¹⁶ in R⁶⁴ rank 16 failed where
    rank 32 learned (`benchmarks/RESULTS.md`); for ``d̂ ≤ 8`` the rank stays 16, measured on every benchmark. A
    rank the user set, the UNet's preset rank and the full loss are kept; so is ``D ≤ DEFAULT_RANK`` (the rank
    is ``D`` either way)."""
    dim = math.prod(rows.shape)
    if cfg.rank is not None:  # the estimate, where one was made for the other rules, is still recorded
        return rank, {"chosen": rank, "rule": "asked for",
                      **({} if estimate is None else {"estimated_dimension": estimate})}
    if arch != "film_mlp" or cfg.loss != "lowrank":
        return rank, {"chosen": rank, "rule": "the UNet preset's" if arch != "film_mlp" else "the full loss: D"}
    if estimate is None:
        return rank, {"chosen": rank, "rule": f"D <= {DEFAULT_RANK}: the rank is D"}
    chosen = min(dim, max(DEFAULT_RANK, 2 * estimate))
    used = min(RANK_NEIGHBOURS, rows.n_train, RANK_REFERENCE)  # `local_pca_dimension`'s k on `estimate_dimension`'s
    whole = " (every training point: a global PCA)" if used == rows.n_train and used < RANK_NEIGHBOURS else ""
    return chosen, {"chosen": chosen, "estimated_dimension": estimate,
                    "rule": f"auto: min(D, max({DEFAULT_RANK}, 2 x the median local-PCA dimension of "
                            f"{used} neighbours{whole}))"}


def choose_factor_width(cfg: TrainConfig, estimate: int | None, arch: str) -> tuple[TrainConfig, dict]:
    """``cfg`` with ``factor_hidden`` resolved where it is ``"auto"`` (to ``None``, i.e. ``hidden``, or to an
    explicit width), and why, for the file.

    ``2 · hidden`` (at most `MAX_WIDTH`) where the estimated dimension exceeds ``DEFAULT_RANK / 2``, i.e. where
    `choose_rank` raises the rank, else ``hidden``. The factor of a sphere ``S^d`` filling ``d + 1`` dimensions
    must produce its normal direction, a quadratic function of the point, in every one of its columns; on S¹⁶ in
    R⁶⁴ (3k points) width 256 stalled on the fit of the span where 512 learned the sphere
    (`benchmarks/RESULTS.md`, seventeenth session). Below the threshold every measured default stays."""
    if cfg.factor_hidden != "auto":
        return cfg, {"factor_hidden": cfg.factor_hidden or cfg.hidden, "rule": "asked for"}
    rule = f"auto: 2 x hidden where the estimated dimension exceeds {DEFAULT_RANK // 2}, else hidden"
    if arch != "film_mlp":
        return _resolved(cfg, factor_hidden=None), {"factor_hidden": None, "rule": "the UNet preset's"}
    if not _high_dimension(estimate):
        return _resolved(cfg, factor_hidden=None), {"factor_hidden": cfg.hidden, "rule": rule}
    width = min(2 * cfg.hidden, MAX_WIDTH)
    return _resolved(cfg, factor_hidden=width), {"factor_hidden": width, "rule": rule}


def choose_factor_guards(cfg: TrainConfig, estimate: int | None) -> tuple[TrainConfig, dict]:
    """``cfg`` with ``factor_ramp``, ``factor_clip`` and ``factor_lr_scale`` resolved where they are ``"auto"``,
    and why, for the file (after `choose_factor_width`, whose width the rate follows): ``rule`` says which of the
    ramp and the guard were asked for and the rule of those that were not.

    Where the estimated dimension exceeds ``DEFAULT_RANK / 2`` (where the factor is wider, `choose_factor_width`):
    the factor's learning rate ramps up over the run's ``warmup`` from its first step, and its gradient guard
    cuts at `DEFAULT_FACTOR_CLIP` times its running norm; else neither. Below the threshold every measured default
    stays: on the swiss roll (10k points, seed 0) the guard cut 21 steps and the error went 0.009 → 0.011
    (`benchmarks/RESULTS.md`, seventeenth session). The factor network's rate is ``lr · hidden / factor_hidden``
    where it is wider than ``hidden``, else ``lr``: at twice the width and the full rate S¹⁶'s factor jumped
    mid-run on two seeds of five at 10k points (`benchmarks/RESULTS.md`, eighteenth session)."""
    high = _high_dimension(estimate)
    rule = f"auto: on where the estimated dimension exceeds {DEFAULT_RANK // 2}, else off"
    ramp_auto, clip_auto = cfg.factor_ramp == "auto", cfg.factor_clip == "auto"
    if not (ramp_auto or clip_auto):
        rule = "asked for"
    elif not (ramp_auto and clip_auto):  # say which was asked for, and the rule of the other
        asked, auto = ("factor_ramp", "factor_clip") if clip_auto else ("factor_clip", "factor_ramp")
        rule = f"{asked} asked for; {auto} {rule}"
    if cfg.factor_ramp == "auto":
        cfg = _resolved(cfg, factor_ramp=cfg.warmup if high else 0.0)
    if cfg.factor_clip == "auto":
        cfg = _resolved(cfg, factor_clip=DEFAULT_FACTOR_CLIP if high else 0.0)
    rate_rule = "asked for"
    if cfg.factor_lr_scale == "auto":
        width = cfg.factor_hidden if isinstance(cfg.factor_hidden, int) else cfg.hidden
        cfg = _resolved(cfg, factor_lr_scale=min(1.0, cfg.hidden / width))
        rate_rule = "auto: hidden / factor_hidden where the factor network is wider, else 1"
    return cfg, {"factor_ramp": cfg.factor_ramp, "factor_clip": cfg.factor_clip, "rule": rule,
                 "factor_lr_scale": cfg.factor_lr_scale, "rate_rule": rate_rule}


def choose_warmup(cfg: TrainConfig, estimate: int | None) -> tuple[TrainConfig, dict]:
    """``cfg`` with ``denoiser_warmup`` resolved where it is ``"auto"``, and why, for the file.

    `HIGH_DIMENSION_WARMUP` (the factor from a quarter of the steps) where the estimated dimension exceeds
    ``DEFAULT_RANK / 2``, i.e. where `choose_rank` raises the rank, else `DENOISER_WARMUP`. Measured on S¹⁶ in R⁶⁴
    at 10k points, rank 32 (`benchmarks/RESULTS.md`, thirteenth session): from half-way 0.62 (seed 0); from a
    quarter 0.061 / 0.103 / 0.661 (seeds 0–2; tuned centred k-NN 0.147), the failure flagged by the trainer's
    self-consistency check. On S⁸ the two gave the same (0.017–0.030 against 0.024–0.026), so below the
    threshold the measured default stays."""
    if not cfg.centred:  # no denoiser: the factor trains from the first step (`TrainConfig` refuses a warm-up)
        return _resolved(cfg, denoiser_warmup=0.0), {"denoiser_warmup": 0.0, "rule": "uncentred: no denoiser"}
    high = _high_dimension(estimate)
    value = HIGH_DIMENSION_WARMUP if high else DENOISER_WARMUP
    rule = (f"auto: {HIGH_DIMENSION_WARMUP:g} where the estimated dimension exceeds {DEFAULT_RANK // 2}, else "
            f"{DENOISER_WARMUP:g}")
    if cfg.denoiser_warmup != "auto":
        return cfg, {"denoiser_warmup": cfg.denoiser_warmup, "rule": "asked for"}
    return _resolved(cfg, denoiser_warmup=value), {"denoiser_warmup": value, "rule": rule}
