"""Which floating-point precision to compute in: native bf16 detection and the ``"auto"`` rule.

bf16 autocast pays where the hardware multiplies bf16 natively: CUDA GPUs that support bf16, and CPUs with
AVX512-BF16 or AMX tiles. Elsewhere the bf16 matmuls are emulated, so ``"auto"`` stays in fp32 there. The
measured speed and accuracy of each setting are in ``benchmarks/RESULTS.md`` (training section; CPU only so far).
"""

from __future__ import annotations

import torch

__all__ = ["PRECISIONS", "native_bf16", "resolve_precision"]

PRECISIONS = ("auto", "fp32", "bf16")
"""Accepted precision settings: ``"auto"`` resolves to ``"bf16"`` where `native_bf16` holds, else ``"fp32"``."""


def native_bf16(device: str | torch.device) -> bool:
    """Whether ``device`` computes bf16 matmuls natively (CUDA bf16 support; CPU AVX512-BF16 or AMX)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private in torch.cpu; absent: False
        return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)
    return False


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """``"fp32"`` or ``"bf16"`` for ``precision`` in `PRECISIONS` on ``device`` (``"auto"``: `native_bf16`)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision
