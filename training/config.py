"""`TrainConfig`: the settings of one training run, validated when built (issue 13, item 8).

Every field is checked in ``__post_init__`` (type, finiteness, range), so a bad setting fails with one
``TypeError``/``ValueError`` naming the field before any data is read or any step is taken. Checks that need
the data (``rank <= D``) are in `TrainConfig.check_data_dim`, which `train` calls before building a model.
"""

from __future__ import annotations

from dataclasses import dataclass

from learned_manifold.metrics.knn_spacing import GRAPH_NUMBERS, GRAPH_POINTS, LANDMARK_FLOOR, graph_point_count
from learned_manifold.models import (
    INPUT_SCALINGS,
    LOSSES,
    MAX_DEPTH,
    MAX_DIM,
    MAX_LANDMARK_NUMBERS,
    MAX_RANK,
    MAX_WIDTH,
    SAMPLER_NAMES,
    check_int,
    check_real,
)
from learned_manifold.precision import PRECISIONS
from learned_manifold.unet import UNET_PRESETS
from learned_manifold.user_warnings import warn_user

from .backbone_spec import is_image_shape, model_spec
from .losses import FACTOR_TARGETS
from .recipe_checks import check_recipe

__all__ = ["BACKBONE_CHOICES", "DEFAULT_FACTOR_CLIP", "DEFAULT_LANDMARKS", "DEFAULT_RANK", "DENOISER_WARMUP",
           "HIGH_DIMENSION_WARMUP", "MAX_BATCH", "MAX_SEED", "NORM_SPREAD", "SPAN_FRACTION", "TRAIN_INPUT_SCALINGS",
           "TrainConfig", "is_image_shape"]

BACKBONE_CHOICES = ("auto", "mlp", "unet")

TRAIN_INPUT_SCALINGS = ("auto", *INPUT_SCALINGS)
"""``input_scaling`` values of a run: ``"auto"`` resolves to one of the model's `INPUT_SCALINGS` from the data."""

SPAN_FRACTION = 0.5
"""``input_scaling="auto"`` preconditions when the data's linear span (principal variances above 10⁻³ of the
largest) has at most this fraction of the ``D`` dimensions (`learned_manifold_training.input_choices`)."""

NORM_SPREAD = 0.05
"""``norm_feature="auto"`` switches the feature on below this relative spread of the points' distances from their
mean (`TrainConfig.norm_feature`)."""

DEFAULT_LANDMARKS = (GRAPH_POINTS, GRAPH_NUMBERS)
"""``landmarks=None`` stores ``min(4096, max(2, 2²¹ / D), training points)`` training points
(`learned_manifold.metrics.knn_spacing.graph_point_count` with `LANDMARK_FLOOR`: 8 MB in float32, never the one
point that makes no graph; all points of the built-in digits, 4,096 points of the swiss roll, 512 images of
64 × 64, 10 of 256 × 256 × 3)."""

MAX_SEED = 2**63 // 1_000_003 - 2**32  # batches are keyed by seed * 1_000_003 + step (a 64-bit generator seed)
MAX_STEPS = 2**31
MAX_BATCH = 2**31
"""The largest batch size (`TrainConfig`, `vae_trainer.VAETrainConfig`)."""
MAX_JACOBIAN_PROBES = 64  # each probe is one more backward pass per step

DEFAULT_FACTOR_CLIP = 4.0
"""The factor's gradient guard where ``factor_clip="auto"`` turns it on (`input_choices.choose_factor_guards`)."""

DEFAULT_RANK = 16
"""The MLP factor's rank when unset, unless the data's estimated dimension exceeds half of it
(`input_choices.choose_rank`)."""
DENOISER_WARMUP = 0.5
"""What ``denoiser_warmup="auto"`` gives unless the data's estimated dimension exceeds 8
(`input_choices.choose_warmup`): the recipe measured on S² to S⁸, the torus and the roll."""
HIGH_DIMENSION_WARMUP = 0.25
"""What ``denoiser_warmup="auto"`` gives where the rank rule raises the rank (estimated dimension above 8): on
S¹⁶ in R⁶⁴ it turned 0.62 into 0.061 / 0.103 / 0.661 on three seeds (`benchmarks/RESULTS.md`, thirteenth
session)."""


