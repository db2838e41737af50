"""The FiLM-conditioned residual MLP backbone (SPEC §4) and the σ embedding it shares with the UNet.

``(B, *data_shape)``, ``(B,)`` → ``(B, D, k)``; registered as ``"film_mlp"`` in
`learned_manifold.models.BACKBONES`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from .checks import MAX_DEPTH, MAX_RANK, MAX_WIDTH, check_data_shape, check_int, check_real
from .heads import head_columns

__all__ = ["FiLMResBlock", "FiLMResMLP", "SigmaEmbedding", "sigma_frequencies"]


def sigma_frequencies(n_freqs: int, f_min: float, f_max: float, dtype: torch.dtype,
                      device: torch.device | str) -> Tensor:
    """The σ embedding's frequencies, ``(n_freqs,)`` geometric in ``[f_min, f_max]``, in ``dtype`` on ``device``
    (SPEC §4).

    Computed on the CPU, the same values on every device (``exp`` on a ``meta`` tensor ran a Python decomposition
    that imported ``torch._dynamo``, 1.2 s of a process's first `load_model`, tester C of the 32nd round), in
    ``dtype`` when it is float32 or wider (float32: the values of every network trained so far; float64: a
    float64 network's own), in float32 then rounded for a narrower one (what a float32 network cast to it held).
    """
    work = torch.promote_types(dtype, torch.float32)
    freqs = torch.exp(torch.linspace(math.log(f_min), math.log(f_max), n_freqs, dtype=work, device="cpu"))
    return freqs.to(device=device, dtype=dtype)


class SigmaEmbedding(nn.Module):
    """Embedding of the bandwidth: ``log σ`` and its sinusoidal features, then a 2-layer SiLU MLP (SPEC §4).

    Frequencies are geometric in ``[f_min, f_max]``; the lowest has a period (``2π/f_min ≈ 126``) far longer than
    any range of ``log σ`` met in practice, so the features never alias two bandwidths onto one embedding.
    ``(B,)`` → ``(B, dim)``.

    The frequencies are a buffer that is not saved (files hold none): computed when the module is built, in the
    default dtype, and again in the new dtype whenever the module is converted (``.double()``, ``.to(dtype)``,
    ``.to(device)``: `_apply`). A float64 network so holds the float64 frequencies it was built with also when the
    loader builds it in float32 and casts it to float64 (it held float32-rounded ones, and its factor moved by
    about 1e-6 through its file), and a float32 one the values it always had. A float32-trained network cast to
    float64 takes the exact float64 frequencies (up to 2e-7 from its float32 ones, rounding).
    """

    freqs: Tensor  # a buffer (`register_buffer` in ``__init__``, not saved), `sigma_frequencies` in its dtype

    def __init__(self, dim: int, n_freqs: int = 16, f_min: float = 0.05, f_max: float = 8.0):
        super().__init__()
        self.n_freqs, self.f_min, self.f_max = n_freqs, f_min, f_max
        freqs = sigma_frequencies(n_freqs, f_min, f_max, torch.get_default_dtype(), torch.get_default_device())
        self.register_buffer("freqs", freqs, persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * n_freqs + 1, dim), nn.SiLU(), nn.Linear(dim, dim))

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> SigmaEmbedding:
        """`nn.Module._apply` (behind ``.to``, ``.double()``, ``.cuda()``…), then the frequencies computed afresh
        in their new dtype and on their new device (`sigma_frequencies`), not converted from the old ones."""
        super()._apply(fn, recurse)
        self.freqs = sigma_frequencies(self.n_freqs, self.f_min, self.f_max, self.freqs.dtype, self.freqs.device)
        return self

    def forward(self, sigma: Tensor) -> Tensor:
        log_sigma = sigma.log().unsqueeze(-1)
        arg = log_sigma * self.freqs.to(sigma.dtype)
        return self.mlp(torch.cat([log_sigma, arg.sin(), arg.cos()], dim=-1))


class FiLMResBlock(nn.Module):
    """``h + W₂ φ(W₁ FiLM(LN(h), e))`` with ``W₂`` zero-initialised (SPEC §4)."""

    def __init__(self, hidden: int, emb_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.film = nn.Linear(emb_dim, 2 * hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, h: Tensor, e: Tensor) -> Tensor:
        scale, shift = self.film(e).chunk(2, dim=-1)
        u = self.norm(h) * (1 + scale) + shift
        return h + self.fc2(nn.functional.silu(self.fc1(u)))


class FiLMResMLP(nn.Module):
    """FiLM-conditioned residual MLP (SPEC §4): ``(B, *data_shape)``, ``(B,)`` → ``(B, D, k)``.

    The bandwidths may also be one ``(1,)`` value for the whole batch (broadcast after the FiLM maps; every
    backbone in `BACKBONES` must accept both).

    Args:
        data_shape: shape of one data point (flattened internally, ``D = prod(data_shape)``).
        out_channels: ``k``, the number of ``D``-vectors produced per point (rank ``r``, or 1).
        hidden: width ``h``.
        depth: number of residual blocks ``N ≥ 1`` (FiLM brings σ in through them only, SPEC §4).
        emb_dim: width of the σ embedding.
        head_std: std of the head's random init (small, never zero: ``AAᵀ`` would have no gradient).
        out_bias: learnable output bias.
        final_norm: LayerNorm of the residual stream before the head (the original network). Without it the
            stream's scale reaches the head: the norm erases the input's norm, and on S⁸ in R⁶⁴ two denoisers of
            five never learned the sphere's radius with it (all five did without, ``benchmarks/RESULTS.md``).
        norm_feature: the input's log squared norm ``log ‖z‖²`` joins the first layer as one more feature (a
            learned ``hidden``-vector times it, zero at initialisation; SPEC §4). The blocks' LayerNorms make the
            network nearly blind to the input's scale, and a sphere's denoiser needs little else: on S¹⁶ in R⁶⁴ a
            denoiser without it stayed the linear (Wiener) filter at every bandwidth, N (10k, 200k), width and
            step count tried; given ``‖z‖² − 1`` as a feature it shrank the radius within 3,000 steps. ``False``
            here, the network files written before the option hold; `learned-manifold train` switches it on for
            data near a sphere about their mean (`TrainConfig.norm_feature`).
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        out_channels: int,
        *,
        hidden: int = 256,
        depth: int = 3,
        emb_dim: int = 128,
        head_std: float = 1e-3,
        out_bias: bool = False,
        final_norm: bool = True,
        norm_feature: bool = False,
    ):
        data_shape = check_data_shape(data_shape, "data_shape")
        check_int(out_channels, "out_channels", 1, MAX_RANK)
        check_int(hidden, "hidden", 1, MAX_WIDTH)
        check_int(depth, "depth", 1, MAX_DEPTH)  # σ enters through the blocks only: at 0 the output would ignore σ
        check_int(emb_dim, "emb_dim", 1, MAX_WIDTH)
        check_real(head_std, "head_std", positive=True)
        for name, flag in (("out_bias", out_bias), ("final_norm", final_norm), ("norm_feature", norm_feature)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
        super().__init__()
        self.dim = math.prod(data_shape)
        self.out_channels = out_channels
        self.embed = SigmaEmbedding(emb_dim)
        self.inp = nn.Linear(self.dim, hidden)
        self.norm_in = nn.Linear(1, hidden, bias=False) if norm_feature else None
        if self.norm_in is not None:  # zero: at initialisation the network is the one without the feature
            nn.init.zeros_(self.norm_in.weight)
        self.blocks = nn.ModuleList(FiLMResBlock(hidden, emb_dim) for _ in range(depth))
        self.norm = nn.LayerNorm(hidden) if final_norm else nn.Identity()
        self.head = nn.Linear(hidden, self.dim * out_channels, bias=out_bias)
        if not self.head.weight.is_meta:  # (a meta twin has no values: its normal_ imported torch._dynamo)
            nn.init.normal_(self.head.weight, std=head_std)
        if out_bias:
            nn.init.zeros_(self.head.bias)

    def forward(self, z: Tensor, sigma: Tensor, columns: tuple[int, int] | None = None,
                trunk_grad: tuple[int, float] | None = None) -> Tensor:
        """``columns=(lo, hi)``: only those columns of the output, ``(B, D, hi − lo)``; ``trunk_grad=(n, α)``:
        the first ``n`` columns' gradient into the trunk times ``α`` (`learned_manifold.heads.head_columns`)."""
        e = self.embed(sigma)
        flat = z.reshape(z.shape[0], self.dim)
        h = self.inp(flat)
        if self.norm_in is not None:
            sq = flat.to(torch.promote_types(flat.dtype, torch.float32)).pow(2).sum(-1, keepdim=True)
            h = h + self.norm_in(sq.clamp_min(torch.finfo(sq.dtype).tiny).log().to(h.dtype))
        for block in self.blocks:
            h = block(h, e)
        out, k = head_columns(self.head, self.norm(h), columns, self.dim, self.out_channels, trunk_grad)
        # Channel-major layout: column j of A is out[:, j*D:(j+1)*D].
        return out.reshape(z.shape[0], k, self.dim).transpose(1, 2)
