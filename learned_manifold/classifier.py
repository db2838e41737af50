"""A small CNN classifier trained locally: the feature map of image evaluation (SPEC §10) and the judge of
interpolations (class confidence along a path). Nothing is downloaded; the paper's Inception features are
replaced by this network trained on the user's own labelled images.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .models import check_int
from .precision import full_precision

__all__ = ["SmallCNN", "train_classifier"]


class SmallCNN(nn.Module):
    """Two 3×3 conv blocks (SiLU, the second with stride 2), global average pooling, a linear head.

    Input ``(B, C, H, W)`` (or ``(B, H, W)`` for one channel), any ``H, W ≥ 1``; ``features`` → ``(B, width)``,
    ``forward`` → logits ``(B, classes)``. Inputs are standardised with the ``mean``/``std`` fixed at training.
    """

    mean: Tensor  # buffers (`register_buffer` in ``__init__``)
    std: Tensor

    def __init__(self, channels: int, classes: int, width: int = 32):
        super().__init__()
        self.channels = check_int(channels, "channels", 1, 64)
        self.classes = check_int(classes, "classes", 2, 100_000)
        width = check_int(width, "width", 1, 4096)
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1, stride=2), nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.SiLU(),
        )
        self.head = nn.Linear(width, classes)
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("std", torch.ones(()))

    def _images(self, x: Tensor) -> Tensor:
        if x.ndim == 3:
            x = x.unsqueeze(1)
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"expected images (B, {self.channels}, H, W), got {tuple(x.shape)}")
        return (x.to(self.mean.dtype) - self.mean) / self.std

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features: ``(B, C, H, W)`` → ``(B, width)``."""
        return self.body(self._images(x)).mean(dim=(-2, -1))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    def proba(self, x: Tensor) -> Tensor:
        """Class probabilities ``(B, classes)``."""
        return self.forward(x).softmax(-1)


@full_precision
def train_classifier(images: Tensor, labels: Tensor, *, steps: int = 400, batch_size: int = 128, lr: float = 3e-3,
                     width: int = 32, seed: int = 0) -> SmallCNN:
    """Train a `SmallCNN` on ``images`` ``(N, C, H, W)`` or ``(N, H, W)`` and integer ``labels`` ``(N,)``.

    AdamW, cosine schedule, light Gaussian input noise (so features stay smooth near the data). Returns the
    network in eval mode with gradients off. Deterministic for a given ``seed`` on one device; the global random
    state is left as it was. The caller's mode does not matter: it trains with grad enabled under ``no_grad`` or
    ``inference_mode`` and with the caller's ``torch.autocast`` switched off.

    Raises:
        ValueError: images of another shape, none, or with NaN/inf; labels not integers ``0, 1, ...`` of shape
            ``(N,)``.
    """
    if images.ndim == 3:
        images = images.unsqueeze(1)
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"images must have shape (N, C, H, W) or (N, H, W) with N >= 1, got {tuple(images.shape)}")
    if not bool(torch.isfinite(images).all()):
        raise ValueError("images hold NaN or inf; the classifier would learn NaN logits")
    labels = torch.as_tensor(labels)
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape ({images.shape[0]},), one per image, got {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.dtype == torch.bool or labels.is_complex():
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if int(labels.min()) < 0:
        raise ValueError(f"labels must be class indices 0, 1, ..., got {int(labels.min())}")
    steps = check_int(steps, "steps", 1, 10**7)
    with torch.inference_mode(False), torch.enable_grad():  # under the caller's no_grad/inference_mode too
        return _fit(images, labels, steps, batch_size, lr, width, seed)


def _fit(images: Tensor, labels: Tensor, steps: int, batch_size: int, lr: float, width: int,
         seed: int) -> SmallCNN:
    """`train_classifier` after its checks: the network, then ``steps`` AdamW steps on noisy batches of
    ``images`` ``(N, C, H, W)``."""
    classes = int(labels.max()) + 1
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # the initialisation's seed stays inside: the CPU generator alone
        torch.default_generator.manual_seed(seed)  # (`torch.manual_seed` would reseed every CUDA generator too)
        net = SmallCNN(images.shape[1], max(classes, 2), width).to(images.device)
    x = images.float()
    net.mean.fill_(float(x.mean()))
    net.std.fill_(float(x.std().clamp_min(1e-12)))
    opt = torch.optim.AdamW(net.parameters(), lr=lr)
    noise = 0.05 * float(net.std)
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        idx = torch.randint(0, x.shape[0], (min(batch_size, x.shape[0]),), generator=gen).to(x.device)
        batch = x[idx] + noise * torch.randn(x[idx].shape, generator=gen).to(x.device)
        loss = nn.functional.cross_entropy(net(batch), labels[idx].to(x.device).long())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval().requires_grad_(False)