@dataclass
class TrainConfig:
    """Settings of one training run. Bandwidths are in units of the data scale ``s`` (SPEC §1):
    the sampler draws ``σ/s`` in ``[sigma_min, sigma_max]``.

    Attributes:
        steps: optimisation steps (default 6000: at 3000 the denoiser had not learned to shrink a curved normal,
            which the factor inherits, SPEC §3; Swiss roll in R¹⁰, 3 seeds: tangent error 0.185 → 0.028,
            dimension right at 77% → 100% of points, ``benchmarks/results/cpu/recipe*.md``); batch_size: the
            global batch (split across DDP ranks).
        rank, hidden, depth, emb_dim: model size (SPEC §4); rank ``None`` means ``min(D, max(16, 2 d̂))`` for
            the MLP, ``d̂`` the data's dimension estimated by local PCA before the first step
            (`input_choices.choose_rank`: rank 16 cannot fit S¹⁶, SPEC §3), and the preset's rank capped at ``D``
            for the UNet; an explicit rank must be at most ``D`` (checked by `check_data_dim` once the data are
            known). ``hidden``, ``depth`` and ``emb_dim`` size the MLP only (as ``final_norm`` and ``norm_feature``
            shape it): with ``backbone="unet"`` they are refused, where ``"auto"`` chooses the UNet a warning
            names them (`model_spec`); the UNet's σ-embedding width is its preset's.
        final_norm: (MLP) a LayerNorm before the heads, as the network had before the sixth session.
            ``None`` (default): without it where the input is Gaussian-preconditioned, with it otherwise. The
            norm erases the input's norm: on S⁸ in R⁶⁴ (preconditioned) two denoisers of five never learned the
            sphere's radius with it and all five did without; on the torus (not preconditioned) it is better
            with it (0.025 against 0.039; `learned_manifold.mlp.FiLMResMLP`, ``benchmarks/RESULTS.md``).
        norm_feature: (MLP) the input's log squared norm as one more input feature
            (`learned_manifold.mlp.FiLMResMLP`). ``"auto"`` (default, eleventh session): on when the standardised
            training points' distances from their mean vary by less than `NORM_SPREAD` (relative standard
            deviation; the data lie near a sphere about their mean: whole spheres S^d 0.003–0.02, the torus in R³
            and the swiss roll in R¹⁰ 0.23; a cap of a sphere, e.g. clustered unit-norm embeddings, is not
            centred on the sphere's centre and may read off), else off; the model file records the choice and
            the spread. Measured (``benchmarks/RESULTS.md``): on spheres it helps (S¹⁶ in R⁶⁴: the denoiser learns
            the radius, 1.37 → 0.68; S⁸ at N = 100k 0.021–0.025 on five seeds against 0.024–0.029 without), on the
            swiss roll in R¹⁰ it hurts (CLI defaults, seeds 0–2: 0.0120 / 0.0120 / 0.0131 against 0.0097 / 0.0111
            / 0.0097 without; tuned k-NN 0.0109). ``True`` / ``False`` force it.
        backbone: ``"auto"`` (the UNet for image-shaped points, `is_image_shape`, else the MLP), ``"mlp"`` (the
            FiLM residual MLP of SPEC §4) or ``"unet"`` (`learned_manifold.unet.UNet`, SPEC §9).
        preset: a UNet preset of `learned_manifold.unet.UNET_PRESETS` (``None``: ``"small"``); only with the UNet.
        centred: train a denoiser and match the mean-centred CDC (SPEC §3; the best measured recipe).
        denoiser_warmup: fraction in ``[0, 1)`` of the steps that train the denoiser alone before the factor
            starts (the Jacobian target is only as good as the denoiser it is read from). ``"auto"`` (default):
            0.5, or 0.25 where the data's estimated dimension exceeds 8 (`input_choices.choose_warmup`; the
            trainer resolves it before the first step and the model file records the value and why).
        factor_target: (centred runs) what the factor matches: ``"jacobian"`` (default; the trained denoiser's
            Jacobian ``Γᶜ = ∂x̂/∂y`` by one probe product per point, `learned_manifold_training.losses`)
            or ``"residual"`` (SPEC §3, one noisy sample ``aaᵀ`` of ``Γᶜ`` per point; the default before the
            sixth session). The default recipe (``jacobian``, ``input_scaling="auto"``, ``grad_clip=0``,
            ``denoiser_warmup=0.5``) against the residual one, ``benchmarks/results/cpu/recipe-jacobian/`` and
            ``benchmarks/RESULTS.md``: S⁸ in R⁶⁴ learns its dimension (error 1.24 → 0.03), the roll, S² and
            the torus improve or hold; a step costs one more input-only backward pass of the denoiser.
        shared_trunk: (centred runs) one network with a factor head and a denoiser head on a shared trunk
            (`learned_manifold.models.ModelConfig.shared_trunk`) instead of two networks: a step costs one
            network's forward and backward (0.91–0.95× the samples/s of a plain uncentred step; two networks
            0.57–0.60× with the residual target, 0.50× with the default Jacobian target,
            ``benchmarks/results/cpu/recipe-vjp/training_recipe.md``). Not the default: at the default budget
            (residual target) it is less accurate (swiss roll in R¹⁰, 3 seeds: tangent error 0.035 against 0.028)
            and fails on S² in R⁶⁴ (0.20–1.02 against 0.034–0.048; ``benchmarks/results/cpu/recipe-shared-trunk/``);
            with the Jacobian target it fails S² too (1.80–1.86 against 0.006; 0.76× per step,
            ``benchmarks/results/cpu/fifteenth-recipe/``). Ignored by uncentred runs, which train one network
            anyway.
        factor_trunk_grad: with a shared trunk, the scale in ``[0, 1]`` of the factor loss's gradient into the
            trunk (the denoiser's always reaches it): ``1`` trains the trunk on both losses (the factor then
            wrecks the denoiser), ``0`` on the denoiser's alone (the factor head reads the denoiser's features:
            roll 0.096); ``0.1`` was the best measured (``recipe-shared-trunk/screening.md``).
        factor_fraction: (centred runs) the fraction in ``(0, 1]`` of each batch's points the factor's loss is
            computed on once the factor starts (the denoiser's loss always covers the whole batch); a step then
            runs the factor network on ``ceil(fraction · batch)`` points. Not the default: on S⁸ in R⁶⁴ (10k
            points, seeds 0 and 1) ``0.25`` ran a whole default run at 1.0× the samples/s of a plain uncentred
            step (the default 0.70×) but its tangent error was 0.036 and 0.037 against 0.025 and 0.026
            (``benchmarks/RESULTS.md``); on small batches the factor sees too few points (a circle at batch 64:
            0.44 against 0.03).
        factor_ramp: (centred runs with two networks whose factor starts after the denoiser's warm-up) the
            fraction of ``steps`` over which the factor network's learning rate ramps up linearly from its first
            step (``0``: it starts at the schedule's full rate). ``"auto"`` (default): ``warmup`` where the data's
            estimated dimension exceeds 8 (with the wider factor, ``factor_hidden``), else 0
            (`input_choices.choose_factor_guards`). The factor's Adam state starts there, and its first steps at
            the full rate move every weight by about ``lr`` at once: on S¹⁶ in R⁶⁴ with the factor at width 512
            its loss rose to 7,000 in the first 50 steps and the factor never learned the sphere (docs/SPEC.md §3,
            ``benchmarks/RESULTS.md``, seventeenth session).
        factor_lr_scale: (a factor network of its own, not a shared trunk) its learning rate as a multiple of
            ``lr`` (the same schedule, ramp and repair, scaled). ``"auto"`` (default): ``hidden / factor_hidden``
            where the factor network is wider than ``hidden`` (so ``0.5`` with the doubled width of
            ``factor_hidden="auto"``), else ``1`` (`input_choices.choose_factor_guards`). Adam moves every weight
            by about its rate per step, so a network twice as wide moves its outputs about twice as far: on S¹⁶
            in R⁶⁴ (10k points) the factor at width 512 and the full rate jumped (loss 0.7 → 57) 500 steps
            after it started and finished at 0.164; at half the rate it did not jump and reached 0.049
            (docs/SPEC.md §3, ``benchmarks/RESULTS.md``, eighteenth session).
        factor_hidden: (the MLP) the factor network's hidden width: ``None`` is ``hidden``; ``"auto"`` (default)
            is ``2 · hidden`` where the data's estimated dimension exceeds 8 (where the rank rule raises the rank),
            else ``hidden`` (`input_choices.choose_factor_width`; the denoiser keeps ``hidden`` or
            ``denoiser_hidden``). On S¹⁶ in R⁶⁴ the factor must hold the position-dependent normal direction of
            a sphere filling 17 dimensions, a quadratic function of the point; at width 256 it stalled on the
            span's fit (3k points, seed 1: 0.93 after 6,000 steps, 0.75 after 12,000) where width 512 learned
            it (0.085; ``benchmarks/RESULTS.md``, seventeenth session).
        denoiser_hidden: (centred runs, two networks, the MLP) the denoiser's hidden width; ``None`` (default):
            ``hidden``. Recorded in the model file (``ModelConfig.denoiser_arch_kwargs``). Half the
            width makes a whole CPU run 1.06× a plain uncentred run (the default 0.73×) with the accuracy of the
            roll and S², but S¹⁶ failed on three seeds of three (0.53–0.68 against 0.06–0.13), the torus lost
            10–31% (at width 64 and at the CLI's 256) and S⁸ 0–11% (``benchmarks/RESULTS.md``, fourteenth and
            fifteenth sessions), so it is not the default.
        freeze_denoiser: (centred runs, two networks) the denoiser stops learning when the factor starts (after
            ``denoiser_warmup``), at its exponential moving average (``ema``) of that moment: the factor's steps
            then run the denoiser forward and one input-only backward pass for the target, without the
            denoiser's own loss, backward through its weights and update.
            Not the default: a step costs 0.77× a plain uncentred step (the default 0.57×; a whole run 0.98×
            against 0.80×), but the swiss roll's tangent error was 0.016–0.021 against 0.0097
            (``benchmarks/RESULTS.md``, eleventh session): the denoiser keeps improving while the factor trains.
        jacobian_probes: (Jacobian target) probes ``v`` per point, each one more input-only backward pass of
            the denoiser; the factor's loss is their mean. One probe's estimate of ``‖AAᵀ − J‖²_F`` is so noisy
            that a factor network fitted to S¹⁶'s exact tangent projector in R⁶⁴ by it ended at error 0.4–0.6
            where the exact distance reached 0.025 in the same steps, and 16 probes 0.028–0.039
            (`benchmarks.probe_fit`). In the full recipe (S¹⁶, 10k points, rank 32) 16 probes lowered the error
            from 0.62 to 0.45 only (tuned k-NN 0.15), and with ``denoiser_warmup=0.25`` as well to **0.057**,
            dimension right everywhere on seed 0, but 0.385 on seed 1 (thirteenth session), where the factor from a
            quarter of the steps with one probe gave 0.061 / 0.103 / 0.661 on seeds 0–2 at a third of the cost.
            Each probe costs a backward pass, so ``1`` stays the default (``benchmarks/RESULTS.md``).
        factor_refit: (centred runs with two networks) the factor's repair, as a fraction in ``[0, 1]`` of
            ``steps`` (``0``: off): when the finished model fails the trainer's self-consistency check, the
            factor is fitted again to the frozen denoiser (its ``factor_target``) at a tenth of ``lr`` for that
            many more steps, and kept only if the two networks then agree better (`learned_manifold_training.refit`; the
            model file's validation records what happened). A model that passes the check is not touched. On
            a failing S¹⁶-in-R⁶⁴ seed (10k points) the denoiser was right and the factor had not converged:
            0.246 → 0.079 (tuned k-NN 0.147); a factor that had collapsed (S¹⁶, 3k points, error 3.2) was not
            repaired and stays flagged (docs/SPEC.md §3, ``benchmarks/RESULTS.md``, sixteenth session).
        factor_clip: the guard against the factor's loss blowing up (``0``: off): each step the factor network's
            gradient norm is cut to ``factor_clip`` times the running geometric mean of its recent norms
            (`learned_manifold_training.clipping`; never in its first 100 steps). ``"auto"`` (default):
            `DEFAULT_FACTOR_CLIP` where the data's estimated dimension exceeds 8, else off
            (`input_choices.choose_factor_guards`; on the roll it cut 21 steps and cost 0.009 → 0.011). The
            Jacobian-matching loss is quartic in the factor; on S¹⁶ in R⁶⁴ two runs without a guard blew up
            mid-run (gradient norms 10⁵–10¹⁰) and never recovered (tangent error 3.2 and 4.4); with it a run
            whose loss jumped to 77 mid-run came back and learned the sphere (docs/SPEC.md §3,
            ``benchmarks/RESULTS.md``, seventeenth session). A run in which it cuts nothing is unchanged bit for
            bit. The model file's validation records how many steps it cut.
        loss, tikhonov, sampler, sigma_min, sigma_max: the loss and bandwidth sampler (SPEC §3). ``tikhonov`` is
            λ_T in ``G = AAᵀ + λ_T I`` in this library's units: 2 × the paper code's ``tikhonov_epsilon`` gives the
            same gradients (its target is ``εεᵀ/2``, SPEC §1).
        input_scaling: ``"auto"`` (default): ``"gaussian"`` for the MLP when the data's linear span (principal
            variances above 10⁻³ of the largest) has at most `SPAN_FRACTION` of the ``D`` dimensions, else
            ``"none"`` (the choice and the span are recorded in the model file). ``"none"`` feeds both networks
            the standardised ``y`` as is; ``"unit"`` feeds ``c_in(σ) y`` with unit RMS norm at every bandwidth
            (`learned_manifold.models.input_scale`; better on the roll, worse on the torus,
            ``benchmarks/results/cpu/recipe.md``). ``"gaussian"``: Gaussian preconditioning
            (`learned_manifold.preconditioning`): the networks see the data's linear denoiser applied to ``y``,
            and the denoiser learns only what it misses: without it S⁸'s denoiser never learns the radius (its
            normal eigenvalue stays 0.96); on the torus, which fills R³, it triples the error.
        gaussian_rank: principal directions of the Gaussian model under ``input_scaling="gaussian"`` (capped at
            ``D``); estimated from up to 20,000 training points. Refused away from its default under ``"none"`` and
            ``"unit"`` (`recipe_checks.check_recipe`).
        lr, weight_decay, warmup, grad_clip, ema: AdamW with linear warm-up (fraction of steps) then cosine
            decay to ``lr/10``; gradient-norm clipping (``0``, the default, disables; at 1.0 it keeps a
            Gaussian-preconditioned denoiser from learning S⁸'s radius, ``benchmarks/RESULTS.md``; the factor's
            loss is 4D² times the paper code's, its factor √2 times, SPEC §1, so gradients are 2√2·D² to 4D² times
            the paper's: its clip value 1.0 does not transfer); EMA decay of the saved weights (``0`` disables).
        val_every: validation period in steps (``0``: only at the end); a centred run validates only once the
            factor trains (150 steps, warm-up 0.5, ``val_every=25``: at 100, 125, 150), at the initial σ
            (`validation.initial_sigma`), not the one chosen at the end; kept in the file's ``"periodic"``.
        checkpoint_every: checkpoint period (``0``: only at the end and on interruption); by default every 500
            steps, as ``learned-manifold train`` does (its default is this one), so that a run killed before the
            end (``kill -9``, a crash) can be resumed (`trainer.train`'s ``resume``).
        val_points: held-out points for validation and σ selection, silently at most ``N // 5`` (600 points hold out
            120 of 500); the file records ``num_val_points`` and ``num_train_points`` (`info` prints them).
        precision: ``"auto"`` (bf16 autocast only where a short probe of this run's training step measures it
            faster than fp32 on this device, `learned_manifold.precision`; fp32 when unsure: a timing, so two runs
            of one seed may choose differently on a loaded machine), ``"fp32"``, or ``"bf16"`` (autocast);
            compile: ``torch.compile`` the networks.
        seed: seeds the data split, the initialisation and every batch. Under ``precision="auto"`` the weights
            also depend on the probe's timing: for bit-identical reruns set ``precision`` to fp32 or bf16.
        landmarks: training points stored in the model file (a seeded subsample, data units;
            `learned_manifold.models.ModelConfig.landmarks`), through which geodesics start (``init="auto"``
            walks the shortest path through them, `learned_manifold.geodesic_init`): without them a learned
            field's default start is the straight line landed on the data, which jumps between the layers of a
            swiss roll. ``None`` (default): `DEFAULT_LANDMARKS`; ``0``: store none (the file then holds no data);
            ``1`` is refused (one point makes no graph); more than the run's training points stores them all,
            with a warning (`landmark_count`). They do not change the training.

    Raises:
        TypeError: a field of the wrong type (e.g. a float number of steps, a bool where a flag's True/False or a
            count is expected).
        ValueError: a field out of range or not finite, or a real-valued field that is no real number (a bool, a
            string: `learned_manifold.checks.check_real`); the message names the field. Or a setting asked for that
            the recipe would ignore (`recipe_checks.check_recipe`: e.g. ``factor_ramp`` with a shared trunk).
    """

    steps: int = 6000
    batch_size: int = 512
    rank: int | None = None
    hidden: int = 256
    depth: int = 3
    emb_dim: int = 128
    final_norm: bool | None = None
    norm_feature: bool | str = "auto"
    backbone: str = "auto"
    preset: str | None = None
    centred: bool = True
    denoiser_warmup: float | str = "auto"
    factor_target: str = "jacobian"
    shared_trunk: bool = False
    factor_trunk_grad: float = 0.1
    factor_fraction: float = 1.0
    freeze_denoiser: bool = False
    jacobian_probes: int = 1
    factor_refit: float = 0.25
    factor_clip: float | str = "auto"
    factor_ramp: float | str = "auto"
    factor_lr_scale: float | str = "auto"
    factor_hidden: int | str | None = "auto"
    denoiser_hidden: int | None = None
    loss: str = "lowrank"
    tikhonov: float = 0.0
    sampler: str = "loguniform"
    sigma_min: float = 3e-3
    sigma_max: float = 4.0
    input_scaling: str = "auto"
    gaussian_rank: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup: float = 0.02
    grad_clip: float = 0.0
    ema: float = 0.999
    val_every: int = 0
    checkpoint_every: int = 500
    val_points: int = 500
    precision: str = "auto"
    compile: bool = False
    seed: int = 0
    landmarks: int | None = None

    def __post_init__(self) -> None:
        self.steps = check_int(self.steps, "steps", 1, MAX_STEPS)
        self.batch_size = check_int(self.batch_size, "batch_size", 1, MAX_BATCH)
        if self.rank is not None:
            self.rank = check_int(self.rank, "rank", 1, MAX_RANK)
        self.hidden = check_int(self.hidden, "hidden", 1, MAX_WIDTH)
        self.depth = check_int(self.depth, "depth", 1, MAX_DEPTH)
        self.emb_dim = check_int(self.emb_dim, "emb_dim", 1, MAX_WIDTH)
        _choice(self.backbone, "backbone", BACKBONE_CHOICES)
        if self.preset is not None:
            _choice(self.preset, "preset", tuple(UNET_PRESETS))
            if self.backbone == "mlp":
                raise ValueError(f"preset {self.preset!r} is a UNet preset; it needs backbone 'unet' or 'auto', "
                                 "not 'mlp'")
        for name in ("centred", "compile", "shared_trunk", "final_norm", "norm_feature", "freeze_denoiser"):
            value = getattr(self, name)
            if name == "norm_feature" and isinstance(value, str) and value == "auto":
                continue
            if not isinstance(value, bool) and not (name == "final_norm" and value is None):
                also = " or 'auto'" if name == "norm_feature" else ""
                raise TypeError(f"{name} must be True or False{also}, got {value!r:.60}")
        if not _is_auto(self.denoiser_warmup):
            self.denoiser_warmup = _fraction(self.denoiser_warmup, "denoiser_warmup")
        self.factor_trunk_grad = check_real(self.factor_trunk_grad, "factor_trunk_grad", nonnegative=True)
        if self.factor_trunk_grad > 1:
            raise ValueError(f"factor_trunk_grad must be in [0, 1], got {self.factor_trunk_grad}")
        self.factor_fraction = check_real(self.factor_fraction, "factor_fraction", positive=True)
        if self.factor_fraction > 1:
            raise ValueError(f"factor_fraction must be in (0, 1], got {self.factor_fraction}")
        self.factor_refit = check_real(self.factor_refit, "factor_refit", nonnegative=True)
        if not _is_auto(self.factor_clip):
            self.factor_clip = check_real(self.factor_clip, "factor_clip", nonnegative=True)
        if not _is_auto(self.factor_ramp):
            self.factor_ramp = _fraction(self.factor_ramp, "factor_ramp")
        if not _is_auto(self.factor_lr_scale):
            self.factor_lr_scale = check_real(self.factor_lr_scale, "factor_lr_scale", positive=True)
        if not _is_auto(self.factor_clip) and 0 < self.factor_clip < 1:
            raise ValueError(f"factor_clip must be 0 (off) or at least 1 (a multiple of the running gradient norm), "
                             f"got {self.factor_clip}")
        if self.factor_refit > 1:
            raise ValueError(f"factor_refit must be in [0, 1] (a fraction of steps), got {self.factor_refit}")
        self.jacobian_probes = check_int(self.jacobian_probes, "jacobian_probes", 1, MAX_JACOBIAN_PROBES)
        if self.factor_hidden is not None and not _is_auto(self.factor_hidden):
            self.factor_hidden = check_int(self.factor_hidden, "factor_hidden", 1, MAX_WIDTH)
        if self.denoiser_hidden is not None:
            self.denoiser_hidden = check_int(self.denoiser_hidden, "denoiser_hidden", 1, MAX_WIDTH)
        self.warmup = _fraction(self.warmup, "warmup")
        self.ema = _fraction(self.ema, "ema")
        _choice(self.loss, "loss", LOSSES)
        _choice(self.sampler, "sampler", SAMPLER_NAMES)
        _choice(self.precision, "precision", PRECISIONS)
        _choice(self.factor_target, "factor_target", FACTOR_TARGETS)
        _choice(self.input_scaling, "input_scaling", TRAIN_INPUT_SCALINGS)
        self.gaussian_rank = check_int(self.gaussian_rank, "gaussian_rank", 1, MAX_DIM)
        self.tikhonov = check_real(self.tikhonov, "tikhonov", nonnegative=True)
        self.sigma_min = check_real(self.sigma_min, "sigma_min", positive=True)
        self.sigma_max = check_real(self.sigma_max, "sigma_max", positive=True)
        if not self.sigma_min < self.sigma_max:
            raise ValueError(f"sigma_min must be < sigma_max, got {self.sigma_min} and {self.sigma_max}")
        self.lr = check_real(self.lr, "lr", positive=True)
        self.weight_decay = check_real(self.weight_decay, "weight_decay", nonnegative=True)
        self.grad_clip = check_real(self.grad_clip, "grad_clip", nonnegative=True)
        self.val_every = check_int(self.val_every, "val_every", 0, MAX_STEPS)
        self.checkpoint_every = check_int(self.checkpoint_every, "checkpoint_every", 0, MAX_STEPS)
        self.val_points = check_int(self.val_points, "val_points", 1, 2**31)
        self.seed = check_int(self.seed, "seed", 0, MAX_SEED)
        if self.landmarks is not None:
            self.landmarks = check_int(self.landmarks, "landmarks", 0, MAX_LANDMARK_NUMBERS)
            if self.landmarks == 1:  # the file opened, but a graph of one point has no edges (no path starts)
                raise ValueError("landmarks must be 0 (store none) or at least 2: geodesics start through a "
                                 "neighbour graph of the landmarks, and one point makes no graph; got 1")
        check_recipe(self)  # settings the recipe (centred, shared trunk) would ignore

    def landmark_count(self, n_train: int, D: int) -> int:
        """Landmarks a run on ``n_train`` training points of dimension ``D`` stores: ``landmarks`` (or, when
        ``None``, `learned_manifold.metrics.knn_spacing.graph_point_count` with the landmarks' floor of 2: the
        rows a k-NN field's neighbour graph joins up to ``D = 8,192``, never 1), at most ``n_train``: an explicit
        ``landmarks`` above ``n_train`` stores all ``n_train`` training points, with a warning saying so (it
        was cut down without a word, tester B s37); ``ValueError`` naming the field when more than
        `MAX_LANDMARK_NUMBERS` numbers are asked for."""
        if self.landmarks is None:
            return graph_point_count(n_train, D, floor=LANDMARK_FLOOR, max_numbers=MAX_LANDMARK_NUMBERS)
        if self.landmarks * D > MAX_LANDMARK_NUMBERS:
            raise ValueError(f"landmarks: {self.landmarks} points of dimension {D} exceed the "
                             f"{MAX_LANDMARK_NUMBERS} numbers a model file may store; ask for at most "
                             f"{MAX_LANDMARK_NUMBERS // D}")
        if self.landmarks > n_train:
            warn_user(f"landmarks: {self.landmarks} asked for, but the run has {n_train} training points (the "
                      f"held-out ones are never stored): the model file stores all {n_train} training points")
        return min(self.landmarks, n_train)

    def check_data_dim(self, D: int) -> int:
        """The factor's rank for data of dimension ``D``: ``rank`` (at most ``D``), ``min(D, 16)`` when unset (the
        trainer may raise it once it has estimated the data's dimension, `input_choices.choose_rank`), ``D`` for
        the full loss (which needs ``rank = D``). Raises ``ValueError`` naming the field otherwise."""
        if self.loss == "full":
            if self.rank is not None and self.rank != D:
                raise ValueError(f"rank must equal D = {D} for the full loss, got {self.rank}")
            return D
        if self.rank is None:
            return min(D, DEFAULT_RANK)
        if self.rank > D:
            raise ValueError(f"rank must be at most the data dimension D = {D}, got {self.rank}")
        return self.rank

    def model_spec(self, data_shape: tuple[int, ...]) -> tuple[str, dict, int]:
        """``(arch, arch_kwargs, rank)`` of the model for points of shape ``data_shape``: the backbone chosen by
        ``backbone`` (``"auto"``: `is_image_shape`), its keyword arguments (the MLP's ``hidden``/``depth``/
        ``emb_dim``, or the UNet preset's, as JSON-ready lists) and the rank (`check_data_dim`; with the UNet an
        unset rank is the preset's, capped at ``D``). Raises ``ValueError`` naming the field when the backbone or
        preset does not fit the data.

        Where ``backbone="auto"`` chooses the UNet, a ``UserWarning`` (once per config object: `train` calls this
        twice) names the MLP's settings set away from their defaults (`recipe_checks.MLP_ONLY`), which do nothing
        there; one config may serve flat data too (``backbone="unet"`` refuses them when built)."""
        return model_spec(self, data_shape)  # `backbone_spec.py`


def _is_auto(value: object) -> bool:
    return isinstance(value, str) and value == "auto"


def _fraction(value: object, name: str) -> float:
    value = check_real(value, name, nonnegative=True)
    if not value < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return value


def _choice(value: object, name: str, valid: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in valid:
        raise ValueError(f"{name} must be one of {', '.join(valid)}; got {value!r:.60}")
