"""Preconditioning of the networks' input: ``c_in`` (`input_scale`, ``input_scaling="unit"``) and Gaussian
preconditioning (issue 12; SPEC is silent on it, so it is derived here): the data's principal directions as a
linear denoiser that both networks build on.

The standardised data (SPEC §1) are summarised by ``k`` principal directions ``U`` ``(D, k)`` with variances
``λ`` ``(k,)`` and one variance ``τ`` shared by the remaining ``D − k`` directions: the Gaussian model
``Σ = U diag(λ) Uᵀ + τ (I − UUᵀ)``. Its posterior mean at bandwidth ``σ`` is the linear filter
``S(σ) z = Σ (Σ + σ²I)⁻¹ z`` (EDM's ``c_skip`` with the data's covariance in place of one variance), and its
noise prediction is ``F_G(z, σ) = (I − S(σ)) z / σ = σ (Σ + σ²I)⁻¹ z``, finite as ``σ → 0``.

With ``ModelConfig.input_scaling = "gaussian"``:

- both networks receive ``u = S(σ) y / ρ(σ)``, where ``ρ(σ)² = tr(Σ² (Σ + σ²I)⁻¹) = E‖S(σ) y‖²`` keeps
  ``u`` at unit RMS norm at every bandwidth;
- the denoiser predicts only what the Gaussian model misses: ``F = F_G(y, σ) + F_θ(u, σ)``, its head starting at
  LeCun scale (1/√fan-in; two-network models): with the default near-zero head, or 0.3 of LeCun, the residual
  (a higher-order function such as a sphere's radius) was never learned on S⁸.

Why (measured in ``benchmarks/RESULTS.md``): on S⁸ spanning 9 of 64 dimensions the plain denoiser learns the
Gaussian filter and never the sphere's radial shrink, because the 55 noise-only coordinates drown the radius
``‖Py‖`` in its input; the factor then keeps the radial normal as a ninth eigenvalue near 1. The filtered input
holds the radius plainly, and the skip frees the network from the linear part.

Costs ``O(B D k)`` per call: never ``D × D``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import Tensor

__all__ = ["gaussian_filter", "input_scale", "network_input", "principal_components"]


def principal_components(z: Tensor, k: int, *, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """The Gaussian model of standardised points ``z`` ``(n, D)`` (centred, ``E‖z‖² ≈ 1``; module docstring).

    Exact SVD of the ``(n, D)`` rows when ``D ≤ 512``, else a seeded randomised SVD (`torch.svd_lowrank`,
    4 power iterations); no ``D × D`` matrix either way.

    Args:
        z: ``(n, D)`` float rows (a subsample of the training data is enough).
        k: principal directions asked for, ``1 ≤ k ≤ D``.
        seed: seed of the randomised SVD.

    Returns:
        ``(U, λ, τ)``: ``U`` ``(D, k')`` orthonormal columns, ``λ`` ``(k',)`` their variances (descending),
        ``τ`` ``()`` the mean variance of the remaining ``D − k'`` directions (0 when ``k' = D``). float32, on
        the device of ``z``.
        ``k' = min(n, D, k)``: fewer than ``k`` columns when there are fewer than ``k`` rows (the SVD of ``n``
        rows has at most ``n`` directions); `gaussian_filter` reads the width from ``U``.
    """
    n, dim = z.shape
    if not 1 <= k <= dim:
        raise ValueError(f"k must be in [1, D = {dim}], got {k}")
    z = z.double()
    z = z - z.mean(0)
    if dim <= 512:
        _, s, vh = torch.linalg.svd(z, full_matrices=False)
        basis, sing = vh[:k].T, s[:k]
    else:
        with _seeded(seed, z.device):  # `svd_lowrank` draws from the global generator of z's device
            _, sing, basis = torch.svd_lowrank(z, q=min(k + 8, dim), niter=4)
        basis, sing = basis[:, :k], sing[:k]
    var = sing.pow(2) / n
    total = z.pow(2).sum() / n
    kept = basis.shape[1]  # min(n, D, k)
    rest = ((total - var.sum()) / (dim - kept)).clamp_min(0.0) if kept < dim else z.new_zeros(())
    return basis.float().contiguous(), var.float(), rest.float()


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed the global generator of ``device`` (the CPU's, or one accelerator's) with ``seed`` for the block, and
    put it and the CPU's back afterwards: `torch.manual_seed` would reseed every accelerator's generator, and
    ``fork_rng(devices=[])`` puts back the CPU's alone."""
    if device.type == "cpu":
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            yield
        return
    module = torch.get_device_module(device.type)
    index = device.index if device.index is not None else getattr(module, "current_device", lambda: 0)()
    with torch.random.fork_rng(devices=[index], device_type=device.type):
        if hasattr(module, "default_generators"):  # CUDA, XPU: one generator per device
            module.default_generators[index].manual_seed(seed)
        else:  # MPS: one device
            module.manual_seed(seed)
        yield


