"""The factorisations of small symmetric matrices that `geometry` runs, moved out of it to keep that module short:
the batched ``eigh`` of `geometry.eigenpairs` (its Grams ``AᵀA`` or ``AAᵀ``), routed per device for speed, and the
Cholesky factor of ``AᵀA + δI`` behind `geometry.lowrank_solve`."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["CUDA_BATCHED_EIGH_MAX"]

# PyTorch solves a batch of CUDA ``eigh`` problems with one batched-Jacobi kernel only up to this size; above it
# the matrices go one by one (8,192 Grams of 64 × 64 took 5.5 s on an H200, `benchmarks/results/cuda/`).
CUDA_BATCHED_EIGH_MAX = 32


def _small_eigh(g: Tensor) -> tuple[Tensor, Tensor]:
    """Batched ``eigh`` of small ``(B, r, r)`` matrices.

    On CPU it runs on one intra-op thread: LAPACK's per-matrix calls are tiny, and with several threads on
    shared cores each call waits for the others (measured 2–4× slower with 2 threads, `benchmarks/tangent.py`).
    On CUDA, a batch of matrices larger than ``CUDA_BATCHED_EIGH_MAX`` is solved on the CPU and copied back:
    PyTorch would otherwise loop over the batch one matrix at a time.
    """
    if g.device.type == "cuda" and g.shape[-1] > CUDA_BATCHED_EIGH_MAX and g[..., 0, 0].numel() > 1:
        values, vectors = _small_eigh(g.cpu())
        return values.to(g.device), vectors.to(g.device)
    if g.device.type != "cpu" or torch.get_num_threads() == 1:
        return torch.linalg.eigh(g)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return torch.linalg.eigh(g)
    finally:
        torch.set_num_threads(threads)


def _regularised_cholesky(A: Tensor, delta: float) -> tuple[Tensor, Tensor | None]:
    """Cholesky factor of ``AᵀA + δI`` for ``A`` ``(B, m, k)`` → ``(B, k, k)``, and the ``(B,)`` mask of the rows
    where it failed (``None`` when none did).

    In float64 where the Gram's own rounding outweighs ``δ`` in ``A``'s dtype (a float32 factor of rank below
    ``k`` with ``δ`` under ~1e-7 of its eigenvalues), else in ``A``'s dtype. Rows that are not positive definite
    even in float64 (``δ`` under ~1e-16 of the largest eigenvalue) get an identity factor (a finite placeholder)
    and are flagged: their half-computed factor had been used (answers 37% off, or NaN).
    """
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    chol, info = torch.linalg.cholesky_ex(A.transpose(-1, -2) @ A + delta * eye)  # (the Gram AᵀA)
    failed = info > 0
    any_failed = bool(failed.any())  # (one host sync where nothing failed, the common case)
    if any_failed and A.dtype != torch.float64:
        eye = eye.double()
        chol, info = torch.linalg.cholesky_ex(A.double().transpose(-1, -2) @ A.double() + delta * eye)
        failed = info > 0
        any_failed = bool(failed.any())
    if not any_failed:
        return chol, None
    return torch.where(failed.view(-1, 1, 1), eye, chol), failed
