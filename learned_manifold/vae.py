"""The VAE of the latent-space comparison (SPEC §11): an encoder and a Gaussian decoder whose variance grows off
the data.

``p(x | z) = N(μ(z), diag σ²(z))`` with the decoder mean ``μ`` a network and the precision an RBF network of the
latent code (Arvanitidis et al. 2018):

    ``1/σ²(z) = W v(z) + ζ``,  ``v_k(z) = exp(−λ_k ‖z − c_k‖²)``,  ``W ≥ 0`` of shape ``(D, K)``,

so that ``σ(z) → 1/sqrt(ζ)`` (times the data scale) far from the centres ``c_k`` (k-means of the latent codes).
The encoder gives a diagonal Gaussian posterior ``q(z | x)``; `VAE.encode` returns its mean. Training (the
ELBO for the mean, then ``W`` with the mean fixed) is `learned_manifold_training.vae_trainer`; the file format is
`learned_manifold.vae_file`.

Two backbones: ``"mlp"`` (any ``data_shape``, flattened) and ``"conv"`` (images ``(C, H, W)``, or ``(H, W)`` as
one channel): stride-2 convolutions down, transposed convolutions up, so ``(H, W)`` need not be powers of 2.
Every layer acts row by row (no batch statistics) and is traceable by ``torch.func``, so the pullback metric
(`learned_manifold.metrics.VAEPullbackMetric`) takes JVPs and VJPs through the decoder.

Like `MetricModel`, the networks see standardised data ``(x − m)/s`` (SPEC §1, one global scale); every public
method takes and returns data units. Since ``s = sqrt(E‖x − m‖²)`` over the training data, an input's distance from
``m`` in units of ``s`` (`VAE.input_spread`) is 1 in RMS over those data, so at most 1/t² of them lie beyond ``t``
(Markov). `far_inputs` judges from such spreads whether a data set lies far beyond that (other units, e.g. raw
counts given to a VAE trained on log-normalised ones, whose codes were written silently far outside the training
codes); the training package's ``encode_data`` and the CLI's ``encode`` warn by it (`learned_manifold.vae_spread`:
the check and the VAE's record of its training data's largest spread, which ``state_dict`` carries). `VAE.encode`
itself does not check (by default): it stays free of host syncs and data-dependent control flow, so it runs under
``torch.func``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from .metrics.base import as_points
from .models import MAX_DEPTH, MAX_WIDTH, check_data_shape, check_int, check_real
from .user_warnings import warn_user
from .vae_spread import (  # the far-input check (re-exported: its home was this module)
    BEYOND_FACTOR,
    FAR_MEDIAN,
    FAR_POINT,
    FAR_SHARE,
    MEDIAN_ROWS,
    SPREAD_DROP,
    STATE_KEY,
    check_spread_max,
    far_inputs,
    spread_from_state,
    spread_state,
    training_spread_limit,
)

__all__ = ["BEYOND_FACTOR", "FAR_MEDIAN", "FAR_POINT", "FAR_SHARE", "MAX_CENTRES", "MAX_CONV_DEPTH", "MAX_LATENT",
           "MEDIAN_ROWS", "SPREAD_DROP", "VAE", "VAE_ARCHS", "VAEConfig", "far_inputs", "training_spread_limit"]

VAE_ARCHS = ("mlp", "conv")
MAX_LATENT = 4096
MAX_CENTRES = 65536
MAX_CONV_DEPTH = 8


@dataclass
class VAEConfig:
    """Architecture of a `VAE` (everything its file needs to rebuild it; every field checked on construction).

    Attributes:
        data_shape: shape of one data point; ``"conv"`` needs ``(C, H, W)`` or ``(H, W)``.
        latent_dim: ``d``, the latent dimension.
        arch: ``"mlp"`` or ``"conv"``.
        hidden: MLP width.
        depth: MLP hidden layers; for ``"conv"``, the number of stride-2 stages (1 to `MAX_CONV_DEPTH`).
        channels: channels of the first convolution (doubled at every stage); ignored by ``"mlp"``.
        n_centres: ``K``, RBF centres of the precision network.
        zeta: ``ζ > 0``, the precision floor in standardised units: far from the data ``σ = s/sqrt(ζ)``.
    """

    data_shape: tuple[int, ...]
    latent_dim: int
    arch: str = "mlp"
    hidden: int = 128
    depth: int = 2
    channels: int = 16
    n_centres: int = 32
    zeta: float = 1.0

    def __post_init__(self) -> None:
        self.data_shape = check_data_shape(self.data_shape, "data_shape")
        check_int(self.latent_dim, "latent_dim", 1, MAX_LATENT)
        if not isinstance(self.arch, str) or self.arch not in VAE_ARCHS:
            raise ValueError(f"arch must be one of {VAE_ARCHS}, got {self.arch!r:.60}")
        check_int(self.hidden, "hidden", 1, MAX_WIDTH)
        check_int(self.n_centres, "n_centres", 1, MAX_CENTRES)
        check_int(self.channels, "channels", 1, MAX_WIDTH)
        self.zeta = check_real(self.zeta, "zeta", positive=True)
        if self.arch == "conv":
            if len(self.data_shape) not in (2, 3):
                raise ValueError(f"arch 'conv' needs images of shape (C, H, W) or (H, W), got data_shape "
                                 f"{self.data_shape}")
            check_int(self.depth, "depth", 1, MAX_CONV_DEPTH)
            if self.channels * 2**self.depth > MAX_WIDTH:
                raise ValueError(f"channels * 2**depth = {self.channels * 2**self.depth} exceeds {MAX_WIDTH}")
        else:
            check_int(self.depth, "depth", 0, MAX_DEPTH)

    @property
    def dim(self) -> int:
        """``D = prod(data_shape)``."""
        return math.prod(self.data_shape)

    def to_dict(self) -> dict:
        """Plain JSON types (``data_shape`` as a list)."""
        out = asdict(self)
        out["data_shape"] = list(self.data_shape)
        return out

    @classmethod
    def from_dict(cls, d: object) -> VAEConfig:
        """The config stored as ``d``: exactly the fields of `VAEConfig` (unknown or missing keys raise
        ``ValueError``), each of the right type (an integer is not a bool, a real number not a string)."""
        if not isinstance(d, dict):
            raise TypeError(f"a VAE config must be a JSON object, got {type(d).__name__}")
        known = set(cls.__dataclass_fields__)
        if set(d) != known:
            raise ValueError(f"VAE config keys {sorted(map(str, d))[:12]}; expected exactly {sorted(known)}")
        if not isinstance(d["data_shape"], list):
            raise TypeError(f"data_shape must be a list of integers, got {type(d['data_shape']).__name__}")
        if not isinstance(d["zeta"], numbers.Real) or isinstance(d["zeta"], bool):
            raise TypeError(f"zeta must be a real number, got {type(d['zeta']).__name__}")
        return cls(**{**d, "data_shape": tuple(d["data_shape"])})


def _mlp(sizes: list[int]) -> nn.Sequential:
    """``Linear → SiLU → … → Linear`` through ``sizes`` (smooth, so the decoder's Jacobian is continuous)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


def _image_shape(data_shape: tuple[int, ...]) -> tuple[int, int, int]:
    return (1, *data_shape) if len(data_shape) == 2 else data_shape  # type: ignore[return-value]


def _conv_sizes(h: int, w: int, depth: int) -> list[tuple[int, int]]:
    """Spatial sizes after each stride-2 stage (``ceil(n / 2)``), the input size first."""
    sizes = [(h, w)]
    for _ in range(depth):
        sizes.append(((sizes[-1][0] + 1) // 2, (sizes[-1][1] + 1) // 2))
    return sizes


class _ConvEncoder(nn.Module):
    """``(B, C, H, W)`` → ``(B, out)``: a 3×3 convolution, ``depth`` stride-2 stages, a linear head."""

    def __init__(self, image: tuple[int, int, int], channels: int, depth: int, out: int):
        super().__init__()
        c_in, h, w = image
        layers: list[nn.Module] = [nn.Conv2d(c_in, channels, 3, padding=1), nn.SiLU()]
        c = channels
        for _ in range(depth):
            layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.SiLU()]
            c *= 2
        self.body = nn.Sequential(*layers)
        bottom = _conv_sizes(h, w, depth)[-1]
        self.head = nn.Linear(c * bottom[0] * bottom[1], out)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x).flatten(1))


class _ConvDecoder(nn.Module):
    """``(B, d)`` → ``(B, C, H, W)``: a linear map to the coarsest grid, ``depth`` transposed stride-2 stages
    (output padding chosen so each stage restores the encoder's size exactly), a 3×3 convolution."""

    def __init__(self, image: tuple[int, int, int], channels: int, depth: int, latent: int):
        super().__init__()
        c_out, h, w = image
        sizes = _conv_sizes(h, w, depth)
        c = channels * 2**depth
        self.bottom = (c, *sizes[-1])
        self.inp = nn.Linear(latent, c * sizes[-1][0] * sizes[-1][1])
        layers: list[nn.Module] = [nn.SiLU()]
        for (th, tw), (nh, nw) in zip(reversed(sizes[:-1]), reversed(sizes[1:]), strict=True):
            pad = (th - 2 * nh + 1, tw - 2 * nw + 1)  # 0 for an odd target size, 1 for an even one
            layers += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=pad), nn.SiLU()]
            c //= 2
        layers.append(nn.Conv2d(c, c_out, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.body(self.inp(z).reshape(z.shape[0], *self.bottom))


class VAE(nn.Module):
    """Encoder, decoder mean and RBF decoder precision (SPEC §11; module docstring).

    Buffers (saved in the VAE file): ``scale`` ``()`` and ``mean`` ``data_shape`` (the standardisation),
    ``centres`` ``(K, d)``, ``bandwidths`` ``(K,)`` (the ``λ_k``) and ``std_weights`` ``(D, K)`` (``W ≥ 0``; zero
    until fitted, so an unfitted decoder has the constant std ``s/sqrt(ζ)``).
    Extra state (``state_dict()["_extra_state"]``, `get_extra_state`): `input_spread_max` as float64 ``(1,)``, or
    ``(0,)`` where unknown (`vae_spread`); the VAE file keeps it in its ``extra`` instead.

    Args:
        config: the architecture.
        scale: data scale ``s > 0``: the training data's RMS distance from ``mean``, in total over all coordinates,
            ``sqrt(E‖x − m‖²)`` (SPEC §1; not a per-coordinate standard deviation: data with unit variance in each
            of ``D`` coordinates have ``s = sqrt(D)``).
        mean: ``(D,)`` or ``data_shape`` data mean (default zero), stored in the default dtype as the weights.
    """

    # buffers (`register_buffer` in ``__init__``)
    scale: Tensor
    mean: Tensor
    centres: Tensor
    bandwidths: Tensor
    std_weights: Tensor

    def __init__(self, config: VAEConfig, *, scale: float = 1.0, mean: Tensor | None = None):
        if not isinstance(config, VAEConfig):
            raise TypeError(f"config must be a VAEConfig, got {type(config).__name__}")
        scale = check_real(float(scale) if isinstance(scale, Tensor) else scale, "scale", positive=True)
        if mean is not None and (not isinstance(mean, Tensor) or mean.numel() != config.dim):
            raise ValueError(f"mean must be a tensor of {config.dim} values")
        super().__init__()
        self.config = config
        d, D, K = config.latent_dim, config.dim, config.n_centres
        if config.arch == "mlp":
            self.encoder: nn.Module = _mlp([D] + [config.hidden] * config.depth + [2 * d])
            self.decoder: nn.Module = _mlp([d] + [config.hidden] * config.depth + [D])
        else:
            image = _image_shape(config.data_shape)
            self.encoder = _ConvEncoder(image, config.channels, config.depth, 2 * d)
            self.decoder = _ConvDecoder(image, config.channels, config.depth, d)
        self.register_buffer("scale", torch.tensor(scale))
        mean = torch.zeros(config.data_shape) if mean is None else mean.detach().reshape(config.data_shape)
        self.register_buffer("mean", mean.clone().to(torch.get_default_dtype()))  # as the weights and buffers
        self.register_buffer("centres", torch.zeros(K, d))
        self.register_buffer("bandwidths", torch.ones(K))
        self.register_buffer("std_weights", torch.zeros(D, K))
        self.input_spread_max: float | None = None
        """The training data's largest `input_spread` after dropping the top `SPREAD_DROP` of them
        (`training_spread_limit`; ``train_vae`` records it in the file's ``extra`` and `load_vae` reads it back; files
        written before this rule hold the true largest), or ``None`` where unknown (older files; hand-made VAEs).
        ``state_dict`` carries it as the extra state (`get_extra_state`), which ``.to(dtype)`` leaves alone."""

    # -- shapes ---------------------------------------------------------------------------------------------
    @property
    def data_shape(self) -> tuple[int, ...]:
        return self.config.data_shape

    @property
    def dim(self) -> int:
        """``D``, values per data point."""
        return self.config.dim

    @property
    def latent_dim(self) -> int:
        """``d``, the latent dimension."""
        return self.config.latent_dim

    def _dtype(self) -> torch.dtype:
        return self.scale.dtype

    def _codes(self, z: object) -> Tensor:
        return as_points(z, (self.latent_dim,), "z", owner="the VAE's latent", batch_ndim=1)

    # -- encoder --------------------------------------------------------------------------------------------
    def _inputs(self, x: object) -> Tensor:
        """``x`` checked as ``(B, *data_shape)`` points (a flat ``(B, D)`` reshaped)."""
        if isinstance(x, Tensor) and x.ndim == 2 and len(self.data_shape) > 1 and x.shape[1] == self.dim:
            x = x.reshape(x.shape[0], *self.data_shape)
        return as_points(x, self.data_shape, "x", owner="the VAE's", batch_ndim=1)

    @torch.no_grad()
    def input_spread(self, x: Tensor) -> Tensor:
        """``‖x − m‖ / s``: ``(B, *data_shape)`` or ``(B, D)`` → ``(B,)``, each input's distance from the stored
        training mean in units of the training data's RMS spread about it (1 in RMS over the training data)."""
        return self._standardised(self._inputs(x)).norm(dim=-1)

    def _standardised(self, x: Tensor) -> Tensor:
        """``(x − m) / s`` of checked inputs ``x`` (`_inputs`), flat: ``(B, D)`` in the VAE's dtype."""
        return ((x.to(self._dtype()) - self.mean) / self.scale).reshape(x.shape[0], self.dim)

    def encode_stats(self, x: Tensor, *, check: bool = False) -> tuple[Tensor, Tensor]:
        """Posterior ``q(z | x) = N(m, diag exp(ℓ))``: ``(B, *data_shape)`` or ``(B, D)`` → ``(m, ℓ)``, each
        ``(B, d)`` in the dtype of ``x``. No host sync and no data-dependent control flow (``torch.func.vmap``
        works), unless ``check``: then it warns (`far_inputs`, a host sync) where ``x`` as a whole lies far from
        the training data, as the training package's ``encode_data`` does for a data set."""
        x = self._inputs(x)
        u = self._standardised(x)
        if check:
            problem = far_inputs(u.detach().norm(dim=-1), self.input_spread_max)
            if problem:
                warn_user(f"VAE.encode: the inputs lie far from the data the VAE was trained on: {problem}")
        if self.config.arch != "mlp":
            u = u.reshape(x.shape[0], *_image_shape(self.data_shape))
        m, logvar = self.encoder(u).chunk(2, dim=-1)
        return m.to(x.dtype), logvar.to(x.dtype)

    def encode(self, x: Tensor, *, check: bool = False) -> Tensor:
        """Posterior mean: ``(B, *data_shape)`` (or flat ``(B, D)``) → ``(B, d)``; silent unless ``check``, as
        `encode_stats`."""
        return self.encode_stats(x, check=check)[0]

    # -- decoder, in standardised units (what the trainer fits) ---------------------------------------------
    def decode_standardised(self, z: Tensor) -> Tensor:
        """Decoder mean in standardised units, flat: ``(B, d)`` → ``(B, D)`` (no input checks: a hot path)."""
        return self.decoder(z).reshape(z.shape[0], self.dim)

    def rbf(self, z: Tensor) -> Tensor:
        """RBF features ``v_k(z) = exp(−λ_k ‖z − c_k‖²)``: ``(B, d)`` → ``(B, K)``."""
        sq = (z.unsqueeze(1) - self.centres).pow(2).sum(-1)
        return torch.exp(-self.bandwidths * sq)

    def precision_standardised(self, z: Tensor, weights: Tensor | None = None) -> Tensor:
        """``1/σ²`` in standardised units, ``W v(z) + ζ``: ``(B, d)`` → ``(B, D)`` (``weights`` overrides ``W``)."""
        w = self.std_weights if weights is None else weights
        return self.rbf(z) @ w.T + self.config.zeta

    def mean_and_std(self, z: Tensor) -> Tensor:
        """``[μ(z), σ(z)]`` flat and in data units, ``(B, d)`` → ``(B, 2D)``: the map whose Jacobian gives the
        expected pullback metric ``J_μᵀJ_μ + J_σᵀJ_σ`` (SPEC §11). Traceable by ``torch.func``."""
        mu = self.decode_standardised(z) * self.scale + self.mean.reshape(-1)
        sd = self.scale * torch.rsqrt(self.precision_standardised(z))
        return torch.cat([mu, sd], dim=-1)

    # -- decoder, public ------------------------------------------------------------------------------------
    def decode(self, z: Tensor) -> Tensor:
        """Decoder mean ``μ(z)``: ``(B, d)`` → ``(B, *data_shape)`` in data units and in the dtype of ``z``."""
        z = self._codes(z)
        out = self.decode_standardised(z.to(self._dtype())) * self.scale + self.mean.reshape(-1)
        return out.to(z.dtype).reshape(z.shape[0], *self.data_shape)

    def decoder_std(self, z: Tensor) -> Tensor:
        """Decoder std ``σ(z) = s / sqrt(W v(z) + ζ)``: ``(B, d)`` → ``(B, *data_shape)``, data units."""
        z = self._codes(z)
        out = self.scale * torch.rsqrt(self.precision_standardised(z.to(self._dtype())))
        return out.to(z.dtype).reshape(z.shape[0], *self.data_shape)

    # -- state_dict: `input_spread_max` as the module's extra state (`vae_spread`) ----------------------------
    def get_extra_state(self) -> Tensor:
        """``state_dict()[STATE_KEY]``: `input_spread_max` as float64 ``(1,)``, or ``(0,)`` where it is ``None``
        (`vae_spread.spread_state`), so a ``state_dict`` round trip keeps it bit for bit.

        Raises:
            TypeError, ValueError: `input_spread_max` is not ``None`` or a finite positive number (naming it).
        """
        return spread_state(check_spread_max(self.input_spread_max, "vae.input_spread_max"))

    def set_extra_state(self, state: object) -> None:
        """`input_spread_max` from ``state`` (`get_extra_state`; `vae_spread.spread_from_state` checks it)."""
        self.input_spread_max = spread_from_state(state, STATE_KEY)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, local_metadata: dict, strict: bool,
                              missing_keys: list[str], unexpected_keys: list[str], error_msgs: list[str]) -> None:
        """`torch.nn.Module.load_state_dict` for the VAE: a bad recorded spread (``prefix + STATE_KEY``) is refused
        before any tensor is copied; a state without one (saved before it was recorded, or a VAE file's tensors)
        leaves `input_spread_max` as it was, as such a state always did, and is no missing key (``strict=True``
        loads it)."""
        key = prefix + STATE_KEY
        if key in state_dict:
            spread_from_state(state_dict[key], key)  # raises before anything is loaded
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        if key not in state_dict and key in missing_keys:
            missing_keys.remove(key)

    def extra_repr(self) -> str:
        c = self.config
        return f"data_shape={c.data_shape}, latent_dim={c.latent_dim}, arch={c.arch!r}, K={c.n_centres}"