def gaussian_filter(z: Tensor, sigma_z: Tensor, basis: Tensor, var: Tensor, rest: Tensor) -> tuple[Tensor, Tensor]:
    """The network input and the Gaussian noise prediction at ``z`` (module docstring), in ``z``'s dtype
    promoted to at least float32, outside autocast.

    Args:
        z: ``(B, *data_shape)`` standardised noisy points.
        sigma_z: ``(B,)`` or ``(1,)`` standardised bandwidths.
        basis, var, rest: the Gaussian model (`principal_components`), ``(D, k)``, ``(k,)``, ``()``.

    Returns:
        ``(u, F_G)``: ``u = S(σ) z / ρ(σ)`` shaped like ``z``, and ``F_G = σ (Σ + σ²I)⁻¹ z`` ``(B, D)``.
    """
    dtype = torch.promote_types(z.dtype, torch.float32)
    flat = z.reshape(z.shape[0], math.prod(z.shape[1:])).to(dtype)  # (not -1: an empty batch has no width to infer)
    basis, var, rest = basis.to(dtype), var.to(dtype), rest.to(dtype)
    with torch.autocast(flat.device.type, enabled=False):  # the skip is exact linear algebra: no bf16
        sigma = sigma_z.to(dtype).reshape(-1, 1)
        s2 = sigma * sigma
        coef = flat @ basis  # (B, k)
        resid = flat - coef @ basis.T  # the D − k remaining directions
        shrink, keep = var / (var + s2), rest / (rest + s2)  # (B|1, k), (B|1, 1)
        filtered = (coef * shrink) @ basis.T + resid * keep
        noise = (coef * (sigma / (var + s2))) @ basis.T + resid * (sigma / (rest + s2))
        rho2 = (var * shrink).sum(-1, keepdim=True) + (flat.shape[1] - basis.shape[1]) * rest * keep
        u = filtered * torch.rsqrt(rho2.clamp_min(torch.finfo(dtype).tiny))
    return u.reshape(z.shape), noise


def input_scale(sigma_z: Tensor, dim: int) -> Tensor:
    """``c_in(σ_z) = (1 + D σ_z²)^(−1/2)``, elementwise: ``(B,)`` → ``(B,)``.

    The standardised data have ``E‖z‖² = 1`` (SPEC §1), so a noisy point ``y = z + σ_z ε`` has
    ``E‖y‖² = 1 + D σ_z²`` and ``c_in y`` has unit RMS norm at every bandwidth (EDM's ``c_in`` with the
    per-coordinate data std ``σ_d = 1/√D``, times ``σ_d`` so that it tends to 1 as σ → 0). Without it the inputs
    at ``σ_z = 4`` are about ``4√D`` long (issue 12; measured in ``benchmarks/results/cpu/recipe.md``).
    """
    return torch.rsqrt(1 + dim * sigma_z * sigma_z)


def network_input(scaling: str, z: Tensor, sigma_z: Tensor, gaussian: tuple[Tensor, Tensor, Tensor] | None = None
                  ) -> tuple[Tensor, Tensor | None]:
    """What the networks of a `MetricModel` see, and the denoiser's linear part (``ModelConfig.input_scaling``):

    ``"none"``: ``(z, None)``; ``"unit"``: ``(c_in(σ_z) z, None)`` (`input_scale`); ``"gaussian"``: ``(u, F_G)``
    (`gaussian_filter` with ``gaussian = (basis, var, rest)``). ``z`` ``(B, *data_shape)``, ``σ_z`` ``(B,)``
    or ``(1,)``.
    """
    if scaling == "none":
        return z, None
    if scaling == "gaussian":
        return gaussian_filter(z, sigma_z, *gaussian)
    dim = math.prod(z.shape[1:])  # (not z[0]: an empty batch has no first point)
    return z * input_scale(sigma_z, dim).to(z.dtype).reshape(-1, *([1] * (z.ndim - 1))), None
