"""`MetricModel`, the trained model, its `ModelConfig`, and the backbone registry (SPEC §4, §9).

The backbones live beside this module (`learned_manifold.mlp`: the FiLM-conditioned residual MLP;
`learned_manifold.unet`: the UNet). A *backbone* maps standardised points ``z`` of shape ``(B, *data_shape)``
and standardised bandwidths ``σ_z`` of shape ``(B,)`` to ``(B, D, k)``: ``k = r`` columns of the factor ``A``,
or ``k = 1`` for the denoiser's noise prediction. Backbones are looked up by name in `BACKBONES`, so a new
backbone is added without touching the losses or the manifold. A backbone also takes ``columns=(lo, hi)`` to
produce only those columns (`learned_manifold.heads.head_columns`).

`MetricModel` holds a factor backbone and an optional denoiser backbone (for mean-centring, SPEC §3), or one
shared trunk with ``r + 1`` columns that is both (``ModelConfig.shared_trunk``), the data standardisation
``z = (x − μ)/s`` (SPEC §1) and the metadata of the model file. Its public methods take and return unscaled data
and data-unit bandwidths.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from .checks import MAX_DEPTH, MAX_DIM, MAX_RANK, MAX_WIDTH, check_data_shape, check_int, check_real
from .mlp import FiLMResMLP, SigmaEmbedding
from .preconditioning import input_scale, network_input
from .unet import UNet

__all__ = [
    "BACKBONES",
    "FiLMResMLP",
    "ModelConfig",
    "MetricModel",
    "SigmaEmbedding",
    "build_backbone",
    "backbone_options",
    "LOSSES",
    "SAMPLER_NAMES",
    "INPUT_SCALINGS",
    "LEGACY_DEFAULTS",
    "input_scale",
    "MAX_DIM",
    "MAX_RANK",
    "MAX_WIDTH",
    "MAX_DEPTH",
]

# Names the library accepts in a config; `learned_manifold_training` owns the implementations (the library does
# not import it), and its tests check that its registries match these names.
LOSSES = ("lowrank", "full")
SAMPLER_NAMES = ("loguniform", "lognormal", "uniform")
INPUT_SCALINGS = ("none", "unit", "gaussian")
# Fields added to `ModelConfig` after model files were first written, with the value that gives a file written
# before them its old behaviour: `ModelConfig.from_dict` fills them in when a stored config lacks them.
LEGACY_DEFAULTS = {"input_scaling": "none", "shared_trunk": False, "gaussian_rank": 0, "landmarks": 0}
# The same for fields that only a model file holds (the trainer's settings name them differently).
_MODEL_LEGACY: dict[str, dict] = {"denoiser_arch_kwargs": {}}
MAX_LANDMARK_NUMBERS = 2**24
"""Most numbers ``landmarks · D`` a model may store as landmarks (64 MB in float32)."""


BACKBONES: dict[str, type[nn.Module]] = {"film_mlp": FiLMResMLP, "unet": UNet}


def backbone_options(arch: str) -> tuple[str, ...]:
    """The keyword arguments (``arch_kwargs``) the backbone ``arch`` accepts, read from its constructor's
    signature: every parameter after ``data_shape`` and ``out_channels``. Unknown ``arch`` raises ``ValueError``."""
    if not isinstance(arch, str) or arch not in BACKBONES:
        raise ValueError(f"unknown architecture {arch!r}; valid names: {sorted(BACKBONES)}")
    params = list(inspect.signature(BACKBONES[arch].__init__).parameters.values())[3:]  # self, data_shape, k
    return tuple(p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))


def check_arch_kwargs(arch: str, kwargs: object) -> dict:
    """``kwargs`` as a dict of keyword arguments that the backbone ``arch`` accepts (values are checked by the
    backbone's constructor); unknown keys raise a ``ValueError`` listing the valid ones."""
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise TypeError(f"arch_kwargs must be a dict with string keys, got {type(kwargs).__name__}")
    valid = backbone_options(arch)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(f"unknown arch_kwargs {unknown} for architecture {arch!r}; valid: {sorted(valid)}")
    return dict(kwargs)


def build_backbone(arch: str, data_shape: tuple[int, ...], out_channels: int, **kwargs: object) -> nn.Module:
    """Instantiate a backbone by name from `BACKBONES`; unknown names or keyword arguments raise a
    ``ValueError`` listing the valid ones, before anything is built."""
    check_arch_kwargs(arch, kwargs)
    return BACKBONES[arch](check_data_shape(data_shape), out_channels, **kwargs)


@dataclass
class ModelConfig:
    """Everything needed to rebuild a `MetricModel`; stored as JSON in the model file.

    Attributes:
        data_shape: shape of one data point.
        rank: ``r``, columns of the factor ``A``.
        arch: backbone name in `BACKBONES`; ``arch_kwargs`` its keyword arguments.
        centred: whether a denoiser is trained and the factor matches the mean-centred CDC (SPEC §3).
        loss: ``"lowrank"`` or ``"full"`` (full: ``r = D``).
        tikhonov: ``λ_T``; the co-metric is ``G = AAᵀ + λ_T I`` (SPEC §1).
        sampler: bandwidth sampler name; ``sigma_min``/``sigma_max`` its range in data units.
        default_sigma: evaluation bandwidth (data units) used when none is given.
        sigma_rule: how ``default_sigma`` was chosen (free text, e.g. "validation tangent error").
        input_scaling: what both networks receive: ``"unit"`` the noisy point times
            ``c_in(σ_z) = (1 + D σ_z²)^(−1/2)`` (`input_scale`: EDM's c_in normalised to 1 as σ → 0), so inputs
            keep unit RMS norm at every bandwidth; ``"none"`` the standardised point as is (files written
            before this field existed, `LEGACY_DEFAULTS`); ``"gaussian"`` Gaussian preconditioning
            (`learned_manifold.preconditioning`): both networks receive the data's linear (Gaussian) denoiser
            applied to the noisy point, at unit RMS norm, and the denoiser predicts only what that linear
            denoiser misses.
        gaussian_rank: principal directions of the Gaussian model (``input_scaling="gaussian"``, ``1 ≤ k ≤ D``);
            0 otherwise. Its buffers ``pc_basis`` ``(D, k)``, ``pc_var`` ``(k,)`` and ``pc_rest`` ``()`` are
            set by the trainer (`MetricModel.set_gaussian_model`).
        shared_trunk: (centred models) one backbone with ``r + 1`` columns: a factor head (columns ``0..r−1``)
            and a denoiser head (column ``r``) on one trunk, so a training step runs one network (SPEC §3–§4);
            ``False``: two backbones, ``factor_net`` and ``denoiser_net`` (files written before this field).
        landmarks: training points the model stores in data units (buffer ``landmarks``
            ``(n, *data_shape)``, set by `MetricModel.set_landmarks`; at most `MAX_LANDMARK_NUMBERS` numbers), so
            that geodesics start on a shortest path through the data (`learned_manifold.geodesic_init`,
            ``init="graph"``); 0: none (files written before this field).
        denoiser_arch_kwargs: keyword arguments of the denoiser's backbone that differ from ``arch_kwargs``
            (two-network centred models), e.g. ``{"hidden": 128}`` for a narrower MLP denoiser; ``{}``: the
            factor's (files written before this field).

    Example:
        >>> from learned_manifold import ModelConfig
        >>> config = ModelConfig(data_shape=(8, 8), rank=4)  # an 8×8 image: D = 64
        >>> config.to_dict()["data_shape"], ModelConfig.from_dict(config.to_dict()) == config
        ([8, 8], True)
        >>> ModelConfig(data_shape=(3,), rank=0)  # every field is checked when the config is built
        Traceback (most recent call last):
            ...
        ValueError: rank must ...
    """

    data_shape: tuple[int, ...]
    rank: int
    arch: str = "film_mlp"
    arch_kwargs: dict = field(default_factory=dict)
    centred: bool = True
    loss: str = "lowrank"
    tikhonov: float = 0.0
    sampler: str = "loguniform"
    sigma_min: float = 3e-3
    sigma_max: float = 4.0
    default_sigma: float = 0.05
    sigma_rule: str = "unset"
    input_scaling: str = "none"
    shared_trunk: bool = False
    gaussian_rank: int = 0
    landmarks: int = 0
    denoiser_arch_kwargs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Check every field's type and range (one ``TypeError``/``ValueError`` naming the field), before any
        network is built: a config, from code or from a file, is valid or does not exist."""
        self.data_shape = check_data_shape(self.data_shape)
        self.rank = check_int(self.rank, "rank", 1, MAX_RANK)
        self.arch_kwargs = check_arch_kwargs(self.arch, self.arch_kwargs)
        if not isinstance(self.centred, bool):
            raise TypeError(f"centred must be a bool, got {type(self.centred).__name__}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; valid: {list(LOSSES)}")
        if self.loss == "full" and self.rank != math.prod(self.data_shape):
            raise ValueError(f"the full loss needs rank = D = {math.prod(self.data_shape)}, got {self.rank}")
        self.tikhonov = check_real(self.tikhonov, "tikhonov", nonnegative=True)
        if self.sampler not in SAMPLER_NAMES:
            raise ValueError(f"unknown sampler {self.sampler!r}; valid: {list(SAMPLER_NAMES)}")
        self.sigma_min = check_real(self.sigma_min, "sigma_min", positive=True)
        self.sigma_max = check_real(self.sigma_max, "sigma_max", positive=True)
        if not self.sigma_min < self.sigma_max:
            raise ValueError(f"need sigma_min < sigma_max, got [{self.sigma_min}, {self.sigma_max}]")
        self.default_sigma = check_real(self.default_sigma, "default_sigma", positive=True)
        if not isinstance(self.sigma_rule, str) or len(self.sigma_rule) > 1000:
            raise TypeError(f"sigma_rule must be a string of at most 1000 characters, got {self.sigma_rule!r:.60}")
        if not isinstance(self.input_scaling, str) or self.input_scaling not in INPUT_SCALINGS:
            raise ValueError(f"input_scaling must be one of {list(INPUT_SCALINGS)}, got {self.input_scaling!r:.60}")
        if self.input_scaling == "gaussian":
            self.gaussian_rank = check_int(self.gaussian_rank, "gaussian_rank", 1, math.prod(self.data_shape))
        elif self.gaussian_rank != 0:
            raise ValueError(f"gaussian_rank must be 0 unless input_scaling is 'gaussian', got "
                             f"{self.gaussian_rank!r:.60}")
        if not isinstance(self.shared_trunk, bool):
            raise TypeError(f"shared_trunk must be a bool, got {type(self.shared_trunk).__name__}")
        if self.shared_trunk and not (self.centred and self.rank < MAX_RANK):
            raise ValueError(f"shared_trunk needs centred=True (its second head is the denoiser) and rank < "
                             f"{MAX_RANK}, got centred={self.centred}, rank={self.rank}")
        self.landmarks = check_int(self.landmarks, "landmarks", 0,
                                   max(0, MAX_LANDMARK_NUMBERS // math.prod(self.data_shape)))
        if not isinstance(self.denoiser_arch_kwargs, dict):
            raise TypeError(f"denoiser_arch_kwargs must be a dict, got {type(self.denoiser_arch_kwargs).__name__}")
        if self.denoiser_arch_kwargs:
            if not self.centred or self.shared_trunk:
                raise ValueError("denoiser_arch_kwargs needs a separate denoiser network (centred=True, "
                                 "shared_trunk=False)")
            check_arch_kwargs(self.arch, {**self.arch_kwargs, **self.denoiser_arch_kwargs})
        self.denoiser_arch_kwargs = dict(self.denoiser_arch_kwargs)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["data_shape"] = list(self.data_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict, *, complete: bool = False) -> ModelConfig:
        """The config stored as ``d`` (`to_dict`'s output); unknown keys raise ``ValueError``, and so do missing
        ones: ``data_shape`` and ``rank`` always, every field when ``complete`` (a model file holds them all),
        except the fields of `LEGACY_DEFAULTS`, which a file written before they existed lacks: those take the
        value that keeps that file's old behaviour."""
        if not isinstance(d, dict):
            raise TypeError(f"a model config must be a dict, got {type(d).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(map(str, unknown))}; valid: {sorted(known)}")
        legacy = {**LEGACY_DEFAULTS, **_MODEL_LEGACY}
        missing = (known - set(legacy) if complete else {"data_shape", "rank"}) - set(d)
        if missing:
            raise ValueError(f"model config lacks keys {sorted(missing)}")
        return cls(**{**legacy, **d})


class MetricModel(nn.Module):
    """A trained metric-matching model: factor network, optional denoiser, data standardisation.

    Public methods take unscaled data ``y`` of shape ``(B, *data_shape)`` (a flat ``(B, D)`` is accepted too;
    any other shape is refused, also one with ``D`` numbers per point such as channels-last images) and data-unit
    bandwidths ``sigma`` (float, ``(B,)`` tensor, or ``None`` for ``config.default_sigma``).
    Internally ``z = (y − μ)/s`` and ``σ_z = σ/s`` (SPEC §1); ``Γ`` is dimensionless so the factor needs no
    rescaling. The buffers ``scale`` ``()`` and ``mean`` ``data_shape`` are in the dtype of the weights (the
    default dtype when built; ``mean`` is converted to it), and follow ``model.to(dtype)``.

    Example:
        >>> import torch
        >>> from learned_manifold import MetricModel, ModelConfig
        >>> config = ModelConfig(data_shape=(3,), rank=2, arch_kwargs={"hidden": 16, "depth": 1, "emb_dim": 8})
        >>> model = MetricModel(config)  # untrained; `learned-manifold train` trains and saves one
        >>> y = torch.randn(5, 3)
        >>> model.factor(y, 0.1).shape, model.denoise(y, 0.1).shape  # A: (B, D, r); x̂: (B, D)
        (torch.Size([5, 3, 2]), torch.Size([5, 3]))
    """

    # buffers (`register_buffer` in ``__init__``; the preconditioning and landmark ones only where configured)
    scale: Tensor
    mean: Tensor
    pc_basis: Tensor
    pc_var: Tensor
    pc_rest: Tensor
    landmarks: Tensor

    def __init__(self, config: ModelConfig, *, scale: float = 1.0, mean: Tensor | None = None):
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}")
        if isinstance(scale, Tensor):
            if scale.numel() != 1:
                raise ValueError(f"scale must be one number, got a tensor of shape {tuple(scale.shape)}")
            scale = scale.item()
        scale = check_real(scale, "scale", positive=True)
        if mean is not None:
            if not isinstance(mean, Tensor) or mean.numel() != math.prod(config.data_shape):
                got = tuple(mean.shape) if isinstance(mean, Tensor) else type(mean).__name__
                raise ValueError(f"mean must be a tensor of {math.prod(config.data_shape)} values, got {got}")
            if not bool(torch.isfinite(mean).all()):
                raise ValueError("mean must be finite (found NaN or inf)")
        super().__init__()
        self.config = config
        self.factor_net = self.denoiser_net = self.trunk = None
        if config.shared_trunk:  # one backbone: columns 0..r-1 are the factor, column r the denoiser's output
            self.trunk = build_backbone(config.arch, config.data_shape, config.rank + 1, **config.arch_kwargs)
        else:
            self.factor_net = build_backbone(config.arch, config.data_shape, config.rank, **config.arch_kwargs)
            if config.centred:
                self.denoiser_net = build_backbone(config.arch, config.data_shape, 1,
                                                   **{**config.arch_kwargs, **config.denoiser_arch_kwargs})
                if config.input_scaling == "gaussian":
                    # the head starts at LeCun scale, not near zero (`learned_manifold.preconditioning`)
                    head = self.denoiser_net.head.weight
                    nn.init.normal_(head, std=head[0].numel() ** -0.5)
        # the statistics in the weights' dtype (the default dtype), so a float64 model keeps the user's mean
        # exactly and its file holds one dtype; `.to(dtype)`/`.double()` convert them with the weights
        dtype = torch.get_default_dtype()
        self.register_buffer("scale", torch.tensor(float(scale), dtype=dtype))
        mean = torch.zeros(config.data_shape) if mean is None else mean.detach().reshape(config.data_shape)
        self.register_buffer("mean", mean.to(dtype=dtype, copy=True))
        if config.input_scaling == "gaussian":  # placeholder (the first k axes) until `set_gaussian_model`
            k, dim = config.gaussian_rank, math.prod(config.data_shape)
            self.register_buffer("pc_basis", torch.eye(dim, k))
            self.register_buffer("pc_var", torch.full((k,), 1.0 / dim))
            self.register_buffer("pc_rest", torch.tensor(1.0 / dim))
        if config.landmarks:  # placeholder until `set_landmarks`
            self.register_buffer("landmarks", torch.zeros(config.landmarks, *config.data_shape))

    def set_gaussian_model(self, basis: Tensor, var: Tensor, rest: Tensor) -> None:
        """Store the Gaussian model of the standardised data (`learned_manifold.preconditioning`):
        ``basis`` ``(D, k)``, ``var`` ``(k,)``, ``rest`` ``()``; only for ``input_scaling="gaussian"``."""
        if self.config.input_scaling != "gaussian":
            raise RuntimeError("this model has no Gaussian preconditioning (input_scaling is "
                               f"{self.config.input_scaling!r})")
        for name, value in (("pc_basis", basis), ("pc_var", var), ("pc_rest", rest)):
            getattr(self, name).copy_(value)

    def set_landmarks(self, points: Tensor) -> None:
        """Store ``points`` ``(config.landmarks, *data_shape)`` (or flat), finite, in data units, as the model's
        landmarks (`ModelConfig.landmarks`)."""
        if not self.config.landmarks:
            raise RuntimeError("this model stores no landmarks (config.landmarks is 0)")
        want = (self.config.landmarks, *self.data_shape)
        if not isinstance(points, Tensor) or points.numel() != math.prod(want):
            got = tuple(points.shape) if isinstance(points, Tensor) else type(points).__name__
            raise ValueError(f"landmarks must be a tensor of shape {want}, got {got}")
        if not bool(torch.isfinite(points).all()):
            raise ValueError("landmarks must be finite (found NaN or inf)")
        self.landmarks.copy_(points.detach().reshape(want))

    # -- shapes and units ---------------------------------------------------------------------------------
    @property
    def data_shape(self) -> tuple[int, ...]:
        return self.config.data_shape

    @property
    def dim(self) -> int:
        return math.prod(self.config.data_shape)

    @property
    def rank(self) -> int:
        return self.config.rank

    @property
    def has_denoiser(self) -> bool:
        return self.config.centred

    def _standardise(self, y: Tensor, sigma: float | Tensor | None) -> tuple[Tensor, Tensor]:
        if tuple(y.shape[1:]) not in (self.data_shape, (self.dim,)):  # same D in another layout: refused, not mixed up
            forms = [f"(B, {', '.join(map(str, shape))})" for shape in dict.fromkeys((self.data_shape, (self.dim,)))]
            one = tuple(y.shape) in (self.data_shape, (self.dim,))  # a single point: the batch axis is missing
            raise ValueError(f"expected points of shape {' or '.join(forms)}, got {tuple(y.shape)}"
                             + (": add a batch axis for a single point (y.unsqueeze(0))" if one else ""))
        if y.dtype != self.scale.dtype:  # the networks' weights share the buffers' dtype
            raise ValueError(f"points are {y.dtype} but the model is {self.scale.dtype}: convert the points "
                             f"(y.to({self.scale.dtype})) or the model (model.to({y.dtype})); LearnedCDC and "
                             "LearnedDataManifold convert for you")
        y = y.reshape(y.shape[0], *self.data_shape)
        sigma = self.config.default_sigma if sigma is None else sigma
        if isinstance(sigma, (int, float)):
            # One bandwidth for the whole batch: a (1,) tensor that the networks broadcast, so the σ embedding
            # and the FiLM maps run once per call, and the check needs no device round trip.
            if not (sigma > 0 and math.isfinite(sigma)):
                raise ValueError(f"sigma must be finite and positive, got {sigma}")
            sigma = torch.full((1,), float(sigma), dtype=y.dtype, device=y.device)
        else:
            sigma = torch.as_tensor(sigma, dtype=y.dtype, device=y.device)
            if sigma.numel() == y.shape[0] and sigma.ndim > 1:  # (B, 1) and the like: one per point
                sigma = sigma.reshape(-1)
            if sigma.ndim > 1 or (sigma.ndim == 1 and sigma.shape[0] not in (1, y.shape[0])):
                raise ValueError(f"sigma must be a number, or a tensor of shape () or ({y.shape[0]},) with one "
                                 f"bandwidth per point, got shape {tuple(sigma.shape)}")
            sigma = sigma.expand(y.shape[0])
            if not bool(((sigma > 0) & torch.isfinite(sigma)).all()):
                raise ValueError("sigma must be finite and positive")
        scale = self.scale.to(y.dtype)
        return (y - self.mean.to(y.dtype)) / scale, sigma / scale

    # -- the two networks, in standardised units (used by training) ---------------------------------------
    def _net_input(self, z: Tensor, sigma_z: Tensor) -> tuple[Tensor, Tensor | None]:
        """What the networks see, and the denoiser's linear part (`network_input`)."""
        gaussian = (self.pc_basis, self.pc_var, self.pc_rest) if self.config.input_scaling == "gaussian" else None
        return network_input(self.config.input_scaling, z, sigma_z, gaussian)

    @staticmethod
    def _plus_skip(noise: Tensor, skip: Tensor | None) -> Tensor:
        return noise if skip is None else noise + skip.to(noise.dtype)

    def factor_z(self, z: Tensor, sigma_z: Tensor) -> Tensor:
        """Factor ``A`` from standardised inputs: ``(B, *data_shape)``, ``(B,)`` or ``(1,)`` → ``(B, D, r)``."""
        u, _ = self._net_input(z, sigma_z)
        if self.trunk is not None:
            return self.trunk(u, sigma_z, columns=(0, self.rank))
        return self.factor_net(u, sigma_z)

    def noise_z(self, z: Tensor, sigma_z: Tensor) -> Tensor:
        """Denoiser noise prediction ``F_θ`` with ``ẑ = z − σ_z F_θ`` (SPEC §3): → ``(B, D)``."""
        if not self.has_denoiser:
            raise RuntimeError("this model was trained without a denoiser (uncentred); it cannot denoise")
        u, skip = self._net_input(z, sigma_z)
        if self.trunk is not None:
            return self._plus_skip(self.trunk(u, sigma_z, columns=(self.rank, self.rank + 1)).squeeze(-1), skip)
        return self._plus_skip(self.denoiser_net(u, sigma_z).squeeze(-1), skip)

    def factor_and_noise_z(self, z: Tensor, sigma_z: Tensor, factor_trunk_grad: float = 1.0
                           ) -> tuple[Tensor, Tensor]:
        """`factor_z` and `noise_z` of one input, ``(B, D, r)`` and ``(B, D)``: with a shared trunk from one
        pass of the network (what a training step needs, SPEC §3), else from the two networks.
        ``factor_trunk_grad`` (shared trunk): the factor's gradient into the trunk is scaled by it (``0``: the
        trunk learns from the denoiser alone and the factor head reads its features)."""
        u, skip = self._net_input(z, sigma_z)
        if self.trunk is None:
            return self.factor_net(u, sigma_z), self._plus_skip(self.denoiser_net(u, sigma_z).squeeze(-1), skip)
        # Split the column-major (B, r + 1, D) layout: its backward is one concatenation into the layout the
        # head's gradient needs (slicing (B, D, r + 1) would zero-fill and copy twice more per step).
        out = self.trunk(u, sigma_z, trunk_grad=(self.rank, factor_trunk_grad))
        A, noise = out.transpose(1, 2).split([self.rank, 1], dim=1)
        return A.transpose(1, 2), self._plus_skip(noise.squeeze(1), skip)

    # -- public, data units --------------------------------------------------------------------------------
    def factor(self, y: Tensor, sigma: float | Tensor | None = None) -> Tensor:
        """Low-rank factor of the CDC, ``G(y) = A Aᵀ (+ λ_T I)``: ``(B, *data_shape)`` → ``(B, D, r)``."""
        z, sz = self._standardise(y, sigma)
        return self.factor_z(z, sz)

    def denoise(self, y: Tensor, sigma: float | Tensor | None = None) -> Tensor:
        """Posterior mean ``x̂(y, σ) = y − σ F_θ`` in data units, shaped like ``y``."""
        z, sz = self._standardise(y, sigma)
        zhat = z.reshape(z.shape[0], self.dim) - sz.unsqueeze(-1) * self.noise_z(z, sz)
        return (zhat.reshape(z.shape) * self.scale.to(y.dtype) + self.mean.to(y.dtype)).reshape(y.shape)

    def score(self, y: Tensor, sigma: float | Tensor | None = None) -> Tensor:
        """Tweedie score ``s = (x̂(y) − y)/σ²`` in data units, shaped like ``y``."""
        sigma = self.config.default_sigma if sigma is None else sigma
        s = torch.as_tensor(sigma, dtype=y.dtype, device=y.device).expand(y.shape[0])
        return (self.denoise(y, sigma) - y) / s.reshape(-1, *([1] * (y.ndim - 1))) ** 2

    def extra_repr(self) -> str:
        c = self.config
        return (f"data_shape={c.data_shape}, rank={c.rank}, centred={c.centred}, loss={c.loss}, "
                f"shared_trunk={c.shared_trunk}, default_sigma={c.default_sigma:.4g}")
