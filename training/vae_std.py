"""The parts of VAE training that fit and check the decoder's uncertainty (SPEC §11): k-means centres and RBF
bandwidths of the latent codes for the std ``σ(z) = s (W v(z) + ζ)^{-1/2}``, the codes themselves, and how much the
std grows off the data."""

from __future__ import annotations

import torch
from torch import Tensor

from learned_manifold.user_warnings import warn_user
from learned_manifold.vae import VAE, far_inputs

__all__ = ["encode_data", "far_data", "kmeans", "rbf_bandwidths", "std_growth"]


def kmeans(x: Tensor, k: int, *, generator: torch.Generator, iters: int = 50) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means from a k-means++ start: ``(N, d)`` → ``(centres (k, d), labels (N,))``.

    An empty cluster is re-seeded at the point farthest from its centre. Deterministic for a given generator.
    """
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 <= k <= N, got k = {k} for N = {n}")
    first = int(torch.randint(n, (1,), generator=generator))
    centres = [x[first]]
    dist = (x - x[first]).pow(2).sum(-1)
    for _ in range(1, k):
        probs = dist / dist.sum() if float(dist.sum()) > 0 else torch.full_like(dist, 1.0 / n)
        i = int(torch.multinomial(probs, 1, generator=generator))
        centres.append(x[i])
        dist = torch.minimum(dist, (x - x[i]).pow(2).sum(-1))
    c = torch.stack(centres)
    labels = torch.cdist(x, c).argmin(-1)
    for _ in range(iters):
        sums = torch.zeros_like(c).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=k).to(x.dtype)
        new = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], c)
        for j in (counts == 0).nonzero().flatten().tolist():
            new[j] = x[(x - new[labels]).pow(2).sum(-1).argmax()]
        new_labels = torch.cdist(x, new).argmin(-1)
        c, done = new, bool((new_labels == labels).all())
        labels = new_labels
        if done:
            break
    return c, labels


def rbf_bandwidths(x: Tensor, centres: Tensor, labels: Tensor, scale: float) -> Tensor:
    """``λ_k = ½ (a · mean_{x ∈ C_k} ‖x − c_k‖)^{-2}`` (Arvanitidis et al. 2018): ``(K,)``, all ``> 0``.

    A cluster with zero spread (a single point) takes the median spread of the others."""
    spread = torch.zeros(centres.shape[0], dtype=x.dtype, device=x.device).index_add_(
        0, labels, (x - centres[labels]).norm(dim=-1))
    spread = spread / torch.bincount(labels, minlength=centres.shape[0]).clamp_min(1)
    good = spread > 0
    fill = spread[good].median() if bool(good.any()) else x.new_tensor(1.0)
    spread = torch.where(good, spread, fill)
    return 0.5 / (scale * spread).pow(2)


@torch.no_grad()
def encode_data(vae: VAE, data: Tensor, *, batch: int = 4096, check: bool = True) -> Tensor:
    """Posterior means of ``data`` ``(N, *data_shape)`` in chunks: ``(N, d)`` on the data's device.

    Warns once (`far_data`, unless ``check`` is false) where the data as a whole lie far from the VAE's training
    data; `VAE.encode`, which encodes each chunk, does not check."""
    dev = vae.scale.device
    if check and (problem := far_data(vae, data, batch=batch)):
        warn_user(f"encode_data: the data lie far from the data the VAE was trained on: {problem}")
    return torch.cat([vae.encode(c.to(dev)).to(data.device) for c in data.split(batch)]) \
        if len(data) else data.new_zeros(0, vae.latent_dim)


@torch.no_grad()
def far_data(vae: VAE, data: Tensor, *, batch: int = 4096) -> str | None:
    """`learned_manifold.vae.far_inputs` of all of ``data`` ``(N, *data_shape)`` (`VAE.input_spread`, in chunks)
    against ``vae.input_spread_max`` (the rule for old files and hand-made VAEs where that is ``None``): how far
    from ``vae``'s training data they lie, or ``None`` where they lie near."""
    if not len(data):
        return None
    dev = vae.scale.device
    return far_inputs(torch.cat([vae.input_spread(c.to(dev)).cpu() for c in data.split(batch)]), vae.input_spread_max)


STD_CHUNK = 4096
"""Codes per decoder call in `std_growth`: the decoder's output for all training codes at once took 8× the data's
memory at a million points (twenty-fifth session)."""


def _rms_std(vae: VAE, codes: Tensor) -> Tensor:
    """``(n,)`` RMS over coordinates of the decoder std at ``codes`` ``(n, d)``, `STD_CHUNK` codes at a time."""
    return torch.cat([vae.decoder_std(part).flatten(1).pow(2).mean(-1).sqrt() for part in codes.split(STD_CHUNK)])


@torch.no_grad()
def std_growth(vae: VAE, codes: Tensor, *, factor: float = 10.0, n_dirs: int = 64, seed: int = 0) -> dict:
    """How much the decoder std grows off the data: RMS std (over coordinates, median over points) at the codes
    and at ``factor`` × the codes' RMS radius from their mean, along ``n_dirs`` random directions."""
    mean = codes.mean(0)
    radius = float((codes - mean).pow(2).sum(-1).mean().sqrt())
    g = torch.Generator(device="cpu").manual_seed(seed)
    dirs = torch.randn(n_dirs, codes.shape[1], generator=g).to(codes)
    far = mean + factor * radius * dirs / dirs.norm(dim=-1, keepdim=True)
    on = _rms_std(vae, codes).median()
    off = _rms_std(vae, far).median()
    return {"latent_radius": radius, "std_on_data": float(on), "std_far": float(off),
            "std_growth": float(off / on), "far_factor": factor}
