"""The image backbone: a guided-diffusion-style UNet whose output channels hold the columns of ``A`` (SPEC §9).

`UNet` maps standardised images ``z`` of shape ``(B, C, H, W)`` (or ``(B, H, W)`` for one channel) and
bandwidths ``σ_z`` of shape ``(B,)`` or ``(1,)`` to the factor ``(B, D, k)``, ``D = C·H·W``: the network's last
convolution has ``k·C`` output channels and column ``j`` of ``A`` is channels ``[j·C, (j+1)·C)`` flattened in
``(C, H, W)`` order. The denoiser is the same network with ``k = 1`` (SPEC §3).

Layout (SPEC §9, after Dhariwal & Nichol's guided diffusion): an input 3×3 convolution; per resolution level
``num_res_blocks`` residual blocks (GroupNorm, SiLU, 3×3 convolutions, the σ embedding injected in every block
as a FiLM scale and shift after the second GroupNorm, dropout, last convolution zero-initialised), optional
self-attention, then a stride-2 downsampling; a middle block (residual, attention, residual); the mirrored
upsampling path with skip connections; GroupNorm, SiLU and a 3×3 output convolution initialised with small
random weights (never zero: ``AAᵀ`` would have no gradient).

Any image size works: downsampling by a stride-2 convolution gives ``ceil(H/2)``, and each upsampling doubles
the size by nearest-neighbour repetition and crops it to the skip connection it meets.

`UNET_PRESETS` holds the paper's settings and a small one for the CPU (`unet_preset`).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from .checks import MAX_RANK, MAX_WIDTH, check_data_shape, check_int, check_real
from .heads import head_columns
from .mlp import SigmaEmbedding

__all__ = ["FUSED_ATTENTION_MIN_TOKENS", "MAX_LEVELS", "MAX_MULT", "MAX_RES_BLOCKS", "UNET_PRESETS", "UNet",
           "unet_preset"]

MAX_LEVELS = 8  # resolution levels (len(channel_mult)); the presets use up to 4
MAX_MULT = 64  # largest channel multiplier
FUSED_ATTENTION_MIN_TOKENS = 1024  # attention over fewer pixels runs the math kernel (see `_Attention`)
MAX_RES_BLOCKS = 8  # residual blocks per level (guided diffusion uses 2 to 4); bounds the meta-device build time


def _largest_divisor(n: int, at_most: int) -> int:
    """The largest divisor of ``n`` that is at most ``at_most`` (at least 1), in ``O(√n)`` steps."""
    best = 1
    for d in range(1, math.isqrt(n) + 1):
        if n % d == 0:
            best = max([best] + [q for q in (d, n // d) if q <= at_most])
    return best


def _int_list(value: object, name: str, low: int, high: int, max_len: int) -> tuple[int, ...]:
    """A tuple or JSON list of integers in ``[low, high]`` with at most ``max_len`` entries."""
    if not isinstance(value, (tuple, list)):
        raise TypeError(f"{name} must be a list of integers, got {type(value).__name__} {value!r:.60}")
    if len(value) > max_len:
        raise ValueError(f"{name} may have at most {max_len} entries, got {len(value)}")
    return tuple(check_int(v, f"{name}[{i}]", low, high) for i, v in enumerate(value))


class _ResBlock(nn.Module):
    """``skip(h) + conv₂(drop(SiLU(FiLM(GN(conv₁(SiLU(GN(h)))), e))))`` with ``conv₂`` zero-initialised.

    ``(B, c_in, H, W)``, embedding ``(B or 1, emb_dim)`` → ``(B, c_out, H, W)``.
    """

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(_largest_divisor(c_in, groups), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(_largest_divisor(c_out, groups), c_out)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, h: Tensor, e: Tensor) -> Tensor:
        u = self.conv1(F.silu(self.norm1(h)))
        scale, shift = self.film(F.silu(e))[:, :, None, None].chunk(2, dim=1)
        u = self.norm2(u) * (1 + scale) + shift
        return self.skip(h) + self.conv2(self.drop(F.silu(u)))


class _Attention(nn.Module):
    """Multi-head self-attention over the ``H·W`` pixels, residual, output projection zero-initialised:
    ``(B, c, H, W)`` → ``(B, c, H, W)``.

    Queries, keys and values are laid out ``(B, heads, H·W, c/heads)`` with unit stride in the last dimension,
    so `scaled_dot_product_attention` may pick a fused kernel (flash or memory-efficient) where the ``T = H·W``
    tokens are many. Those kernels have neither a forward-mode derivative (PyTorch issues 117629, 128971) nor a
    second derivative, which the geometry needs (JVPs through the denoiser for the score Jacobian and the
    self-consistency check, SPEC §7 and §12). So the math kernel runs below `FUSED_ATTENTION_MIN_TOKENS` tokens
    and under forward-mode AD; above it, with a fused kernel, reverse-over-reverse derivatives are not available,
    so `learned_manifold.curvature` (a double-backward pass) selects the math kernel itself (``sdpa_kernel``).

    The math kernel holds a ``T × T`` matrix per image and head, ``T`` growing with the image's pixels: attention
    levels are fixed fractions of the image (level ``i`` at ``1/2^i``), not fixed sizes. At each preset's own image
    size it is small (every preset but ffhq256, which attends at 32×32, attends at 16×16 or less: 256² entries
    per head), but not on larger images: "small" (middle block at level 1) on 128×128 images attends over 64×64
    tokens, 4096² floats (67 MB) per image, and forward-mode AD (the self-consistency check, score Jacobians) or a
    double backward (curvature) then needs memory ``∝ D²`` per image. `learned_manifold.diagnostics` sizes its JVP
    batches by this (`diagnostics.jvp_item_bytes`).
    """

    def __init__(self, c: int, groups: int, head_channels: int):
        super().__init__()
        self.heads = _largest_divisor(c, max(1, c // head_channels))
        self.norm = nn.GroupNorm(_largest_divisor(c, groups), c)
        self.qkv = nn.Linear(c, 3 * c)
        self.proj = nn.Linear(c, c)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, h: Tensor) -> Tensor:
        B, c, H, W = h.shape
        tokens = self.norm(h).flatten(2).transpose(1, 2)  # (B, H·W, c)
        qkv = self.qkv(tokens).reshape(B, H * W, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, H·W, c/heads)
        if not torch.compiler.is_compiling() and (
                H * W < FUSED_ATTENTION_MIN_TOKENS or any(fwAD.unpack_dual(t).tangent is not None for t in (q, k, v))):
            with sdpa_kernel(SDPBackend.MATH):
                out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, H·W, c/heads)
        out = self.proj(out.transpose(1, 2).reshape(B, H * W, c))
        return h + out.transpose(1, 2).reshape(B, c, H, W)


class _Step(nn.Module):
    """One step of a path: a residual block and optional attention, or a resampling convolution.

    ``resample`` is ``"down"`` (stride-2 convolution, ``ceil(H/2)``) or ``"up"`` (nearest ×2, cropped to the
    ``size`` given to `forward`, then a 3×3 convolution).
    """

    def __init__(self, res: _ResBlock | None = None, attn: _Attention | None = None, resample: str | None = None,
                 channels: int = 0):
        super().__init__()
        self.res, self.attn, self.resample = res, attn, resample
        if resample == "down":
            self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        elif resample == "up":
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, h: Tensor, e: Tensor, size: torch.Size | None = None) -> Tensor:
        if self.res is not None:
            h = self.res(h, e)
        if self.attn is not None:
            h = self.attn(h)
        if self.resample == "down":
            h = self.conv(h)
        elif self.resample == "up":
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")[..., : size[0], : size[1]]
            h = self.conv(h)
        return h


class UNet(nn.Module):
    """Guided-diffusion-style UNet backbone (SPEC §9): ``(B, C, H, W)``, ``(B,)`` or ``(1,)`` → ``(B, D, k)``.

    Args:
        data_shape: ``(C, H, W)``, or ``(H, W)`` for one channel (inputs ``(B, *data_shape)``; a flat
            ``(B, D)`` is accepted too).
        out_channels: ``k``, columns of the factor (rank ``r``, or 1 for the denoiser); the last convolution has
            ``k·C`` channels, column ``j`` of ``A`` being channels ``[j·C, (j+1)·C)`` in ``(C, H, W)`` order.
        channels: base width; level ``i`` has ``channels · channel_mult[i]`` channels.
        channel_mult: one multiplier per resolution level (1 to `MAX_LEVELS`; a JSON list is accepted).
            Level ``i`` works at ``ceil(H / 2^i) × ceil(W / 2^i)``.
        num_res_blocks: residual blocks per level on the way down (one more on the way up, as in guided
            diffusion).
        attention_levels: the levels (indices into ``channel_mult``, 0 = full resolution) with self-attention
            after each residual block; level ``i`` is resolution ``1/2^i`` for any image size (the paper's MNIST
            attention at 7×7 is level 2).
        mid_attention: self-attention in the middle block (between its two residual blocks).
        head_channels: channels per attention head (heads = the largest divisor of the width that is at most
            ``width // head_channels``, at least 1).
        dropout: dropout probability inside every residual block, in ``[0, 1)``.
        emb_dim: width of the σ embedding (`SigmaEmbedding`).
        groups: GroupNorm groups, clamped per layer to the largest divisor of its width that is at most ``groups``.
        head_std: std of the output convolution's random init (small, never zero).
        out_bias: learnable output bias of shape ``(k·C,)``, one value per output channel broadcast over the
            pixels (SPEC §9), initialised to zero.

    Every argument is checked (type and range, naming the argument) before anything is built, since configs
    come from files; lists are accepted where tuples are documented.
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        out_channels: int,
        *,
        channels: int = 32,
        channel_mult: tuple[int, ...] = (1, 2),
        num_res_blocks: int = 1,
        attention_levels: tuple[int, ...] = (),
        mid_attention: bool = True,
        head_channels: int = 64,
        dropout: float = 0.0,
        emb_dim: int = 128,
        groups: int = 8,
        head_std: float = 1e-3,
        out_bias: bool = False,
    ):
        data_shape = check_data_shape(data_shape, "data_shape")
        if len(data_shape) not in (2, 3):
            raise ValueError(f"the unet backbone needs image data: data_shape (C, H, W) or (H, W), got {data_shape}")
        check_int(out_channels, "out_channels", 1, MAX_RANK)
        check_int(channels, "channels", 1, MAX_WIDTH)
        mult = _int_list(channel_mult, "channel_mult", 1, MAX_MULT, MAX_LEVELS)
        if not mult:
            raise ValueError("channel_mult must have at least one level")
        if channels * max(mult) > MAX_WIDTH:
            raise ValueError(f"channels * max(channel_mult) = {channels * max(mult)} exceeds {MAX_WIDTH}")
        check_int(num_res_blocks, "num_res_blocks", 1, MAX_RES_BLOCKS)
        attn = _int_list(attention_levels, "attention_levels", 0, len(mult) - 1, len(mult))
        if len(set(attn)) != len(attn):
            raise ValueError(f"attention_levels must not repeat a level, got {list(attn)}")
        for name, flag in (("mid_attention", mid_attention), ("out_bias", out_bias)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
        check_int(head_channels, "head_channels", 1, MAX_WIDTH)
        if not check_real(dropout, "dropout", nonnegative=True) < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        check_int(emb_dim, "emb_dim", 1, MAX_WIDTH)
        check_int(groups, "groups", 1, MAX_WIDTH)
        check_real(head_std, "head_std", positive=True)
        super().__init__()
        self.image_shape = data_shape if len(data_shape) == 3 else (1, *data_shape)
        C = self.image_shape[0]
        self.dim = math.prod(data_shape)
        self.out_channels = out_channels
        self.embed = SigmaEmbedding(emb_dim)
        self.inp = nn.Conv2d(C, channels, 3, padding=1)

        def res(c_in: int, c_out: int) -> _ResBlock:
            return _ResBlock(c_in, c_out, emb_dim, groups, float(dropout))

        def att(c: int) -> _Attention:
            return _Attention(c, groups, head_channels)

        down, skips, ch = [], [channels], channels
        for level, m in enumerate(mult):
            for _ in range(num_res_blocks):
                down.append(_Step(res(ch, channels * m), att(channels * m) if level in attn else None))
                ch = channels * m
                skips.append(ch)
            if level < len(mult) - 1:
                down.append(_Step(resample="down", channels=ch))
                skips.append(ch)
        self.down = nn.ModuleList(down)
        self.mid = nn.ModuleList([_Step(res(ch, ch), att(ch) if mid_attention else None), _Step(res(ch, ch))])
        up = []
        for level, m in reversed(list(enumerate(mult))):
            for i in range(num_res_blocks + 1):
                c_out = channels * m
                resample = "up" if level > 0 and i == num_res_blocks else None
                up.append(_Step(res(ch + skips.pop(), c_out), att(c_out) if level in attn else None, resample,
                                c_out))
                ch = c_out
        self.up = nn.ModuleList(up)
        self.out_norm = nn.GroupNorm(_largest_divisor(ch, groups), ch)
        self.head = nn.Conv2d(ch, out_channels * C, 3, padding=1, bias=out_bias)
        if not self.head.weight.is_meta:  # (a meta twin has no values: its normal_ imported torch._dynamo)
            nn.init.normal_(self.head.weight, std=head_std)
        if out_bias:
            nn.init.zeros_(self.head.bias)

    def forward(self, z: Tensor, sigma: Tensor, columns: tuple[int, int] | None = None,
                trunk_grad: tuple[int, float] | None = None) -> Tensor:
        """``z`` ``(B, *data_shape)`` or ``(B, D)``, ``sigma`` ``(B,)`` or ``(1,)`` → ``(B, D, k)``; with
        ``columns=(lo, hi)`` only those columns, ``(B, D, hi − lo)``; ``trunk_grad=(n, α)``: the first ``n``
        columns' gradient into the trunk times ``α`` (`learned_manifold.heads.head_columns`)."""
        B = z.shape[0]
        e = self.embed(sigma)  # (B or 1, emb_dim): the FiLM maps broadcast over the batch
        h = self.inp(z.reshape(B, *self.image_shape))
        skips = [h]
        for step in self.down:
            h = step(h, e)
            skips.append(h)
        for step in self.mid:
            h = step(h, e)
        for step in self.up:
            h = torch.cat([h, skips.pop()], dim=1)
            h = step(h, e, skips[-1].shape[-2:] if step.resample == "up" else None)
        out, k = head_columns(self.head, F.silu(self.out_norm(h)), columns, self.image_shape[0],
                              self.out_channels, trunk_grad)  # (B, k·C, H, W)
        # Column j of A is channels [j·C, (j+1)·C) flattened in (C, H, W) order (SPEC §9).
        return out.reshape(B, k, self.dim).transpose(1, 2)


# Named settings; the parameter counts are in `unet_preset`'s docstring (and checked by the tests). The paper's four
# follow its configs/{mnist,cifar10,celeba,ffhq}.yaml (jacobbamb/metric-matching): its attention_resolutions are
# downsample rates 2^level, and heads are matched by ``head_channels`` (1 head where the paper sets none, 4 of 64
# channels on CIFAR-10). What differs from the paper's network is listed in `unet_preset` and SPEC §9.
UNET_PRESETS: dict[str, dict] = {
    # CPU-sized: trains in minutes on images up to 32×32 (e.g. scikit-learn's 8×8 digits).
    "small": {"data_shape": (1, 8, 8), "rank": 16, "arch_kwargs": {
        "channels": 32, "channel_mult": (1, 2), "num_res_blocks": 1, "attention_levels": (),
        "mid_attention": True, "emb_dim": 128}},
    # Paper configs/mnist.yaml: 64 channels, 2 residual blocks per level, (1, 2, 2), attention at rate 4 (7×7).
    "mnist": {"data_shape": (1, 28, 28), "rank": 100, "arch_kwargs": {
        "channels": 64, "channel_mult": (1, 2, 2), "num_res_blocks": 2, "attention_levels": (2,),
        "mid_attention": True, "head_channels": 128, "dropout": 0.0, "emb_dim": 256, "groups": 32,
        "out_bias": True}},
    # Paper configs/cifar10.yaml: 128 channels, (1, 2, 2, 2), attention at rate 2 (16×16), 64-channel heads,
    # dropout 0.1.
    "cifar10": {"data_shape": (3, 32, 32), "rank": 100, "arch_kwargs": {
        "channels": 128, "channel_mult": (1, 2, 2, 2), "num_res_blocks": 2, "attention_levels": (1,),
        "mid_attention": True, "head_channels": 64, "dropout": 0.1, "emb_dim": 512, "groups": 32,
        "out_bias": True}},
    # Paper configs/celeba.yaml: 64 channels, 3 residual blocks per level, (1, 2, 2, 2), attention at rates 4, 8.
    "celeba64": {"data_shape": (3, 64, 64), "rank": 128, "arch_kwargs": {
        "channels": 64, "channel_mult": (1, 2, 2, 2), "num_res_blocks": 3, "attention_levels": (2, 3),
        "mid_attention": True, "head_channels": 128, "dropout": 0.0, "emb_dim": 256, "groups": 32,
        "out_bias": True}},
    # Paper configs/ffhq.yaml: 128 channels, (1, 2, 2, 4), attention_resolutions [8, 16]; only rate 8 (32×32) is a
    # level of this 4-level network, so attention runs there alone (and in the middle block), as in the paper.
    "ffhq256": {"data_shape": (3, 256, 256), "rank": 256, "arch_kwargs": {
        "channels": 128, "channel_mult": (1, 2, 2, 4), "num_res_blocks": 2, "attention_levels": (3,),
        "mid_attention": True, "head_channels": 512, "dropout": 0.0, "emb_dim": 512, "groups": 32,
        "out_bias": True}},
}


def unet_preset(name: str) -> dict:
    """A copy of the preset ``name`` of `UNET_PRESETS`: ``{"data_shape", "rank", "arch_kwargs"}``.

    ``arch_kwargs`` go to `UNet` (``ModelConfig(arch="unet", arch_kwargs=...)``); ``rank`` is the suggested
    rank and ``data_shape`` the image size the preset was made for (any size works). Tuples of ``arch_kwargs``
    are returned as lists, so the dict equals its own JSON round trip (a model file stores them as lists).

    Presets (SPEC §9). The paper's four take channels, multipliers, residual blocks per level, attention
    resolutions, attention heads, dropout, rank and the output bias from its ``configs/*.yaml``; every preset has
    self-attention in the middle block and ``emb_dim`` = 4 × channels as in guided diffusion (except "small"):

    ========  ===============  ====  ========  ============  =========  ==========  =======  ==========  ==========
    name      data_shape       rank  channels  channel_mult  res/level  attention   dropout  parameters  paper's
    ========  ===============  ====  ========  ============  =========  ==========  =======  ==========  ==========
    small     (1, 8, 8)        16    32        (1, 2)        1          none        0        709,152     --
    mnist     (1, 28, 28)      100   64        (1, 2, 2)     2          7×7         0        6,996,068   6,527,112
    cifar10   (3, 32, 32)      100   128       (1, 2, 2, 2)  2          16²         0.1      38,601,004  36,089,048
    celeba64  (3, 64, 64)      128   64        (1, 2, 2, 2)  3          16², 8²     0        13,372,096  12,508,672
    ffhq256   (3, 256, 256)    256   128       (1, 2, 2, 4)  2          32²         0        77,046,528  73,615,744
    ========  ===============  ====  ========  ============  =========  ==========  =======  ==========  ==========

    Heads: one per attention layer (``head_channels`` at least the width), four of 64 channels on cifar10, as in the
    paper. ffhq256: the paper's ``attention_resolutions: [8, 16]`` name downsample rates, and rate 16 is not a level
    of its four-level network, so only 32² attends. Parameter counts are of ``UNet(data_shape, rank,
    **arch_kwargs)`` at the preset's own shape and rank, counted with this code; they depend on ``C`` and the rank
    only through the output convolution (``9 · channels · k · C`` weights). The denoiser (``k = 1``) of a centred
    model is about as large again. "paper's" is the paper's ``UNetModel`` with the same config, counted from its
    code. The networks still differ, on purpose or for lack of an option:

    - σ conditioning: FiLM here (a scale and a shift after each block's second GroupNorm: the embedding's
      projection has twice the outputs); the paper adds the embedding once (``use_scale_shift_norm=False``).
    - σ embedding: sinusoidal features of ``log σ`` (33 inputs, `SigmaEmbedding`); the paper's guided-diffusion
      ``timestep_embedding`` of raw σ (``channels`` inputs). Both then a 2-layer SiLU MLP of width ``emb_dim``.
      These two account for the counts' difference, with the paper's two output biases (its convolution's and
      ``out_bias``) against one here.
    - Output initialisation: here the output convolution starts small and random (``head_std``) and the output
      bias at zero; the paper zero-initialises the convolution and draws its output bias with std 10⁻³.
    - Training (not the network; SPEC §9): the paper's CIFAR-10 run is uncentred with uniform σ on [0.02, 5], its
      MNIST run adds ``N(0, 0.1²)`` noise to the data, σ is in the paper's pixel units (SPEC §1), and its
      gradient clip at 1.0 acts on a loss 4D² times smaller than this library's (SPEC §3).
    """
    if not isinstance(name, str) or name not in UNET_PRESETS:
        raise ValueError(f"unknown UNet preset {name!r:.60}; valid: {sorted(UNET_PRESETS)}")
    preset = copy.deepcopy(UNET_PRESETS[name])
    preset["arch_kwargs"] = {k: list(v) if isinstance(v, tuple) else v for k, v in preset["arch_kwargs"].items()}
    return preset

